"""Writing a run folder: samples.jsonl, summary.json, the plots, report.html, report.md, then manifest.json
last, each file atomically through :class:`harness.outputs.rundir.RunDir`.

``write_outputs`` is the last step of ``conjugate run``; ``rerender`` rebuilds everything from a finished
run folder's samples (``conjugate report [--rescore]``) without generating; ``write_views`` re-renders only
the reports and plots from summary.json. The plots are drawn once (:func:`harness.outputs.plots.draw_plots`)
and both reports are rendered from one view (:func:`harness.outputs.views.build_report`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

from harness.analysis.summary import summarize
from harness.errors import ConjugateError
from harness.outputs.rundir import RunDir
from harness.pipeline.context import RunContext
from harness.registry import TRANSFORMS
from harness.task import Task
from harness.types import Sample

#: errors that happen after generation, so `conjugate report --rescore` retries them
AFTER_GENERATION = ("scoring failed", "transform inverse failed", "back-translation")


def write_outputs(run_dir: Path, manifest: dict, samples: list[Sample], tasks: dict[str, Task]) -> dict:
    task_labels = {name: list(t.labels) for name, t in tasks.items()}
    primary = {n: t.primary_label for n, t in tasks.items()}
    notes: list[str] = []  # failures of optional sections (the probe's): never lose a run over them
    summary = summarize(samples, {n: tuple(l) for n, l in task_labels.items()}, primary, manifest["spec"]["transforms"],
                        notes=notes)
    for note in notes:
        if note not in manifest.setdefault("notes", []):
            manifest["notes"].append(note)
    manifest["task_labels"] = task_labels
    manifest["primary_labels"] = {n: t.primary_label for n, t in tasks.items()}
    scoring = {n: t.describe_scoring() for n, t in tasks.items() if callable(getattr(t, "describe_scoring", None))}
    if scoring:  # which prompt format and scoring rule the labels come from (report.md states it)
        manifest["scoring"] = scoring
    old_plots = manifest.get("plots") or {}
    files, manifest["plots"] = report_files(manifest, summary, samples)
    RunDir(run_dir).write(manifest, summary, samples, files)  # manifest.json last: it marks a complete run
    _remove_stale_plots(Path(run_dir), old_plots, manifest["plots"])
    return summary


def report_files(manifest: dict, summary: dict, samples: Iterable[Any]) -> tuple[dict[str, str | bytes], dict[str, str]]:
    """The report's files, {file name: content}: the plots, report.html and report.md; and the plots'
    entry of manifest.json ({plot key: file name}). Plots are drawn once and shown by both reports."""
    from harness.outputs.html import render_html  # noqa: PLC0415 (matplotlib/jinja2 only when writing)
    from harness.outputs.markdown import render_markdown
    from harness.outputs.plots import draw_plots
    from harness.outputs.views import build_report
    from harness.outputs.views.probe import probe_keys
    from harness.outputs.views.samples import as_dict

    records = [as_dict(s) for s in samples]
    pngs = draw_plots(manifest, summary, probe_keys(records))
    plots = {name.removesuffix(".png"): name for name in pngs}
    view = build_report(manifest, summary, records, plots)
    return {**pngs, "report.html": render_html(view, pngs), "report.md": render_markdown(view)}, plots


def _remove_stale_plots(run_dir: Path, old: dict, new: dict) -> None:
    """Plots an earlier render listed in manifest.json and this one did not draw (e.g. a probe re-scored away)."""
    for name in set(old.values()) - set(new.values()):
        if isinstance(name, str) and name.endswith(".png") and Path(name).name == name:
            (run_dir / name).unlink(missing_ok=True)


def write_views(run_dir: str | Path) -> Path:
    """Re-draw the plots and re-render report.md and report.html of a finished run from its summary.json and
    samples, recomputing nothing; manifest.json is rewritten only when its list of plots changed."""
    folder = RunDir(run_dir)
    run = folder.read(samples="need")
    manifest, old_plots = run.manifest.data, run.manifest.data.get("plots") or {}
    files, plots = report_files(manifest, run.summary.data, run.sample_records)
    for name, content in files.items():
        folder.write_file(name, content)
    if plots != old_plots:
        manifest["plots"] = plots
        folder.write_manifest(manifest)
        _remove_stale_plots(folder.path, old_plots, plots)
    return folder.path / "report.html"


def run_tasks(manifest: dict, samples, create_task, extra: dict | None = None) -> dict:
    """The run's tasks as the samples name them: lm-eval tasks per leaf (a group expanded during the run), with
    the labels the run recorded; the others from the spec with their options (``extra`` on top)."""
    task_options = manifest["spec"].get("task_options") or {}
    for name in extra or {}:
        if name not in manifest["spec"]["tasks"]:
            raise ConjugateError(f"--task-option {name}.…: the run has no task {name!r} ({', '.join(manifest['spec']['tasks'])})")
    tasks = {name: create_task(name, {**(task_options.get(name) or {}), **((extra or {}).get(name) or {})})
             for name in manifest["spec"]["tasks"] if not name.startswith("lmeval:")}
    for name in dict.fromkeys(s.task for s in samples if s.task.startswith("lmeval:")):
        t = create_task(name)
        labels, primary = (manifest.get("task_labels") or {}).get(name), (manifest.get("primary_labels") or {}).get(name)
        if labels and primary:
            t.labels, t.primary_label = tuple(labels), primary
        tasks[name] = t
    return tasks


def rerender(run_dir: str | Path, rescore: bool = False, task_options: dict | None = None) -> Path:
    """Rebuild summary.json and report.md from samples.jsonl, optionally re-scoring; never generates.

    ``task_options`` (with ``rescore``): re-score with these options on top of the run's (e.g.
    ``{"icl_vs_if": {"scoring": "strict"}}``); recorded in manifest.json as ``rescore_options``."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir).read(samples="need", summary=False)  # summary.json is what this rebuilds
    manifest, samples = run.manifest.data, run.samples
    if not run.manifest.tasks:
        raise ConjugateError(f"{run_dir / 'manifest.json'}: spec.tasks: missing; restore the manifest written by `conjugate run`")
    from harness.pipeline.plan import create_task  # noqa: PLC0415 (loads the task registry only when re-rendering)
    from harness.pipeline.score import score_samples  # noqa: PLC0415

    if task_options:
        if not rescore:
            raise ConjugateError("task options apply when re-scoring: add --rescore")
        manifest["rescore_options"] = task_options
    tasks = run_tasks(manifest, samples, create_task, manifest.get("rescore_options") if rescore else None)
    if rescore:
        ctx = RunContext(mt=manifest["spec"].get("mt") or {}, translations=manifest["spec"].get("translations"))
        transforms = {t: TRANSFORMS.create(t) for t in manifest["spec"]["transforms"]}
        for obj in (*tasks.values(), *transforms.values()):
            if getattr(obj, "output_type", None) != "lmeval":  # lm-eval samples keep their metrics: no catalog needed
                obj.bind(ctx)
        for s in samples:  # failures after generation are re-tried; generation failures stay
            if s.response is not None and (s.error or "scoring failed").startswith(AFTER_GENERATION):
                s.error = None
        try:
            score_samples(samples, tasks, transforms)
        finally:
            ctx.close()
        manifest["rescored"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_outputs(run_dir, manifest, samples, tasks)
    return run_dir
