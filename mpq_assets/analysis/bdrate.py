"""Bjøntegaard-delta comparisons of codecs on task-performance curves, and the compression a model tolerates.

Classic BD-rate compares PSNR-vs-rate curves, which are monotone by construction. Task curves (top-1 accuracy,
word accuracy, SDR against bits) are measured on finite data and wobble: a few extra correct items at a lower rate
make the curve non-monotonic, and BD interpolation of rate as a function of score is then undefined. Following the
MPEG VCM common test conditions practice we first fit a monotone (isotonic) curve to each codec's points, then hand
the fitted curves to the maintained ``bjontegaard`` package (PCHIP interpolation by default, as in the JCT-VC/JVET
CTC spreadsheets). Where no honest number exists the result is None with the reason in words.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import bjontegaard
import numpy as np

INTERPOLATIONS = ("pchip", "akima", "cubic")  # the methods bjontegaard 1.3 implements

_Values = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class BDResult:
    """A BD value, or None with the reason in words (never a made-up number)."""

    value: float | None
    reason: str | None


def _finite_pairs(a: _Values, b: _Values, what: str) -> tuple[np.ndarray, np.ndarray]:
    a_arr = np.asarray(a, dtype=float).ravel()
    b_arr = np.asarray(b, dtype=float).ravel()
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"{what}: rate and metric differ in length ({a_arr.size} vs {b_arr.size})")
    keep = np.isfinite(a_arr) & np.isfinite(b_arr)
    return a_arr[keep], b_arr[keep]


def _pava(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted pool-adjacent-violators: the least-squares non-decreasing fit to y."""
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(y, w, strict=True):
        means.append(float(value))
        weights.append(float(weight))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            total = weights[-2] + weights[-1]
            means[-2] = (means[-2] * weights[-2] + means[-1] * weights[-1]) / total
            weights[-2] = total
            sizes[-2] += sizes[-1]
            del means[-1], weights[-1], sizes[-1]
    return np.repeat(np.asarray(means, dtype=float), sizes)


