"""What ``conjugate report --rescore`` records in manifest.json, and how the report states it.

Re-scoring labels the stored responses with the task and transform code installed now, so the manifest must
name the versions the labels come from: ``tasks.<name>.version`` and ``transforms.<id>`` become the current
ones, ``generated_with`` keeps the versions the responses were generated with (set by the first re-score,
never overwritten), and ``rescored`` says when, from which versions to which, and with which task options.
A manifest written before this (``rescored`` a bare timestamp) still renders.
"""
from __future__ import annotations

import time
from typing import Any, Mapping


def _versions(entries: Mapping[str, Any]) -> dict[str, str | None]:
    return {name: (str(info["version"]) if isinstance(info, dict) and info.get("version") is not None else None)
            for name, info in (entries or {}).items()}


def record_rescore(manifest: dict, tasks: Mapping[str, Any], transforms: Mapping[str, Any]) -> None:
    """Update ``manifest`` after re-scoring with ``tasks`` and ``transforms`` (keyed as the run's samples are)."""
    before = {"tasks": _versions(manifest.get("tasks") or {}), "transforms": _versions(manifest.get("transforms") or {})}
    manifest.setdefault("generated_with", before)
    task_entries = manifest.setdefault("tasks", {})
    for name, task in tasks.items():
        entry = task_entries.setdefault(name, {})
        entry.update({"version": str(task.version), "labels": list(task.labels)})
        if "probe_wording" in entry or getattr(task, "probe_wording", None):
            entry["probe_wording"] = task.probe_wording
    transform_entries = manifest.setdefault("transforms", {})
    for name, tr in transforms.items():
        transform_entries[name] = tr.describe()
    after = {"tasks": {n: str(t.version) for n, t in tasks.items()},
             "transforms": {n: str(t.version) for n, t in transforms.items()}}
    manifest["rescored"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "from": {kind: {n: before[kind].get(n) for n in after[kind]} for kind in after},
                            "to": after, "options": manifest.get("rescore_options") or {}}


def _changes(frm: Mapping[str, Any], to: Mapping[str, Any], kind: str) -> list[str]:
    return [f"{kind} {n} version {frm.get(n) or '?'} → {v}" for n, v in to.items() if str(frm.get(n)) != str(v)]


def _options(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{task}.{k}={v}" for task, opts in (options or {}).items() if isinstance(opts, Mapping)
                     for k, v in opts.items())


def rescore_fact(manifest: dict) -> str | None:
    """One line for the report's header: when the labels were re-scored, what changed, with which options."""
    r = manifest.get("rescored")
    if not r:
        return None
    if not isinstance(r, dict):  # a manifest from before versions were recorded: the timestamp
        opts = manifest.get("rescore_options")
        return str(r) + (f" with {opts}" if opts else "") + " (versions before the re-score not recorded)"
    frm, to = r.get("from") or {}, r.get("to") or {}
    changed = (_changes(frm.get("tasks") or {}, to.get("tasks") or {}, "task")
               + _changes(frm.get("transforms") or {}, to.get("transforms") or {}, "transform"))
    text = f"{r.get('at', '?')} from the stored responses; " + ("; ".join(changed) if changed else
                                                                 "task and transform versions unchanged")
    opts = _options(r.get("options") or {})
    return text + (f"; task options {opts}" if opts else "")


def generated_with_fact(manifest: dict) -> str | None:
    """The generation-time versions that differ from the ones the labels now come from (None: none differ)."""
    gen = manifest.get("generated_with")
    if not isinstance(gen, dict):
        return None
    now = {"tasks": _versions(manifest.get("tasks") or {}), "transforms": _versions(manifest.get("transforms") or {})}
    parts = [f"{kind[:-1]} {n} version {v or '?'}" for kind in ("tasks", "transforms")
             for n, v in (gen.get(kind) or {}).items() if n in now[kind] and str(now[kind][n]) != str(v)]
    return "; ".join(parts) or None
