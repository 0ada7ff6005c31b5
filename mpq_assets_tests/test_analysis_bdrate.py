"""BD-rate and friends against analytic answers and a published reference example."""

import numpy as np
import pytest

from mpq_assets.analysis import BDResult, bd_metric, bd_rate, highest_ratio_kept, monotone_curve

pytestmark = pytest.mark.fast  # the `make check` tier

RATE = np.array([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])  # bits per pixel
TOP1 = np.array([0.42, 0.55, 0.64, 0.70, 0.73, 0.745])  # accuracy rising with rate


@pytest.mark.parametrize("interpolation", ["pchip", "akima", "cubic"])
def test_scaled_rates_give_the_scale(interpolation: str):
    """Same scores at 0.8x the bits is exactly -20% whatever the interpolation; 1.25x is +25%."""
    cheaper = bd_rate(RATE, TOP1, 0.8 * RATE, TOP1, interpolation=interpolation)
    dearer = bd_rate(RATE, TOP1, 1.25 * RATE, TOP1, interpolation=interpolation)
    assert cheaper.reason is None and cheaper.value == pytest.approx(-20.0, abs=0.1)
    assert dearer.reason is None and dearer.value == pytest.approx(25.0, abs=0.1)


def test_swapping_anchor_and_test_inverts():
    a = bd_rate(RATE, TOP1, 0.8 * RATE, TOP1).value
    b = bd_rate(0.8 * RATE, TOP1, RATE, TOP1).value
    assert b == pytest.approx(25.0, abs=0.1)
    # rate ratios invert: (1 + a/100) * (1 + b/100) = 1
    assert (1 + a / 100) * (1 + b / 100) == pytest.approx(1.0, abs=1e-9)
    # and for curves that differ in shape too (the ratio is a mean of log-rate differences, so it inverts exactly)
    other = np.array([0.45, 0.56, 0.62, 0.71, 0.735, 0.74])
    ab = bd_rate(RATE, TOP1, 0.7 * RATE, other).value
    ba = bd_rate(0.7 * RATE, other, RATE, TOP1).value
    assert (1 + ab / 100) * (1 + ba / 100) == pytest.approx(1.0, abs=1e-9)


# JCTVC-E137 rate-PSNR points (kbit/s, dB) with the BD-rates published as known answers in Netflix VMAF's
# python/test/bd_rate_calculator_test.py (class BDrateCalculatorJCTVCTest: -0.00465215420752807 and
# -0.018779823450567612 as fractions), whose PCHIP calculator states it was validated against JCTVC-E137
# (http://phenix.it-sudparis.eu/jct/doc_end_user/documents/5_Geneva/wg11/JCTVC-E137-v1.zip). The same data and
# provenance are reused by AOSP's BdRateCalculatorTests. VMAF asserts 4 places on the fraction (0.01 percentage
# points); bjontegaard's PCHIP reproduces the values to about 1e-12, so we hold it to 1e-6.
JCTVC_E137 = [
    (
        [(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)],
        [(108061.2784, 43.6768), (61299.9936, 40.4232), (33928.7472, 37.2761), (18910.912, 34.3147)],
        -0.465215420752807,
    ),
    (
        [(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)],
        [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)],
        -1.8779823450567612,
    ),
]


@pytest.mark.parametrize(("anchor", "test", "expected"), JCTVC_E137)
def test_reproduces_published_jctvc_e137_bd_rates(anchor, test, expected):
    (ra, pa), (rt, pt) = zip(*anchor, strict=True), zip(*test, strict=True)
    result = bd_rate(ra, pa, rt, pt)  # PCHIP, as the JCT-VC CTC sheet; these PSNR curves are already monotone
    assert result.reason is None
    assert result.value == pytest.approx(expected, abs=1e-6)


