"""Optical character recognition with Tesseract, scored by character and word error rates.

Tesseract 5 (Debian's ``tesseract-ocr`` with the ``tesseract-ocr-eng`` LSTM
model) runs as its command-line program: the image goes in as PNG on stdin, the
text comes back on stdout (what ``pytesseract`` does, without the extra
package). Settings: English, LSTM engine (``--oem 1``), one uniform block of
text (``--psm 6``: a paragraph, the demo documents' layout), one thread
(``OMP_THREAD_LIMIT=1``: the same text on every run, and polite beside the other
workers). Images are sent as 8-bit grayscale.

Text comparison keeps case and punctuation (recognising them is OCR's job) and
only collapses runs of whitespace, line breaks included, to one space. Scores,
as per-item rows plus a corpus row (summed edits over summed reference length,
like ASR's WER):

- ``cer``, ``wer`` against the label (the exact rendered text);
- ``cer_ref``, ``wer_ref`` label-free, against the text recognised on the
  uncompressed image.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from mpq_assets.settings import Settings
from mpq_assets.tasks import wer as werlib
from mpq_assets.tasks.base import (
    ModelNotAvailableError,
    Prediction,
    Score,
    Task,
    TaskInfo,
    missing_label,
    same_length,
)
from mpq_assets.weights import WeightSource, cached
from mpq_assets.weights.source import locate_with

MODEL = "tesseract-eng"
INSTALL = "apt-get install tesseract-ocr tesseract-ocr-eng"
TIMEOUT_S = 120


def tesseract() -> str:
    """The tesseract executable, checked to have its English model."""

    def find() -> str:
        exe = shutil.which("tesseract")
        if exe is None:
            raise ModelNotAvailableError(f"OCR needs Tesseract: {INSTALL}")
        langs = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=60)
        if "eng" not in langs.stdout.split():
            raise ModelNotAvailableError(f"Tesseract has no English model: {INSTALL}")
        return exe

    return cached(("tesseract",), find)


def version() -> str:
    """``tesseract 5.3.0``-style version line (for ``mpq models`` and stored rows)."""
    out = subprocess.run([tesseract(), "--version"], capture_output=True, text=True, timeout=60)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def clean(text: str | None) -> str:
    """Whitespace (line breaks included) collapsed to single spaces; case and punctuation kept."""
    return " ".join(str(text or "").split())


def recognise(image: np.ndarray) -> str:
    """Tesseract's text of an RGB (or gray) uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("L").save(buffer, format="PNG")
    run = subprocess.run([tesseract(), "stdin", "stdout", "-l", "eng", "--oem", "1", "--psm", "6"],
                         input=buffer.getvalue(), capture_output=True, timeout=TIMEOUT_S,
                         env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    if run.returncode != 0:
        raise RuntimeError(f"tesseract failed ({run.returncode}): {run.stderr.decode(errors='replace').strip()}")
    return clean(run.stdout.decode("utf-8", errors="replace"))


class TextRecognition(Task):
    info: ClassVar[TaskInfo] = TaskInfo(
        name="ocr",
        modality="image",
        label_metrics=("cer", "wer"),
        reference_metrics=("cer_ref", "wer_ref"),
        higher_is_better={"cer": False, "wer": False, "cer_ref": False, "wer_ref": False},
        self_scores={"cer_ref": 0.0, "wer_ref": 0.0},
        error_rates=("cer", "wer", "cer_ref", "wer_ref"),
    )
    weight_sources: ClassVar[tuple[WeightSource, ...]] = (
        WeightSource(MODEL, "package", "OCR (Tesseract 5 LSTM, English)", "Debian tesseract-ocr-eng",
                     locate=locate_with(version, INSTALL)),
    )

    def __init__(self, model: str = MODEL, device: torch.device | str = "cpu", batch_size: int = 8,
                 settings: Settings | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if model != MODEL:
            raise ModelNotAvailableError(f"OCR runs {MODEL!r} only, not {model!r}")

    @property
    def model_id(self) -> str:
        return MODEL

    def predict(self, items: Sequence[np.ndarray]) -> list[Prediction]:
        """The text of each image (Tesseract runs on the CPU, one image at a time)."""
        for item in items:
            if not isinstance(item, np.ndarray) or item.ndim not in (2, 3):
                raise ValueError(f"OCR takes images (H x W x 3 uint8), got {type(item).__name__}")
        tesseract()
        return [Prediction(summary={"text": recognise(item)}) for item in items]

    def score_labels(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                     labels: Sequence[Any]) -> list[Score]:
        same_length(item_ids, predictions, labels)
        kept = [(i, clean(label), clean(p.summary.get("text"))) for i, p, label in
                zip(item_ids, predictions, labels, strict=True)
                if not missing_label(label)]
        return werlib.error_rate_rows([k[0] for k in kept], [(k[1], k[2]) for k in kept], "wer", "cer", None)

    def score_reference(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                        reference: Sequence[Prediction]) -> list[Score]:
        same_length(item_ids, predictions, reference)
        pairs = [(clean(r.summary.get("text")), clean(p.summary.get("text")))
                 for p, r in zip(predictions, reference, strict=True)]
        return werlib.error_rate_rows(item_ids, pairs, "wer_ref", "cer_ref", None)
