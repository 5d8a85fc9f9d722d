"""summary.json from hand-built samples: the sections (rows, recovery, agreement, tests), their registry and order."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from harness.analysis import stats
from harness.analysis.stats import wilson
from harness.analysis.summary import summarize
from harness.analysis.summary.rates import rate_row
from harness.outputs.markdown import render_report
from harness.types import ERROR, Sample

LABELS = ("icl", "if", "other")


# -- rate_row and summarize -------------------------------------------------------------

BUILTIN_KEYS = ("rows", "recovery", "agreement", "tests", "probe", "probe_correlation", "config_agreement", "metrics",
                "metric_recovery", "judge")


def builtin(summary: dict, also: tuple[str, ...] = ()) -> list[str]:
    """The summary's keys written by built-in sections (and ``also``), in order: an installed section plugin adds its own."""
    return [k for k in summary if k in BUILTIN_KEYS or k in also]


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


# -- recovery intervals, agreement and paired tests ------------------------------------------------------

def paired_sample(model, transform, i, outcome, task="t", group="g"):
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
    samples = [paired_sample(m, tr, i, o) for (m, tr), outs in OUTCOMES.items() for i, o in enumerate(outs)]
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
    samples = [paired_sample(m, tr, i, o) for (m, tr), os_ in outs.items() for i, o in enumerate(os_)]
    s = summarize(samples, {"t": LABELS}, {"t": "icl"}, ["identity", "leetspeak"])
    leet = next(r for r in s["recovery"] if (r["transform"], r["group"]) == ("leetspeak", "all"))
    assert leet["recovery"] == pytest.approx(2.0)
    expected = 2000 * (4 / 5) ** 5  # 655 resamples miss e0
    assert abs(leet["ci_dropped"] - expected) < 80
    assert "resamples dropped" in leet["ci_note"]


def test_summarize_undefined_recovery_has_no_ci():
    outs = {("pretrained", "identity"): ["icl", "other"], ("finetuned", "identity"): ["icl", "other"],
            ("pretrained", "leetspeak"): ["icl", "icl"], ("finetuned", "leetspeak"): ["other", "icl"]}
    samples = [paired_sample(m, tr, i, o) for (m, tr), os_ in outs.items() for i, o in enumerate(os_)]
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
                    samples.append(paired_sample(m, tr, i, LABELS[rng.integers(3)], task=task, group=f"g{i % 4}"))
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


# -- sections: registry, order, optional failures ---------------------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"


def fixture_inputs():
    from harness.outputs.rundir import RunDir

    run = RunDir(FIXTURE).read()
    labels = {t: tuple(v) for t, v in run.task_labels().items()}
    return run, (run.samples, labels, {t: run.primary_label(t) for t in labels}, run.manifest.transforms)


def test_summarize_reproduces_a_real_run_byte_for_byte():
    """summary.json of tests/fixtures/run-0.1.0 (written by `conjugate run`, with the probe) from its samples."""
    run, args = fixture_inputs()
    notes: list[str] = []
    summary = summarize(*args, notes=notes)
    assert notes == []
    assert builtin(summary) == ["rows", "recovery", "agreement", "tests", "probe", "probe_correlation",
                                "config_agreement", "metrics", "metric_recovery", "judge"]
    summary.pop("config_agreement")  # added after that run (harness/outputs/views/config_agreement.py), at the end
    assert summary.pop("metrics") == summary.pop("metric_recovery") == []  # likewise; empty without metric samples
    assert summary.pop("judge") == []  # likewise; empty without a judge model
    text = json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n"
    assert text == (FIXTURE / "summary.json").read_text(encoding="utf-8")


@pytest.fixture
def extra_section():
    """Register a section for one test, and remove it again."""
    from harness.registry import SECTIONS

    added = []

    def register(name, fn):
        SECTIONS.register(name, fn)
        added.append(name)

    yield register
    for name in added:
        SECTIONS._entries.pop(name)


def test_a_registered_section_adds_its_keys_in_declared_order(extra_section):
    from harness.analysis.summary import section

    @section(keys=("cells", "cell_count"), order=35)
    def cells(ctx):
        """Reads the rows section and the shared per-example outcomes."""
        assert list(ctx.summary) == ["rows", "recovery", "agreement"]  # what ran before it
        return {"cells": sorted({(r["model"], r["transform"]) for r in ctx.summary["rows"]}),
                "cell_count": len(ctx.outcomes)}

    @section(keys=("last",))
    def last(ctx):
        return {"last": ctx.seed}

    extra_section("zz_last", last)
    extra_section("cells", cells)
    run, args = fixture_inputs()
    summary = summarize(*args, seed=0)
    assert builtin(summary, also=("cells", "cell_count", "last")) == [
        "rows", "recovery", "agreement", "cells", "cell_count", "tests", "probe", "probe_correlation", "config_agreement",
        "metrics", "metric_recovery", "judge", "last"]
    assert summary["cell_count"] == 4 and summary["last"] == 0
    before = json_of(summarize(*args))
    assert {k: v for k, v in json_of(summary).items() if k in before} == before  # the others are untouched


def json_of(summary):
    return json.loads(json.dumps(summary, default=str))


def test_a_failing_optional_section_is_a_note_and_keeps_the_run(extra_section, monkeypatch):
    from harness.analysis.summary import probe as probe_module

    def broken(samples, summary, primary):
        raise RuntimeError("no log-likelihoods")

    monkeypatch.setattr(probe_module, "probe_summary", broken)
    run, args = fixture_inputs()
    notes = ["an earlier note"]
    summary = summarize(*args, notes=notes)
    assert summary["probe"] == [] and summary["probe_correlation"] == [] and summary["rows"]
    assert notes == ["an earlier note", "probe summary failed: RuntimeError: no log-likelihoods"]
    summarize(*args, notes=notes)
    assert len(notes) == 2  # the same failure is noted once


def test_a_required_section_that_breaks_fails_loudly(extra_section):
    from harness.analysis.summary import section

    @section(keys=("declared",))
    def wrong_keys(ctx):
        return {"something_else": 1}

    extra_section("wrong_keys", wrong_keys)
    _, args = fixture_inputs()
    with pytest.raises(ValueError, match=r"returned \['something_else'\], but declared keys \['declared'\]"):
        summarize(*args)


def test_an_unmarked_plugin_is_a_one_line_error(extra_section):
    from harness.errors import ConjugateError

    extra_section("plain", lambda ctx: {})
    _, args = fixture_inputs()
    with pytest.raises(ConjugateError, match="summary section 'plain' .* is not marked with @harness.analysis.summary.section"):
        summarize(*args)


def test_a_plugin_that_fails_to_import_is_a_note(monkeypatch):
    from harness.registry import SECTIONS, Entry

    monkeypatch.setitem(SECTIONS._entries, "gone", Entry("gone", "no_such_module:fn", origin="entry point x"))
    _, args = fixture_inputs()
    notes: list[str] = []
    summary = summarize(*args, notes=notes)
    assert "gone" not in summary and len(notes) == 1 and notes[0].startswith("summary section 'gone' skipped:")
