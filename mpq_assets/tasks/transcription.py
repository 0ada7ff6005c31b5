"""Music transcription with Basic Pitch, scored note by note with ``mir_eval.transcription``.

A prediction is the list of notes (onset s, offset s, MIDI pitch) Basic Pitch
decodes from the clip (:mod:`~mpq_assets.tasks.basic_pitch`). Scores follow the
field's standard (MIREX note tracking, ``mir_eval.transcription``): a note
matches a reference note when its pitch is within 50 cents and its onset within
``onset_tolerance`` (50 ms); offsets are not required (``offset_ratio=None``),
each note matches at most once (bipartite matching).

- ``note_f1``, ``note_precision``, ``note_recall``: against the label, a CSV of
  the reference notes (columns ``onset``, ``offset``, ``pitch`` as a MIDI
  number; the demo chorales' scores from music21); per item, and their mean
  over items.
- ``note_f1_ref``: label-free, against the transcription of the uncompressed
  clip (1 on the original).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mpq_assets.media.audio import Audio, remix, resample
from mpq_assets.settings import Settings
from mpq_assets.tasks import basic_pitch
from mpq_assets.tasks.base import (
    ModelNotAvailableError,
    Prediction,
    Score,
    Task,
    TaskInfo,
    mean_rows,
    missing_label,
    same_length,
)
from mpq_assets.weights import WeightSource
from mpq_assets.weights.source import locate_with

MODEL = "basic-pitch"
ONSET_TOLERANCE = 0.05
PITCH_TOLERANCE_CENTS = 50.0

Note = tuple[float, float, int]


def _require_mir_eval() -> None:
    if importlib.util.find_spec("mir_eval") is None:
        raise ModelNotAvailableError("transcription scores need mir_eval: pip install mir_eval")


def note_scores(reference: Sequence[Note], estimate: Sequence[Note],
                onset_tolerance: float = ONSET_TOLERANCE) -> tuple[float, float, float]:
    """(precision, recall, F1) of ``estimate`` against ``reference`` by onset and pitch (mir_eval).
    Both empty: a perfect (1, 1, 1); one side empty: (0, 0, 0)."""
    if not reference and not estimate:
        return 1.0, 1.0, 1.0
    if not reference or not estimate:
        return 0.0, 0.0, 0.0
    _require_mir_eval()
    from mir_eval.transcription import precision_recall_f1_overlap

    def arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
        intervals = np.array([[on, max(off, on + 1e-3)] for on, off, _ in notes], dtype=np.float64)
        hz = 440.0 * 2.0 ** ((np.array([p for _, _, p in notes], dtype=np.float64) - 69) / 12)
        return intervals, hz

    ref_i, ref_p = arrays(reference)
    est_i, est_p = arrays(estimate)
    precision, recall, f1, _ = precision_recall_f1_overlap(
        ref_i, ref_p, est_i, est_p, onset_tolerance=onset_tolerance, pitch_tolerance=PITCH_TOLERANCE_CENTS,
        offset_ratio=None)
    return float(precision), float(recall), float(f1)


def read_notes(path: str | Path) -> list[Note]:
    """Reference notes from a CSV with ``onset``, ``offset`` (seconds) and ``pitch`` (MIDI) columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"note list {path} does not exist")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"onset", "offset", "pitch"} - set(rows[0] if rows else {"onset", "offset", "pitch"})
    if missing:
        raise ValueError(f"note list {path} lacks the column(s) {', '.join(sorted(missing))}")
    return sorted((float(r["onset"]), float(r["offset"]), int(round(float(r["pitch"])))) for r in rows)


def label_notes(label: Any) -> list[Note] | None:
    """The reference notes a label names: a note-list CSV path, or a JSON object with a ``notes`` path."""
    if missing_label(label) or not str(label).strip():
        return None
    text = str(label).strip()
    if text.startswith("{"):
        path = json.loads(text).get("notes")
        return None if path is None else read_notes(path)
    return read_notes(text)


def _notes(prediction: Prediction) -> list[Note]:
    return [(float(a), float(b), int(p)) for a, b, p in prediction.summary.get("notes", [])]


class MusicTranscription(Task):
    info: ClassVar[TaskInfo] = TaskInfo(
        name="transcription",
        modality="audio",
        label_metrics=("note_f1", "note_precision", "note_recall"),
        reference_metrics=("note_f1_ref",),
        higher_is_better={"note_f1": True, "note_precision": True, "note_recall": True, "note_f1_ref": True},
        self_scores={"note_f1_ref": 1.0},
    )
    weight_sources: ClassVar[tuple[WeightSource, ...]] = (
        WeightSource(MODEL, "package", "music transcription (Spotify Basic Pitch, ONNX)", "basic-pitch (PyPI)",
                     locate=locate_with(basic_pitch.model_path, basic_pitch.INSTALL)),
    )

    def __init__(self, model: str = MODEL, onset_tolerance: float = ONSET_TOLERANCE,
                 device: torch.device | str = "cpu", batch_size: int = 8, settings: Settings | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if model != MODEL:
            raise ModelNotAvailableError(f"music transcription runs {MODEL!r} only, not {model!r}")
        self.onset_tolerance = float(onset_tolerance)

    @property
    def model_id(self) -> str:
        return MODEL

    def predict(self, items: Sequence[Audio]) -> list[Prediction]:
        """The notes of each clip (mono, 22.05 kHz); ONNX on the CPU whatever the device."""
        _require_mir_eval()  # a missing scorer skips the task here, before any work
        inputs = []
        for item in items:
            if not isinstance(item, Audio):
                raise ValueError(f"music transcription takes Audio clips, got {type(item).__name__}")
            inputs.append(resample(remix(item, 1), basic_pitch.SAMPLE_RATE).samples[0])
        out = []
        for audio in inputs:
            notes = basic_pitch.transcribe(audio)
            out.append(Prediction(summary={"notes": [[round(a, 4), round(b, 4), p] for a, b, p in notes]}))
        return out

    def _rows(self, item_id: str, reference: list[Note], estimate: list[Note], suffix: str = "") -> list[Score]:
        precision, recall, f1 = note_scores(reference, estimate, self.onset_tolerance)
        if suffix:
            return [Score(f"note_f1{suffix}", f1, item_id)]
        return [Score("note_f1", f1, item_id), Score("note_precision", precision, item_id),
                Score("note_recall", recall, item_id)]

    def score_labels(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                     labels: Sequence[Any]) -> list[Score]:
        same_length(item_ids, predictions, labels)
        rows: list[Score] = []
        for item_id, prediction, label in zip(item_ids, predictions, labels, strict=True):
            reference = label_notes(label)
            if reference is not None:
                rows += self._rows(item_id, reference, _notes(prediction))
        return rows + mean_rows(rows)

    def score_reference(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                        reference: Sequence[Prediction]) -> list[Score]:
        same_length(item_ids, predictions, reference)
        rows: list[Score] = []
        for item_id, prediction, ref in zip(item_ids, predictions, reference, strict=True):
            rows += self._rows(item_id, _notes(ref), _notes(prediction), suffix="_ref")
        return rows + mean_rows(rows)
