"""The task guide (docs/writing-a-task.md) works as written.

The example package (docs/examples/conjugate-arith) is pip-installed (built from its own pyproject.toml, so its
entry point in `conjugate.tasks` comes from setuptools) into a folder of its own that goes on PYTHONPATH: a real
install that leaves the shared environment, where other tests run at the same time, untouched; removing the
folder uninstalls it. The guide shows the package's files verbatim, and its test file is run as written.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

try:
    from tests.conftest import ROOT, run_cli
except ImportError:  # bare `pytest`, where the repository root is not on sys.path
    from conftest import ROOT, run_cli

from harness.errors import ConfigError
from harness.task import Task
from harness.types import Example, Rendered, Score

DOC = ROOT / "docs" / "writing-a-task.md"
PACKAGE = ROOT / "docs" / "examples" / "conjugate-arith"
GROUP = "conjugate.tasks"


def code_blocks(lang: str) -> list[str]:
    return [body for tag, body in re.findall(r"^```(\w+)\n(.*?)^```", DOC.read_text(), re.S | re.M) if tag == lang]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example package, pip-installed into its own folder (for PYTHONPATH); removed afterwards."""
    root = tmp_path_factory.mktemp("task-plugin")
    src = root / "src"  # pip builds in the source folder: a copy keeps build/ and *.egg-info out of the repository
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(root / "site"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield root / "site"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def entry(site) -> tuple[str, str]:
    """(task name, module:attr) from the installed distribution's entry_points.txt."""
    info, = site.glob("conjugate_arith-*.dist-info")
    text = (info / "entry_points.txt").read_text()
    section = re.search(rf"^\[{re.escape(GROUP)}\]\n(.*?)(?:^\[|\Z)", text, re.S | re.M)
    assert section, text
    pairs = [line.split("=", 1) for line in section.group(1).splitlines() if "=" in line]
    assert len(pairs) == 1, text
    return pairs[0][0].strip(), pairs[0][1].strip()


@pytest.fixture(scope="module")
def arith(site, entry) -> type[Task]:
    """The installed module's task class, loaded from the install folder (sys.path untouched)."""
    module_name, _, attr = entry[1].partition(":")
    spec = importlib.util.spec_from_file_location(module_name, site / f"{module_name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)


def env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site), "CONJUGATE_CACHE": str(site.parent / "user-cache")}


def test_the_guide_shows_the_package_verbatim():
    pyproject_text = (PACKAGE / "pyproject.toml").read_text()
    assert pyproject_text in code_blocks("toml")
    module_text = (PACKAGE / "conjugate_arith.py").read_text()
    assert module_text in code_blocks("python")
    pyproject = tomllib.loads(pyproject_text)
    assert pyproject["project"]["entry-points"][GROUP] == {"arith": "conjugate_arith:Arith"}
    assert pyproject["tool"]["setuptools"]["py-modules"] == ["conjugate_arith"]
    sources = {p.name for p in PACKAGE.iterdir() if p.suffix in (".py", ".toml", ".cfg", ".txt", ".md")}
    assert sources == {"pyproject.toml", "conjugate_arith.py"}  # every source file is on the page


def test_the_guide_covers_what_an_author_needs():
    text = DOC.read_text()
    for topic in ("examples(seed)", "render(example, rendering)", "score(response, reference)", "`Example`",
                  "`Rendered`", "`Score`", "`labels`", "`primary_label`", "`renderings`", "interleave",
                  "--limit", "probe_continuations", "probe_wording", "`version`", "--rescore", "ConfigError",
                  "RenderFailed", "pip install -e .", "$ conjugate list tasks", "--task-option arith.strict=true"):
        assert topic in text, topic
    assert "as the user wrote them" in text  # option values are not converted to the annotations' types


def test_pip_install_registers_the_entry_point(entry):
    assert entry == ("arith", "conjugate_arith:Arith")


