"""harness.analysis.stats, each statistic once: Wilson, recovery, bootstraps (rates, recovery, means, token-weighted
ratios), McNemar, sign-flip permutation, Holm, Spearman, one-sided Fisher, two-proportion z."""
from __future__ import annotations

import itertools
import math
import time
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats

from harness.analysis import stats
from harness.analysis.stats import TINY_DENOMINATOR, recovery, wilson


# -- bootstrap ------------------------------------------------------------------------------

def test_resample_counts_shape_sums_and_determinism():
    c = stats.resample_counts(7, 500, stats.make_rng(0))
    assert c.shape == (500, 7)
    assert (c.sum(axis=1) == 7).all()
    assert (c == stats.resample_counts(7, 500, stats.make_rng(0))).all()
    assert not (c == stats.resample_counts(7, 500, stats.make_rng(1))).all()
    # every index is drawn with probability 1/n: mean count 1
    big = stats.resample_counts(10, 20000, stats.make_rng(3))
    assert big.mean(axis=0) == pytest.approx(np.ones(10), abs=0.03)
    assert stats.resample_counts(0, 5).shape == (5, 0)


def test_make_rng_keys_are_stable_and_distinct():
    a = stats.make_rng(0, ("icl_vs_if", "all")).integers(0, 1 << 30, 4)
    b = stats.make_rng(0, ("icl_vs_if", "all")).integers(0, 1 << 30, 4)
    c = stats.make_rng(0, ("refusal", "all")).integers(0, 1 << 30, 4)
    assert (a == b).all() and not (a == c).all()


def test_bootstrap_percentile_interval_covers_a_known_rate_about_95_percent():
    """400 simulated Bernoulli(0.3) data sets of 100, 1000 resamples each: coverage should be ~0.95."""
    p_true, n, n_sets, n_boot = 0.3, 100, 400, 1000
    rng = np.random.default_rng(12345)
    start = time.perf_counter()
    hits = 0
    for i in range(n_sets):
        data = (rng.random(n) < p_true).astype(float)
        ci = stats.bootstrap_rate_ci(data, n_boot=n_boot, seed=i)
        assert ci.dropped == 0 and ci.lo <= data.mean() <= ci.hi
        hits += ci.lo <= p_true <= ci.hi
    coverage = hits / n_sets
    print(f"\nbootstrap percentile 95% CI coverage of p=0.3 (n=100, {n_sets} data sets, {n_boot} resamples): "
          f"{coverage:.3f} in {time.perf_counter() - start:.2f} s")
    assert 0.91 <= coverage <= 0.98


def test_paired_bootstrap_covers_a_known_recovery():
    """Recovery with true rates pt_en=0.7, ft_en=0.2, ft_T=0.45 (recovery 0.5), 200 examples, paired cells."""
    n, n_sets, n_boot = 200, 200, 1000
    rng = np.random.default_rng(777)
    hits = 0
    for i in range(n_sets):
        cells = {name: (rng.random(n) < p).astype(float) for name, p in (("pt_en", 0.7), ("ft_en", 0.2), ("ft_t", 0.45))}
        boot = stats.PairedBootstrap([f"e{j}" for j in range(n)], n_boot=n_boot, seed=i)
        ones = np.ones(n)
        draws = stats.recovery_draws(*(boot.cell_rates(cells[c], ones) for c in ("pt_en", "ft_en", "ft_t")))
        ci = stats.percentile_interval(draws)
        hits += ci.lo <= 0.5 <= ci.hi
    coverage = hits / n_sets
    print(f"\npaired bootstrap recovery CI coverage of 0.5: {coverage:.3f}")
    assert 0.89 <= coverage <= 0.99


def test_bootstrap_rate_ci_excludes_unscored_items():
    values = [1, 1, 1, 0, 0]
    scored = [1, 1, 1, 0, 0]  # the two zeros are errors: every resample's rate is 1 (or undefined)
    ci = stats.bootstrap_rate_ci(values, scored, n_boot=500, seed=0)
    assert (ci.lo, ci.hi) == (1.0, 1.0)
    assert 0 < ci.dropped < 500 * 0.05  # resamples with no scored item at all: (2/5)**5 = 1%
    assert ci.as_list() == [1.0, 1.0]


