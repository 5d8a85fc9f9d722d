"""report.html: one self-contained page per run (tables, plots, a sample browser).

The report's views (:mod:`harness.outputs.views`) rendered with ``templates/report.html.j2`` in the shared
sandboxed, autoescaping environment (:mod:`harness.outputs.render`; model outputs are arbitrary text).
Everything is inline: CSS, JavaScript, the PNG plots as base64 data URIs and the samples as JSON in a
``<script type="application/json">`` block, so the file can be mailed or opened offline. Every number in
the tables links to ``#samples?task=..&transform=..``, which sets the sample browser's filters to the
samples behind it.
"""
from __future__ import annotations

import base64
import json
import math
from typing import Any, Mapping

from markupsafe import Markup

from harness.errors import TemplateError
from harness.outputs.render import TEMPLATES, render_template


def inline_assets() -> dict[str, Markup]:
    """The shared stylesheet and script, inlined into every page (report.html, compare.html)."""
    out = {}
    for key, name in (("css", "_style.css.j2"), ("js", "_browser.js.j2")):
        text = (TEMPLATES / name).read_text(encoding="utf-8")
        if "</" in text:  # would end the <style>/<script> element early
            raise TemplateError(f"template {name} must not contain '</'")
        out[key] = Markup(text)
    return out


def clean_json(obj: Any) -> Any:
    """NaN and infinities (Python's JSON writes them; JavaScript's JSON.parse rejects them) become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


def script_json(obj: Any) -> Markup:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' that could end it."""
    text = json.dumps(clean_json(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(view: dict, images: Mapping[str, bytes]) -> str:
    """report.html for a view built with samples (:func:`harness.outputs.views.build_report`); ``images``:
    the plots' PNG bytes by file name (:func:`harness.outputs.plots.draw_plots`), embedded as data URIs."""
    if view.get("browser") is None:
        raise ValueError("report.html needs the sample browser: build the view with the run's samples")
    return render_template("report.html.j2", {
        "report": view, "images": {name: data_uri(png) for name, png in images.items()},
        "samples_json": script_json(view["browser"]), **inline_assets()})


__all__ = ["inline_assets", "render_html", "render_template", "script_json"]
