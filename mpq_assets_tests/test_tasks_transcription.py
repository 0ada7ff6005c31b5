"""Music transcription: mir_eval note scores with known answers, and Basic Pitch's real ONNX model on the demo
chorales against their music21 note lists (``data/demo_music/<track>/notes.csv``)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mpq_assets.media.audio import Audio, load_audio
from mpq_assets.settings import REPO_ROOT
from mpq_assets.tasks import basic_pitch
from mpq_assets.tasks.base import ModelNotAvailableError
from mpq_assets.tasks.transcription import MusicTranscription, label_notes, note_scores, read_notes

MUSIC = REPO_ROOT / "data" / "demo_music"
NOTES = [(0.0, 0.5, 60), (0.5, 1.0, 64), (1.0, 1.5, 67), (1.0, 2.0, 48)]


@pytest.mark.fast
def test_note_f1_of_itself_is_one_and_a_shift_follows_the_onset_tolerance() -> None:
    assert note_scores(NOTES, NOTES) == (1.0, 1.0, 1.0)
    late = [(a + 0.04, b + 0.04, p) for a, b, p in NOTES]
    assert note_scores(NOTES, late) == (1.0, 1.0, 1.0)            # 40 ms: inside the 50 ms tolerance
    later = [(a + 0.06, b + 0.06, p) for a, b, p in NOTES]
    assert note_scores(NOTES, later) == (0.0, 0.0, 0.0)           # 60 ms: no onset matches
    assert note_scores(NOTES, later, onset_tolerance=0.1)[2] == 1.0
    semitone = [(a, b, p + 1) for a, b, p in NOTES]
    assert note_scores(NOTES, semitone)[2] == 0.0                 # a semitone is beyond 50 cents
    half = NOTES[:2]
    precision, recall, f1 = note_scores(NOTES, half)
    assert (precision, recall) == (1.0, 0.5) and f1 == pytest.approx(2 / 3)
    assert note_scores([], []) == (1.0, 1.0, 1.0) and note_scores(NOTES, []) == (0.0, 0.0, 0.0)


@pytest.mark.fast
def test_labels_name_a_note_list(tmp_path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("onset,offset,pitch,voice\n1.0,1.5,64,alto\n0.0,0.5,60,soprano\n", encoding="utf-8")
    assert read_notes(path) == [(0.0, 0.5, 60), (1.0, 1.5, 64)]
    assert label_notes(str(path)) == label_notes(json.dumps({"notes": str(path), "bass": "x.flac"}))
    assert label_notes(None) is None and label_notes("") is None and label_notes(json.dumps({"bass": "x"})) is None
    (tmp_path / "bad.csv").write_text("start,pitch\n0,60\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks the column"):
        read_notes(tmp_path / "bad.csv")


@pytest.mark.fast
def test_decoding_finds_a_held_note_in_constructed_activations() -> None:
    note = np.zeros((200, 88), dtype=np.float32)
    onset = np.zeros_like(note)
    note[20:80, 39] = 0.9            # MIDI 60 held 60 frames
    onset[19:22, 39] = [0.3, 0.9, 0.3]
    note[120:125, 50] = 0.9          # too short to be a note (minimum 11 frames)
    assert basic_pitch.decode_notes(note, onset) == [(20, 80, 60)]


def _track_notes(track: str) -> list[tuple[float, float, int]]:
    return read_notes(MUSIC / track / "notes.csv")


def test_basic_pitch_transcribes_the_chorales() -> None:
    task = MusicTranscription()
    tracks = ["bwv253", "bwv269"]
    items = [load_audio(MUSIC / t / "mixture.flac") for t in tracks]
    preds = task.predict(items)
    labels = [json.dumps({"notes": str(MUSIC / t / "notes.csv")}) for t in tracks]
    rows = task.score_labels(tracks, preds, labels)
    f1 = {r.item_id: r.value for r in rows if r.metric == "note_f1"}
    # measured with basic-pitch 0.4.0's own predict() on these files: 0.449 and 0.611 (the same notes)
    assert f1["bwv253"] == pytest.approx(0.449, abs=0.01) and f1["bwv269"] == pytest.approx(0.611, abs=0.01)
    assert f1[None] == pytest.approx((f1["bwv253"] + f1["bwv269"]) / 2)
    assert task.aggregate("note_f1", [r for r in rows if r.item_id]) == pytest.approx(f1[None])
    ref = task.score_reference(tracks, preds, preds)
    assert {r.value for r in ref} == {1.0}
    # the bass line is found: the lowest reference pitch is among the transcribed ones
    assert min(p for _, _, p in _track_notes("bwv253")) in {p for _, _, p in preds[0].summary["notes"]}


def test_transcription_degrades_on_a_lowpassed_clip_and_rejects_images() -> None:
    task = MusicTranscription()
    clip = load_audio(MUSIC / "bwv269" / "mixture.flac")
    spectrum = np.fft.rfft(clip.samples, axis=1)
    freqs = np.fft.rfftfreq(clip.frames, 1 / clip.sample_rate)
    spectrum[:, freqs > 300] = 0  # keeps only the bass register
    dull = Audio(np.fft.irfft(spectrum, n=clip.frames, axis=1).astype(np.float32), clip.sample_rate)
    clean, damaged = task.predict([clip, dull])
    (f1,) = [r.value for r in task.score_reference(["x"], [damaged], [clean]) if r.item_id]
    assert f1 < 0.8
    with pytest.raises(ValueError, match="Audio"):
        task.predict([np.zeros((8, 8, 3), dtype=np.uint8)])
    with pytest.raises(ModelNotAvailableError, match="only"):
        MusicTranscription(model="onsets-and-frames")


@pytest.mark.fast
def test_missing_basic_pitch_names_the_install_command(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "basic_pitch" else real(name, *a))
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps basic-pitch"):
        basic_pitch.model_path()


def test_demo_note_lists_match_the_rendered_excerpts() -> None:
    with (MUSIC / "tracks.csv").open(newline="", encoding="utf-8") as fh:
        tracks = list(csv.DictReader(fh))
    for row in tracks:
        notes = _track_notes(row["track_id"])
        assert len(notes) >= 12
        assert max(off for _, off, _ in notes) <= float(row["seconds"]) - 0.4  # the 0.5 s release tail
        assert all(21 <= p <= 108 and off > on for on, off, p in notes)
