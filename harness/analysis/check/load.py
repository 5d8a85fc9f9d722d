"""Reading a run folder for `conjugate check`: the rows of group ``all`` of summary.json, plus the manifest.

Only ``summary.json`` and ``manifest.json`` are read (samples are not needed to gate rates), through
:mod:`harness.outputs.rundir`, the one module that knows the run folder; all of it is :func:`load_run`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

MODELS = ("finetuned", "pretrained")


@dataclasses.dataclass
class Run:
    path: Path
    manifest: dict
    rows: dict[tuple[str, str, str], dict]  # (task, transform, model) -> summary row of group "all"
    tasks: list[str]
    transforms: list[str]  # spec order, then any others seen in rows
    labels: dict[str, list[str]]
    primary: dict[str, str]

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    def transform_info(self, t: str) -> dict:
        info = (self.manifest.get("transforms") or {}).get(t)
        return info if isinstance(info, dict) else {}

    def model_name(self, role: str) -> str:
        m = (self.manifest.get("spec") or {}).get(role)
        return str(m.get("name")) if isinstance(m, dict) and m.get("name") else role


def spec_hash(spec: dict) -> str:
    """The hash in a default run id (``<tasks>-<hash>``), recomputed from the spec recorded in the manifest."""
    from harness.outputs.rundir import spec_hash as run_spec_hash

    return run_spec_hash(spec)


def load_run(path_str: str) -> Run:
    """The run folder ``path_str`` (manifest.json and summary.json, validated); ConjugateError otherwise."""
    from harness.outputs.rundir import RunDir

    info = RunDir(path_str).read(samples="skip")  # folder, files, JSON and summary rows are checked there
    rows = info.summary.rows_all()
    seen_tasks = list(dict.fromkeys(task for task, _, _ in rows))
    seen_transforms = list(dict.fromkeys(transform for _, transform, _ in rows))
    named = info.manifest.tasks
    tasks = [t for t in named if t in seen_tasks] + [t for t in seen_tasks if t not in named]
    transforms = info.manifest.transforms
    transforms += [t for t in seen_transforms if t not in transforms]
    labels = {t: info.labels(t) for t in tasks}
    primary = {t: info.primary_label(t) or "" for t in tasks}
    return Run(info.path, info.manifest.data, rows, tasks, transforms, labels, primary)
