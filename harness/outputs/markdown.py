"""report.md: the report's views (:mod:`harness.outputs.views`) rendered with ``templates/report.md.j2``.

Same sections and numbers as report.html, as paper-style Markdown tables; plots are linked by file name
(they lie next to report.md in the run folder)."""
from __future__ import annotations

from harness.outputs.render import render_template
from harness.outputs.views import build_report


def render_markdown(view: dict) -> str:
    """report.md's text for a view built by :func:`harness.outputs.views.build_report`."""
    return render_template("report.md.j2", {"report": view})


def render_report(manifest: dict, summary: dict, task_labels: dict[str, list[str]] | None = None,
                  plots: dict[str, str] | None = None) -> str:
    """report.md from a manifest and summary alone (``task_labels`` overrides the manifest's)."""
    if task_labels is not None:
        manifest = {**manifest, "task_labels": task_labels}
    return render_markdown(build_report(manifest, summary, plots=plots))
