"""harness.analysis.stats (bootstrap over examples, McNemar, sign-flip permutation, Holm, Spearman) and the
paired statistics that summarize() and report.md add on top of the rates."""
from __future__ import annotations

import itertools
import math
import time
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats

from harness.analysis import stats
from harness.analysis.metrics import summarize, wilson
from harness.outputs.markdown import render_report
from harness.types import ERROR, Sample

LABELS = ("icl", "if", "other")


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


# -- summarize() on hand-made samples ------------------------------------------------------

def sample(model, transform, i, outcome, task="t", group="g"):
    return Sample(model=model, task=task, transform=transform, example_id=f"e{i}", group=group, mode="native",
                  prompt="p", transformed_prompt="p", reference={}, response=None if outcome == ERROR else "r",
                  outcome=outcome, error="backend error: boom" if outcome == ERROR else None)


OUTCOMES = {  # examples e0..e8
    ("pretrained", "identity"): ["icl", "icl", "icl", "icl", "icl", "icl", "other", "other", "icl"],
    ("finetuned", "identity"): ["if", "if", "icl", "if", "other", "other", "if", "if", "if"],
    ("pretrained", "leetspeak"): ["icl", "icl", "icl", "other", "icl", "icl", "icl", "other", "icl"],
    ("finetuned", "leetspeak"): ["icl", "if", "icl", "icl", "other", "if", "other", "if", ERROR],
}


def crafted(**kw):
    samples = [sample(m, tr, i, o) for (m, tr), outs in OUTCOMES.items() for i, o in enumerate(outs)]
    return summarize(samples, {"t": LABELS}, {"t": "icl"}, ["identity", "leetspeak"], **kw)


@pytest.fixture(scope="module")
def crafted_summary():
    return crafted()


def test_summarize_keeps_its_keys(crafted_summary):
    assert {"rows", "recovery", "agreement", "tests"} <= set(crafted_summary)
    leet = next(r for r in crafted_summary["recovery"] if (r["transform"], r["group"]) == ("leetspeak", "all"))
    for key in ("task", "transform", "group", "label", "pretrained", "finetuned", "drop", "pt_en", "ft_en",
                "recovery", "note"):
        assert key in leet


def test_summarize_recovery_ci(crafted_summary):
    rec = {(r["transform"], r["group"]): r for r in crafted_summary["recovery"]}
    leet = rec[("leetspeak", "all")]
    # pt_en = 7/9, ft_en = 1/9, ft_leet = 3/8 (e8 failed): recovery = (3/8 - 1/9) / (6/9) = 19/48
    assert leet["recovery"] == pytest.approx(19 / 48)
    lo, hi = leet["ci"]
    assert lo <= leet["recovery"] <= hi and lo < hi
    assert leet["ci_method"] == "percentile bootstrap over examples, 2000 resamples, seed 0"
    assert isinstance(leet["ci_dropped"], int) and leet["ci_dropped"] == 0
    base = rec[("identity", "all")]
    assert base["ci"] is None and base["ci_dropped"] == 0 and base["ci_method"] == leet["ci_method"]
    group = rec[("leetspeak", "g")]  # the only group: same examples, resampled with its own key
    assert group["recovery"] == leet["recovery"] and group["ci"][0] <= group["recovery"] <= group["ci"][1]


def test_summarize_recovery_ci_is_deterministic_and_follows_seed_and_n_boot(crafted_summary):
    again = crafted()
    assert [r["ci"] for r in again["recovery"]] == [r["ci"] for r in crafted_summary["recovery"]]
    other = crafted(n_boot=500, seed=3)
    leet = next(r for r in other["recovery"] if (r["transform"], r["group"]) == ("leetspeak", "all"))
    assert leet["ci_method"] == "percentile bootstrap over examples, 500 resamples, seed 3"
    assert leet["ci"][0] <= leet["recovery"] <= leet["ci"][1]


