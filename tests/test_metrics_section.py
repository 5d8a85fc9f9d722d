"""The ``metrics`` summary section (per-sample metric means of tasks that score themselves with several metrics,
such as lm-eval tasks) and its report view: crafted samples, no model."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from harness.analysis import stats
from harness.analysis.summary import summarize
from harness.outputs.write import report_files
from harness.types import Sample

from .test_html import make_manifest, make_samples

TASK = "toy_lm"
LABELS = {TASK: ("correct", "incorrect")}
PRIMARY = {TASK: "correct"}
TRANSFORMS = ["identity", "leetspeak"]
N = 30
ACC_P = {("pretrained", "identity"): 0.9, ("finetuned", "identity"): 0.4,
         ("pretrained", "leetspeak"): 0.8, ("finetuned", "leetspeak"): 0.7}


def metric_samples(n_errors: int = 2) -> list[Sample]:
    """Two models x (identity, leetspeak) x 30 examples; ``acc,none`` 0/1, ``f1,none`` in [0, 1]. The first
    ``n_errors`` examples of the fine-tuned model under leetspeak failed (no metrics)."""
    rng = np.random.default_rng(7)
    samples = []
    for transform in TRANSFORMS:
        for model in ("pretrained", "finetuned"):
            for i in range(N):
                acc = float(rng.random() < ACC_P[(model, transform)])
                f1 = round(float(rng.uniform(0.3, 1.0)) * (0.6 if model == "finetuned" else 1.0), 6)
                s = Sample(model=model, task=TASK, transform=transform, example_id=f"ex-{i:03d}", group="all",
                           mode="native", prompt=f"q {i}", transformed_prompt=f"q {i}", reference={},
                           response="a", inverted="a", outcome="correct" if acc else "incorrect",
                           metrics={"acc,none": acc, "f1,none": f1})
                if model == "finetuned" and transform == "leetspeak" and i < n_errors:
                    s.outcome, s.error, s.metrics, s.response = "error", "backend failed", None, None
                samples.append(s)
    return samples


def values(samples, model, transform, metric):
    return [s.metrics[metric] for s in samples
            if (s.model, s.transform) == (model, transform) and s.outcome != "error" and s.metrics]


@pytest.fixture(scope="module")
def data():
    samples = metric_samples()
    return samples, summarize(samples, LABELS, PRIMARY, TRANSFORMS, n_boot=500, seed=3)


def row(summary, model, transform, metric):
    return next(r for r in summary["metrics"]
                if (r["model"], r["transform"], r["metric"]) == (model, transform, metric))


def test_rows_cover_every_cell_with_means_and_errors_left_out(data):
    samples, summary = data
    built_in = [k for k in summary if k in ("metrics", "metric_recovery", "judge")]  # a section plugin may add keys
    assert built_in == ["metrics", "metric_recovery", "judge"]
    assert len(summary["metrics"]) == 2 * 2 * 2
    assert set(summary["metrics"][0]) == {"task", "transform", "model", "metric", "n", "mean", "lo", "hi", "binary"}
    for r in summary["metrics"]:
        v = values(samples, r["model"], r["transform"], r["metric"])
        assert r["task"] == TASK and r["n"] == len(v) and r["mean"] == pytest.approx(sum(v) / len(v))
        assert r["lo"] <= r["mean"] <= r["hi"]
    assert row(summary, "finetuned", "leetspeak", "acc,none")["n"] == N - 2  # the two errors do not count
    assert row(summary, "pretrained", "leetspeak", "acc,none")["n"] == N


def test_binary_metrics_use_wilson_and_others_a_seeded_bootstrap(data):
    samples, summary = data
    acc = row(summary, "finetuned", "identity", "acc,none")
    k = int(sum(values(samples, "finetuned", "identity", "acc,none")))
    assert acc["binary"] is True and (acc["lo"], acc["hi"]) == stats.wilson(k, N)
    f1 = row(summary, "finetuned", "identity", "f1,none")
    assert f1["binary"] is False and f1["lo"] < f1["mean"] < f1["hi"]
    again = summarize(samples, LABELS, PRIMARY, TRANSFORMS, n_boot=500, seed=3)
    assert json.dumps(again["metrics"]) == json.dumps(summary["metrics"])  # deterministic for a seed
    assert json.dumps(again["metric_recovery"]) == json.dumps(summary["metric_recovery"])
    other = summarize(samples, LABELS, PRIMARY, TRANSFORMS, n_boot=500, seed=4)
    f1_other = row(other, "finetuned", "identity", "f1,none")
    assert f1_other["mean"] == f1["mean"] and (f1_other["lo"], f1_other["hi"]) != (f1["lo"], f1["hi"])


def test_recovery_is_the_rate_formula_on_the_means_with_a_paired_interval(data):
    _, summary = data
    rec = {(r["transform"], r["metric"]): r for r in summary["metric_recovery"]}
    assert set(rec) == {(t, m) for t in TRANSFORMS for m in ("acc,none", "f1,none")}
    for metric in ("acc,none", "f1,none"):
        base = rec[("identity", metric)]
        assert base["note"] == "baseline" and base["ci"] is None
        r = rec[("leetspeak", metric)]
        means = {(m, t): row(summary, m, t, metric)["mean"] for m in ("pretrained", "finetuned") for t in TRANSFORMS}
        want, _ = stats.recovery(means[("pretrained", "identity")], means[("finetuned", "identity")],
                                 means[("finetuned", "leetspeak")])
        assert r["recovery"] == pytest.approx(want)
        assert (r["pretrained"], r["finetuned"]) == (means[("pretrained", "leetspeak")], means[("finetuned", "leetspeak")])
        assert (r["pt_en"], r["ft_en"]) == (means[("pretrained", "identity")], means[("finetuned", "identity")])
        assert r["ci"][0] <= r["recovery"] <= r["ci"][1] and r["ci_method"] == stats.bootstrap_method(500, 3)


def test_undefined_numbers_are_none_not_nan():
    samples = metric_samples(n_errors=0)
    for s in samples:  # equal English means for both models: recovery undefined
        if s.transform == "identity":
            s.metrics = {"acc,none": 1.0, "f1,none": 0.5}
    summary = summarize(samples, LABELS, PRIMARY, TRANSFORMS, n_boot=200)
    leet = [r for r in summary["metric_recovery"] if r["transform"] == "leetspeak"]
    assert leet and all(r["recovery"] is None and r["ci"] is None and "undefined" in r["note"] for r in leet)
    assert "NaN" not in json.dumps(summary["metrics"]) + json.dumps(summary["metric_recovery"])


def test_runs_without_metric_samples_get_empty_lists():
    from .test_html import LABELS as HTML_LABELS, PRIMARY as HTML_PRIMARY, TRANSFORMS as HTML_TRANSFORMS

    summary = summarize(make_samples(), HTML_LABELS, HTML_PRIMARY, HTML_TRANSFORMS)
    assert summary["metrics"] == [] and summary["metric_recovery"] == []
    only_errors = [s for s in metric_samples(n_errors=N) if s.outcome == "error"]
    summary = summarize(only_errors, LABELS, PRIMARY, TRANSFORMS)
    assert summary["metrics"] == [] and summary["metric_recovery"] == []


def test_both_reports_show_one_metrics_table_per_metric(data):
    samples, summary = data
    manifest = make_manifest()
    manifest["spec"].update(tasks=[TASK], transforms=TRANSFORMS)
    manifest.update(task_labels={TASK: list(LABELS[TASK])}, primary_labels=PRIMARY)
    files, _ = report_files(manifest, summary, samples)
    md, html = files["report.md"], files["report.html"]
    assert "### Metrics\n" in md and "#### acc,none\n" in md and "#### f1,none\n" in md
    assert "| Conjugate | pretrained (%) | fine-tuned (%) | recovery |" in md  # acc is 0/1: in %
    assert "| Conjugate | pretrained | fine-tuned | recovery |" in md
    acc = row(summary, "pretrained", "leetspeak", "acc,none")
    rec = next(r for r in summary["metric_recovery"] if (r["transform"], r["metric"]) == ("leetspeak", "acc,none"))
    cell = f"{100 * acc['mean']:.1f} [{100 * acc['lo']:.1f}, {100 * acc['hi']:.1f}]"
    rcell = f"{rec['recovery']:.2f} [{rec['ci'][0]:.2f}, {rec['ci'][1]:.2f}]"
    assert re.search(r"^\| Leetspeak \| " + re.escape(cell) + r" \| .* \| " + re.escape(rcell) + r" \|$", md, re.M)
    assert "| English | " in md and "(baseline)" in md
    assert 'id="task-toy_lm-metrics"' in html and "<h4>f1,none</h4>" in html
    assert 'href="#samples?task=toy_lm&amp;transform=leetspeak&amp;model=pretrained"' in html


def test_reports_without_metric_rows_leave_the_section_out():
    from .test_html import LABELS as HTML_LABELS, PRIMARY as HTML_PRIMARY, TRANSFORMS as HTML_TRANSFORMS

    samples = make_samples()
    summary = summarize(samples, HTML_LABELS, HTML_PRIMARY, HTML_TRANSFORMS)
    files, _ = report_files(make_manifest(), summary, samples)
    assert "### Metrics" not in files["report.md"] and "-metrics\"" not in files["report.html"]
    assert "### Agreement by config" in files["report.md"]  # a single-table section renders as before
