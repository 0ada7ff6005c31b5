"""Correlations against known answers: exact relations, independence, and scipy as the reference."""

import math
import time

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from mpq_assets.analysis import METHODS, Correlation, correlate, correlation_table, rank_quality_metrics
from mpq_assets.analysis.correlation import CORRELATION_COLUMNS, RANKING_COLUMNS, _bootstrap_indices


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
    only_nan = rank_quality_metrics(corr[corr.quality_metric == "a"])
    assert only_nan["rank"].tolist() == [1] and only_nan["best"].tolist() == [False]
    with pytest.raises(ValueError, match="lacks column"):
        rank_quality_metrics(corr.drop(columns=["n"]))
