"""Correlations against known answers: exact relations, independence, and scipy as the reference."""

import math
import time

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from mpq_assets.analysis import METHODS, Correlation, correlate, correlation_table, rank_quality_metrics
from mpq_assets.analysis.correlation import (
    CORRELATION_COLUMNS,
    RANKING_COLUMNS,
    _bootstrap_indices,
    _bootstrap_statistics,
    bootstrap_weights,
)

pytestmark = pytest.mark.fast  # the `make check` tier


def _by_method(results: list[Correlation]) -> dict[str, Correlation]:
    return {c.method: c for c in results}


def test_monotone_nonlinear_relation_ranks_perfect_but_not_linear():
    x = np.linspace(0.0, 5.0, 40)
    res = _by_method(correlate(x, np.exp(x), n_boot=200))
    assert res["spearman"].r == pytest.approx(1.0)
    assert res["kendall"].r == pytest.approx(1.0)
    assert res["pearson"].r < 0.95  # exp over 5 e-folds is far from a line
    # every resample of an exactly monotone relation is exactly monotone too
    assert res["spearman"].ci_low == pytest.approx(1.0)
    assert res["kendall"].ci_low == pytest.approx(1.0)


def test_linear_relation_is_one_and_interval_collapses():
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    res = _by_method(correlate(x, 3.0 * x - 2.0, n_boot=300))
    for m in METHODS:
        assert res[m].r == pytest.approx(1.0)
        assert res[m].ci_low > 1.0 - 1e-9
        assert res[m].ci_high <= 1.0
        assert res[m].n == 60


def test_negated_relation_is_minus_one():
    x = np.linspace(-1.0, 2.0, 25)
    res = _by_method(correlate(x, -2.0 * x, n_boot=100))
    for m in METHODS:
        assert res[m].r == pytest.approx(-1.0)
        assert res[m].ci_high < -1.0 + 1e-9


def test_independent_pair_is_near_zero_with_interval_covering_zero():
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=500), rng.normal(size=500)
    for c in correlate(x, y, n_boot=1000, seed=5):
        assert abs(c.r) < 0.15
        assert c.ci_low < 0.0 < c.ci_high
        # 95% interval of r at n = 500 is about +-0.09 wide; a broken bootstrap would be far off
        assert 0.1 < c.ci_high - c.ci_low < 0.25


def test_interval_contains_estimate():
    rng = np.random.default_rng(2)
    x = rng.normal(size=80)
    y = 0.6 * x + rng.normal(size=80)
    for c in correlate(x, y, n_boot=500):
        assert c.ci_low <= c.r <= c.ci_high


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimates_equal_scipy(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=37)
    y = np.round(x + rng.normal(size=37), 1)  # ties on one side exercise tau-b and average ranks
    res = _by_method(correlate(x, y, n_boot=10))
    assert res["pearson"].r == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=1e-12)
    assert res["spearman"].r == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    assert res["kendall"].r == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=1e-12)


def test_bootstrap_interval_equals_scipy_on_the_same_resamples():
    """The vectorised bootstrap must give what scipy gives resample by resample (same pairs, same percentiles)."""
    rng = np.random.default_rng(8)
    x = np.round(rng.normal(size=30), 1)
    y = np.round(x + rng.normal(size=30), 1)
    n_boot = 200
    idx = np.concatenate(list(_bootstrap_indices(x.size, n_boot, seed=4)))
    res = _by_method(correlate(x, y, n_boot=n_boot, seed=4, confidence=0.9))
    for m, fn in (("pearson", scipy.stats.pearsonr), ("spearman", scipy.stats.spearmanr),
                  ("kendall", scipy.stats.kendalltau)):
        ref = []
        for i in idx:
            xb, yb = x[i], y[i]
            if np.ptp(xb) > 0 and np.ptp(yb) > 0:
                ref.append(fn(xb, yb).statistic)
        lo, hi = np.percentile(ref, [5, 95])
        assert res[m].ci_low == pytest.approx(lo, abs=1e-10)
        assert res[m].ci_high == pytest.approx(hi, abs=1e-10)


def test_nan_pairs_are_dropped_and_counted():
    x = [1.0, 2.0, np.nan, 4.0, 5.0, 6.0, np.inf]
    y = [2.0, 4.1, 6.0, None, 9.9, 12.2, 3.0]
    res = correlate(x, np.array(y, dtype=float), n_boot=50)
    assert {c.n for c in res} == {4}
    assert all(c.r > 0.9 for c in res)


