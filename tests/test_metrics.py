"""Wilson intervals, recovery, and summarize() on hand-built samples."""
from __future__ import annotations

import math

import pytest

from harness.analysis.metrics import TINY_DENOMINATOR, rate_row, recovery, summarize, wilson
from harness.types import ERROR, Sample

LABELS = ("icl", "if", "other")


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


# -- rate_row and summarize -------------------------------------------------------------

def sample(model: str, transform: str, group: str, outcome: str, i: int = 0, error: str | None = None) -> Sample:
    return Sample(model=model, task="t", transform=transform, example_id=f"{group}-{i}", group=group,
                  mode="native", prompt="p", transformed_prompt="p", reference={}, response=None if error else "r",
                  outcome=outcome, error=error)


def cell(model: str, transform: str, outcomes: list[str], errors: int = 0) -> list[Sample]:
    """Samples alternating over groups "a" and "b", plus ``errors`` failed ones in group "a"."""
    out = [sample(model, transform, "ab"[i % 2], o, i) for i, o in enumerate(outcomes)]
    out += [sample(model, transform, "a", ERROR, 100 + i, error="backend error: boom") for i in range(errors)]
    return out


def test_rate_row_excludes_errors_from_n():
    ss = cell("pretrained", "identity", ["icl", "icl", "if", "other"], errors=2)
    row = rate_row(ss, LABELS)
    assert row["n"] == 4 and row["errors"] == 2
    assert row["rates"]["icl"]["k"] == 2 and row["rates"]["icl"]["rate"] == 0.5
    assert (row["rates"]["icl"]["lo"], row["rates"]["icl"]["hi"]) == wilson(2, 4)
    assert row["rates"]["other"]["rate"] == 0.25


def test_rate_row_of_only_errors():
    row = rate_row(cell("finetuned", "identity", [], errors=3), LABELS)
    assert row["n"] == 0 and row["errors"] == 3
    assert all(math.isnan(r["rate"]) for r in row["rates"].values())


@pytest.fixture
def summary():
    samples = (
        cell("pretrained", "identity", ["icl", "icl", "icl", "other"], errors=1)  # icl 3/4
        + cell("finetuned", "identity", ["if", "if", "if", "icl"])  # icl 1/4
        + cell("pretrained", "leetspeak", ["icl", "icl", "icl", "icl"])  # icl 4/4
        + cell("finetuned", "leetspeak", ["icl", "if", "icl", "if"], errors=2)  # icl 2/4
    )
    return summarize(samples, {"t": LABELS}, {"t": "icl"}, ["identity", "leetspeak"])


def row(summary, model, transform, group="all"):
    (r,) = [r for r in summary["rows"] if (r["model"], r["transform"], r["group"]) == (model, transform, group)]
    return r


def test_summarize_rates_and_errors(summary):
    r = row(summary, "pretrained", "identity")
    assert r["n"] == 4 and r["errors"] == 1
    assert r["rates"]["icl"]["rate"] == 0.75 and r["rates"]["other"]["rate"] == 0.25 and r["rates"]["if"]["k"] == 0
    r = row(summary, "finetuned", "identity")
    assert (r["n"], r["errors"], r["rates"]["icl"]["rate"], r["rates"]["if"]["rate"]) == (4, 0, 0.25, 0.75)
    r = row(summary, "finetuned", "leetspeak")
    assert (r["n"], r["errors"], r["rates"]["icl"]["k"]) == (4, 2, 2)


def test_summarize_group_rows_add_up(summary):
    for model in ("pretrained", "finetuned"):
        for transform in ("identity", "leetspeak"):
            total = row(summary, model, transform)
            a, b = row(summary, model, transform, "a"), row(summary, model, transform, "b")
            assert a["n"] + b["n"] == total["n"]
            assert a["errors"] + b["errors"] == total["errors"]
            assert b["errors"] == 0  # failed samples were put in group "a"
    # pretrained identity: group a has icl, icl (+1 error), group b has icl, other
    assert row(summary, "pretrained", "identity", "a")["rates"]["icl"]["rate"] == 1.0
    assert row(summary, "pretrained", "identity", "b")["rates"]["icl"]["rate"] == 0.5


def test_summarize_row_order_puts_baseline_and_all_first(summary):
    keys = [(r["transform"], r["group"]) for r in summary["rows"]]
    assert keys[0] == ("identity", "all")
    assert keys.index(("leetspeak", "all")) > max(i for i, k in enumerate(keys) if k[0] == "identity")


def test_summarize_recovery(summary):
    rec = {(r["transform"], r["group"]): r for r in summary["recovery"]}
    base = rec[("identity", "all")]
    assert base["note"] == "baseline" and base["recovery"] == 0.0
    leet = rec[("leetspeak", "all")]
    assert leet["label"] == "icl"
    assert (leet["pt_en"], leet["ft_en"], leet["pretrained"], leet["finetuned"]) == (0.75, 0.25, 1.0, 0.5)
    assert leet["drop"] == pytest.approx(0.5)
    assert leet["recovery"] == pytest.approx(0.5)  # (0.5 - 0.25) / (0.75 - 0.25)
    assert leet["note"] == ""
    assert {g for (_, g) in rec} == {"all", "a", "b"}
