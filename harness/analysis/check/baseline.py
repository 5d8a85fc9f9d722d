"""The references a run is gated against: baselines (written from a trusted run, read back) and thresholds files.

A baseline is indented JSON with one line per cell (task, transform, model, label, k, n, rate), so that an
update reads well in a code review. A thresholds file maps ``task/transform`` patterns to limits.
"""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

from harness.analysis.check.definition import check_definitions, run_definitions
from harness.analysis.check.files import is_count, read_json
from harness.analysis.check.load import MODELS, Run, spec_hash
from harness.analysis.check.selection import suggest, task_base
from harness.errors import ConjugateError

BASELINE_FORMAT = "conjugate-baseline"
BASELINE_VERSION = 1


# -- writing --------------------------------------------------------------------------------------

def build_baseline(run: Run, tasks: list[str], transforms: list[str] | None, models: tuple[str, ...]) -> dict:
    """The baseline document of ``run``: every label's count of the selected cells, and where they came from."""
    from harness.version import __version__

    cells = []
    for task in tasks:
        for transform in run.transforms:
            if transforms is not None and transform not in transforms:
                continue
            for model in models:
                row = run.rows.get((task, transform, model))
                if row is None:
                    continue
                for label in run.labels[task] or list(row["rates"]):
                    if label not in row["rates"]:
                        continue
                    k, n = row["rates"][label]["k"], row["n"]
                    cells.append({"task": task, "transform": transform, "model": model, "label": label,
                                  "k": k, "n": n, "rate": round(k / n, 6) if n else None})
    m = run.manifest
    spec = m.get("spec") if isinstance(m.get("spec"), dict) else {}
    return {
        "format": BASELINE_FORMAT,
        "format_version": BASELINE_VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": f"conjugate {__version__}",
        "source": {"run_id": run.run_id, "spec_hash": spec_hash(spec) if spec else None,
                   "started": m.get("started"), "git": m.get("git"), "limit": spec.get("limit"), "seed": spec.get("seed")},
        "models": {role: {"name": run.model_name(role),
                          "model": (spec.get(role) or {}).get("model"), "adapter": (spec.get(role) or {}).get("adapter"),
                          "identity": ((m.get("models") or {}).get(role) or {}).get("identity")} for role in models},
        "tasks": {t: {"version": ((m.get("tasks") or {}).get(t) or {}).get("version"), "labels": run.labels[t],
                      "primary_label": run.primary[t]} for t in tasks},
        "transforms": [t for t in run.transforms if transforms is None or t in transforms],
        # what the cells measure: `check` reports a changed one as DEFINITION-CHANGED, not as a regression
        "definitions": run_definitions(m, tasks, [t for t in run.transforms if transforms is None or t in transforms]),
        "cells": cells,
    }


def baseline_text(baseline: dict) -> str:
    """Indented JSON with one line per cell, so that a baseline update reads well in a code review."""
    head = {k: v for k, v in baseline.items() if k != "cells"}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    assert text.endswith("\n}")
    cells = ",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in baseline["cells"])
    return text[:-2] + ',\n  "cells": [\n' + cells + "\n  ]\n}\n"


# -- reading --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Baseline:
    path: Path
    doc: dict
    cells: dict[tuple[str, str, str, str], dict]  # (task, transform, model, label) -> cell

    @property
    def tasks(self) -> list[str]:
        out: list[str] = []
        for (t, _, _, _) in self.cells:
            if t not in out:
                out.append(t)
        return out


def load_baseline(path_str: str) -> Baseline:
    """A baseline written by ``--write-baseline``, validated cell by cell; ConjugateError naming the bad field."""
    path = Path(path_str)
    doc = read_json(path, "baseline")
    where = f"baseline {path}"
    if not isinstance(doc, dict):
        raise ConjugateError(f"{where}: expected a JSON object written by `conjugate check RUN --write-baseline FILE`")
    if doc.get("format") != BASELINE_FORMAT:
        raise ConjugateError(f"{where}: format: expected {BASELINE_FORMAT!r}, got {doc.get('format')!r}; "
                             "write one with `conjugate check RUN --write-baseline FILE`")
    version = doc.get("format_version")
    if not is_count(version):
        raise ConjugateError(f"{where}: format_version: expected an integer, got {version!r}")
    if version > BASELINE_VERSION:
        raise ConjugateError(f"{where}: format_version: {version} is newer than this conjugate reads "
                             f"({BASELINE_VERSION}); upgrade conjugate")
    check_definitions(doc.get("definitions"), where)
    cells_in = doc.get("cells")
    if not isinstance(cells_in, list) or not cells_in:
        raise ConjugateError(f"{where}: cells: expected a non-empty list of "
                             "{task, transform, model, label, k, n}")
    cells: dict[tuple[str, str, str, str], dict] = {}
    for i, c in enumerate(cells_in):
        _check_cell(c, f"{where}: cells[{i}]")
        key4 = (c["task"], c["transform"], c["model"], c["label"])
        if key4 in cells:
            raise ConjugateError(f"{where}: cells[{i}]: duplicate cell {'/'.join(key4)}")
        cells[key4] = c
    return Baseline(path, doc, cells)