def test_percentile_interval_drops_undefined_draws():
    ci = stats.percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0, np.inf]))
    assert ci.dropped == 2 and ci.n_boot == 5
    assert ci.lo == pytest.approx(1.05) and ci.hi == pytest.approx(2.95)
    empty = stats.percentile_interval(np.array([np.nan, np.nan]))
    assert empty.as_list() is None and empty.dropped == 2


def test_recovery_draws_are_undefined_where_the_denominator_is_zero():
    out = stats.recovery_draws(np.array([0.8, 0.5, np.nan, 0.3]), np.array([0.2, 0.5, 0.1, 0.2]),
                               np.array([0.5, 0.7, 0.2, 0.25]))
    assert out[0] == pytest.approx(0.5) and out[3] == pytest.approx(0.5)
    assert math.isnan(out[1]) and math.isnan(out[2])


def test_paired_bootstrap_applies_one_resample_to_every_cell():
    ids = [f"e{i}" for i in range(6)]
    boot = stats.PairedBootstrap(ids, n_boot=300, seed=0, key=("t", "all"))
    k = boot.vector({"e0": 1, "e1": 1, "e2": 1})
    n = boot.vector({e: 1 for e in ids})
    a, b = boot.cell_rates(k, n), boot.cell_rates(k, n)
    assert (a == b).all()
    # a cell that is the complement of another always sums to 1 in the same resample
    comp = boot.cell_rates(n - k, n)
    assert np.allclose(a + comp, 1.0)
    # an error (n = 0) on e5 leaves it out of numerator and denominator
    n_err = boot.vector({e: 1 for e in ids[:5]})
    r = boot.cell_rates(k, n_err)
    expected = (boot.counts[:, :3].sum(1)) / boot.counts[:, :5].sum(1)
    assert np.allclose(r, expected, equal_nan=True)


# -- McNemar ----------------------------------------------------------------------------------

def test_mcnemar_exact_textbook_value():
    """b=10, c=2: p = 2 * P(Bin(12, 1/2) <= 2) = 2 * (1 + 12 + 66) / 4096 = 158/4096 = 0.0386."""
    res = stats.mcnemar(10, 2)
    assert res.test == stats.MCNEMAR_EXACT == "McNemar exact (two-sided binomial on discordant pairs)"
    assert res.p == float(Fraction(158, 4096))
    assert round(res.p, 4) == 0.0386
    assert res.p == pytest.approx(scipy.stats.binomtest(2, 12, 0.5).pvalue, rel=1e-12)
    assert stats.mcnemar(2, 10).p == res.p  # symmetric in b and c


@pytest.mark.parametrize("b, c", [(0, 1), (1, 0), (3, 3), (7, 0), (45, 1), (30, 70), (121, 59), (0, 60), (400, 450)])
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    assert stats.mcnemar(b, c).p == pytest.approx(scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)


def test_mcnemar_no_discordant_pairs_and_bad_input():
    assert stats.mcnemar(0, 0).p == 1.0
    assert stats.mcnemar(0, 0, method="chi2").p == 1.0
    assert stats.mcnemar(5, 5).p == 1.0
    with pytest.raises(ValueError):
        stats.mcnemar(-1, 2)
    with pytest.raises(ValueError):
        stats.mcnemar(1, 2, method="mid-p")


def test_mcnemar_chi2_with_continuity_correction_textbook_tables():
    """Agresti's presidential-approval table (b=150, c=86) and Wikipedia's example (b=121, c=59)."""
    res = stats.mcnemar(150, 86, method="chi2")
    assert res.test == stats.MCNEMAR_CHI2
    assert res.statistic == pytest.approx(63 ** 2 / 236)  # (|150 - 86| - 1)^2 / (150 + 86) = 16.818
    assert res.statistic == pytest.approx(16.818, abs=1e-3)
    assert res.p == pytest.approx(scipy.stats.chi2.sf(3969 / 236, 1), rel=1e-9)
    assert res.p == pytest.approx(4.115e-5, rel=1e-3)
    res = stats.mcnemar(121, 59, method="chi2")
    assert res.statistic == pytest.approx(61 ** 2 / 180)  # 20.672
    assert res.p == pytest.approx(scipy.stats.chi2.sf(3721 / 180, 1), rel=1e-9)
    # b = c: the correction is clipped at 0, so the statistic is 0 and p = 1
    assert stats.mcnemar(4, 4, method="chi2").p == 1.0


