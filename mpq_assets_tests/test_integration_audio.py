"""Integration: both audio experiments on a real Dagster instance (the session's ``demo_run``):
offline Whisper tiny.en and Resemblyzer with real metrics for speech; music metrics and Basic Pitch
transcription, with separation skipped (no Demucs weights ship on PyPI) and saying how to fetch them."""

from __future__ import annotations

import pytest

from mpq_assets.defs.demo import missing_optional_models
from mpq_assets.experiments import EXPERIMENTS
from mpq_assets_tests.conftest import DEMO_METRICS


@pytest.fixture(scope="module")
def run(demo_run):
    _, store, _, results = demo_run
    return store, results


def _agg(store, experiment: str, codec: str, bitrate: str, task: str = "asr") -> dict[str, tuple[float, int]]:
    df = store.query("SELECT metric, value, n FROM task_scores WHERE experiment = ? AND codec = ? AND bitrate = ? "
                     "AND task = ? AND item_id IS NULL", [experiment, codec, bitrate, task])
    return {r.metric: (r.value, r.n) for r in df.itertuples()}


def test_speech_reference_transcripts_are_accurate(run) -> None:
    store, _ = run
    refs = store.query("SELECT count(*) AS n, any_value(model) AS model FROM predictions WHERE "
                       "experiment = 'demo_speech' AND codec = 'reference' AND task = 'asr'")
    assert refs["n"][0] == 24 and refs["model"][0] == "tiny.en-ct2"
    agg = _agg(store, "demo_speech", "reference", "reference")
    assert agg["wer"][1] == 24 and agg["wer"][0] <= 0.1
    assert agg["wra"][0] == pytest.approx(max(0.0, 1 - agg["wer"][0]))


def test_speech_partitions_have_every_table(run) -> None:
    store, _ = run
    for codec, bitrate in (("opus", "100x"), ("mp3", "20x")):
        q = store.query("SELECT metric, count(*) AS n FROM quality WHERE experiment = 'demo_speech' AND codec = ? "
                        "AND bitrate = ? GROUP BY metric", [codec, bitrate])
        assert dict(zip(q["metric"], q["n"], strict=True)) == {m: 24 for m in DEMO_METRICS["demo_speech"]}
        agg = _agg(store, "demo_speech", codec, bitrate)
        assert {"wer", "cer", "wra", "wer_ref", "cer_ref"} <= set(agg)
        assert agg["wer"][1] == 24 and 0 <= agg["wer"][0] <= 1
    ref = _agg(store, "demo_speech", "reference", "reference")["wer"][0]
    assert _agg(store, "demo_speech", "mp3", "20x")["wer"][0] <= ref + 0.05  # 33 kbps MP3 barely hurts ASR
    hi = store.query("SELECT avg(value) AS v FROM quality WHERE experiment='demo_speech' AND metric='stoi' "
                     "AND codec='mp3'")["v"][0]
    lo = store.query("SELECT avg(value) AS v FROM quality WHERE experiment='demo_speech' AND metric='stoi' "
                     "AND codec='opus'")["v"][0]
    assert hi > lo  # 33 kbps MP3 keeps more intelligibility than 6.9 kbps Opus


def test_music_metrics_and_skipped_separation(run) -> None:
    store, results = run
    q = store.query("SELECT codec, metric, avg(value) AS v, count(*) AS n FROM quality WHERE "
                    "experiment = 'demo_music' GROUP BY codec, metric")
    assert set(q["n"]) == {3} and len(q) == 2 * len(DEMO_METRICS["demo_music"])
    v = {(r.codec, r.metric): r.v for r in q.itertuples()}
    assert v[("aac", "si_sdr")] > v[("opus", "si_sdr")]  # 66 kbps vs the 6 kbps floor at 1000:1
    assert store.query("SELECT count(*) AS n FROM predictions WHERE experiment='demo_music' AND "
                       "task = 'separation'")["n"][0] == 0
    meta = results[("demo_music", "aac", "20x")].asset_materializations_for_node("demo_music__predictions")[0]
    assert "mpq models pull htdemucs" in meta.metadata["notes"].value
    lines = missing_optional_models(EXPERIMENTS["demo_music"])
    assert len(lines) == 1 and "mpq models pull htdemucs" in lines[0]


def test_speaker_verification_scores_against_the_voice_field(run) -> None:
    store, _ = run
    fields = store.query("SELECT fields FROM items WHERE experiment = 'demo_speech' AND item_id = 's01_kal'")
    assert '"voice": "kal"' in fields["fields"][0]
    for codec, bitrate in (("reference", "reference"), ("opus", "100x"), ("mp3", "20x")):
        agg = store.query("SELECT metric, value, n FROM task_scores WHERE experiment = 'demo_speech' AND task = "
                          "'speaker' AND codec = ? AND bitrate = ? AND item_id IS NULL", [codec, bitrate])
        got = {r.metric: (r.value, r.n) for r in agg.itertuples()}
        assert got["eer"][1] == 24 and 0 <= got["eer"][0] <= 0.5  # four voices, 24 clips: every pair a trial
    sim = store.query("SELECT codec, avg(value) AS v, count(*) AS n FROM task_scores WHERE experiment = "
                      "'demo_speech' AND task = 'speaker' AND metric = 'speaker_sim' AND item_id IS NOT NULL "
                      "GROUP BY codec")
    v = dict(zip(sim["codec"], sim["v"], strict=True))
    assert set(sim["n"]) == {24} and v["mp3"] > v["opus"] > 0.5  # 33 kbps MP3 keeps the voice better than 7 kbps


def test_transcription_scores_against_the_chorale_notes(run) -> None:
    store, _ = run
    f1 = store.query("SELECT codec, value, n FROM task_scores WHERE experiment = 'demo_music' AND task = "
                     "'transcription' AND metric IN ('note_f1', 'note_f1_ref') AND item_id IS NULL ORDER BY codec, "
                     "metric")
    got = {(r.codec, r.n): r.value for r in f1.itertuples()}
    assert set(f1["n"]) == {3} and len(f1) == 5  # reference: note_f1 only; two partitions: both
    ref = store.query("SELECT value FROM task_scores WHERE experiment = 'demo_music' AND task = 'transcription' "
                      "AND codec = 'reference' AND metric = 'note_f1' AND item_id IS NULL")["value"][0]
    assert 0.3 < ref < 0.7 and got[("aac", 3)] > 0
    worst = store.query("SELECT value FROM task_scores WHERE experiment = 'demo_music' AND task = 'transcription' "
                        "AND codec = 'opus' AND metric = 'note_f1_ref' AND item_id IS NULL")["value"][0]
    assert worst < 0.9  # 1000:1 Opus changes the notes Basic Pitch hears