def test_summarize_recovery_ci_drops_undefined_resamples():
    """pt and ft differ in English on one example of five: resamples without it have pt_en == ft_en."""
    outs = {("pretrained", "identity"): ["icl", "other", "other", "other", "other"],
            ("finetuned", "identity"): ["other"] * 5,
            ("pretrained", "leetspeak"): ["icl", "other", "other", "other", "other"],
            ("finetuned", "leetspeak"): ["icl", "icl", "other", "other", "other"]}
    samples = [sample(m, tr, i, o) for (m, tr), os_ in outs.items() for i, o in enumerate(os_)]
    s = summarize(samples, {"t": LABELS}, {"t": "icl"}, ["identity", "leetspeak"])
    leet = next(r for r in s["recovery"] if (r["transform"], r["group"]) == ("leetspeak", "all"))
    assert leet["recovery"] == pytest.approx(2.0)
    expected = 2000 * (4 / 5) ** 5  # 655 resamples miss e0
    assert abs(leet["ci_dropped"] - expected) < 80
    assert "resamples dropped" in leet["ci_note"]


def test_summarize_undefined_recovery_has_no_ci():
    outs = {("pretrained", "identity"): ["icl", "other"], ("finetuned", "identity"): ["icl", "other"],
            ("pretrained", "leetspeak"): ["icl", "icl"], ("finetuned", "leetspeak"): ["other", "icl"]}
    samples = [sample(m, tr, i, o) for (m, tr), os_ in outs.items() for i, o in enumerate(os_)]
    s = summarize(samples, {"t": LABELS}, {"t": "icl"}, ["identity", "leetspeak"])
    leet = next(r for r in s["recovery"] if (r["transform"], r["group"]) == ("leetspeak", "all"))
    assert math.isnan(leet["recovery"]) and leet["ci"] is None


def test_summarize_agreement_counts(crafted_summary):
    ag = {a["transform"]: a for a in crafted_summary["agreement"]}
    leet = ag["leetspeak"]
    assert (leet["task"], leet["group"]) == ("t", "all")
    # e8 failed for ft(leetspeak): 8 pairs; same label as pt(leetspeak) on e0, e2; as pt(en) on e0, e2, e3, e6
    assert (leet["n"], leet["ft_T_vs_pt_T_k"], leet["ft_T_vs_pt_T"]) == (8, 2, 0.25)
    assert (leet["n_en"], leet["ft_T_vs_pt_en_k"], leet["ft_T_vs_pt_en"]) == (8, 4, 0.5)
    assert leet["ft_T_vs_pt_T_ci"] == list(wilson(2, 8)) and leet["ft_T_vs_pt_en_ci"] == list(wilson(4, 8))
    en = ag["identity"]
    assert (en["n"], en["ft_T_vs_pt_T_k"], en["ft_T_vs_pt_en_k"]) == (9, 1, 1)  # only e2 agrees


def test_summarize_paired_tests(crafted_summary):
    tests = crafted_summary["tests"]
    assert len(tests) == 4
    by = {(t["kind"], t.get("model"), t.get("transform")): t for t in tests}
    ft = by[("transform", "finetuned", None)]
    assert (ft["a"], ft["b"], ft["n"], ft["a_only"], ft["b_only"]) == ("identity", "leetspeak", 8, 0, 2)
    assert ft["p"] == 0.5 and ft["test"] == stats.MCNEMAR_EXACT
    pt = by[("transform", "pretrained", None)]
    assert (pt["n"], pt["a_only"], pt["b_only"], pt["p"]) == (9, 1, 1, 1.0)
    en = by[("model", None, "identity")]
    assert (en["a"], en["b"], en["n"], en["a_only"], en["b_only"]) == ("pretrained", "finetuned", 9, 6, 0)
    assert en["p"] == 2 / 64
    leet = by[("model", None, "leetspeak")]
    assert (leet["n"], leet["a_only"], leet["b_only"], leet["p"]) == (8, 4, 1, 12 / 32)
    # Holm within (task, kind): transform {1.0, 0.5} -> {1.0, 1.0}; model {1/32, 3/8} -> {1/16, 3/8}
    assert (pt["p_holm"], ft["p_holm"]) == (1.0, 1.0)
    assert en["p_holm"] == pytest.approx(1 / 16) and leet["p_holm"] == pytest.approx(3 / 8)


