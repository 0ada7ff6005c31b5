"""The compression-gains step on a constructed results file with known answers: a point where compression fixes
items is flagged, one where it flips as many each way is not, one that breaks items is 'hurt'; merged duplicate
partitions are one row; a corpus rate (WER over words) and a derived rate (WRA) are resampled as the task
aggregates them; a pooled measure (mIoU) gets its stored scores and no interval."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from mpq_assets.experiments import Experiment, TaskSpec
from mpq_assets.pipeline.gains import compression_gains
from mpq_assets.store import ResultsStore

pytestmark = pytest.mark.fast

IMAGES = Experiment("gains_images", "image", "demo_images", tasks=(
    TaskSpec("cls", "classification"), TaskSpec("seg", "segmentation")))
SPEECH = Experiment("gains_speech", "audio", "demo_speech", tasks=(TaskSpec("asr", "asr"),))
N = 80
REF_TOP1 = (np.arange(N) % 4 != 0).astype(float)  # 60 of 80 right on the originals
WRONG, RIGHT = np.flatnonzero(REF_TOP1 == 0), np.flatnonzero(REF_TOP1 == 1)


def _top1(case: str) -> np.ndarray:
    top1 = REF_TOP1.copy()
    if case == "fixes":      # 12 wrong items right, none broken
        top1[WRONG[:12]] = 1
    elif case == "flips":    # 8 fixed, 8 broken: the same score
        top1[WRONG[:8]], top1[RIGHT[:8]] = 1, 0
    elif case == "breaks":   # 15 right items wrong
        top1[RIGHT[:15]] = 0
    return top1


def _compressed(exp: Experiment, codec: str, target: int, level: str, items: list[str]) -> pd.DataFrame:
    rows = []
    for item in items:
        raw, size = 30_000, 30_000 // (target if level != "floor" else 100)
        rows.append(dict(item_id=item, target_ratio=float(target), budget_bytes=raw // target, bytes=size,
                         bpp=8 * size / 10_000, kbps=None, achieved_ratio=raw / size, setting=level,
                         rate_met=size <= raw // target, trials=1, encode_s=0.0, decode_s=0.0, path=f"/x/{item}",
                         sha256=hashlib.sha256(f"{codec}{level}{item}".encode()).hexdigest(), raw_bytes=raw,
                         pixels=10_000, duration_s=None))
    return pd.DataFrame(rows)


def _scores(metric_values: dict[str, np.ndarray], items: list[str], n: np.ndarray | None = None,
            aggregates: dict[str, float] | None = None) -> pd.DataFrame:
    rows = [dict(item_id=i, metric=m, value=float(v[k]), n=int(1 if n is None else n[k]))
            for m, v in metric_values.items() for k, i in enumerate(items)]
    rows += [dict(item_id=None, metric=m, value=v, n=len(items)) for m, v in (aggregates or {}).items()]
    return pd.DataFrame(rows)


@pytest.fixture()
def images(store: ResultsStore) -> ResultsStore:
    items = [f"i{k:02d}" for k in range(N)]
    writes = []
    miou = np.linspace(0.3, 0.6, N)
    ref = dict(experiment=IMAGES.name, codec="reference", bitrate="reference")
    writes.append(("task_scores", {**ref, "task": "cls"},
                   _scores({"top1": REF_TOP1}, items, aggregates={"top1": REF_TOP1.mean()})))
    writes.append(("task_scores", {**ref, "task": "seg"}, _scores({"miou": miou}, items, aggregates={"miou": 0.5})))
    # 20x fixes, 50x flips, 100x breaks, 200x is 100x's floor again (the same bitstreams: one point)
    for target, case, level in ((20, "fixes", "a"), (50, "flips", "b"), (100, "breaks", "floor"),
                                (200, "breaks", "floor")):
        keys = dict(experiment=IMAGES.name, codec="jpeg", bitrate=f"{target}x")
        top1 = _top1(case)
        writes.append(("compressed", keys, _compressed(IMAGES, "jpeg", target, level, items)))
        writes.append(("task_scores", {**keys, "task": "cls"}, _scores({"top1": top1}, items,
                                                                       aggregates={"top1": top1.mean()})))
        writes.append(("task_scores", {**keys, "task": "seg"}, _scores({"miou": miou - 0.01}, items,
                                                                       aggregates={"miou": 0.42})))
    store.replace_partitions(writes)
    return store


def test_gains_flags_the_fixing_point_only(images: ResultsStore) -> None:
    table = compression_gains(IMAGES, images, n_boot=500)
    top1 = table[table["metric"] == "top1"].set_index("point")
    # four partitions, three distinct points: the 200x duplicate of 100x is merged
    assert sorted(top1.index) == ["jpeg@100x", "jpeg@20x", "jpeg@50x"]
    assert top1.loc["jpeg@100x", "bitrates"] == "100x,200x"
    fixes, flips, breaks = (top1.loc[p] for p in ("jpeg@20x", "jpeg@50x", "jpeg@100x"))
    assert fixes["reference"] == pytest.approx(0.75) and fixes["compressed"] == pytest.approx(72 / 80)
    assert fixes["difference"] == pytest.approx(12 / 80) and fixes["helped"] and not fixes["hurt"]
    assert fixes["ci_low"] > 0 and fixes["items"] == N
    assert flips["difference"] == pytest.approx(0.0) and not flips["helped"] and not flips["hurt"]
    assert flips["ci_low"] < 0 < flips["ci_high"]
    assert breaks["hurt"] and not breaks["helped"] and breaks["difference"] == pytest.approx(-15 / 80)
    assert ((top1["q_value"] >= top1["p_value"]) | top1["p_value"].isna()).all()
    view = images.query("SELECT * FROM compression_gains WHERE experiment = ?", [IMAGES.name])
    assert view["point"].tolist() == ["jpeg@20x"] and view["task"].tolist() == ["cls"]


def test_pooled_measure_has_its_stored_scores_and_says_why_no_interval(images: ResultsStore) -> None:
    table = compression_gains(IMAGES, images, n_boot=100)
    miou = table[table["metric"] == "miou"]
    assert len(miou) == 3 and miou["ci_low"].isna().all() and not miou["helped"].any()
    assert np.allclose(miou["reference"], 0.5) and np.allclose(miou["difference"], 0.42 - 0.5)
    assert miou["note"].str.contains("pools its items").all()


def test_rerun_replaces_the_rows(images: ResultsStore) -> None:
    compression_gains(IMAGES, images, n_boot=100)
    compression_gains(IMAGES, images, n_boot=100)
    n = images.query("SELECT count(*) AS n FROM paired_differences WHERE experiment = ?", [IMAGES.name])["n"][0]
    assert n == 6  # 3 points x (top1, miou)


def test_corpus_word_rates_resampled_as_the_task_aggregates_them(store: ResultsStore) -> None:
    clips = [f"c{k:02d}" for k in range(30)]
    words = np.arange(30) % 7 + 3                     # 3..9 words a clip
    ref_err = (np.arange(30) % 3 == 0).astype(float)  # one error on every third clip
    comp_err = ref_err + (np.arange(30) % 2 == 0)     # and one more on every other clip
    ref = dict(experiment=SPEECH.name, codec="reference", bitrate="reference", task="asr")
    keys = dict(experiment=SPEECH.name, codec="opus", bitrate="20x")
    store.replace_partitions([
        ("task_scores", ref, _scores({"wer": ref_err / words, "wra": 1 - ref_err / words}, clips, n=words)),
        ("compressed", keys, _compressed(SPEECH, "opus", 20, "a", clips)),
        ("task_scores", {**keys, "task": "asr"}, _scores({"wer": comp_err / words, "wra": 1 - comp_err / words},
                                                         clips, n=words)),
    ])
    table = compression_gains(SPEECH, store, n_boot=300).set_index("metric")
    ref_wer, comp_wer = ref_err.sum() / words.sum(), comp_err.sum() / words.sum()
    assert table.loc["wer", "reference"] == pytest.approx(ref_wer)
    assert table.loc["wer", "compressed"] == pytest.approx(comp_wer)
    assert table.loc["wer", "hurt"] and not table.loc["wer", "helped"] and not table.loc["wer", "higher_is_better"]
    # WRA is max(0, 1 - corpus WER), not the mean of per-clip WRA
    assert table.loc["wra", "difference"] == pytest.approx(ref_wer - comp_wer)
    assert table.loc["wra", "hurt"] and table.loc["wra", "higher_is_better"]
    assert table.loc["wra", "ci_high"] < 0