def test_the_example_is_a_complete_task(arith):
    assert issubclass(arith, Task) and not getattr(arith, "__abstractmethods__", None)
    task = arith()
    assert task.name == "arith" and task.primary_label in task.labels and "en" in task.renderings
    exs = task.examples(0)
    assert len(exs) == 20 and len({e.id for e in exs}) == 20
    assert exs == task.examples(0) != task.examples(1)  # deterministic for a seed, different across seeds
    assert [e.group for e in exs[:4]] == ["plus", "times", "plus", "times"]  # interleave: a --limit prefix is balanced
    for ex in exs:
        json.dumps(ex.data)
        for rendering in sorted(task.renderings):
            r = task.render(ex, rendering)
            assert isinstance(r, Rendered) and r.rendering == rendering
            json.dumps(r.reference)
            answer = r.reference["answer"]
            for response, label in ((f" {answer}", "correct"), (f"{answer + 2}", "wrong"), ("?", "no_number")):
                score = task.score(response, r.reference)
                assert isinstance(score, Score) and score.label == label in task.labels
            probe = task.probe_continuations(r.reference)
            assert list(probe) == ["correct", "wrong"] and probe["correct"] == f" {answer}"
    assert "Combien font" in task.render(exs[0], "fr").prompt and "fois" in task.render(exs[1], "fr").prompt


def test_options_arrive_as_written_and_bad_ones_name_the_field(arith):
    assert arith(n="3").n == arith(n=3).n == 3 and len(arith(n=3).examples(0)) == 6
    assert arith(strict="true").strict is True and arith(strict=False).strict is False
    assert arith(strict=True).score("It is 16", {"answer": 16}).label == "no_number"
    assert arith().score("It is 16", {"answer": 16}).label == "correct"
    for bad, field in ((dict(n="zero"), "arith.n"), (dict(n=2.5), "arith.n"), (dict(n=0), "arith.n"),
                       (dict(n=True), "arith.n"), (dict(strict="maybe"), "arith.strict")):
        with pytest.raises(ConfigError, match=re.escape(field)):
            arith(**bad)


def test_cli_lists_the_plugin_as_documented(site, entry, arith):
    proc = run_cli("list", "tasks", env=env(site))
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    line = lines["arith"]
    assert arith.__doc__.strip().splitlines()[0] in line and line.endswith(f"[entry point {entry[1]}]")
    assert "icl_vs_if" in lines and "[entry point" not in lines["icl_vs_if"]  # built-ins are still there
    shown = [l for block in code_blocks("console") for l in block.splitlines() if l.startswith("arith ")]
    assert [" ".join(l.split()) for l in shown] == [" ".join(line.split())]


def test_a_bad_option_is_one_line_before_any_model_loads(site, tiny_model, tmp_path):
    for option, fragment in (("arith.n=zero", "task_options.arith.n: expected a whole number >= 1, got 'zero'"),
                             ("arith.size=3", "task_options.arith.size: arith has no such option; it accepts: n, strict")):
        proc = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "arith",
                       "--task-option", option, "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "g.sqlite"),
                       env=env(site))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"conjugate: error: {fragment}"), proc.stderr


def test_the_guides_tests_pass(site, tmp_path):
    source = next(b for b in code_blocks("python") if "def test_" in b)
    (tmp_path / "test_arith.py").write_text(source)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_arith.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


def test_a_run_uses_the_plugin(site, tiny_model, tmp_path):
    """The guide's run on the tiny model: native English and French, a transform, an option, the probe; then
    `report --rescore` with another option value re-scores without generating."""
    out = tmp_path / "results"
    proc = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "arith",
                   "--transforms", "identity,lang:fr,leetspeak", "--limit", "2", "--task-option", "arith.strict=true",
                   "--out", str(out), "--cache", str(tmp_path / "gen.sqlite"), "--no-progress", env=env(site))
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1]).parent
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 * 2  # 2 examples x 3 conjugates x 2 models
    assert {r["example_id"] for r in rows} == {"plus-000", "times-000"}  # --limit 2 keeps one of each group
    modes = {r["transform"]: r["mode"] for r in rows}
    assert modes == {"identity": "native", "lang:fr": "native", "leetspeak": "transform"}
    for r in rows:
        assert r["error"] is None and r["outcome"] in ("correct", "wrong", "no_number"), r
        assert set(r["probe"]) == {"logp_correct", "logp_wrong", "p_correct"}
        assert r["reference"]["answer"] > 0
    assert all("Combien font" in r["prompt"] for r in rows if r["transform"] == "lang:fr")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["tasks"]["arith"]["version"] == "1"
    assert manifest["tasks"]["arith"]["labels"] == ["correct", "wrong", "no_number"]
    assert manifest["spec"]["task_options"] == {"arith": {"strict": True}}
    assert "arith" in (run_dir / "report.md").read_text()

    proc = run_cli("report", str(run_dir), "--rescore", "--task-option", "arith.strict=false", env=env(site))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "manifest.json").read_text())["rescore_options"] == {"arith": {"strict": False}}