def test_binom_cdf_half_exact():
    assert stats.binom_cdf_half(2, 12) == 79 / 4096
    assert stats.binom_cdf_half(-1, 5) == 0.0 and stats.binom_cdf_half(5, 5) == 1.0
    assert stats.binom_cdf_half(4900, 10000) == pytest.approx(scipy.stats.binom.cdf(4900, 10000, 0.5), rel=1e-9)


# -- permutation test -------------------------------------------------------------------------

def test_paired_permutation_matches_exact_enumeration():
    a = np.array([2.0, 1.0, 3.0, 4.0, 5.0])
    b = np.array([3.0, 3.0, 2.5, 7.0, 5.0])  # d = [1, 2, -0.5, 3, 0]
    d = [1.0, 2.0, -0.5, 3.0]
    observed = abs(sum(d))
    flips = [abs(sum(s * x for s, x in zip(signs, d))) for signs in itertools.product((1, -1), repeat=4)]
    expected = sum(f >= observed - 1e-12 for f in flips) / 16
    res = stats.paired_permutation(a, b)
    assert res.p == expected == 4 / 16  # +-(1, 2, -0.5, 3) reach 5.5 and +-(1, 2, 0.5, 3) reach 6.5
    assert "exact" in res.test and res.statistic == pytest.approx(5.5)
    assert (res.b, res.c) == (3, 1)


def test_paired_permutation_on_binary_pairs_equals_mcnemar_exact():
    a = [1] * 10 + [0] * 2 + [1] * 5 + [0] * 7  # 10 "a only", 2 "b only", 12 concordant pairs
    b = [0] * 10 + [1] * 2 + [1] * 5 + [0] * 7
    res = stats.paired_permutation(a, b)
    assert res.p == pytest.approx(stats.mcnemar(10, 2).p, rel=1e-12)


def test_paired_permutation_monte_carlo_is_seeded_and_close_to_exact():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=30), rng.normal(size=30) + 0.4
    exact = stats.paired_permutation(a[:16], b[:16], exact=True).p
    mc1 = stats.paired_permutation(a[:16], b[:16], exact=False, n_perm=20000, seed=0)
    mc2 = stats.paired_permutation(a[:16], b[:16], exact=False, n_perm=20000, seed=0)
    assert mc1.p == mc2.p
    assert mc1.p == pytest.approx(exact, abs=0.01)
    assert "20000 random sign flips, seed 0" in mc1.test
    auto = stats.paired_permutation(a, b)  # 30 non-zero differences: Monte Carlo by default
    assert "random sign flips" in auto.test and 0 < auto.p <= 1
    assert stats.paired_permutation([1, 2], [1, 2]).p == 1.0


# -- Holm, Spearman ---------------------------------------------------------------------------

def test_holm_known_values():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]
    assert stats.holm([]) == []


def test_spearman_with_ties_by_hand():
    """Average ranks: x -> 1..5, y = [5, 6, 7, 8, 7] -> [1, 2, 3.5, 5, 3.5]; rho = 8 / sqrt(10 * 9.5)."""
    res = stats.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    rho = 8 / math.sqrt(95)
    assert res.rho == pytest.approx(rho, rel=1e-12) and res.n == 5
    t = rho * math.sqrt(3 / (1 - rho ** 2))
    assert res.p == pytest.approx(2 * scipy.stats.t.sf(t, 3), rel=1e-9)
    rho_, p_ = res  # unpacks like a tuple
    assert (rho_, p_) == (res.rho, res.p)