@pytest.mark.parametrize(
    ("x", "y", "n"),
    [([1.0, 2.0], [3.0, 5.0], 2), ([1.0, 2.0, 3.0, 4.0], [7.0, 7.0, 7.0, 7.0], 4), ([np.nan] * 3, [1.0, 2.0, 3.0], 0)],
)
def test_undefined_cases_are_nan_with_n(x, y, n):
    for c in correlate(x, y, n_boot=20):
        assert c.n == n
        assert math.isnan(c.r) and math.isnan(c.ci_low) and math.isnan(c.ci_high)


def test_interval_needs_half_of_the_resamples_usable():
    # x = [0, 0, 0, 1]: a resample is constant (unusable) when it misses the last point, (3/4)^4 = 32% of the time
    c = _by_method(correlate([0.0, 0.0, 0.0, 1.0], [1.0, 2.0, 3.0, 4.0], ["pearson"], n_boot=400))["pearson"]
    assert np.isfinite(c.ci_low) and np.isfinite(c.ci_high)
    # x = [0, 0, 1], y = [0, 1, 0]: usable only when both points 1 and 2 are drawn, 12 of 27 draws (44%)
    c = _by_method(correlate([0.0, 0.0, 1.0], [0.0, 1.0, 0.0], ["pearson"], n_boot=400))["pearson"]
    assert c.r == pytest.approx(-0.5)
    assert math.isnan(c.ci_low) and math.isnan(c.ci_high)