def test_monotone_curve_is_isotonic_least_squares():
    rate = [4.0, 1.0, 2.0, 3.0, 2.0, 5.0]
    metric = [0.6, 0.5, 0.9, 0.4, 0.7, 0.8]
    r, m = monotone_curve(rate, metric)
    np.testing.assert_array_equal(r, [1.0, 2.0, 3.0, 4.0, 5.0])
    # rate 2 averages to 0.8 (weight 2); PAVA pools 0.8, 0.8, 0.4, 0.6 (weights 2, 1, 1) into (1.6+0.4+0.6)/4 = 0.65
    np.testing.assert_allclose(m, [0.5, 0.65, 0.65, 0.65, 0.8])
    assert (np.diff(m) >= 0).all()
    # lower is better: the fit never rises with rate, and a curve that is already monotone is left alone
    r, m = monotone_curve([1, 2, 3, 4], [0.5, 0.3, 0.35, 0.1], higher_is_better=False)
    np.testing.assert_allclose(m, [0.5, 0.325, 0.325, 0.1])
    np.testing.assert_allclose(monotone_curve(RATE, TOP1)[1], TOP1)


def test_monotone_curve_matches_sklearn_isotonic():
    sklearn_isotonic = pytest.importorskip("sklearn.isotonic")
    rng = np.random.default_rng(0)
    rate = np.sort(rng.uniform(0.05, 4.0, size=30))
    metric = np.log(rate) * 0.1 + rng.normal(scale=0.05, size=30)
    _, ours = monotone_curve(rate, metric)
    ref = sklearn_isotonic.IsotonicRegression().fit_transform(rate, metric)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_noisy_non_monotonic_task_curve_still_gives_a_number():
    noisy = np.array([0.42, 0.60, 0.57, 0.72, 0.69, 0.745])  # dips at 0.4 and 1.6 bpp
    r, m = monotone_curve(RATE, noisy)
    assert (np.diff(m) >= 0).all()
    np.testing.assert_allclose(m, [0.42, 0.585, 0.585, 0.705, 0.705, 0.745])  # each dip pooled with its neighbour
    result = bd_rate(RATE, noisy, 0.8 * RATE, noisy)
    assert result.reason is None
    assert result.value == pytest.approx(-20.0, abs=0.1)
    versus_clean = bd_rate(RATE, TOP1, RATE, noisy)
    assert versus_clean.value is not None and np.isfinite(versus_clean.value)


def test_lower_is_better_metric():
    wer = 1.0 - TOP1
    cheaper = bd_rate(RATE, wer, 0.8 * RATE, wer, higher_is_better=False)
    assert cheaper.value == pytest.approx(-20.0, abs=0.1)
    # as a word-error curve it equals the accuracy curve it mirrors
    test_acc = np.array([0.45, 0.56, 0.62, 0.71, 0.735, 0.74])
    as_wer = bd_rate(RATE, wer, 0.9 * RATE, 1 - test_acc, higher_is_better=False)
    as_acc = bd_rate(RATE, TOP1, 0.9 * RATE, test_acc)
    assert as_wer.value == pytest.approx(as_acc.value, abs=1e-9)
    # BD-metric keeps the metric's units: 0.02 less WER everywhere is -0.02, and 0.02 more accuracy is +0.02
    assert bd_metric(RATE, wer, RATE, wer - 0.02, higher_is_better=False).value == pytest.approx(-0.02, abs=1e-9)
    assert bd_metric(RATE, TOP1, RATE, TOP1 + 0.02).value == pytest.approx(0.02, abs=1e-9)


def test_bd_metric_sign():
    # identical curves differ by nothing
    assert bd_metric(RATE, TOP1, RATE, TOP1).value == pytest.approx(0.0, abs=1e-12)
    # a better test curve (more accuracy for the same bits) is positive
    assert bd_metric(RATE, TOP1, 0.5 * RATE, TOP1).value > 0


def test_too_few_points_after_the_fit():
    flat = np.array([0.5, 0.5, 0.6, 0.6, 0.6, 0.6])  # two distinct scores
    result = bd_rate(RATE, flat, RATE, TOP1)
    assert result == BDResult(None, "anchor: 2 distinct scores after the monotonic fit (need 4)")
    # a falling curve pools into a single plateau
    result = bd_rate(RATE, TOP1, RATE, TOP1[::-1])
    assert result.value is None and result.reason == "test: 1 distinct scores after the monotonic fit (need 4)"
    result = bd_metric(RATE[:3], TOP1[:3], RATE, TOP1)
    assert result.value is None and result.reason == "anchor: 3 distinct rates (need 4)"
    assert bd_rate(RATE[:3], TOP1[:3], RATE, TOP1, min_points=3).value is not None


