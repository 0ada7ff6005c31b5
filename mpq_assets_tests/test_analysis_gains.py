"""Known answers for the paired-difference gain detector: a true gain is flagged, noise of the same size is not,
the pairing is what makes a small consistent gain visible, and the direction of a lower-is-better measure holds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from mpq_assets.analysis.gains import paired_difference, q_values, weighted_mean

pytestmark = pytest.mark.fast


def _items(n: int = 200, seed: int = 1) -> np.ndarray:
    """Per-item reference scores with a wide spread of item difficulty."""
    return np.random.default_rng(seed).uniform(0.2, 0.9, n)


def test_a_true_gain_is_flagged_and_its_interval_holds_it() -> None:
    ref = _items()
    comp = ref + 0.03 + np.random.default_rng(2).normal(0, 0.01, ref.size)
    res = paired_difference(weighted_mean(ref), weighted_mean(comp), ref.size)
    assert res.helped and not res.hurt
    assert res.ci_low > 0 and res.ci_low <= 0.03 <= res.ci_high
    assert res.difference == pytest.approx(comp.mean() - ref.mean())
    assert res.p_value < 0.01 and res.n == ref.size


def test_noise_of_the_same_size_is_not_flagged() -> None:
    ref = _items()
    signs = np.where(np.arange(ref.size) % 2 == 0, 1.0, -1.0)  # +0.03 on half the items, -0.03 on the others
    res = paired_difference(weighted_mean(ref), weighted_mean(ref + 0.03 * signs), ref.size)
    assert res.difference == pytest.approx(0.0, abs=1e-12)
    assert res.ci_low < 0 < res.ci_high and not res.helped and not res.hurt and res.p_value > 0.5


def test_pairing_sees_a_gain_two_independent_intervals_would_not() -> None:
    ref = _items()
    comp = ref + 0.01  # small against the items' spread (sd ~0.2), the same on every item
    paired = paired_difference(weighted_mean(ref), weighted_mean(comp), ref.size)
    assert paired.helped and paired.ci_low == pytest.approx(0.01) and paired.ci_high == pytest.approx(0.01)
    # the unpaired view: each side's own 95% interval, which overlap widely
    sem = ref.std(ddof=1) / np.sqrt(ref.size)
    assert 1.96 * sem > 0.01 * 2


def test_lower_is_better_gain_is_a_negative_difference() -> None:
    ref_wer = _items()
    comp_wer = ref_wer - 0.05
    res = paired_difference(weighted_mean(ref_wer), weighted_mean(comp_wer), ref_wer.size, higher_is_better=False)
    assert res.difference == pytest.approx(-0.05) and res.helped and not res.hurt
    worse = paired_difference(weighted_mean(ref_wer), weighted_mean(ref_wer + 0.05), ref_wer.size,
                              higher_is_better=False)
    assert worse.hurt and not worse.helped


def test_weighted_mean_is_the_corpus_rate() -> None:
    errors, words = np.array([1.0, 0.0, 6.0]), np.array([2.0, 5.0, 3.0])
    stat = weighted_mean(errors / words, words)
    assert stat(np.ones((1, 3)))[0] == pytest.approx(7 / 10)
    # a resample drawing item 0 twice and item 2 once: (1+1+6) / (2+2+3)
    assert stat(np.array([[2.0, 0.0, 1.0]]))[0] == pytest.approx(8 / 7)


def test_accuracy_with_no_item_changed_is_no_gain() -> None:
    correct = (np.arange(100) % 3 != 0).astype(float)
    res = paired_difference(weighted_mean(correct), weighted_mean(correct.copy()), correct.size)
    assert res.difference == 0 and res.ci_low == res.ci_high == 0 and res.p_value == 1 and not res.helped


def test_one_flipped_item_of_128_is_not_significant() -> None:
    """The paper's Beans case in miniature: 125/128 right, then 126/128 after compression."""
    ref = np.ones(128)
    ref[:3] = 0
    comp = ref.copy()
    comp[0] = 1
    res = paired_difference(weighted_mean(ref), weighted_mean(comp), 128)
    assert res.difference == pytest.approx(1 / 128) and res.ci_low == 0 and not res.helped


def test_same_seed_same_interval_and_too_few_items() -> None:
    ref = _items(30)
    comp = ref + np.random.default_rng(5).normal(0.01, 0.05, 30)
    a = paired_difference(weighted_mean(ref), weighted_mean(comp), 30, seed=3)
    b = paired_difference(weighted_mean(ref), weighted_mean(comp), 30, seed=3)
    assert (a.ci_low, a.ci_high, a.p_value) == (b.ci_low, b.ci_high, b.p_value)
    one = paired_difference(weighted_mean(ref[:1]), weighted_mean(comp[:1]), 1)
    assert np.isnan(one.ci_low) and not one.helped and one.difference == pytest.approx(comp[0] - ref[0])


def test_q_values_are_benjamini_hochberg() -> None:
    p = np.array([0.001, 0.02, 0.03, np.nan, 0.5])
    q = q_values(p)
    expected = scipy.stats.false_discovery_control([0.001, 0.02, 0.03, 0.5])
    assert np.isnan(q[3]) and np.allclose(q[[0, 1, 2, 4]], expected)
    assert np.allclose(expected, [0.004, 0.04, 0.04, 0.5])  # by hand: p * m / rank, made monotone
