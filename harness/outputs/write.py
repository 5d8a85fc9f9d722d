"""Writing a run folder: summary.json, the plots, report.html, report.md, then manifest.json last.

``write_outputs`` is the last step of ``conjugate run``; ``rerender`` rebuilds everything from a finished
run folder's samples (``conjugate report [--rescore]``) without generating.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from harness.analysis.metrics import summarize
from harness.analysis.probe_summary import probe_summary
from harness.errors import ConjugateError
from harness.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl
from harness.outputs.markdown import render_report
from harness.outputs.plots import plot_rates
from harness.pipeline.context import RunContext
from harness.registry import TRANSFORMS
from harness.task import Task
from harness.types import Sample

#: errors that happen after generation, so `conjugate report --rescore` retries them
AFTER_GENERATION = ("scoring failed", "transform inverse failed", "back-translation")


def write_outputs(run_dir: Path, manifest: dict, samples: list[Sample], tasks: dict[str, Task]) -> dict:
    task_labels = {name: list(t.labels) for name, t in tasks.items()}
    primary = {n: t.primary_label for n, t in tasks.items()}
    summary = summarize(samples, {n: tuple(l) for n, l in task_labels.items()}, primary, manifest["spec"]["transforms"])
    try:
        summary.update(probe_summary(samples, summary, primary))
    except Exception as exc:  # the probe is an extra: never lose a run over it
        summary.update({"probe": [], "probe_correlation": []})
        note = f"probe summary failed: {type(exc).__name__}: {exc}"
        if note not in manifest.setdefault("notes", []):
            manifest["notes"].append(note)
    manifest["task_labels"] = task_labels
    manifest["primary_labels"] = {n: t.primary_label for n, t in tasks.items()}
    atomic_write_jsonl(run_dir / "samples.jsonl", (s.to_json() for s in samples))
    atomic_write_json(run_dir / "summary.json", summary)
    plots = {}
    for name, task in tasks.items():
        png = run_dir / f"{name}.png"
        tmp = run_dir / f".{name}.png.tmp.png"
        if plot_rates(summary, manifest["spec"]["transforms"], name, task.primary_label, tmp):
            os.replace(tmp, png)
            plots[name] = png.name
    manifest["plots"] = plots
    from harness.outputs.html import write_html  # noqa: PLC0415 (matplotlib/jinja2 only when writing)

    for extra in ("recovery-heatmap.png", *(f"{name}-probe.png" for name in tasks)):
        if (run_dir / extra).exists():
            (run_dir / extra).unlink()  # written afresh by write_html when there is something to plot
    write_html(run_dir, manifest, summary, samples)
    for extra in ("recovery-heatmap.png", *(f"{name}-probe.png" for name in tasks)):
        if (run_dir / extra).exists():
            plots[extra.removesuffix(".png")] = extra
    atomic_write_text(run_dir / "report.md", render_report(manifest, summary, task_labels))
    atomic_write_json(run_dir / "manifest.json", manifest)  # last: its presence marks a complete run
    return summary


def rerender(run_dir: str | Path, rescore: bool = False) -> Path:
    """Rebuild summary.json and report.md from samples.jsonl, optionally re-scoring; never generates."""
    run_dir = Path(run_dir)
    mpath, spath = run_dir / "manifest.json", run_dir / "samples.jsonl"
    if not mpath.exists() or not spath.exists():
        raise ConjugateError(f"{run_dir} is not a finished run folder (needs manifest.json and samples.jsonl)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        samples = [Sample.from_dict(d) for d in read_jsonl(spath)]
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ConjugateError(f"{run_dir}: could not read run files ({exc})") from None
    from harness.pipeline.runner import create_task, score_samples  # the pipeline imports this module

    task_options = manifest["spec"].get("task_options") or {}
    tasks = {name: create_task(name, task_options.get(name)) for name in manifest["spec"]["tasks"]}
    if rescore:
        ctx = RunContext(mt=manifest["spec"].get("mt") or {}, translations=manifest["spec"].get("translations"))
        transforms = {t: TRANSFORMS.create(t) for t in manifest["spec"]["transforms"]}
        for obj in (*tasks.values(), *transforms.values()):
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
