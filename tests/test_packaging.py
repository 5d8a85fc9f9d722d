"""The wheel: tasks/ and translators/ ship as harness.tasks and harness.translators (never top-level); every
source module and the data files (the default adapter, templates, task data, the reference text) are in it,
nothing else; the build gives no packaging warning; and an installed (not editable) wheel finds its data."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

ADAPTER = "harness/adapters/gemma3-270m-assistant-en"
SOURCES = {"harness": ROOT / "harness", "harness/tasks": ROOT / "tasks", "harness/translators": ROOT / "translators"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """(the wheel, the build's log)."""
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", str(ROOT),
                        "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return next(out.glob("conjugate_harness-*.whl")), r.stdout + r.stderr


def test_wheel_layout(built):
    wheel, _ = built
    names = zipfile.ZipFile(wheel).namelist()
    assert "harness/tasks/icl_vs_if.py" in names
    assert "harness/translators/leetspeak.py" in names
    for lang in ("en", "fr", "es", "nl", "hu"):
        assert f"harness/tasks/data/icl_vs_if/sentences_{lang}.txt" in names
    assert "harness/tasks/data/icl_vs_if/strings.yaml" in names
    assert "harness/tasks/refusal.py" in names and "harness/tasks/data/refusal/phrases.yaml" in names
    assert not [n for n in names if n.startswith(("tasks/", "translators/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "conjugate = harness.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_wheel_has_every_module_and_the_data(built):
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    tree = {f"{prefix}/{p.relative_to(folder).as_posix()}" for prefix, folder in SOURCES.items()
            for p in folder.rglob("*.py") if "__pycache__" not in p.parts}
    wheel_py = {n for n in names if n.endswith(".py")}
    assert tree - wheel_py == set(), "modules missing from the wheel"
    assert wheel_py - tree == set(), "modules in the wheel that the source tree does not have (a stale build/?)"
    for name in ("adapter_config.json", "adapter_model.safetensors", "recipe.json"):
        assert f"{ADAPTER}/{name}" in names
    templates = {f"harness/outputs/templates/{p.name}" for p in (ROOT / "harness/outputs/templates").glob("*.j2")}
    assert {"harness/outputs/templates/report.html.j2", "harness/outputs/templates/compare.html.j2"} <= templates
    assert templates <= names
    assert "harness/data/reference_en.txt" in names


def test_build_has_no_packaging_warning(built):
    _, log = built
    for phrase in ("absent from the `packages` configuration", "Package would be ignored", "as data is deprecated",
                   "is deprecated"):
        assert phrase not in log, [line for line in log.splitlines() if phrase in line][:3]


def test_installed_wheel_finds_its_data(built, tmp_path):
    """A non-editable install (into a --target folder, dependencies from this environment) runs from the wheel."""
    wheel, _ = built
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    code = """
import hashlib, json
from importlib.resources import files
import harness
from harness.pipeline.models import packaged_adapter
from harness.training.forgetting.text import reference_text_path
adapter = packaged_adapter("gemma3-270m-assistant-en")
tasks = files("harness.tasks.data.icl_vs_if")
print(json.dumps({
    "harness": harness.__file__, "adapter": str(adapter),
    "adapter_sha256": hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest(),
    "recipe_sha256": json.loads((adapter / "recipe.json").read_text())["adapter_sha256"],
    "reference": reference_text_path().read_text(encoding="utf-8")[:40],
    "templates": sorted(p.name for p in files("harness.outputs.templates").iterdir()),
    "sentences": len(tasks.joinpath("sentences_en.txt").read_text(encoding="utf-8").splitlines()),
}))
"""
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["harness"].startswith(str(target)), "imported the working tree instead of the installed wheel"
    assert got["adapter"].startswith(str(target))
    assert got["adapter_sha256"] == got["recipe_sha256"]  # the real weights, not a Git LFS pointer
    assert got["reference"].strip() and got["sentences"] > 100
    assert {"report.html.j2", "compare.html.j2", "_style.css.j2"} <= set(got["templates"])
    r = subprocess.run([sys.executable, "-m", "harness.cli", "list", "tasks"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0 and "icl_vs_if" in r.stdout, r.stderr
    fixture = ROOT / "tests" / "fixtures" / "run-0.1.0"
    if fixture.is_dir():  # the reports of a real run folder, rendered with the installed templates
        run = tmp_path / "run"
        shutil.copytree(fixture, run)
        r = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run)], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        assert (run / "report.md").stat().st_size > 0 and "<html" in (run / "report.html").read_text(encoding="utf-8")

