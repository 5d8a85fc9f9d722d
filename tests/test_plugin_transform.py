"""The plugin guide (docs/writing-a-transform.md) works as written.

The example transform and its pyproject.toml are read from the page's code
blocks, so the page cannot drift from what is tested. Instead of `pip install`
(no network, no build), the test writes what an install leaves behind: the
module plus a ``<name>-<version>.dist-info`` folder with ``METADATA`` and
``entry_points.txt``, on PYTHONPATH. Entry points are discovered from there
exactly as from site-packages.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

try:
    from tests.conftest import ROOT, run_cli
except ImportError:  # bare `pytest`, where the repository root is not on sys.path
    from conftest import ROOT, run_cli

from harness.transform import Transform
from harness.translators.b64 import to_base64

DOC = ROOT / "docs" / "writing-a-transform.md"
GROUP = "conjugate.transforms"


def code_blocks(lang: str) -> list[str]:
    return [body for tag, body in re.findall(r"^```(\w+)\n(.*?)^```", DOC.read_text(), re.S | re.M) if tag == lang]


class Plugin(types.SimpleNamespace):
    path: Path
    name: str  # the transform's registry name
    target: str  # module:attr
    cls: type
    source: str  # the module's code, as the guide shows it


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Plugin:
    """The guide's example plugin, 'installed' into a folder for PYTHONPATH."""
    pyproject_text = next(b for b in code_blocks("toml") if f'"{GROUP}"' in b)
    pyproject = tomllib.loads(pyproject_text)
    eps = pyproject["project"]["entry-points"][GROUP]
    assert len(eps) == 1, eps
    (name, target), = eps.items()
    module_name, _, attr = target.partition(":")
    assert pyproject["tool"]["setuptools"]["py-modules"] == [module_name]
    source = next(b for b in code_blocks("python") if re.search(rf"^class {attr}\(Transform\):", b, re.M))

    root = tmp_path_factory.mktemp("plugin")
    (root / f"{module_name}.py").write_text(source)
    dist, version = pyproject["project"]["name"], pyproject["project"]["version"]
    info = root / f"{re.sub(r'[-_.]+', '_', dist)}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{name} = {target}\n")

    module = types.ModuleType(module_name)
    exec(compile(source, str(root / f"{module_name}.py"), "exec"), module.__dict__)
    return Plugin(path=root, name=name, target=target, cls=getattr(module, attr), source=source)


def test_the_example_is_a_small_complete_transform(plugin):
    code_lines = [line for line in plugin.source.splitlines() if line.strip()]
    assert len(code_lines) <= 25, "the guide promises a transform in about 20 lines"
    assert issubclass(plugin.cls, Transform)
    assert plugin.cls.name == plugin.name
    assert plugin.cls.__doc__.strip()
    t = plugin.cls()
    for text in ["", "What is 7 plus 5?", "  two\nlines  ", "Ünïcödé 😀"]:
        assert t.inverse(t.forward(text)) == text
    assert plugin.cls.exact is True


def test_cli_lists_the_plugin_as_documented(plugin):
    proc = run_cli("list", "transforms", env={"PYTHONPATH": str(plugin.path)})
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert plugin.name in lines, proc.stdout
    line = lines[plugin.name]
    summary = plugin.cls.__doc__.strip().splitlines()[0]
    assert summary in line
    assert line.endswith(f"[entry point {plugin.target}]")
    assert "rot13" in lines and "[entry point" not in lines["rot13"]  # built-ins are still there
    # the guide shows this very line (column widths aside)
    shown = [l for block in code_blocks("console") for l in block.splitlines() if l.startswith(plugin.name + " ")]
    assert [" ".join(l.split()) for l in shown] == [" ".join(line.split())]


def test_the_guide_documents_the_commands(plugin):
    text = DOC.read_text()
    assert "pip install -e ." in text
    assert "$ conjugate list transforms" in text
    assert f"$ conjugate run --transforms identity,{plugin.name} --limit 5" in text
    assert f"chain:{plugin.name}+base64" in text


def test_a_run_uses_the_plugin(plugin, tiny_model, tmp_path):
    chain = f"chain:{plugin.name}+base64"  # a plugin is also a chain part
    out = tmp_path / "results"
    proc = run_cli(
        "run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if",
        "--transforms", f"identity,{plugin.name},{chain}", "--limit", "2", "--max-new-tokens", "3",
        "--out", str(out), "--cache", str(tmp_path / "gen.sqlite"), "--no-progress",
        env={"PYTHONPATH": str(plugin.path)},
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1]).parent
    assert run_dir.parent == out
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    t = plugin.cls()
    mine = [r for r in rows if r["transform"] == plugin.name]
    assert len(mine) == 2 * 2  # 2 examples x 2 models
    for r in mine:
        assert r["error"] is None and r["mode"] == "transform"
        assert r["transformed_prompt"] == t.forward(r["prompt"]) != r["prompt"]
        assert r["inverted"] == t.inverse(r["response"])
    chained = [r for r in rows if r["transform"] == chain]
    assert len(chained) == 4
    for r in chained:
        assert r["error"] is None
        assert r["transformed_prompt"] == to_base64(t.forward(r["prompt"]))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["transforms"][plugin.name] == t.describe()
    assert [p["id"] for p in manifest["transforms"][chain]["parts"]] == [plugin.name, "base64"]


def test_the_guides_hypothesis_test_passes(plugin, tmp_path):
    source = next(b for b in code_blocks("python") if "@given" in b)
    (tmp_path / f"test_{plugin.name}.py").write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"test_{plugin.name}.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(plugin.path)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