def test_no_overlap_names_both_ranges():
    result = bd_rate(RATE, TOP1, RATE, TOP1 + 0.5)
    assert result.value is None
    assert result.reason == "score ranges do not overlap: anchor [0.42, 0.745], test [0.92, 1.245]"
    result = bd_metric(RATE, TOP1, 100 * RATE, TOP1)
    assert result.value is None
    assert result.reason == "rate ranges do not overlap: anchor [0.1, 3.2], test [10, 320]"


def test_non_positive_rate():
    result = bd_rate([0.0, 0.2, 0.4, 0.8, 1.6], TOP1[:5], RATE, TOP1)
    assert result.value is None
    assert "anchor" in result.reason and "non-positive rate" in result.reason and "0.0" in result.reason
    result = bd_metric(RATE, TOP1, -RATE, TOP1)
    assert result.value is None and result.reason.startswith("test: non-positive rate")


def test_non_finite_points_are_dropped():
    rate = np.append(RATE, 6.4)
    top1 = np.append(TOP1, np.nan)
    assert bd_rate(rate, top1, 0.8 * RATE, TOP1).value == pytest.approx(-20.0, abs=0.1)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="interpolation"):
        bd_rate(RATE, TOP1, RATE, TOP1, interpolation="linear")
    with pytest.raises(ValueError, match="min_points"):
        bd_rate(RATE, TOP1, RATE, TOP1, min_points=1)
    with pytest.raises(ValueError, match="differ in length"):
        bd_rate(RATE, TOP1[:4], RATE, TOP1)


def test_highest_ratio_kept():
    ratios = [2, 5, 10, 20, 50, 100]
    top1 = [0.80, 0.79, 0.775, 0.74, 0.60, 0.30]
    assert highest_ratio_kept(ratios, top1, 0.80) == 10.0  # 0.775 >= 0.76, 0.74 < 0.76
    assert highest_ratio_kept(ratios, top1, 0.80, fraction=0.9) == 20.0
    assert highest_ratio_kept(ratios, top1, 0.95) is None  # 0.95 * 0.95 = 0.9025: nothing keeps it
    assert highest_ratio_kept([10, 20, 40], [0.9, np.nan, 0.1], 0.9) == 10.0
    wer = np.array([0.10, 0.11, 0.14, 0.30])
    assert highest_ratio_kept([5, 10, 20, 40], 1 - wer, 1 - 0.10) == 20.0  # word accuracy 0.86 >= 0.855


def test_highest_ratio_kept_stops_at_the_first_failure_of_a_non_monotone_curve():
    # 0.95 * 0.80 = 0.76: 50x (0.70) and 100x (0.72) fail, 200x (0.77) recovers; the answer is 20x, not 200x
    assert highest_ratio_kept([20, 50, 100, 200], [0.80, 0.70, 0.72, 0.77], 0.80) == 20.0
    # order of the input does not matter; the lowest ratio failing gives None
    assert highest_ratio_kept([200, 100, 50, 20], [0.77, 0.72, 0.70, 0.80], 0.80) == 20.0
    assert highest_ratio_kept([20, 50, 200], [0.70, 0.79, 0.79], 0.80) is None
    # two points at one ratio (two codecs' points pooled by a caller) pass only together
    assert highest_ratio_kept([20, 50, 50, 100], [0.8, 0.8, 0.7, 0.8], 0.80) == 20.0


@pytest.mark.parametrize("reference", [0.0, -0.5, float("nan"), float("inf")])
def test_highest_ratio_kept_rejects_bad_reference(reference: float):
    with pytest.raises(ValueError, match="reference"):
        highest_ratio_kept([1, 2], [0.5, 0.4], reference)
