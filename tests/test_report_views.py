"""report.md and report.html from one view: the same numbers in both, Markdown tables that stay tables, and
the probe described in the task's own words (a task registered here, run on the tiny model)."""
from __future__ import annotations

import json
import re

import pytest

from harness.outputs.markdown import render_markdown
from harness.outputs.views import build_report
from harness.outputs.write import report_files, write_views
from harness.pipeline.runner import run
from harness.pipeline.spec import RunSpec
from harness.registry import TASKS
from harness.task import Task
from harness.types import Example, Rendered, Sampling, Score

from .test_html import make_manifest, make_samples, make_summary, sample_json

WORDING = {"target": "Agree", "other": "Decline", "description": "the answers \" yes\" (Agree) and \" no\" (Decline)"}


class _YesNo(Task):
    """A toy yes/no task whose probe weighs " yes" against " no"."""

    name = "toy_yesno"
    labels = ("yes", "no", "other")
    primary_label = "yes"
    sampling = Sampling(max_new_tokens=3)
    probe_wording = WORDING

    def examples(self, seed: int) -> list[Example]:
        return [Example(f"q-{i}", ("easy", "hard")[i % 2], {"i": i}) for i in range(6)]

    def render(self, example: Example, rendering: str = "en") -> Rendered:
        return Rendered(f"Question {example.data['i']}: is the sky blue? Answer yes or no.\nAnswer:", {}, rendering)

    def score(self, response: str, reference: dict) -> Score:
        word = (response.split() or [""])[0].lower()
        return Score(word if word in ("yes", "no") else "other")

    def probe_continuations(self, reference: dict) -> dict[str, str]:
        return {"yes": " yes", "no": " no"}


@pytest.fixture
def yesno_run(tiny_spec_kwargs):
    TASKS.register("toy_yesno", _YesNo)
    try:
        spec = RunSpec(transforms=["identity", "leetspeak"], limit=6, **{**tiny_spec_kwargs, "tasks": ["toy_yesno"]})
        yield run(spec, progress=False)
    finally:
        TASKS._entries.pop("toy_yesno", None)  # keep the registry as other tests expect it


