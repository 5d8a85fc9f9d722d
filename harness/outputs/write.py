"""Writing a run folder: samples.jsonl, summary.json, the plots, report.html, report.md, then manifest.json
last, each file atomically through :class:`harness.outputs.rundir.RunDir`.

``write_outputs`` is the last step of ``conjugate run``; ``rerender`` rebuilds everything from a finished
run folder's samples (``conjugate report [--rescore]``) without generating; ``write_views`` re-renders only
the reports and plots from summary.json. The plots are drawn once (:func:`harness.outputs.plots.draw_plots`)
and both reports are rendered from one view (:func:`harness.outputs.views.build_report`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from harness.analysis.summary import summarize
from harness.errors import ConjugateError
from harness.io import finite_json
from harness.outputs.rescore import record_rescore
from harness.outputs.rundir import OUTPUT_ERRORS, RunDir, duplicate_samples
from harness.pipeline.context import RunContext
from harness.registry import TRANSFORMS
from harness.task import Task
from harness.types import Sample

#: errors that happen after generation, so `conjugate report --rescore` retries them
AFTER_GENERATION = ("scoring failed", "transform inverse failed", "back-translation")


class OutputsFailed(ConjugateError):
    """The samples and manifest.json are written, but the summary, a report or a plot is not: `conjugate report`
    finishes the folder."""

    exit_code = 1


def write_outputs(run_dir: Path, manifest: dict, samples: list[Sample], tasks: dict[str, Task]) -> dict:
    """Write the run folder; the samples and manifest.json are written even when the summary, a report or a plot
    fails (named in the manifest's ``output_errors``, then raised as :class:`OutputsFailed`)."""
    twice = duplicate_samples(samples)
    if twice:
        raise ConjugateError(f"task {twice[0][1]}: example id {twice[0][3]!r} occurs twice ({len(twice)} repeated "
                             f"samples); a task's example ids must be unique")
    task_labels = {name: list(t.labels) for name, t in tasks.items()}
    primary = {n: t.primary_label for n, t in tasks.items()}
    notes: list[str] = []  # failures of optional sections (the probe's): never lose a run over them
    failed: list[str] = []
    summary = _attempt(failed, "summary.json", lambda: finite_json(summarize(
        samples, {n: tuple(l) for n, l in task_labels.items()}, primary, manifest["spec"]["transforms"], notes=notes),
        undefined_note))
    for note in notes:
        if note not in manifest.setdefault("notes", []):
            manifest["notes"].append(note)
    manifest["task_labels"] = task_labels
    manifest["primary_labels"] = {n: t.primary_label for n, t in tasks.items()}
    scoring = {n: t.describe_scoring() for n, t in tasks.items() if callable(getattr(t, "describe_scoring", None))}
    if scoring:  # which prompt format and scoring rule the labels come from (report.md states it)
        manifest["scoring"] = scoring
    old_plots = manifest.get("plots") or {}
    manifest.pop(OUTPUT_ERRORS, None)
    made = None if summary is None else _attempt(failed, "reports and plots",
                                                 lambda: report_files(manifest, summary, samples))
    files, manifest["plots"] = made or ({}, {})
    if failed:
        manifest[OUTPUT_ERRORS] = failed
    RunDir(run_dir).write(manifest, summary, samples, files)  # manifest.json last: it marks a complete run
    _remove_stale_plots(Path(run_dir), old_plots, manifest["plots"])
    if made is None:  # an earlier write's reports would describe other numbers
        for name in ("report.md", "report.html"):
            (Path(run_dir) / name).unlink(missing_ok=True)
    if manifest.get(OUTPUT_ERRORS):
        raise OutputsFailed(f"{run_dir}: the samples are saved, but writing the outputs failed "
                            f"({manifest[OUTPUT_ERRORS][0]}); fix the cause, then finish with "
                            f"`conjugate report {run_dir}`")
    return summary


def _attempt(failed: list[str], what: str, make: Callable[[], Any]) -> Any:
    """``make()``, or None with the failure added to ``failed`` (the samples are written whatever fails here)."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 (any failure: the run's samples must not be lost over a view)
        failed.append(f"{what}: {type(exc).__name__}: {exc}")
        return None


def undefined_note(d: dict, key: str, n: Any) -> str:
    """Why summary.json holds null for ``d[key]`` (a NaN or infinite number), stored as ``<key>_note`` beside it."""
    if key == "recovery" and all(isinstance(d.get(k), float) for k in ("pt_en", "ft_en", "finetuned")):
        from harness.analysis.stats import recovery  # noqa: PLC0415

        why = recovery(d["pt_en"], d["ft_en"], d["finetuned"])[1]
        if why == "missing rates":
            return "undefined: a rate it needs is undefined (a cell without scored samples)"
        if why:
            return why
    if n == 0:
        return "undefined: no scored samples (n = 0)"
    return "undefined: not a finite number (e.g. a rate or a ratio over no samples)"


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
        record_rescore(manifest, tasks, transforms)  # the versions and options the labels now come from
    write_outputs(run_dir, manifest, samples, tasks)
    return run_dir