def _check_cell(c, f: str) -> None:
    if not isinstance(c, dict):
        raise ConjugateError(f"{f}: expected an object")
    for key in ("task", "transform", "model", "label"):
        if not isinstance(c.get(key), str) or not c[key]:
            raise ConjugateError(f"{f}.{key}: missing or not a string")
    if c["model"] not in MODELS:
        raise ConjugateError(f"{f}.model: expected finetuned or pretrained, got {c['model']!r}")
    for key in ("k", "n"):
        if not is_count(c.get(key)):
            raise ConjugateError(f"{f}.{key}: expected a non-negative integer, got {c.get(key)!r}")
    if c["k"] > c["n"]:
        raise ConjugateError(f"{f}.k: {c['k']} is larger than n = {c['n']}")
    rate = c.get("rate")
    if c["n"] and rate is not None:
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or abs(rate - c["k"] / c["n"]) > 1e-6:
            raise ConjugateError(f"{f}.rate: {rate!r} does not match k/n = {c['k']}/{c['n']}; "
                                 "edit k and n, or write the baseline again")


def check_labels(base: Baseline, pairs: list[tuple[str, str]], models) -> None:
    """Every gated (task, label) must have cells for every gated model in the baseline."""
    for task, label in pairs:
        for model in models:
            if not any(k[0] == task and k[2] == model and k[3] == label for k in base.cells):
                have = sorted({k[3] for k in base.cells if k[0] == task and k[2] == model})
                if not have:
                    raise ConjugateError(f"baseline {base.path}: no {model} cells for task {task} "
                                         f"(it has models: {', '.join(sorted({k[2] for k in base.cells}))}); "
                                         "pick one with --model or write the baseline again")
                raise ConjugateError(f"baseline {base.path}: no {label!r} cells for task {task} (its labels: "
                                     f"{', '.join(have)}); pick one with --metric")


def check_task_set(run: Run, base: Baseline, tasks, pairs, tasks_given: bool, metric_given: bool) -> None:
    """A baseline from a different task set is a usage error (with the shared tasks as the fix), not a regression."""
    btasks = base.tasks
    shared = [t for t in tasks if t in btasks]
    for t in tasks:
        if t not in btasks:
            raise ConjugateError(f"baseline {base.path}: it has no cells for task {t} (it covers: {', '.join(btasks)}); "
                                 "this baseline is from a different task set: write a new one with --write-baseline"
                                 + (f", or check the shared tasks with --tasks {','.join(shared)}"
                                    if shared and not tasks_given else ""))
    if tasks_given:
        return
    labels = {l for _, l in pairs}
    relevant = [t for t in btasks if not metric_given or any(k[0] == t and k[3] in labels for k in base.cells)
                or (t in run.tasks and t in tasks)]
    extra = [t for t in relevant if t not in run.tasks]
    if extra:
        raise ConjugateError(f"baseline {base.path} covers tasks {', '.join(btasks)} but run {run.run_id} has "
                             f"{', '.join(run.tasks)}: a different task set. Check the shared ones with --tasks "
                             f"{','.join(shared) or '...'}, or write a new baseline with --write-baseline")


def baseline_notes(run: Run, base: Baseline, tasks) -> list[str]:
    """Why rates may differ besides the model: another limit or seed than the baseline's run, or (a baseline
    without ``definitions``, which are checked per cell) another scoring version."""
    notes = []
    btasks = base.doc.get("tasks") if isinstance(base.doc.get("tasks"), dict) else {}
    for t in tasks if not isinstance(base.doc.get("definitions"), dict) else ():
        bv = (btasks.get(t) or {}).get("version") if isinstance(btasks.get(t), dict) else None
        rv = ((run.manifest.get("tasks") or {}).get(t) or {}).get("version")
        if bv is not None and rv is not None and str(bv) != str(rv):
            notes.append(f"task {t} is scored by version {rv} now but version {bv} in the baseline: "
                         "rates may differ for that reason alone")
    src = base.doc.get("source") if isinstance(base.doc.get("source"), dict) else {}
    spec = run.manifest.get("spec") if isinstance(run.manifest.get("spec"), dict) else {}
    for key in ("limit", "seed"):
        if key in src and src.get(key) != spec.get(key):
            notes.append(f"{key} {src.get(key)} in the baseline's run, {spec.get(key)} now: "
                         "the cells may hold different examples")
    return notes


# -- thresholds -----------------------------------------------------------------------------------

def load_thresholds(path_str: str, direction: str, run: Run) -> dict[str, tuple[float | None, float | None]]:
    """``task/transform`` pattern -> (min, max) from a JSON or YAML file; a bare number is a min (max for lower)."""
    path = Path(path_str)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConjugateError(f"thresholds {path}: no such file") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ConjugateError(f"thresholds {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    else:
        doc = read_json(path, "thresholds")
    where = f"thresholds {path}"
    if not isinstance(doc, dict) or not doc:
        raise ConjugateError(f'{where}: expected a mapping such as {{"refusal/*": 0.9, "refusal/identity": 0.98}}')
    out: dict[str, tuple[float | None, float | None]] = {}
    for key, v in doc.items():
        f = f"{where}: {key!r}"
        if key != "*" and "/" not in str(key):
            raise ConjugateError(f'{f}: write "task/transform", "task/*", "*/transform" or "*"')
        if key != "*":
            task, _, _ = str(key).rpartition("/")
            if task != "*" and task not in run.tasks and task not in {task_base(t) for t in run.tasks}:
                raise ConjugateError(f"{f}: {task!r} is not a task of run {run.run_id}.{suggest(task, run.tasks)}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            lim = (float(v), None) if direction == "higher" else (None, float(v))
        elif isinstance(v, dict) and v and set(v) <= {"min", "max"}:
            lim = (v.get("min"), v.get("max"))
        else:
            raise ConjugateError(f"{f}: expected a rate from 0 to 1 or {{min: R, max: R}}, got {v!r}")
        for x in lim:
            if x is not None and (not isinstance(x, (int, float)) or isinstance(x, bool) or not 0 <= x <= 1):
                raise ConjugateError(f"{f}: limits are rates from 0 to 1, got {x!r}")
        out[str(key)] = lim
    return out