def test_a_task_names_its_own_probe(yesno_run):
    manifest = json.loads((yesno_run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tasks"]["toy_yesno"]["probe_wording"] == WORDING
    md = (yesno_run / "report.md").read_text(encoding="utf-8")
    assert "### Task-inference probe: P(Agree)" in md
    assert "P(Agree) = p(Agree) / (p(Agree) + p(Decline)), from the log-likelihoods of the answers \" yes\" (Agree)" in md
    assert "| Conjugate | Group | Pretrained mean P(Agree) | Fine-tuned mean P(Agree) | Greedy yes pt | Greedy yes ft |" in md
    assert "](toy_yesno-probe.png)" in md and (yesno_run / "toy_yesno-probe.png").exists()
    html = (yesno_run / "report.html").read_text(encoding="utf-8")
    assert "Probe: P(Agree) from log-likelihoods" in html
    assert sample_json(html)["probe_names"] == {"toy_yesno": {"yes": "Agree", "no": "Decline"}}
    for text in (md, re.sub(r"data:image/png;base64,[^\"]+", "", html)):
        assert "ICL" not in text and "icl" not in text


def test_an_old_manifest_gets_neutral_probe_words(yesno_run):
    path = yesno_run / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["tasks"]["toy_yesno"]["probe_wording"]  # as written before tasks had probe_wording
    path.write_text(json.dumps(manifest), encoding="utf-8")
    write_views(yesno_run)
    md = (yesno_run / "report.md").read_text(encoding="utf-8")
    assert "### Task-inference probe: P(YES)" in md  # the probe rows' target
    assert "P(YES) = p(YES) / (p(YES) + p(NO)), from the log-likelihoods of the task's two competing continuations" in md
    html = (yesno_run / "report.html").read_text(encoding="utf-8")
    assert "Probe: P(YES)" in html and sample_json(html)["probe_names"] == {"toy_yesno": {"yes": "YES", "no": "NO"}}


# -- one view, two renderings ----------------------------------------------------------------

@pytest.fixture(scope="module")
def crafted():
    samples = make_samples()
    manifest, summary = make_manifest(), make_summary(samples)
    files, plots = report_files(manifest, summary, samples)
    return build_report(manifest, summary, samples, plots), files


def test_both_reports_show_the_same_numbers(crafted):
    view, files = crafted
    md, html = files["report.md"], files["report.html"]
    assert md == render_markdown(view)
    checked = 0
    for t in view["tasks"]:
        for r in t["rates"]["rows"]:
            assert (f"| {r['name']} | {r['pt']} | {r['ft']} | {r['drop']} | {r['recovery']} | {r['recovery_ci']} | "
                    f"{r['n_pt']}/{r['n_ft']} |") in md
            for cell in (r["pt"], r["ft"], r["drop"], r["recovery_ci"], r["n_pt"]):
                if cell.href:
                    assert f'href="{cell.href.replace("&", "&amp;")}"' in html and f">{cell.text}</a>" in html
                    checked += 1
        for r in t["tests"]["rows"] if t["tests"] else []:
            assert f"| {r['comparison']} | {r['where']} | {r['n']} | {r['a_only']} | {r['b_only']} | {r['test']} | {r['p']} |" in md
            assert f">{r['p']}</a>" in html
    assert checked > 20


def _pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_tables_survive_pipes_and_are_not_html_escaped():
    samples = make_samples()
    for s in samples:
        if s.transform == "leetspeak":
            s.transform = "leet|speak"
    manifest = make_manifest()
    manifest["spec"]["transforms"] = ["identity", "lang:fr", "leet|speak"]
    manifest["notes"].append("two\nlines")
    from harness.analysis.summary import summarize

    summary = summarize(samples, {"icl_vs_if": ("icl", "if", "other"), "refusal": ("refuse", "answer", "ambiguous")},
                        {"icl_vs_if": "icl", "refusal": "refuse"}, manifest["spec"]["transforms"])
    md = render_markdown(build_report(manifest, summary))
    assert "| leet\\|speak |" in md
    assert "> a note with <b>markup</b> & an ampersand" in md  # Markdown, not HTML: nothing escaped
    tables = re.findall(r"((?:^\|.*\n)+)", md, re.M)
    assert len(tables) >= 8
    for table in tables:
        lines = table.splitlines()
        assert len({_pipes(line) for line in lines}) == 1, table


def test_report_md_without_samples_or_plots_still_renders():
    samples = make_samples()
    view = build_report(make_manifest(), make_summary(samples, extended=False))
    md = render_markdown(view)
    assert view["browser"] is None and "![" not in md and "### Paired tests" not in md
    assert "| English | pretrained |" in md  # all outcomes


# -- a section in one file: per-config agreement ------------------------------------------------

def test_config_agreement_section_adds_its_key_last_and_both_reports_show_it():
    from harness.analysis.summary import summarize
    from harness.registry import SECTIONS

    samples = make_samples()
    labels = {"icl_vs_if": ("icl", "if", "other"), "refusal": ("refuse", "answer", "ambiguous")}
    primary = {"icl_vs_if": "icl", "refusal": "refuse"}
    transforms = ["identity", "lang:fr", "leetspeak"]
    summary = summarize(samples, labels, primary, transforms)
    assert list(summary)[-4:] == ["config_agreement", "metrics", "metric_recovery", "judge"]  # metrics: same order, after by name
    entry = SECTIONS._entries.pop("config_agreement")
    try:
        without = summarize(samples, labels, primary, transforms)
    finally:
        SECTIONS._entries["config_agreement"] = entry
    assert json.dumps(without) == json.dumps({k: v for k, v in summary.items() if k != "config_agreement"})

    rows = summary["config_agreement"]
    assert {r["task"] for r in rows} == {"icl_vs_if"}  # refusal has no configs
    assert {(r["transform"], r["group"]) for r in rows} == {(t, g) for t in transforms for g in ("capslock-math", "repeat-startblank")}
    by_hand = {}
    for s in samples:  # the first scored sample per (model, example), as the section pairs them
        if s.task == "icl_vs_if" and s.transform == "leetspeak" and s.group == "repeat-startblank" and s.outcome != "error":
            by_hand.setdefault(s.model, {}).setdefault(s.example_id, s.outcome)
    both = [e for e in by_hand["finetuned"] if e in by_hand["pretrained"]]
    agree = sum(by_hand["finetuned"][e] == by_hand["pretrained"][e] for e in both)
    leet = next(r for r in rows if (r["transform"], r["group"]) == ("leetspeak", "repeat-startblank"))
    assert (leet["n"], leet["ft_T_vs_pt_T_k"]) == (len(both), agree) and leet["ft_T_vs_pt_T"] == pytest.approx(agree / len(both))

    files, _ = report_files(make_manifest(), summary, samples)
    md, html = files["report.md"], files["report.html"]
    assert "### Agreement by config\n" in md and "| Conjugate | capslock-math | repeat-startblank |" in md
    cell = f"{100 * leet['ft_T_vs_pt_T']:.1f} ["
    assert re.search(r"^\| Leetspeak \| .* \| " + re.escape(cell), md, re.M)
    assert 'id="task-icl_vs_if-config-agreement"' in html
    assert 'href="#samples?task=icl_vs_if&amp;transform=leetspeak&amp;group=repeat-startblank"' in html
