"""Every statistic of the harness, in one place.

* intervals: Wilson (rates, agreement), percentile bootstrap over examples (rates, recovery), of a mean (the
  probe's P(target)), of a token-weighted ratio and of a paired difference of two (forgetting);
* recovery ``(ft_T - ft_en) / (pt_en - ft_en)``, its point estimate and its bootstrap draws;
* tests: McNemar (exact or chi-square), paired sign-flip permutation, Holm's adjustment, Spearman,
  one-sided Fisher exact (``conjugate check``), pooled two-proportion z (``conjugate compare``);
* Cohen's kappa (a judge model's labels against the phrase scorer's).

Everything here is deterministic: random draws come from ``numpy.random.default_rng`` seeded with
``seed`` (default 0) and, where a ``key`` is given, a stable CRC32 of that key, so results do not depend
on the order in which cells are processed.

Bootstrap over examples
-----------------------
Conjugate prompting runs every model and every transform on the *same* examples, so the unit that
is resampled is the example, not the sample. :class:`PairedBootstrap` draws one ``(n_boot, n_examples)``
matrix of resample counts per task/group and applies it to every (model, transform) cell, so the three
rates inside recovery, ``(ft_T - ft_en) / (pt_en - ft_en)``, move together as they would in a
repeated experiment on fresh examples.

* Error samples (``outcome == "error"``) and examples absent from a cell are excluded from that
  cell's numerator *and* denominator, in every resample, exactly as in the point estimate
  (:func:`harness.analysis.summary.rates.rate_row`). A resample in which a cell has no scored example gives that
  cell no rate (NaN).
* A statistic that is undefined in a resample (a NaN rate, or recovery with
  ``pt_en - ft_en == 0``) drops that resample; the interval is the percentile interval of the
  remaining ones and the number dropped is reported with it.
* Intervals are percentile intervals (2.5th and 97.5th percentiles, linear interpolation).

scipy is imported lazily, by the functions that use it (Wilson, Fisher, Spearman, very large binomial tails),
so that importing this module stays cheap. The exact McNemar test stays hand-written: its integer arithmetic
is exact, where scipy's binomtest is off by up to 2e-14.
"""
from __future__ import annotations

import math
import zlib
from typing import Iterable, NamedTuple, Sequence

import numpy as np

DEFAULT_N_BOOT = 2000
DEFAULT_SEED = 0
LEVEL = 0.95

MCNEMAR_EXACT = "McNemar exact (two-sided binomial on discordant pairs)"
MCNEMAR_CHI2 = "McNemar chi-square with continuity correction (1 df)"


