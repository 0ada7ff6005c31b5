"""Speaker verification with Resemblyzer's speaker encoder (GE2E, Apache-2.0).

The weights are ``pretrained.pt`` inside the ``resemblyzer`` wheel (17 MB,
installed with ``--no-deps``: its imports need librosa and webrtcvad, which MPQ
does not use). The file is read here with ``torch.load(weights_only=True)`` into
:class:`VoiceEncoder`, the same network (3-layer LSTM over 40 mel bands, a
linear layer, ReLU, L2 norm). Embedding a clip follows Resemblyzer's
``embed_utterance``: mono at 16 kHz, volume raised (never lowered) to -30 dBFS,
mel frames of 25 ms every 10 ms, partial windows of 1.6 s at 1.3 per second
(the last kept if it is 75 % covered), their embeddings averaged and
L2-normalised. Resemblyzer's voice-activity trimming is left out, so the
embedding sees exactly the decoded clip (codec silence and all).

Scores:

- ``speaker_sim`` (label-free, per item): cosine similarity of the decoded clip's
  embedding to the uncompressed clip's; 1 on the original.
- ``eer`` (against the speaker label, a partition-level number): equal error rate
  over every pair of the partition's clips, a pair being a target trial when
  both are the same voice and scored by the cosine of their embeddings (both
  sides decoded, as when enrolment and test both went through the codec).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mpq_assets.media.audio import Audio, remix, resample
from mpq_assets.settings import Settings
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
from mpq_assets.tasks.scoring import equal_error_rate
from mpq_assets.weights import WeightSource, cached
from mpq_assets.weights.files import package_file
from mpq_assets.weights.safe_load import load_checkpoint, state_dict
from mpq_assets.weights.source import locate_with

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
N_FFT, HOP, N_MELS = 400, 160, 40        # 25 ms windows every 10 ms, 40 mel bands
PARTIAL_FRAMES = 160                     # 1.6 s partial utterances
PARTIAL_RATE, MIN_COVERAGE = 1.3, 0.75
TARGET_DBFS = -30.0
MODEL = "resemblyzer"
INSTALL = "pip install --no-deps resemblyzer==0.1.4"


class VoiceEncoder(nn.Module):
    """Resemblyzer's speaker encoder: mel frames (B, T, 40) -> L2-normalised 256-d embeddings."""

    def __init__(self, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, hidden)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


def weights_path() -> Path:
    """``pretrained.pt`` in the installed resemblyzer package (found without importing it)."""
    return package_file("resemblyzer", "pretrained.pt", f"speaker verification needs Resemblyzer's weights: {INSTALL}")


def load_encoder(device: torch.device) -> VoiceEncoder:
    """The encoder with Resemblyzer's weights, once per process per device."""

    def load() -> VoiceEncoder:
        path = weights_path()
        tensors = state_dict(load_checkpoint(path, "Resemblyzer checkpoint"), path, nested=("model_state",))
        model = VoiceEncoder()
        # the GE2E loss's similarity scale and bias are training-only
        model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("similarity_")})
        return model.to(device).eval()

    return cached(("resemblyzer", str(device)), load)


@functools.cache
def _mel_filters() -> torch.Tensor:
    import torchaudio.functional as AF

    # librosa's default mel filters (Slaney scale and area normalisation), as Resemblyzer used
    return AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm="slaney",
                              mel_scale="slaney")


