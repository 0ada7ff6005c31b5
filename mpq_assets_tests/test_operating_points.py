"""What the analyses count, on a constructed results file with known answers: distinct operating points
(duplicate partitions merged by content hash), pooled rates, BD-rate against every anchor with enough
points, the kept ratio up to the first failure, the sign-aware ranking, and task and quality sides over
the items both have."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from mpq_assets.experiments import Experiment, TaskSpec
from mpq_assets.pipeline import analyse
from mpq_assets.store import ResultsStore

pytestmark = pytest.mark.fast  # the `make check` tier

EXP = Experiment("synthetic", "image", "demo_images", tasks=(TaskSpec("classification", "classification"),),
                 quality_metrics=("psnr", "ssim", "ms_ssim", "lpips_alex"))
TARGETS = [20, 50, 100, 200, 500, 1000]
# item -> (height, width); 'tiny' is the 1x1 image whose per-item bpp would dominate a mean
ITEMS = {"a": (64, 64), "b": (64, 64), "c": (32, 32), "tiny": (1, 1)}
# codec -> the distinct setting (level) each target ratio reaches; repeats are the codec's floor
LEVELS = {"jpeg": [0, 1, 2, 3, 3, 3], "webp": [0, 1, 2, 3, 4, 4]}
# per level: the ratio it achieves on the big items, and one-sided scores
ACHIEVED = [20, 50, 100, 200, 400]
PSNR = [40.0, 34.0, 30.0, 26.0, 24.0]
TOP1 = {"a": [1, 1, 1, 0, 0], "b": [1, 1, 0, 0, 0]}  # labelled items only


def _bytes(item: str, level: int) -> int:
    h, w = ITEMS[item]
    return 40 if item == "tiny" else h * w * 3 // ACHIEVED[level]


def _partition(codec: str, target: int) -> dict[str, pd.DataFrame]:
    level = LEVELS[codec][TARGETS.index(target)]
    bitrate = f"{target}x"
    comp, quality, task = [], [], []
    for item, (h, w) in ITEMS.items():
        size, raw = _bytes(item, level), h * w * 3
        comp.append(dict(item_id=item, target_ratio=float(target), budget_bytes=raw // target, bytes=size,
                         bpp=8 * size / (h * w), kbps=None, achieved_ratio=raw / size, setting=f"level={level}",
                         rate_met=size <= raw // target, trials=1, encode_s=0.0, decode_s=0.0,
                         path=f"/x/{codec}/{bitrate}/{item}", sha256=hashlib.sha256(
                             f"{codec}{level}{item}".encode()).hexdigest(), raw_bytes=raw, pixels=h * w,
                         duration_s=None))
        offset = {"a": 0.0, "b": 1.0, "c": 2.0, "tiny": 3.0}[item] + (0.5 if codec == "webp" else 0.0)
        quality.append(dict(item_id=item, metric="psnr", value=PSNR[level] + offset))
        # ssim steps up exactly where agreement steps down: |r| = 1, with the wrong sign for a higher-is-better
        # metric
        quality.append(dict(item_id=item, metric="ssim", value=0.5 + 0.2 * (level >= 2)))
        # lpips (lower is better) tracks damage, but noisily
        quality.append(dict(item_id=item, metric="lpips_alex", value=0.1 * level + 0.07 * ((level * 7 + 3) % 4)))
        if item != "b":  # ms_ssim skips 'b' (too small, say): the sides cover different items
            quality.append(dict(item_id=item, metric="ms_ssim", value=1.0 - 0.1 * level))
        if item in TOP1:
            task.append(dict(item_id=item, metric="top1", value=float(TOP1[item][level]), n=1))
        task.append(dict(item_id=item, metric="agreement", value=float(level <= 1 or item == "c"), n=1))
    t = pd.DataFrame(task)
    agg = [dict(item_id=None, metric=m, value=float(g["value"].mean()), n=len(g)) for m, g in t.groupby("metric")]
    keys = dict(experiment=EXP.name, codec=codec, bitrate=bitrate)
    return {"compressed": (keys, pd.DataFrame(comp)), "quality": (keys, pd.DataFrame(quality)),
            "task_scores": ({**keys, "task": "classification"}, pd.concat([t, pd.DataFrame(agg)]))}


@pytest.fixture()
def synthetic(store: ResultsStore) -> ResultsStore:
    writes = []
    for codec in LEVELS:
        for target in TARGETS:
            writes += [(table, keys, rows) for table, (keys, rows) in _partition(codec, target).items()]
    ref = pd.DataFrame([dict(item_id=None, metric="top1", value=1.0, n=2)])
    writes.append(("task_scores", dict(experiment=EXP.name, codec="reference", bitrate="reference",
                                        task="classification"), ref))
    store.replace_partitions(writes)
    return store


def test_duplicate_partitions_are_one_point_named_after_its_lowest_target(synthetic: ResultsStore) -> None:
    pts = synthetic.query("SELECT * FROM operating_points ORDER BY codec, lowest_target")
    jpeg = pts[pts.codec == "jpeg"]
    assert jpeg["point"].tolist() == ["jpeg@20x", "jpeg@50x", "jpeg@100x", "jpeg@200x"]
    floor = jpeg.iloc[-1]
    assert (floor["partitions"], floor["merged"], floor["bitrates"]) == (3, 2, "200x,500x,1000x")
    # 200x is met on the big items and 500x, 1000x on none; the 1x1 item misses every target (header-bound)
    assert floor["missed_items"] == 1 and floor["missed_partitions"] == 3 and pd.isna(floor["highest_met_target"])
    assert synthetic.query("SELECT count(*) AS n FROM operating_points WHERE codec = 'webp'")["n"][0] == 5
    summary = analyse.point_summary(synthetic, EXP.name).set_index("codec")
    assert summary.loc["jpeg", ["partitions", "points", "merged"]].tolist() == [6, 4, 2]
    assert summary.loc["webp", ["partitions", "points", "merged"]].tolist() == [6, 5, 1]
    assert synthetic.query("SELECT points FROM codec_summary WHERE codec = 'jpeg'")["points"][0] == 4


def test_rates_are_pooled_over_items_not_means_of_per_item_ratios(synthetic: ResultsStore) -> None:
    row = synthetic.query("SELECT * FROM rate_summary WHERE codec = 'jpeg' AND bitrate = '100x'").iloc[0]
    sizes = {i: _bytes(i, 2) for i in ITEMS}
    raw = {i: h * w * 3 for i, (h, w) in ITEMS.items()}
    pixels = sum(h * w for h, w in ITEMS.values())
    assert row["ratio"] == pytest.approx(sum(raw.values()) / sum(sizes.values()), rel=1e-12)
    assert row["bpp"] == pytest.approx(8 * sum(sizes.values()) / pixels, rel=1e-12)
    # the factor 8 pinned: 122 bytes on 64 x 64 pixels are 0.238 bits per pixel (bytes per pixel: 0.0298)
    one = synthetic.query("SELECT bytes, bpp FROM compressed WHERE codec = 'jpeg' AND bitrate = '100x' AND "
                          "item_id = 'a'").iloc[0]
    assert one["bytes"] == 122 and one["bpp"] == 0.23828125
    # the 1x1 item (320 bpp on its own) would make the mean of per-item bpp more than 80 here
    per_item = synthetic.query("SELECT avg(bpp) AS m FROM compressed WHERE codec = 'jpeg' AND bitrate = '100x'")
    assert per_item["m"][0] > 80 and row["bpp"] < 0.35


def test_analyses_count_distinct_points_at_their_achieved_rate(synthetic: ResultsStore) -> None:
    corr, _ = analyse.correlations(EXP, synthetic, n_boot=200)
    psnr = corr[(corr.level == "partition") & (corr.task_metric == "agreement") & (corr.quality_metric == "psnr")]
    assert (psnr["n"] == 9).all() and (psnr["partitions"] == 12).all() and (psnr["merged"] == 3).all()
    assert (psnr["missed"] == synthetic.query("SELECT count(*) AS n FROM rate_summary WHERE missed_target > 0")
            ["n"][0]).all()
    item = corr[(corr.level == "item") & (corr.task_metric == "agreement") & (corr.quality_metric == "psnr")]
    assert (item["n"] == 9 * len(ITEMS)).all()  # distinct (item, point) pairs, not 12 x 4
    curves = analyse.rate_curves(EXP, synthetic).set_index(["codec", "measure"])
    jpeg = curves.loc[("jpeg", "psnr")]
    assert (jpeg["points"], jpeg["partitions"], jpeg["merged"]) == (4, 6, 2)
    # the kept ratio is an achieved pooled ratio of a point: top1 keeps 95% of 1.0 at levels 0 and 1 only
    top1 = curves.loc[("jpeg", "classification.top1")]
    achieved = synthetic.query("SELECT ratio FROM operating_points WHERE point = 'jpeg@50x'")["ratio"][0]
    assert top1["kept_ratio"] == pytest.approx(achieved) and achieved not in TARGETS


def test_bd_rate_against_every_anchor_with_enough_points(synthetic: ResultsStore) -> None:
    analyse.rate_curves(EXP, synthetic)
    bd = synthetic.query("SELECT * FROM bd_rates WHERE measure = 'psnr' ORDER BY anchor, codec")
    assert bd[["anchor", "codec", "anchor_points", "points"]].values.tolist() == [
        ["jpeg", "webp", 4, 5], ["webp", "jpeg", 5, 4]]
    # webp scores 0.5 dB more at the same rates: it needs fewer bits, and the two directions have opposite signs
    jw, wj = bd["bd_rate"].tolist()
    assert jw < 0 < wj
    rc = synthetic.query("SELECT bd_rate FROM rate_curves WHERE measure = 'psnr' AND codec = 'webp'")
    assert rc["bd_rate"][0] == pytest.approx(jw)
    # top1 takes 2 distinct values: no anchor has enough points after the fit, so no number, only reasons
    top1 = synthetic.query("SELECT bd_rate, bd_rate_note FROM rate_curves WHERE measure = 'classification.top1' "
                           "AND codec = 'webp'").iloc[0]
    assert np.isnan(top1["bd_rate"]) and "need 4" in top1["bd_rate_note"]
    assert Experiment("x", "audio", "demo_speech").bd_anchor == "opus"
    assert Experiment("x", "image", "demo_images").bd_anchor == "jpeg"
    assert Experiment("x", "audio", "demo_speech", anchor="mp3").bd_anchor == "mp3"


def test_ranking_flags_the_wrong_sign_instead_of_ranking_it_first(synthetic: ResultsStore) -> None:
    table, ranking = analyse.correlations(EXP, synthetic, n_boot=100)
    view = synthetic.query("SELECT * FROM correlation_ranking WHERE level = 'partition' AND method = 'spearman' "
                           "AND task_metric = 'agreement'").set_index("quality_metric")
    # ssim (higher is better) rises as agreement falls: |r| is the largest, and it is wrong
    assert view.loc["ssim", "r"] == pytest.approx(-1.0) and view["abs_r"].drop("ssim").max() < 0.99
    assert bool(view.loc["ssim", "wrong_sign"]) and pd.isna(view.loc["ssim", "rank"])
    assert view.loc["lpips_alex", "expected_sign"] == -1 and view.loc["psnr", "expected_sign"] == 1
    best = view[view["rank"] == 1].index.tolist()
    assert best and best != ["ssim"]
    py = ranking[(ranking.level == "partition") & (ranking.method == "spearman")
                 & (ranking.task_metric == "agreement")].set_index("quality_metric")
    assert py.loc[best[0], "best"] and not py.loc["ssim", "best"] and bool(py.loc["ssim", "wrong_sign"])


def test_partition_correlations_use_the_items_both_sides_have(synthetic: ResultsStore) -> None:
    obs = analyse.load_observations(EXP, synthetic)
    # top1 is scored on the labelled items a and b only: psnr over those two, not over all four
    pair, note = analyse.partition_pair(obs, EXP, "classification.top1", "psnr")
    jpeg = pair[pair.codec == "jpeg"].sort_values("point")
    by_point = dict(zip(jpeg["point"], jpeg["psnr"], strict=True))
    assert by_point["jpeg@100x"] == pytest.approx(PSNR[2] + 0.5)  # mean of a (+0) and b (+1)
    assert note and "2 per point" in note
    # ms_ssim lacks b: the task side is recomputed by the task's own aggregate over a alone
    pair, note = analyse.partition_pair(obs, EXP, "classification.top1", "ms_ssim")
    jpeg = pair[pair.codec == "jpeg"].set_index("point")
    assert jpeg.loc["jpeg@100x", "classification.top1"] == TOP1["a"][2] == 1.0
    assert jpeg.loc["jpeg@100x", "ms_ssim"] == pytest.approx(0.8)
    assert "1 per point" in note
    # agreement and psnr share every item: the stored values and no note
    pair, note = analyse.partition_pair(obs, EXP, "classification.agreement", "psnr")
    assert note is None
    table, _ = analyse.correlations(EXP, synthetic, n_boot=50)
    row = table[(table.level == "partition") & (table.method == "spearman") & (table.task_metric == "top1")
                & (table.quality_metric == "psnr")].iloc[0]
    expected = scipy.stats.spearmanr(*analyse.partition_pair(obs, EXP, "classification.top1", "psnr")[0]
                                     [["classification.top1", "psnr"]].to_numpy().T).statistic
    assert row["r"] == pytest.approx(expected) and "both have" in row["note"]
