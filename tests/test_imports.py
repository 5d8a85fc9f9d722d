"""The import graph of harness/ (tasks/ and translators/ as harness.tasks and harness.translators).

* every module imports in a fresh interpreter (no order-dependent or circular import);
* no import cycle among imports that run at import time (found with ``ast``, not by importing);
* the command line is the top of the graph: only :mod:`harness.cli` and :mod:`harness.commands` import
  them, whether with ``import``, inside a function, or through ``importlib`` with a literal name;
* lazy imports (inside functions) add no cycle either (:data:`KNOWN_LAZY_CYCLES` lists accepted ones: none);
* ``conjugate --help`` stays light: building the parser imports no numpy, torch, scipy, jinja2, ...
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

try:
    from tests.conftest import ROOT
except ImportError:  # bare `pytest`, where the repository root is not on sys.path
    from conftest import ROOT

FOLDERS = {"harness": ROOT / "harness", "harness.tasks": ROOT / "tasks", "harness.translators": ROOT / "translators"}
CLI_LAYER = ("harness.cli", "harness.commands")
#: cycles through imports inside functions that exist today; a new one fails the test. Each entry: the modules.
KNOWN_LAZY_CYCLES: list[set[str]] = []  # a cycle through a function-level import must be listed here, with why
HEAVY = {"numpy", "torch", "scipy", "jinja2", "transformers", "matplotlib", "peft", "yaml", "httpx", "datasets"}


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module under the three source folders."""
    out = {}
    for name, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([name, *parts])] = path
    return out


def imports(path: Path, known: dict[str, Path], import_time_only: bool) -> set[str]:
    """The harness modules ``path`` imports: ``import``/``from`` statements (those in functions too unless
    ``import_time_only``; never those under ``if TYPE_CHECKING``) and ``importlib.import_module("...")``."""
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in known:  # `from harness.x import name`: the module harness.x
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    def visit(node: ast.AST, at_import_time: bool) -> None:
        for child in ast.iter_child_nodes(node):
            now = at_import_time and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue
            counted = now or not import_time_only
            if counted and isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name)
            elif counted and isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    add(f"{child.module}.{alias.name}")
            elif (counted and isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                  and child.func.attr in ("import_module", "find_spec") and child.args
                  and isinstance(child.args[0], ast.Constant) and isinstance(child.args[0].value, str)):
                add(child.args[0].value)
            visit(child, now)

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return found


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def graph(import_time_only: bool) -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known, import_time_only) - {name} for name, path in known.items()}


def test_the_scan_sees_what_it_should():
    known = modules()
    assert {"harness.cli", "harness.commands.check", "harness.analysis.check.cells", "harness.tasks.icl_vs_if",
            "harness.translators.providers.hf_mt.languages"} <= set(known)
    cli = imports(known["harness.cli"], known, import_time_only=True)
    assert "harness.commands" in cli and "harness.errors" in cli
    lazy = imports(known["harness.commands.check"], known, import_time_only=False)
    assert "harness.analysis.check" in lazy and "harness.analysis.check.files" in lazy
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(modules())
    code = ("import importlib, json, sys\nbad = []\nfor m in json.loads(sys.argv[1]):\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except Exception as exc:\n        bad.append(f'{m}: {type(exc).__name__}: {exc}')\n"
            "print(json.dumps(bad))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(names)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_no_import_cycle_at_import_time():
    assert cycles(graph(import_time_only=True)) == []


def test_only_the_cli_layer_imports_the_cli_layer():
    offenders = {name: sorted(t for t in targets if t.startswith(CLI_LAYER))
                 for name, targets in graph(import_time_only=False).items() if not name.startswith(CLI_LAYER)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_lazy_imports_add_no_new_cycle():
    new = [sorted(c) for c in cycles(graph(import_time_only=False)) if c not in KNOWN_LAZY_CYCLES]
    assert new == []


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom harness import cli\ncli.build_parser()\n"
            f"print(sorted(set({sorted(HEAVY)!r}) & {{m.split('.')[0] for m in sys.modules}}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_every_command_module_has_the_same_shape():
    from harness.cli import build_parser
    from harness.commands import MODULES

    names = [m.NAME for m in MODULES]
    assert names == ["run", "report", "finetune", "list", "translate", "compare", "check", "forgetting", "sweep",
                     "setup"]
    for m in MODULES:
        assert callable(m.add_parser) and callable(m.run), m.__name__
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == names