def bootstrap_method(n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> str:
    return f"percentile bootstrap over examples, {n_boot} resamples, seed {seed}"


# -- random numbers -----------------------------------------------------------------------

def make_rng(seed: int = DEFAULT_SEED, key: Iterable[object] = ()) -> np.random.Generator:
    """A generator seeded by ``seed`` and a stable hash of ``key`` (e.g. ``("icl_vs_if", "all")``)."""
    words = [int(seed)] + [zlib.crc32(str(k).encode("utf-8")) for k in key]
    return np.random.default_rng(words)


def resample_counts(n: int, n_boot: int = DEFAULT_N_BOOT, rng: np.random.Generator | None = None) -> np.ndarray:
    """``(n_boot, n)`` int matrix: how often each of ``n`` items is drawn in each resample of size ``n``.

    Drawing indices once as a ``(n_boot, n)`` matrix and counting them lets every statistic that is a
    sum over items be resampled with one matrix product: ``counts @ values``.
    """
    rng = rng if rng is not None else make_rng()
    if n == 0:
        return np.zeros((n_boot, 0), dtype=np.int64)
    idx = rng.integers(0, n, size=(n_boot, n))
    idx += (np.arange(n_boot, dtype=idx.dtype) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n)


# -- intervals ------------------------------------------------------------------------------

TINY_DENOMINATOR = 0.10  # |pt_en - ft_en| below this makes recovery unstable


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (scipy's binomtest); (nan, nan) without trials.

    The bounds are exactly 0 for k = 0 and exactly 1 for k = n, so the interval always contains k/n.
    """
    if n == 0:
        return (math.nan, math.nan)
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    lo = 0.0 if k == 0 else max(0.0, float(ci.low))
    hi = 1.0 if k == n else min(1.0, float(ci.high))
    return (lo, hi)


def recovery(pt_en: float, ft_en: float, ft_t: float) -> tuple[float, str]:
    """(ft_T - ft_en) / (pt_en - ft_en): 0 = no recovery, 1 = back to the pretrained rate; with a note when the
    point estimate is undefined or unstable (see :func:`recovery_draws` for the bootstrap version)."""
    denom = round(pt_en - ft_en, 12)  # 0.3 - 0.2 must not read as 0.0999...
    if any(math.isnan(x) for x in (pt_en, ft_en, ft_t)):
        return math.nan, "missing rates"
    if denom == 0:
        return math.nan, "pretrained and fine-tuned English rates are equal: recovery undefined"
    note = ""
    if abs(denom) < TINY_DENOMINATOR:
        note = f"tiny denominator: |pt_en - ft_en| = {abs(denom):.3f} < {TINY_DENOMINATOR}; recovery is unstable"
    return (ft_t - ft_en) / denom, note


class Interval(NamedTuple):
    lo: float  # NaN when no resample gave a value
    hi: float
    dropped: int  # resamples in which the statistic was undefined
    n_boot: int

    def as_list(self) -> list[float] | None:
        """``[lo, hi]`` for JSON, or None when the interval could not be computed."""
        if math.isnan(self.lo) or math.isnan(self.hi):
            return None
        return [float(self.lo), float(self.hi)]


def percentile_interval(draws: np.ndarray, level: float = LEVEL) -> Interval:
    """Percentile interval of bootstrap draws; NaN/inf draws are dropped and counted."""
    draws = np.asarray(draws, dtype=float)
    ok = np.isfinite(draws)
    dropped = int(draws.size - ok.sum())
    if not ok.any():
        return Interval(math.nan, math.nan, dropped, int(draws.size))
    alpha = (1 - level) / 2
    lo, hi = np.percentile(draws[ok], [100 * alpha, 100 * (1 - alpha)])
    return Interval(float(lo), float(hi), dropped, int(draws.size))


def ratio_draws(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """k / n elementwise, NaN where n == 0."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    out = np.full(np.broadcast(k, n).shape, np.nan)
    np.divide(k, n, out=out, where=n > 0)
    return out


def bootstrap_rate_ci(values: Sequence[float] | np.ndarray, scored: Sequence[bool] | np.ndarray | None = None,
                      n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED, level: float = LEVEL,
                      rng: np.random.Generator | None = None) -> Interval:
    """Percentile bootstrap interval for a rate: mean of ``values`` (0/1) over items with ``scored`` true.

    Items are resampled as a whole; unscored items (errors) stay in the resampled population but
    count in neither numerator nor denominator.
    """
    v = np.asarray(values, dtype=float)
    m = np.ones_like(v) if scored is None else np.asarray(scored, dtype=float)
    counts = resample_counts(v.size, n_boot, rng if rng is not None else make_rng(seed))
    return percentile_interval(ratio_draws(counts @ (v * m), counts @ m), level)


def recovery_draws(pt_en: np.ndarray, ft_en: np.ndarray, ft_t: np.ndarray) -> np.ndarray:
    """(ft_T - ft_en) / (pt_en - ft_en) per resample; NaN where a rate is missing or the denominator is 0.

    The denominator is rounded to 12 decimals like :func:`recovery`.
    """
    denom = np.round(np.asarray(pt_en, dtype=float) - np.asarray(ft_en, dtype=float), 12)
    num = np.asarray(ft_t, dtype=float) - np.asarray(ft_en, dtype=float)
    out = np.full(denom.shape, np.nan)
    np.divide(num, denom, out=out, where=(denom != 0) & np.isfinite(denom) & np.isfinite(num))
    return out


class PairedBootstrap:
    """One resample of examples shared by every (model, transform) cell of a task/group.

    ``cell_rates(k, n)`` takes per-example counts for a cell (``k``: samples with the label,
    ``n``: scored samples; both of shape ``(n_examples,)``, zero where the example is missing or
    failed) and returns the ``(n_boot,)`` resampled rates, NaN where a resample has no scored
    sample for the cell.
    """

    def __init__(self, example_ids: Sequence[str], n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED,
                 key: Iterable[object] = ()):
        self.example_ids = list(example_ids)
        self.index = {e: i for i, e in enumerate(self.example_ids)}
        self.n_boot = n_boot
        self.seed = seed
        self.counts = resample_counts(len(self.example_ids), n_boot, make_rng(seed, key)).astype(float)

    def vector(self, per_example: dict[str, float]) -> np.ndarray:
        out = np.zeros(len(self.example_ids))
        for e, v in per_example.items():
            out[self.index[e]] += v
        return out

    def sums(self, matrix: np.ndarray) -> np.ndarray:
        """``(n_examples, m)`` -> ``(n_boot, m)`` resampled column sums (one matrix product)."""
        return self.counts @ np.asarray(matrix, dtype=float)

    def cell_rates(self, k: np.ndarray, n: np.ndarray) -> np.ndarray:
        s = self.sums(np.stack([k, n], axis=1))
        return ratio_draws(s[:, 0], s[:, 1])


# -- paired tests ---------------------------------------------------------------------------

class TestResult(NamedTuple):
    test: str  # the test's name, as it should appear in a report
    statistic: float
    p: float
    b: int  # discordant pairs: a only (McNemar) / positive differences (permutation)
    c: int  # discordant pairs: b only / negative differences


TestResult.__test__ = False  # not a pytest class


def binom_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic) up to n = 20000."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if n > 20000:
        from scipy.stats import binom

        return float(binom.cdf(k, n, 0.5))
    term, total = 1, 1  # comb(n, 0)
    for i in range(k):
        term = term * (n - i) // (i + 1)
        total += term
    return total / (1 << n)  # int / int is correctly rounded however large


def chi2_sf_1df(x: float) -> float:
    """Upper tail of the chi-square distribution with 1 degree of freedom: erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2))


def mcnemar(b: int, c: int, method: str = "exact") -> TestResult:
    """McNemar's test for a paired 2x2 table from its discordant cells ``b`` (a only) and ``c`` (b only).

    * ``method="exact"``: two-sided binomial test on the ``b + c`` discordant pairs,
      ``p = min(1, 2 * P(X <= min(b, c)))``, X ~ Binomial(b + c, 1/2).
    * ``method="chi2"``: chi-square with Edwards' continuity correction,
      ``(max(0, |b - c| - 1))^2 / (b + c)`` on 1 df (the max only matters when b == c, where it gives p = 1).

    No discordant pairs gives p = 1.
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError("McNemar counts must be non-negative")
    n = b + c
    if method == "exact":
        p = 1.0 if n == 0 else min(1.0, 2 * binom_cdf_half(min(b, c), n))
        return TestResult(MCNEMAR_EXACT, float(min(b, c)), p, b, c)
    if method == "chi2":
        if n == 0:
            return TestResult(MCNEMAR_CHI2, 0.0, 1.0, b, c)
        stat = max(0, abs(b - c) - 1) ** 2 / n
        return TestResult(MCNEMAR_CHI2, stat, chi2_sf_1df(stat), b, c)
    raise ValueError(f"unknown McNemar method {method!r} (exact or chi2)")


def permutation_name(exact: bool, n_perm: int, seed: int) -> str:
    if exact:
        return "paired sign-flip permutation test (exact, two-sided)"
    return f"paired sign-flip permutation test (two-sided, {n_perm} random sign flips, seed {seed})"


def paired_permutation(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_perm: int = 10000,
                       seed: int = DEFAULT_SEED, exact: bool | None = None, max_exact: int = 16) -> TestResult:
    """Two-sided sign-flip permutation test on paired differences ``d = b - a``.

    Under H0 each difference is symmetric around 0, so its sign can be flipped. The statistic is
    ``|sum(d)|``; zero differences do not change it and are left out. With ``m`` non-zero
    differences, ``exact=None`` enumerates all ``2**m`` sign patterns when ``m <= max_exact``
    (p = share of patterns with ``|sum| >= observed``), otherwise draws ``n_perm`` random patterns
    with the given seed and uses ``p = (1 + hits) / (1 + n_perm)``.
    """
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.ndim != 1:
        raise ValueError("paired_permutation takes two 1-d sequences of the same length")
    d = d[d != 0]
    m = d.size
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    observed = abs(float(d.sum()))
    if exact is None:
        exact = m <= max_exact
    name = permutation_name(exact, n_perm, seed)
    if m == 0:
        return TestResult(name, 0.0, 1.0, pos, neg)
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if exact:
        if m > 24:
            raise ValueError(f"exact enumeration of 2**{m} sign patterns is too large; use exact=False")
        patterns = ((np.arange(1 << m)[:, None] >> np.arange(m)) & 1) * 2 - 1  # (2**m, m) of +-1
        sums = np.abs(patterns @ d)
        p = float((sums >= observed - tol).mean())
    else:
        rng = make_rng(seed)
        hits = 0
        chunk = max(1, min(n_perm, 2_000_000 // max(m, 1)))
        done = 0
        while done < n_perm:
            size = min(chunk, n_perm - done)
            signs = rng.integers(0, 2, size=(size, m)) * 2 - 1
            hits += int((np.abs(signs @ d) >= observed - tol).sum())
            done += size
        p = (1 + hits) / (1 + n_perm)
    return TestResult(name, observed, min(1.0, p), pos, neg)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values; None/NaN entries stay None and do not count in the family."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    out: list[float | None] = [None] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


# -- correlation ----------------------------------------------------------------------------

class SpearmanResult(tuple):
    """``(rho, p)`` like scipy's result (so ``rho, p = spearman(x, y)`` works), plus ``.n`` pairs used.

    ``p`` is two-sided, from scipy.stats.spearmanr (t approximation with n - 2 df).
    """

    def __new__(cls, rho: float, p: float, n: int) -> "SpearmanResult":
        obj = super().__new__(cls, (rho, p))
        obj.n = n
        return obj

    @property
    def rho(self) -> float:
        return self[0]

    @property
    def p(self) -> float:
        return self[1]

    def __repr__(self) -> str:
        return f"SpearmanResult(rho={self.rho!r}, p={self.p!r}, n={self.n!r})"


def spearman(x: Sequence[float], y: Sequence[float]) -> SpearmanResult:
    """Spearman rank correlation with average ranks for ties, and its two-sided p-value.

    Pairs where either value is NaN are dropped. Fewer than 3 pairs, or a constant input, gives NaN.
    """
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError("spearman takes two 1-d sequences of the same length")
    ok = ~(np.isnan(xa) | np.isnan(ya))
    xa, ya = xa[ok], ya[ok]
    n = int(xa.size)
    if n < 3 or np.all(xa == xa[0]) or np.all(ya == ya[0]):
        return SpearmanResult(math.nan, math.nan, n)
    from scipy.stats import spearmanr

    res = spearmanr(xa, ya)
    return SpearmanResult(float(res.statistic), float(res.pvalue), n)


def spearman_note(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None, str]:
    """(rho, p, note) for JSON: rho and p are None, and the note says why, when undefined (fewer than 3 points,
    or a constant side)."""
    if len(x) < 3:
        return None, None, f"only {len(x)} points"
    if len(set(x)) < 2 or len(set(y)) < 2:
        return None, None, "one side is constant"
    rho, p = spearman(x, y)
    if not math.isfinite(rho):
        return None, None, "undefined"
    return float(rho), (float(p) if math.isfinite(p) else None), ""


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa (Cohen 1960) of two raters' labels on the same items: ``(p_o - p_e) / (1 - p_e)``, with
    ``p_o`` the observed agreement and ``p_e`` the agreement expected from each rater's label frequencies.
    NaN when undefined: no items, or ``p_e == 1`` (both raters gave every item one and the same label)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} labels against {len(b)}")
    n = len(a)
    if n == 0:
        return math.nan
    p_o = sum(x == y for x, y in zip(a, b)) / n
    p_e = sum(list(a).count(c) * list(b).count(c) for c in set(a) | set(b)) / (n * n)
    return math.nan if p_e == 1 else (p_o - p_e) / (1 - p_e)


# -- means --------------------------------------------------------------------------------------

def bootstrap_mean_ci(values: Sequence[float], key: Sequence[object] = (), resamples: int = DEFAULT_N_BOOT,
                      seed: int = DEFAULT_SEED) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean and its 95% percentile-bootstrap interval, resampling items.

    The draws are seeded by ``seed`` and a stable hash of ``key`` (the cell), so a cell's interval does not
    depend on the order in which cells are computed.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    counts = resample_counts(x.size, resamples, make_rng(seed, key))
    iv = percentile_interval(counts @ x / x.size)
    return mean, iv.lo, iv.hi


# -- exact and asymptotic tests on two proportions ----------------------------------------------

def fisher_one_sided(k_now: int, n_now: int, k_base: int, n_base: int, worse: str) -> float:
    """One-sided Fisher exact p-value that the current rate is lower (``worse="lower"``) or higher than the
    baseline's, given both sets of counts (scipy's fisher_exact: the hypergeometric tail on the current successes)."""
    from scipy.stats import fisher_exact

    table = [[k_now, n_now - k_now], [k_base, n_base - k_base]]
    return float(fisher_exact(table, alternative="less" if worse == "lower" else "greater").pvalue)


def two_proportion_z(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """Two-sided p of the pooled two-proportion z-test; None without data."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k2 / n2 - k1 / n1) / se
    return math.erfc(abs(z) / math.sqrt(2))


# -- token-weighted ratios over resampled chunks (forgetting) -------------------------------------

def bootstrap_weights(n: int, seed: int, n_boot: int = DEFAULT_N_BOOT):
    """(n_boot x n) resampling counts of n units, seeded: row b says how often unit i is drawn."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def ratio_ci(sums, counts, weights) -> dict[str, float]:
    """Token-weighted mean sum(sums)/sum(counts) with a 95% percentile interval over resampled chunks."""
    sums, counts = np.asarray(sums, float), np.asarray(counts, float)
    mean = float(sums.sum() / counts.sum()) if counts.sum() else math.nan
    if len(sums) < 2:
        return {"mean": mean, "lo": mean, "hi": mean}
    den = weights @ counts
    boot = (weights @ sums)[den > 0] / den[den > 0]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"mean": mean, "lo": float(lo), "hi": float(hi)}


def paired_ratio_diff(a, b, weights, col: int) -> dict[str, float]:
    """Difference of token-weighted means (a - b) over the same chunks, paired bootstrap interval."""
    if len(a) == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan}
    mean = float(a[:, col].sum() / a[:, 0].sum() - b[:, col].sum() / b[:, 0].sum())
    if len(a) < 2:
        return {"mean": mean, "lo": mean, "hi": mean}
    da, db = weights @ a[:, 0], weights @ b[:, 0]
    ok = (da > 0) & (db > 0)
    boot = (weights @ a[:, col])[ok] / da[ok] - (weights @ b[:, col])[ok] / db[ok]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"mean": mean, "lo": float(lo), "hi": float(hi)}


__all__ = [
    "DEFAULT_N_BOOT", "DEFAULT_SEED", "MCNEMAR_CHI2", "MCNEMAR_EXACT", "TINY_DENOMINATOR", "Interval",
    "PairedBootstrap", "SpearmanResult", "TestResult", "binom_cdf_half", "bootstrap_mean_ci", "bootstrap_method",
    "bootstrap_rate_ci", "bootstrap_weights", "chi2_sf_1df", "fisher_one_sided", "holm", "make_rng", "mcnemar",
    "paired_permutation", "paired_ratio_diff", "percentile_interval", "ratio_ci", "ratio_draws", "recovery",
    "recovery_draws", "resample_counts", "spearman", "spearman_note", "two_proportion_z", "wilson",
]