def test_summarize_permutation_option():
    s = crafted(paired_test="permutation")
    ft = next(t for t in s["tests"] if t["kind"] == "transform" and t["model"] == "finetuned")
    assert ft["test"] == "paired sign-flip permutation test (exact, two-sided)"
    assert ft["p"] == 0.5  # 2 discordant pairs: 2 of 4 sign patterns reach |2|
    chi = crafted(paired_test="mcnemar-chi2")
    assert all(t["test"] == stats.MCNEMAR_CHI2 for t in chi["tests"])
    with pytest.raises(ValueError):
        crafted(paired_test="t-test")


def test_summarize_is_fast_on_a_default_sized_run():
    """2080 samples like results/default-pair: 2 tasks, both models, 8 and 4 transforms, 100 and 60 examples."""
    rng = np.random.default_rng(0)
    samples = []
    spec = {"icl_vs_if": (100, ["identity", "lang:fr", "lang:es", "lang:nl", "lang:hu", "pt", "leetspeak", "pig"]),
            "refusal": (60, ["identity", "pt", "leetspeak", "pig"])}
    for task, (n, trs) in spec.items():
        for tr in trs:
            for m in ("pretrained", "finetuned"):
                for i in range(n):
                    samples.append(sample(m, tr, i, LABELS[rng.integers(3)], task=task, group=f"g{i % 4}"))
    assert len(samples) == 2080
    trs = spec["icl_vs_if"][1]
    start = time.perf_counter()
    s = summarize(samples, {"icl_vs_if": LABELS, "refusal": LABELS}, {"icl_vs_if": "icl", "refusal": "icl"}, trs)
    elapsed = time.perf_counter() - start
    print(f"\nsummarize() on 2080 samples: {elapsed:.3f} s")
    assert elapsed < 2.0  # target < 1 s; slack for a loaded CI machine
    assert len(s["tests"]) == (7 * 2 + 8) + (3 * 2 + 4)
    assert all(r["ci"] is not None for r in s["recovery"] if r["note"] != "baseline" and not math.isnan(r["recovery"]))


# -- report.md ------------------------------------------------------------------------------

def test_report_shows_recovery_ci_agreement_and_named_tests(crafted_summary):
    model = {"name": "m", "model": "x", "backend": "hf"}
    manifest = {"run_id": "r", "spec": {"pretrained": model, "finetuned": model, "tasks": ["t"],
                                        "transforms": ["identity", "leetspeak"], "limit": None, "seed": 0}}
    md = render_report(manifest, crafted_summary, {"t": list(LABELS)})
    assert "| Recovery | Recovery 95% CI |" in md
    assert "percentile bootstrap over examples, 2000 resamples, seed 0" in md
    leet = next(r for r in crafted_summary["recovery"] if (r["transform"], r["group"]) == ("leetspeak", "all"))
    assert f"| 0.40 | [{leet['ci'][0]:.2f}, {leet['ci'][1]:.2f}] |" in md
    assert "### Agreement with the pretrained model" in md
    assert "| Leetspeak | 8 | 25.0 [" in md
    assert "### Paired tests" in md and "McNemar exact (two-sided binomial on discordant pairs)" in md
    assert "| English vs Leetspeak | finetuned | 8 | 0 | 2 | McNemar exact | 0.500 | 1.000 |" in md
    assert "| pretrained vs finetuned | English | 9 | 6 | 0 | McNemar exact | 0.031 | 0.062 |" in md


def test_report_renders_an_old_summary_without_the_new_keys(crafted_summary):
    old = {"rows": crafted_summary["rows"],
           "recovery": [{k: v for k, v in r.items() if not k.startswith("ci")} for r in crafted_summary["recovery"]]}
    model = {"name": "m", "model": "x", "backend": "hf"}
    manifest = {"run_id": "r", "spec": {"pretrained": model, "finetuned": model, "tasks": ["t"],
                                        "transforms": ["identity", "leetspeak"], "limit": None, "seed": 0}}
    md = render_report(manifest, old, {"t": list(LABELS)})
    assert "Recovery 95% CI" in md and "### Paired tests" not in md
