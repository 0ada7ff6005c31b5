"""Speaker verification: EER with known answers, and Resemblyzer's real encoder on the demo voices."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from mpq_assets.media.audio import Audio, load_audio
from mpq_assets.settings import REPO_ROOT
from mpq_assets.tasks import speaker
from mpq_assets.tasks.base import ModelNotAvailableError
from mpq_assets.tasks.scoring import equal_error_rate
from mpq_assets.tasks.speaker import SpeakerVerification, partial_slices

SPEECH = REPO_ROOT / "data" / "demo_speech"


@pytest.mark.fast
def test_equal_error_rate_known_answers() -> None:
    targets = np.array([True, True, True, False, False, False])
    assert equal_error_rate(np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), targets) == 0.0      # separable
    assert equal_error_rate(np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), targets) == 1.0      # inverted
    # one target below one non-target: at the crossing 1 of 3 is rejected and 1 of 3 accepted
    assert equal_error_rate(np.array([0.9, 0.8, 0.4, 0.5, 0.2, 0.1]), targets) == pytest.approx(1 / 3)
    assert np.isnan(equal_error_rate(np.array([0.5, 0.6]), np.array([True, True])))


@pytest.mark.fast
def test_partial_windows_follow_resemblyzer() -> None:
    # 1.6 s windows every 0.77 s (1.3 per second); a short clip still gets one window
    assert partial_slices(8_000) == [slice(0, 160)]
    slices = partial_slices(4 * 16_000)
    assert [s.start for s in slices] == [0, 77, 154, 231][: len(slices)] and all(s.stop - s.start == 160
                                                                                  for s in slices)


def _clips() -> tuple[list[str], list[Audio], list[str]]:
    with (SPEECH / "transcripts.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:12]
    return [r["item_id"] for r in rows], [load_audio(SPEECH / f"{r['item_id']}.flac") for r in rows], \
        [r["voice"] for r in rows]


def test_resemblyzer_separates_the_demo_voices_and_tracks_damage() -> None:
    ids, clips, voices = _clips()
    task = SpeakerVerification()
    preds = task.predict(clips)
    assert all(p.array.shape == (256,) and np.linalg.norm(p.array) == pytest.approx(1, abs=1e-5) for p in preds)
    (eer,) = task.score_labels(ids, preds, voices)
    assert eer.metric == "eer" and eer.item_id is None and eer.n == 12 and eer.value == 0.0
    same = [r.value for r in task.score_reference(ids, preds, preds)]
    assert same == pytest.approx([1.0] * 13)
    # a crude 8 kHz low-pass plus noise moves the embedding; the voice stays closer to itself than to others
    rng = np.random.default_rng(0)
    damaged = [Audio((np.convolve(c.samples[0], np.ones(6) / 6, mode="same") + 0.01 * rng.standard_normal(c.frames)
                      ).astype(np.float32)[None], c.sample_rate) for c in clips]
    sims = [r for r in task.score_reference(ids, task.predict(damaged), preds) if r.item_id]
    assert all(0.5 < r.value < 0.999 for r in sims)
    cross = speaker.cosine(preds[0].array, preds[1].array)  # kal vs awb
    assert cross < min(r.value for r in sims)


def test_encoder_loads_with_weights_only(monkeypatch) -> None:
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    from mpq_assets.weights import MODEL_CACHE

    MODEL_CACHE.clear("resemblyzer")
    monkeypatch.setattr(torch, "load", spy)
    model = speaker.load_encoder(torch.device("cpu"))
    assert calls == [True] and sum(p.numel() for p in model.parameters()) == 1_423_616
    with pytest.raises(ModelNotAvailableError, match="only"):
        SpeakerVerification(model="ecapa")
    with pytest.raises(ValueError, match="Audio"):
        SpeakerVerification().predict([np.zeros((4, 4, 3), dtype=np.uint8)])