def test_rejects_invalid_arguments():
    with pytest.raises(ValueError, match="unknown correlation method"):
        correlate([1, 2, 3], [1, 2, 3], ["pearsn"])
    with pytest.raises(ValueError, match="differ in length"):
        correlate([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="confidence"):
        correlate([1, 2, 3], [1, 2, 3], confidence=95)


def test_deterministic_with_seed_and_seed_matters():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    a = correlate(x, y, n_boot=300, seed=7)
    b = correlate(x, y, n_boot=300, seed=7)
    c = correlate(x, y, n_boot=300, seed=8)
    assert a == b
    assert [r.r for r in a] == [r.r for r in c]
    assert [r.ci_low for r in a] != [r.ci_low for r in c]


def test_no_bootstrap_gives_estimate_without_interval():
    (c,) = correlate([1.0, 2.0, 3.0, 5.0], [1.0, 3.0, 2.0, 6.0], ["pearson"], n_boot=0)
    assert np.isfinite(c.r) and math.isnan(c.ci_low) and math.isnan(c.ci_high)


def test_kendall_bootstrap_is_fast_enough():
    """n = 2000 pairs, 1000 resamples: measured about 1 s for all three methods on 2 CPU cores."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=2000)
    y = x + rng.normal(size=2000)
    start = time.perf_counter()
    (c,) = correlate(x, y, ["kendall"], n_boot=1000)
    assert time.perf_counter() - start < 10.0
    assert c.ci_low < c.r < c.ci_high


def _clustered(rng: np.random.Generator, n_items: int = 40, n_parts: int = 12) -> tuple[np.ndarray, ...]:
    """Item-level rows (item x partition) where x and y share a per-item effect a_i and each has its own item effect.

    x = a_i + u_i + e, y = a_i + v_i + 0.5 p_j + e' with sd(a) = 0.8, sd(u) = sd(v) = 1, sd(e) = sd(e') = 0.8 and
    fixed partition effects p_j; returns (item, x, y, true r). Over items, Cov(x, y) = Var(a), so the population
    r = Var(a) / sqrt(Var x Var y) with Var x = 0.64 + 1 + 0.64 and Var y = 0.64 + 1 + 0.25 Var(p) + 0.64.
    """
    p = np.linspace(-1.0, 1.0, n_parts)
    item = np.repeat(np.arange(n_items), n_parts)
    a = rng.normal(scale=0.8, size=n_items)[item]
    x = a + rng.normal(scale=1.0, size=n_items)[item] + rng.normal(scale=0.8, size=item.size)
    y = a + rng.normal(scale=1.0, size=n_items)[item] + 0.5 * np.tile(p, n_items)
    y = y + rng.normal(scale=0.8, size=item.size)
    r_true = 0.64 / math.sqrt((0.64 + 1.0 + 0.64) * (0.64 + 1.0 + 0.25 * p.var() + 0.64))
    return item, x, y, r_true


def test_item_cluster_bootstrap_covers_the_true_r_and_the_pairs_bootstrap_does_not():
    """40 items x 12 partitions, rows clustered by item: the nominal 95% interval must cover the population r.

    Measured with these seeds (200 datasets, 300 resamples): item-cluster bootstrap 0.930, pairs bootstrap 0.500.
    Over 1000 other datasets (data seed 99) they were 0.914 and 0.540: resampling whole items is close to nominal
    (only 40 clusters, so a little under), resampling rows as independent pairs is far too narrow.
    """
    rng = np.random.default_rng(2024)
    n_sets = 200
    covered_cluster = covered_pairs = 0
    for k in range(n_sets):
        item, x, y, r_true = _clustered(rng)
        (cl,) = correlate(x, y, ("pearson",), groups=item, n_boot=300, seed=k)
        (pa,) = correlate(x, y, ("pearson",), n_boot=300, seed=k)
        assert cl.r == pa.r and cl.n == pa.n == 480
        covered_cluster += cl.ci_low <= r_true <= cl.ci_high
        covered_pairs += pa.ci_low <= r_true <= pa.ci_high
    assert covered_cluster / n_sets >= 0.90
    assert covered_pairs / n_sets < 0.90
    assert covered_pairs < covered_cluster


def _expanded(x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_boot: int, seed: int):
    """Cluster resamples rebuilt by hand: rows repeated by how often their group was drawn."""
    codes = pd.factorize(groups)[0]
    for w in bootstrap_weights(codes, codes.max() + 1, n_boot, seed):
        for row in w:
            yield np.repeat(x, row), np.repeat(y, row)


def test_cluster_resample_statistics_equal_scipy_on_the_expanded_resample():
    """Weighted Pearson, weighted ranks + Pearson (Spearman) and Kendall equal scipy on explicit resamples."""
    rng = np.random.default_rng(12)
    sizes = rng.integers(1, 7, size=15)  # unequal groups, 1 to 6 rows each
    groups = np.repeat(np.arange(sizes.size), sizes)
    x = rng.normal(size=groups.size) + rng.normal(size=sizes.size)[groups]
    y = np.round(x + rng.normal(size=groups.size), 0)  # heavy ties on y
    n_boot = 150
    stats = _bootstrap_statistics(x, y, groups, sizes.size, METHODS, n_boot, 3)
    fns = {"pearson": scipy.stats.pearsonr, "spearman": scipy.stats.spearmanr, "kendall": scipy.stats.kendalltau}
    ref = {m: [] for m in METHODS}
    for xb, yb in _expanded(x, y, groups, n_boot, 3):
        usable = np.ptp(xb) > 0 and np.ptp(yb) > 0
        for m in METHODS:
            ref[m].append(fns[m](xb, yb).statistic if usable else np.nan)
    for m in METHODS:
        assert np.isfinite(ref[m]).sum() > 0.9 * n_boot
        np.testing.assert_allclose(stats[m], ref[m], rtol=0, atol=1e-12, equal_nan=True)
    # and the interval correlate reports is the percentiles of exactly those
    res = _by_method(correlate(x, y, groups=groups, n_boot=n_boot, seed=3, confidence=0.9))
    for m in METHODS:
        lo, hi = np.nanpercentile(ref[m], [5, 95])
        assert res[m].ci_low == pytest.approx(lo, abs=1e-12)
        assert res[m].ci_high == pytest.approx(hi, abs=1e-12)


def test_cluster_weights_take_whole_groups_of_unequal_size():
    sizes = np.array([1, 4, 2, 7, 3])
    codes = np.repeat(np.arange(sizes.size), sizes)
    chunks = list(bootstrap_weights(codes, sizes.size, 50, seed=1))
    w = np.concatenate(chunks)
    assert w.shape == (50, sizes.sum())
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    per_group = w[:, starts]
    for s, size in zip(starts, sizes, strict=True):
        assert (w[:, s:s + size] == w[:, [s]]).all()  # every row of a group drawn as often as the group
    assert (per_group.sum(axis=1) == sizes.size).all()  # as many draws as groups
    assert len({int(t) for t in w.sum(axis=1)}) > 3  # so the resample size varies with which groups came
    # the same draws as the group indices, counted
    draws = np.concatenate(list(_bootstrap_indices(sizes.size, 50, seed=1, n_rows=sizes.sum())))
    np.testing.assert_array_equal(per_group, np.stack([np.bincount(d, minlength=sizes.size) for d in draws]))


def test_groups_of_one_row_each_is_the_pairs_bootstrap():
    rng = np.random.default_rng(4)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    plain = correlate(x, y, n_boot=200, seed=9)
    assert correlate(x, y, groups=[f"item-{i}" for i in rng.permutation(40)], n_boot=200, seed=9) == plain
    assert correlate(x, y, groups=pd.Series(np.arange(40)), n_boot=200, seed=9) == plain


def test_cluster_bootstrap_with_unequal_groups_and_any_hashable_labels():
    rng = np.random.default_rng(6)
    sizes = [1, 2, 3, 5, 8, 13, 2, 4, 6, 1, 9, 3]
    ints = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.normal(size=ints.size) + 2.0 * rng.normal(size=len(sizes))[ints]
    y = x + rng.normal(size=ints.size)
    by_int = correlate(x, y, groups=ints, n_boot=300, seed=2)
    for c in by_int:
        assert c.n == ints.size and c.ci_low <= c.r <= c.ci_high
    # labels are only compared for equality: strings, tuples or a Series with the same partition give the same result
    assert correlate(x, y, groups=[f"g{i}" for i in ints], n_boot=300, seed=2) == by_int
    assert correlate(x, y, groups=[("a", int(i)) for i in ints], n_boot=300, seed=2) == by_int
    assert correlate(x, y, groups=pd.Series(ints * 10 + 7), n_boot=300, seed=2) == by_int
    assert correlate(x, y, groups=ints, n_boot=300, seed=2) != correlate(x, y, n_boot=300, seed=2)


def test_non_finite_row_is_dropped_with_its_group_label():
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(10), 3)
    groups[-1] = 99  # a group of one row ...
    x = rng.normal(size=30) + rng.normal(size=10)[np.minimum(groups, 9)]
    y = x + rng.normal(size=30)
    x[-1] = np.nan  # ... whose only row is dropped: it must not be drawn as an empty group
    y[4] = np.inf  # and a row of a bigger group
    keep = np.isfinite(x) & np.isfinite(y)
    res = correlate(x, y, groups=groups, n_boot=200, seed=1)
    assert {c.n for c in res} == {28}
    assert res == correlate(x[keep], y[keep], groups=groups[keep], n_boot=200, seed=1)
    # a missing label on a dropped row is fine, on a kept row it is an error
    labels = groups.astype(object)
    labels[-1] = None
    assert correlate(x, y, groups=labels, n_boot=200, seed=1) == res
    labels[0] = None
    with pytest.raises(ValueError, match="missing labels"):
        correlate(x, y, groups=labels, n_boot=10)
    with pytest.raises(ValueError, match="labels for 30 pairs"):
        correlate(x, y, groups=groups[:-1], n_boot=10)


def test_correlation_table_group_by_item_widens_the_interval():
    item, x, y, _ = _clustered(np.random.default_rng(5))
    obs = pd.DataFrame({"item_id": [f"item{i:02d}" for i in item], "classification.top1": x, "psnr": y})
    plain = correlation_table(obs, ["classification.top1"], ["psnr"], level="item", n_boot=300)
    grouped = correlation_table(obs, ["classification.top1"], ["psnr"], level="item", group_by="item_id", n_boot=300)
    assert list(grouped.columns) == list(CORRELATION_COLUMNS)
    np.testing.assert_array_equal(grouped["r"], plain["r"])
    assert (grouped["n"] == len(obs)).all()
    width = lambda t: (t["ci_high"] - t["ci_low"]).to_numpy()  # noqa: E731
    assert (width(grouped) > 1.5 * width(plain)).all()
    (c,) = correlate(x, y, ("pearson",), groups=obs["item_id"], n_boot=300)
    row = grouped[grouped.method == "pearson"].iloc[0]
    assert (row.ci_low, row.ci_high) == (c.ci_low, c.ci_high)
    with pytest.raises(ValueError, match="'item'"):
        correlation_table(obs, ["classification.top1"], ["psnr"], level="item", group_by="item", n_boot=10)


def _observations(seed: int = 0, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    top1 = rng.uniform(0.3, 0.8, size=n)
    wer = rng.uniform(0.05, 0.6, size=n)
    return pd.DataFrame({
        "classification.top1": top1,
        "asr.wer": wer,
        "psnr": top1 + rng.normal(scale=0.02, size=n),  # tracks top-1 closely
        "ssim": 0.2 * top1 + rng.normal(scale=0.2, size=n),  # mostly noise
        "lpips": wer + rng.normal(scale=0.3, size=n),  # weakly tracks WER, sign positive
        "neg.metric": -wer + rng.normal(scale=0.01, size=n),  # strongly tracks WER with negative sign
    })


def test_correlation_table_shape_and_columns():
    obs = _observations()
    table = correlation_table(
        obs, ["classification.top1", "asr.wer", "missing.measure"], ["psnr", "ssim", "absent_metric"],
        level="partition", n_boot=50,
    )
    assert list(table.columns) == list(CORRELATION_COLUMNS)
    assert len(table) == 2 * 2 * len(METHODS)
    assert set(table["level"]) == {"partition"}
    assert set(zip(table["task"], table["task_metric"], strict=True)) == {("classification", "top1"), ("asr", "wer")}
    assert set(table["quality_metric"]) == {"psnr", "ssim"}
    assert (table["n"] == len(obs)).all()
    row = table[(table.task == "classification") & (table.quality_metric == "psnr") & (table.method == "pearson")]
    assert row["r"].iloc[0] == pytest.approx(scipy.stats.pearsonr(obs["classification.top1"], obs["psnr"])[0])


def test_correlation_table_splits_at_first_dot_and_rejects_bad_names():
    obs = pd.DataFrame({"separation.sdr.vocals": [1.0, 2.0, 3.0, 4.0], "snr": [1.0, 2.5, 2.9, 4.2]})
    table = correlation_table(obs, ["separation.sdr.vocals"], ["snr"], level="item", n_boot=10)
    assert set(table["task"]) == {"separation"} and set(table["task_metric"]) == {"sdr.vocals"}
    with pytest.raises(ValueError, match="task.metric"):
        correlation_table(obs, ["snr"], ["snr"], level="item")


def test_correlation_table_with_nothing_to_correlate_is_empty_with_columns():
    table = correlation_table(_observations(), ["x.y"], ["psnr"], level="partition", n_boot=10)
    assert table.empty and list(table.columns) == list(CORRELATION_COLUMNS)


def test_ranking_puts_the_predictive_metric_first_and_uses_abs_r():
    obs = _observations(seed=4, n=200)
    table = correlation_table(obs, ["classification.top1", "asr.wer"], ["ssim", "psnr", "lpips", "neg.metric"],
                              level="partition", n_boot=50)
    ranked = rank_quality_metrics(table)
    assert list(ranked.columns) == list(RANKING_COLUMNS)
    for method in METHODS:
        top1 = ranked[(ranked.task == "classification") & (ranked.method == method)].sort_values("rank")
        assert top1["quality_metric"].iloc[0] == "psnr"
        assert top1["best"].tolist() == [True, False, False, False]
        assert list(top1["rank"]) == [1, 2, 3, 4]
        assert (np.diff(top1["abs_r"].to_numpy()) <= 0).all()
        wer = ranked[(ranked.task == "asr") & (ranked.method == method)].sort_values("rank")
        assert wer["quality_metric"].iloc[0] == "neg.metric"  # negative r, strongest |r|
        assert wer["r"].iloc[0] < -0.9


def test_ranking_puts_nan_last_and_never_marks_it_best():
    corr = pd.DataFrame(
        [("partition", "asr", "wer", q, "spearman", r, np.nan, np.nan, 5) for q, r in
         (("a", np.nan), ("b", -0.4), ("c", 0.7))],
        columns=list(CORRELATION_COLUMNS),
    )
    ranked = rank_quality_metrics(corr)
    assert ranked["quality_metric"].tolist() == ["c", "b", "a"]
    assert ranked["best"].tolist() == [True, False, False]
    assert ranked["rank"].tolist()[:2] == [1, 2] and pd.isna(ranked["rank"].iloc[2])
    only_nan = rank_quality_metrics(corr[corr.quality_metric == "a"])
    assert pd.isna(only_nan["rank"].iloc[0]) and only_nan["best"].tolist() == [False]
    with pytest.raises(ValueError, match="lacks column"):
        rank_quality_metrics(corr.drop(columns=["n"]))


def test_ranking_never_ranks_a_correlation_of_the_wrong_sign():
    # WER (lower is better): a distance should correlate positively (+1), a similarity negatively (-1)
    corr = pd.DataFrame(
        [("partition", "asr", "wer", q, "spearman", r, np.nan, np.nan, 8) for q, r in
         (("log_mel", 0.6), ("snr", 0.95), ("pesq", -0.8), ("stoi", 0.0))],
        columns=list(CORRELATION_COLUMNS),
    ).assign(expected_sign=[1, -1, -1, -1])
    ranked = rank_quality_metrics(corr).set_index("quality_metric")
    # snr has the largest |r| but better SNR going with more errors is the wrong sign: flagged, unranked
    assert bool(ranked.loc["snr", "wrong_sign"]) and pd.isna(ranked.loc["snr", "rank"])
    assert ranked.loc["pesq", "rank"] == 1 and ranked.loc["pesq", "best"] and ranked.loc["log_mel", "rank"] == 2
    assert pd.isna(ranked.loc["stoi", "rank"]) and not ranked.loc["stoi", "wrong_sign"]  # r = 0: no sign at all
    # without directions the old |r| order holds
    assert rank_quality_metrics(corr.drop(columns="expected_sign"))["quality_metric"].iloc[0] == "snr"