def test_spearman_edge_cases():
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]).rho == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]).rho == pytest.approx(-1.0)
    assert math.isnan(stats.spearman([1, 1, 1, 1], [1, 2, 3, 4]).rho)
    assert math.isnan(stats.spearman([1, 2], [2, 1]).rho)
    res = stats.spearman([1, 2, float("nan"), 3, 4], [1, 2, 5, 3, 4])
    assert res.n == 4 and res.rho == pytest.approx(1.0)
    with pytest.raises(ValueError):
        stats.spearman([1, 2, 3], [1, 2])


# -- wilson ---------------------------------------------------------------------------

def test_wilson_zero_successes():
    lo, hi = wilson(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(0.2775, abs=1e-4)


def test_wilson_half():
    lo, hi = wilson(5, 10)
    assert round(lo, 3) == 0.237 and round(hi, 3) == 0.763
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert lo + hi == pytest.approx(1.0)  # symmetric around 0.5


def test_wilson_all_successes_mirrors_zero():
    lo, hi = wilson(10, 10)
    assert hi == pytest.approx(1.0)
    assert lo == pytest.approx(1 - wilson(0, 10)[1])


@pytest.mark.parametrize("n", [1, 3, 10, 100, 400])
def test_wilson_bounds_are_exact_at_the_extremes(n):
    """k = 0 gives lo == 0 and k = n gives hi == 1 exactly, so [lo, hi] contains k/n.

    Floating point currently gives hi = 0.9999999999999999 for k = n = 10 or 400,
    and lo = 5.6e-17 for k = 0, n = 3: intervals that exclude the observed rate.
    """
    assert wilson(0, n)[0] == 0.0
    assert wilson(n, n)[1] == 1.0


def test_wilson_no_trials_is_nan():
    lo, hi = wilson(0, 0)
    assert math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("k, n", [(1, 3), (7, 100), (50, 100), (99, 100), (1, 400)])
def test_wilson_contains_the_rate_and_narrows_with_n(k, n):
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo4, hi4 = wilson(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo


# -- recovery ---------------------------------------------------------------------------

def test_recovery_halfway():
    value, note = recovery(pt_en=0.8, ft_en=0.2, ft_t=0.5)
    assert value == pytest.approx(0.5)
    assert note == ""


@pytest.mark.parametrize("ft_t, expected", [(0.2, 0.0), (0.8, 1.0), (0.0, -1 / 3), (1.0, 4 / 3)])
def test_recovery_scale(ft_t, expected):
    assert recovery(0.8, 0.2, ft_t)[0] == pytest.approx(expected)


def test_recovery_when_fine_tuning_raised_the_rate():
    assert recovery(pt_en=0.2, ft_en=0.8, ft_t=0.5)[0] == pytest.approx(0.5)


def test_recovery_tiny_denominator_is_flagged():
    value, note = recovery(pt_en=0.5, ft_en=0.45, ft_t=0.5)
    assert value == pytest.approx(1.0)
    assert "tiny denominator" in note and "0.050" in note


def test_recovery_denominator_exactly_at_the_threshold_is_not_tiny():
    """30/100 vs 20/100 differ by exactly TINY_DENOMINATOR (0.10), which is not *below* it.

    In floating point 0.3 - 0.2 == 0.09999999999999998, so the note fires and
    reads "|pt_en - ft_en| = 0.100 < 0.1", which contradicts itself.
    """
    assert TINY_DENOMINATOR == 0.10
    value, note = recovery(pt_en=30 / 100, ft_en=20 / 100, ft_t=25 / 100)
    assert value == pytest.approx(0.5)
    assert note == ""


def test_recovery_equal_rates_is_undefined():
    value, note = recovery(0.5, 0.5, 0.7)
    assert math.isnan(value)
    assert "equal" in note


def test_recovery_missing_rate():
    value, note = recovery(math.nan, 0.2, 0.3)
    assert math.isnan(value)
    assert note == "missing rates"


# -- bootstrap of a mean (the probe) and of token-weighted ratios (forgetting) -------------------

def test_bootstrap_mean_ci_is_keyed_and_covers_the_mean():
    x = np.linspace(0.1, 0.9, 40)
    mean, lo, hi = stats.bootstrap_mean_ci(x, key=("probe", "t"))
    assert mean == pytest.approx(0.5) and lo < mean < hi
    assert (mean, lo, hi) == stats.bootstrap_mean_ci(x, key=("probe", "t"))  # seeded by the cell's key
    assert (lo, hi) != stats.bootstrap_mean_ci(x, key=("probe", "u"))[1:]
    # the standard error of a mean of 40 uniform-ish values: the 95% interval is about +-1.96 * sd / sqrt(n)
    assert hi - lo == pytest.approx(2 * 1.96 * x.std() / math.sqrt(x.size), rel=0.15)
    assert stats.bootstrap_mean_ci([0.3]) == (0.3, 0.3, 0.3)
    assert all(math.isnan(v) for v in stats.bootstrap_mean_ci([]))


def test_ratio_ci_weights_by_tokens_and_resamples_chunks():
    sums, counts = np.array([10.0, 30.0, 20.0, 40.0]), np.array([10.0, 20.0, 10.0, 20.0])
    weights = stats.bootstrap_weights(len(sums), seed=0, n_boot=4000)
    assert weights.shape == (4000, 4) and (weights.sum(axis=1) == 4).all()
    out = stats.ratio_ci(sums, counts, weights)
    assert out["mean"] == pytest.approx(100 / 60)  # token-weighted, not the mean of the per-chunk ratios (1.625)
    assert 1.0 <= out["lo"] < out["mean"] < out["hi"] <= 2.0
    assert stats.ratio_ci(sums[:1], counts[:1], weights[:, :1]) == {"mean": 1.0, "lo": 1.0, "hi": 1.0}


def test_paired_ratio_diff_uses_the_same_chunks_for_both_sides():
    # columns: tokens, then a per-token quantity; b is a with one more unit per token in every chunk
    a = np.array([[10.0, 20.0], [20.0, 60.0], [10.0, 10.0], [20.0, 50.0]])
    b = a.copy()
    b[:, 1] += b[:, 0]
    weights = stats.bootstrap_weights(len(a), seed=1)
    out = stats.paired_ratio_diff(b, a, weights, col=1)
    # the difference is exactly 1 in every chunk, so pairing makes every resample give 1
    assert out["mean"] == pytest.approx(1.0) and out["lo"] == pytest.approx(1.0) and out["hi"] == pytest.approx(1.0)
    assert math.isnan(stats.paired_ratio_diff(a[:0], a[:0], weights, col=1)["mean"])


# -- tests on two proportions (check, compare) -------------------------------------------------

def test_fisher_one_sided_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_now, n_base = int(rng.integers(1, 80)), int(rng.integers(1, 80))
        k_now, k_base = int(rng.integers(0, n_now + 1)), int(rng.integers(0, n_base + 1))
        table = [[k_now, n_now - k_now], [k_base, n_base - k_base]]
        for worse, alt in (("lower", "less"), ("higher", "greater")):
            ref = scipy.stats.fisher_exact(table, alternative=alt).pvalue
            assert stats.fisher_one_sided(k_now, n_now, k_base, n_base, worse) == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_two_proportion_z_textbook_value():
    """45/100 vs 60/100: pooled p = 0.525, z = 0.15 / sqrt(0.525 * 0.475 * 0.02) = 2.1239, two-sided p = 0.0337."""
    p = stats.two_proportion_z(45, 100, 60, 100)
    z = 0.15 / math.sqrt(0.525 * 0.475 * 0.02)
    assert p == pytest.approx(2 * scipy.stats.norm.sf(z), rel=1e-12) and round(p, 4) == 0.0337
    assert stats.two_proportion_z(60, 100, 45, 100) == p
    assert stats.two_proportion_z(0, 10, 0, 20) == 1.0  # no variance: nothing to test
    assert stats.two_proportion_z(1, 0, 3, 10) is None


def test_spearman_note_explains_undefined_correlations():
    assert stats.spearman_note([1, 2], [1, 2]) == (None, None, "only 2 points")
    assert stats.spearman_note([1, 1, 1], [1, 2, 3]) == (None, None, "one side is constant")
    rho, p, note = stats.spearman_note([1, 2, 3, 4], [1, 3, 2, 4])
    assert rho == pytest.approx(0.8) and 0 < p < 1 and note == ""


# -- scipy agreement -------------------------------------------------------------------------

def _wilson_closed_form(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


def _fisher_exact_fraction(k1: int, n1: int, k2: int, n2: int, worse: str) -> float:
    total, succ = n1 + n2, k1 + k2
    xs = range(max(0, succ - n2), k1 + 1) if worse == "lower" else range(k1, min(succ, n1) + 1)
    return float(min(Fraction(1), Fraction(sum(math.comb(succ, x) * math.comb(total - succ, n1 - x) for x in xs),
                                           math.comb(total, n1))))


def test_wilson_mcnemar_fisher_agree_with_scipy_and_the_exact_values_on_2000_random_cases():
    """Wilson vs the closed form and scipy's binomtest(...).proportion_ci("wilson"); exact McNemar vs exact binomial
    tails and scipy's binomtest; one-sided Fisher vs exact hypergeometric tails and scipy's fisher_exact.

    Measured (2,000 cases each): Wilson and scipy differ in the last ulp (max 2.2e-16) in about 40% of the bounds;
    McNemar here is exact (integer arithmetic) where scipy is off by up to 2e-14; a hand-written Fisher with
    lgamma was off by up to 1e-12 where scipy is within 2.4e-15.
    """
    rng = np.random.default_rng(2000)
    for _ in range(2000):
        n = int(rng.integers(1, 301))
        k = int(rng.integers(0, n + 1))
        ours, ref = stats.wilson(k, n), scipy.stats.binomtest(k, n).proportion_ci(method="wilson")
        assert ours == pytest.approx(_wilson_closed_form(k, n), abs=1e-15)
        assert ours == pytest.approx((ref.low, ref.high), abs=1e-15)
        b, c = (int(x) for x in rng.integers(0, 201, size=2))
        if b + c:
            exact = float(min(Fraction(1), Fraction(2 * sum(math.comb(b + c, i) for i in range(min(b, c) + 1)), 2 ** (b + c))))
            assert stats.mcnemar(b, c).p == exact
            assert stats.mcnemar(b, c).p == pytest.approx(scipy.stats.binomtest(min(b, c), b + c).pvalue, rel=1e-13)
        n1, n2 = (int(x) for x in rng.integers(1, 301, size=2))
        k1, k2 = int(rng.integers(0, n1 + 1)), int(rng.integers(0, n2 + 1))
        worse = "lower" if rng.random() < 0.5 else "higher"
        ours = stats.fisher_one_sided(k1, n1, k2, n2, worse)
        assert ours == pytest.approx(_fisher_exact_fraction(k1, n1, k2, n2, worse), rel=1e-11, abs=1e-300)
        ref = scipy.stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="less" if worse == "lower" else "greater")
        assert ours == pytest.approx(ref.pvalue, rel=1e-11, abs=1e-300)


def test_cohen_kappa_by_hand_and_against_sklearn():
    """Wikipedia's worked example (20 yes/yes, 15 no/no, 5 yes/no, 10 no/yes: p_o = 0.7, p_e = 0.5, kappa = 0.4),
    three labels against scikit-learn, and the undefined cases."""
    a = ["yes"] * 20 + ["no"] * 15 + ["yes"] * 5 + ["no"] * 10
    b = ["yes"] * 20 + ["no"] * 15 + ["no"] * 5 + ["yes"] * 10
    assert stats.cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-15)
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    labels = ["refuse", "answer", "ambiguous"]
    for _ in range(50):
        n = int(rng.integers(2, 60))
        x, y = list(rng.choice(labels, n)), list(rng.choice(labels, n))
        if len(set(x) | set(y)) > 1:
            assert stats.cohen_kappa(x, y) == pytest.approx(sklearn.cohen_kappa_score(x, y), abs=1e-12)
    assert math.isnan(stats.cohen_kappa(["refuse"] * 3, ["refuse"] * 3))  # p_e = 1
    assert math.isnan(stats.cohen_kappa([], []))
    assert stats.cohen_kappa(["a", "b"], ["b", "a"]) == -1.0
    with pytest.raises(ValueError):
        stats.cohen_kappa(["a"], [])
