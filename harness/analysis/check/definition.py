"""What a cell measures: the task's scoring version and options, and the transform's version.

Two rates of one (task, transform) cell are comparable only when both were labelled by the same definition:
``--task-option icl_vs_if.scoring=strict`` or a new task version changes the labels without any change in the
model. A baseline records the definitions of its run (``definitions``); ``conjugate check`` compares them with
the run's and reports a changed one as ``DEFINITION-CHANGED`` instead of a regression. The run's definitions
come from its manifest: ``tasks.<task>.version`` and ``transforms.<id>.version`` (after ``conjugate report
--rescore``, the re-scoring versions), and the task options of the spec with any re-scoring options on top.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from harness.errors import ConjugateError


def _norm(value: Any) -> str:
    """An option value as text, so that ``true`` from the command line equals ``True`` from YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)) or value is None:
        return str(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def task_options(manifest: dict, task: str) -> dict[str, str]:
    """The options ``task`` was scored with: the spec's ``task_options``, re-scoring options on top."""
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    opts: dict[str, Any] = {}
    for source in ((spec.get("task_options") or {}), (manifest.get("rescore_options") or {})):
        if isinstance(source, dict) and isinstance(source.get(task), dict):
            opts.update(source[task])
    return {str(k): _norm(v) for k, v in sorted(opts.items())}


def _version(info: Any) -> str | None:
    return str(info["version"]) if isinstance(info, dict) and info.get("version") is not None else None


def _transform(info: Any) -> dict:
    out: dict[str, Any] = {"version": _version(info)}
    parts = info.get("parts") if isinstance(info, dict) else None
    if isinstance(parts, list) and parts:  # a chain means what its parts mean
        out["parts"] = {str(p.get("id")): _version(p) for p in parts if isinstance(p, dict)}
    return out


def run_definitions(manifest: dict, tasks: Iterable[str], transforms: Iterable[str]) -> dict:
    """``{"tasks": {task: {version, options}}, "transforms": {id: {version[, parts]}}}`` of a run's manifest."""
    mt = manifest.get("tasks") if isinstance(manifest.get("tasks"), dict) else {}
    mtr = manifest.get("transforms") if isinstance(manifest.get("transforms"), dict) else {}
    return {"tasks": {t: {"version": _version(mt.get(t)), "options": task_options(manifest, t)} for t in tasks},
            "transforms": {t: _transform(mtr.get(t)) for t in transforms}}


def check_definitions(doc: Any, where: str) -> None:
    """A baseline's ``definitions`` (optional: older baselines lack it) has the shape :func:`run_definitions` writes."""
    if doc is None:
        return
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), dict) for k in ("tasks", "transforms")):
        raise ConjugateError(f"{where}: definitions: expected {{tasks: {{...}}, transforms: {{...}}}}; "
                             "write the baseline again with --write-baseline")
    for kind in ("tasks", "transforms"):
        for name, d in doc[kind].items():
            if not isinstance(d, dict):
                raise ConjugateError(f"{where}: definitions.{kind}.{name}: expected an object with a version")
            if kind == "tasks" and not isinstance(d.get("options", {}), dict):
                raise ConjugateError(f"{where}: definitions.tasks.{name}.options: expected an object of task options")


def _opts(o: dict) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(o.items())) + "}" if o else "none"


class Definitions:
    """The baseline's definitions against the run's, per (task, transform)."""

    def __init__(self, baseline_doc: dict, manifest: dict, tasks: Iterable[str], transforms: Iterable[str]):
        self.baseline = baseline_doc.get("definitions") if isinstance(baseline_doc.get("definitions"), dict) else None
        self.run = run_definitions(manifest, tasks, transforms)

    @property
    def verifiable(self) -> bool:
        return self.baseline is not None

    def changes(self, task: str, transform: str) -> list[str]:
        """How the cell's definition differs between the baseline and the run (empty: the same, or unknown)."""
        if self.baseline is None:
            return []
        out = []
        b, r = self.baseline["tasks"].get(task), self.run["tasks"].get(task)
        if isinstance(b, dict) and r is not None:
            if b.get("version") is not None and r["version"] is not None and str(b["version"]) != r["version"]:
                out.append(f"task {task} version {b['version']} in the baseline, {r['version']} now")
            bo = {str(k): _norm(v) for k, v in (b.get("options") or {}).items()}
            if bo != r["options"]:
                out.append(f"task {task} options {_opts(bo)} in the baseline, {_opts(r['options'])} now")
        b, r = self.baseline["transforms"].get(transform), self.run["transforms"].get(transform)
        if isinstance(b, dict) and r is not None:
            if b.get("version") is not None and r["version"] is not None and str(b["version"]) != r["version"]:
                out.append(f"transform {transform} version {b['version']} in the baseline, {r['version']} now")
            bp, rp = b.get("parts") or {}, r.get("parts") or {}
            for part in sorted(set(bp) & set(rp)):
                if bp[part] is not None and rp[part] is not None and str(bp[part]) != str(rp[part]):
                    out.append(f"transform {transform}: part {part} version {bp[part]} in the baseline, {rp[part]} now")
        return out

    def notes(self, path: Any) -> list[str]:
        """Why a definition could not be verified."""
        if self.baseline is None:
            return [f"baseline {path} records no definitions (task options, task and transform versions): it was "
                    "written by an older conjugate, so a changed scoring cannot be told from a changed model; "
                    "write it again with --write-baseline"]
        return []
