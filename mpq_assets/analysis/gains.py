"""Did compression help? The paired difference of a task score to its score on the uncompressed items.

A model trained on lossy data (ImageNet is itself JPEG) can score higher on compressed inputs than on the
originals. Whether a partition's higher score is such a gain or the luck of a few items is a question about the
items: the same items are scored on both sides, so the interval comes from a **paired** bootstrap that resamples
items and recomputes both sides' aggregate on the same draw. Item difficulty cancels in the difference, which
makes the paired interval much narrower than two independent intervals would suggest (and honest: it keeps the
dependence between the sides).

A statistic here is a function of bootstrap counts: given an array (k, n_items) of how often each item was drawn
in k resamples, it returns the k aggregates. The identity draw (every count 1) is the point estimate, so a task's
own aggregate (a mean weighted by words, a median over tracks) is what gets resampled, not a mean standing in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.stats

from mpq_assets.analysis.correlation import bootstrap_weights

Statistic = Callable[[np.ndarray], np.ndarray]  # counts (k, n_items) -> aggregates (k,)
_NAN = float("nan")


@dataclass(frozen=True)
class PairedDifference:
    """compressed - reference over the same items, its percentile interval and two-sided bootstrap p-value.

    ``helped``: the compressed score is better (in the measure's direction) and the interval excludes 0;
    ``hurt``: worse, likewise. Both False where the interval holds 0 or could not be computed."""

    reference: float
    compressed: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    helped: bool
    hurt: bool


def weighted_mean(values: np.ndarray, weights: np.ndarray | None = None) -> Statistic:
    """The mean of per-item ``values`` weighted by ``weights`` (words per clip, pixels per image; default 1).

    That is a corpus rate where values are per-item rates and weights their denominators (WER = errors / words)."""
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)

    def statistic(counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (counts @ (w * v)) / (counts @ w)

    return statistic


def paired_difference(reference: Statistic, compressed: Statistic, n_items: int, *, higher_is_better: bool = True,
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> PairedDifference:
    """compressed - reference, with the items of both sides resampled together (the same draw on both sides)."""
    ones = np.ones((1, n_items))
    ref, comp = float(reference(ones)[0]), float(compressed(ones)[0])
    diff = comp - ref
    if n_items < 2 or not np.isfinite(diff):
        return PairedDifference(ref, comp, diff, _NAN, _NAN, _NAN, n_items, False, False)
    draws = np.concatenate([compressed(c) - reference(c)
                            for c in bootstrap_weights(np.arange(n_items), n_items, n_boot, seed)])
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return PairedDifference(ref, comp, diff, _NAN, _NAN, _NAN, n_items, False, False)
    alpha = (1.0 - level) / 2.0
    low, high = (float(x) for x in np.quantile(draws, [alpha, 1.0 - alpha]))
    below, above = int((draws <= 0).sum()), int((draws >= 0).sum())
    p = min(1.0, 2.0 * (min(below, above) + 1) / (draws.size + 1))
    better_side = low > 0 if higher_is_better else high < 0
    worse_side = high < 0 if higher_is_better else low > 0
    return PairedDifference(ref, comp, diff, low, high, p, n_items, bool(better_side), bool(worse_side))


def q_values(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN): over many partitions x measures some 95% intervals
    exclude 0 by chance alone, and the q-value says how many of the flagged would be expected to be."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, _NAN)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = scipy.stats.false_discovery_control(p[ok], method="bh")
    return out