def monotone_curve(rate: _Values, metric: _Values, *, higher_is_better: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The rate-quality curve that never gets worse as rate grows, fitted to measured points.

    Points are sorted by rate, points at the same rate are averaged, then an isotonic (pool-adjacent-violators)
    least-squares fit weighted by the number of averaged points makes the score non-decreasing in rate (for a
    lower-is-better metric the negated metric is fitted and negated back, so the fit is non-increasing). Pairs with
    a non-finite value are dropped. Returns (distinct rates ascending, fitted metric).
    """
    r, m = _finite_pairs(rate, metric, "monotone_curve")
    if r.size == 0:
        return np.empty(0), np.empty(0)
    rates, inverse, counts = np.unique(r, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=m, minlength=rates.size) / counts
    sign = 1.0 if higher_is_better else -1.0
    return rates, sign * _pava(sign * means, counts.astype(float))


def _check_interpolation(interpolation: str, min_points: int) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; bjontegaard offers {INTERPOLATIONS}")
    if min_points < 2:
        raise ValueError(f"min_points must be at least 2 (an interpolated curve needs two points), got {min_points}")


def _fmt_range(lo: float, hi: float) -> str:
    return f"[{lo:.6g}, {hi:.6g}]"


def _prepare(
    name: str, rate: _Values, metric: _Values, higher_is_better: bool
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Finite, positive-rate, monotone-fitted curve of one codec, or a reason why there is none."""
    r, m = _finite_pairs(rate, metric, name)
    bad = r[r <= 0]
    if bad.size:
        return r, m, f"{name}: non-positive rate(s) {sorted(set(bad.tolist()))}; BD works on log(rate)"
    fitted_rate, fitted = monotone_curve(r, m, higher_is_better=higher_is_better)
    return fitted_rate, fitted, None


def _call_bjontegaard(func, *args, interpolation: str) -> BDResult:
    """Run a bjontegaard function and turn its failures (exceptions, NaN) into reasons."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            # min_overlap=0: the overlap is checked by the caller, and the integration runs over the overlap only
            value = func(*args, method=interpolation, require_matching_points=False, min_overlap=0)
    except (ValueError, AssertionError, ZeroDivisionError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return BDResult(None, f"bjontegaard ({interpolation}) failed: {type(exc).__name__}: {exc}")
    value = float(value)
    if not np.isfinite(value):
        return BDResult(None, f"bjontegaard ({interpolation}) returned {value} for these curves")
    return BDResult(value, None)


def bd_rate(
    anchor_rate: _Values,
    anchor_metric: _Values,
    test_rate: _Values,
    test_metric: _Values,
    *,
    higher_is_better: bool = True,
    min_points: int = 4,
    interpolation: str = "pchip",
) -> BDResult:
    """Average rate difference of the test codec against the anchor at equal score, in percent.

    Negative means the test codec needs fewer bits than the anchor for the same score. Both curves are first
    fitted monotonically (``monotone_curve``); BD-rate integrates log(rate) as a function of the score, so on a
    plateau of equal fitted scores only the lowest rate is kept (the cheapest way to reach that score). The
    integral runs over the overlap of the two score ranges. For a lower-is-better metric (WER) the negated metric
    is passed to ``bjontegaard.bd_rate``. None with a reason when a curve has fewer than ``min_points`` distinct
    scores after the fit, a rate is not positive, the score ranges do not overlap, or bjontegaard fails.
    """
    _check_interpolation(interpolation, min_points)
    curves = []
    for name, rate, metric in (("anchor", anchor_rate, anchor_metric), ("test", test_rate, test_metric)):
        r, m, reason = _prepare(name, rate, metric, higher_is_better)
        if reason:
            return BDResult(None, reason)
        # keep the first (lowest-rate) point of every plateau of equal fitted scores
        _, first = np.unique(m, return_index=True)
        first.sort()
        r, m = r[first], m[first]
        if m.size < min_points:
            return BDResult(None, f"{name}: {m.size} distinct scores after the monotonic fit (need {min_points})")
        curves.append((r, m))
    (ra, ma), (rt, mt) = curves
    if min(ma.max(), mt.max()) <= max(ma.min(), mt.min()):
        return BDResult(
            None,
            f"score ranges do not overlap: anchor {_fmt_range(ma.min(), ma.max())}, "
            f"test {_fmt_range(mt.min(), mt.max())}",
        )
    sign = 1.0 if higher_is_better else -1.0
    # bjontegaard expects the score ascending along the arrays; the fitted curves ascend in sign * metric
    oa, ot = np.argsort(sign * ma), np.argsort(sign * mt)
    return _call_bjontegaard(
        bjontegaard.bd_rate, ra[oa], sign * ma[oa], rt[ot], sign * mt[ot], interpolation=interpolation
    )


def bd_metric(
    anchor_rate: _Values,
    anchor_metric: _Values,
    test_rate: _Values,
    test_metric: _Values,
    *,
    higher_is_better: bool = True,
    min_points: int = 4,
    interpolation: str = "pchip",
) -> BDResult:
    """Average score difference (test minus anchor) at equal rate, in the metric's own units (BD-PSNR style).

    The metric is integrated as a function of log(rate) over the overlap of the two rate ranges, after the same
    monotonic fit as ``bd_rate`` (plateaus are kept: a flat score over rate is a valid function of rate). For a
    higher-is-better metric a positive value means the test codec scores better at the same rate; for a
    lower-is-better metric (WER) a negative value does. None with a reason when a curve has fewer than
    ``min_points`` distinct rates, a rate is not positive, the rate ranges do not overlap, or bjontegaard fails.
    """
    _check_interpolation(interpolation, min_points)
    curves = []
    for name, rate, metric in (("anchor", anchor_rate, anchor_metric), ("test", test_rate, test_metric)):
        r, m, reason = _prepare(name, rate, metric, higher_is_better)
        if reason:
            return BDResult(None, reason)
        if r.size < min_points:
            return BDResult(None, f"{name}: {r.size} distinct rates (need {min_points})")
        curves.append((r, m))
    (ra, ma), (rt, mt) = curves
    if min(ra.max(), rt.max()) <= max(ra.min(), rt.min()):
        return BDResult(
            None,
            f"rate ranges do not overlap: anchor {_fmt_range(ra.min(), ra.max())}, "
            f"test {_fmt_range(rt.min(), rt.max())}",
        )
    return _call_bjontegaard(bjontegaard.bd_psnr, ra, ma, rt, mt, interpolation=interpolation)


def highest_ratio_kept(
    ratios: _Values, scores: _Values, reference: float, *, fraction: float = 0.95
) -> float | None:
    """The highest compression ratio up to which the score stays at least ``fraction`` of the reference.

    "Up to" is literal: every point at that ratio or a lower one must keep the score. A curve that fails at
    50:1 and recovers at 200:1 (finite data wobbles) keeps only what lies below its first failure, so the
    answer never skips a ratio at which the model was already broken. For higher-is-better scores only:
    callers convert WER to word accuracy (1 - WER) before calling, since a fraction of an error rate means
    nothing. Pairs with a non-finite value are ignored. Returns None when the lowest ratio already fails;
    raises ValueError when the reference is not a positive finite number (no fraction of it is meaningful).
    """
    reference = float(reference)
    if not np.isfinite(reference) or reference <= 0:
        raise ValueError(f"reference score must be positive and finite, got {reference}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    r, s = _finite_pairs(ratios, scores, "highest_ratio_kept")
    order = np.argsort(r, kind="stable")
    r, keeps = r[order], s[order] >= fraction * reference
    # points at one ratio pass together: the first ratio with any failing point ends the run
    failing = np.unique(r[~keeps])
    passed = r[keeps] if not failing.size else r[keeps & (r < failing[0])]
    return float(passed.max()) if passed.size else None