def mel_frames(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power spectrogram (not log), centred frames as librosa computes them."""
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, pad_mode="constant",
                      return_complex=True).abs().pow(2)
    return (spec.T @ _mel_filters()).numpy().astype(np.float32)


def partial_slices(n_samples: int) -> list[slice]:
    """Mel-frame ranges of the partial utterances (Resemblyzer's ``compute_partial_slices``)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / PARTIAL_RATE) / HOP))
    starts = range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)
    slices = [slice(i, i + PARTIAL_FRAMES) for i in starts]
    coverage = (n_samples - slices[-1].start * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(slices) > 1:
        slices = slices[:-1]
    return slices


def preprocess(item: Any) -> np.ndarray:
    """Mono 16 kHz float32, volume raised to -30 dBFS when quieter (silence stays silence)."""
    if not isinstance(item, Audio):
        raise ValueError(f"speaker verification takes Audio clips, got {type(item).__name__}")
    wav = resample(remix(item, 1), SAMPLE_RATE).samples[0].astype(np.float64)
    rms = float(np.sqrt(np.mean(wav ** 2))) if wav.size else 0.0
    if rms > 0:
        gain_db = TARGET_DBFS - 20 * math.log10(rms)
        if gain_db > 0:
            wav = wav * 10 ** (gain_db / 20)
    return wav.astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0)) if na and nb else 0.0


class SpeakerVerification(Task):
    info: ClassVar[TaskInfo] = TaskInfo(
        name="speaker",
        modality="audio",
        label_metrics=("eer",),
        reference_metrics=("speaker_sim",),
        higher_is_better={"eer": False, "speaker_sim": True},
        self_scores={"speaker_sim": 1.0},
        error_rates=("eer",),
    )
    weight_sources: ClassVar[tuple[WeightSource, ...]] = (
        WeightSource(MODEL, "package", "speaker verification (Resemblyzer GE2E encoder)", "resemblyzer (PyPI)",
                     locate=locate_with(lambda: weights_path(), INSTALL)),
    )

    def __init__(self, model: str = MODEL, device: torch.device | str = "cpu", batch_size: int = 8,
                 settings: Settings | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if model != MODEL:
            raise ModelNotAvailableError(f"speaker verification runs {MODEL!r} only, not {model!r}")

    @property
    def model_id(self) -> str:
        return MODEL

    def embed(self, wav: np.ndarray) -> tuple[np.ndarray, int]:
        """(the L2-normalised mean of the partial windows' embeddings, how many windows)."""
        slices = partial_slices(len(wav))
        wav = np.pad(wav, (0, max(0, slices[-1].stop * HOP - len(wav))))
        mel = mel_frames(wav)
        batch = torch.from_numpy(np.stack([mel[s] for s in slices])).to(self.device)
        with torch.inference_mode():
            partials = load_encoder(self.device)(batch).cpu().numpy()
        mean = partials.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32), len(slices)

    def predict(self, items: Sequence[Audio]) -> list[Prediction]:
        """One embedding per clip (its partial windows run as one batch)."""
        inputs = [preprocess(item) for item in items]
        out = []
        for wav in inputs:
            embedding, partials = self.embed(wav)
            out.append(Prediction(summary={"partials": partials}, array=embedding))
        return out

    def score_labels(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                     labels: Sequence[Any]) -> list[Score]:
        """EER over all pairs of the clips that have a speaker label (one partition-level row)."""
        same_length(item_ids, predictions, labels)
        kept = [(p.array, str(label)) for p, label in zip(predictions, labels, strict=True)
                if p.array is not None and not missing_label(label)]
        if len(kept) < 2:
            return []
        pairs = list(itertools.combinations(kept, 2))
        scores = np.array([cosine(a[0], b[0]) for a, b in pairs])
        targets = np.array([a[1] == b[1] for a, b in pairs])
        eer = equal_error_rate(scores, targets)
        if math.isnan(eer):
            log.warning("speaker: %d clips give no %s trials; no EER", len(kept),
                        "different-voice" if targets.all() else "same-voice")
            return []
        return [Score("eer", eer, None, n=len(kept))]

    def score_reference(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                        reference: Sequence[Prediction]) -> list[Score]:
        """Cosine similarity of each clip's embedding to its uncompressed original's."""
        same_length(item_ids, predictions, reference)
        rows = [Score("speaker_sim", cosine(p.array, r.array), item_id)
                for item_id, p, r in zip(item_ids, predictions, reference, strict=True)
                if p.array is not None and r.array is not None]
        return rows + mean_rows(rows)
