"""What every view builder shares: the table cell, the sample-browser link, the conjugates in order.

Views are plain data: no HTML, no Markdown. A number is formatted once, here or in the section's
builder (with :mod:`harness.outputs.format`), and both templates print the same text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

MODELS = ("pretrained", "finetuned")
MODEL_NAMES = {"pretrained": "pretrained", "finetuned": "fine-tuned"}
BASELINE = "identity"


@dataclass(frozen=True)
class Cell:
    """One table value: its text, and (HTML only) the samples behind it and a hover title.

    ``str(cell)`` is the text, so the Markdown template prints ``{{ cell }}`` and the HTML template
    turns ``href`` into a link that sets the sample browser's filters."""

    text: str
    href: str | None = None
    title: str | None = None
    cls: str = ""

    def __str__(self) -> str:
        return self.text


DASH = Cell("—")


def finite(x: Any) -> bool:
    """A real number that is not NaN/inf (summary.json values may be null, NaN or missing)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def href(**filters: Any) -> str:
    """A link that sets the sample browser's filters (None values are left out; lists join with commas)."""
    q = {k: (",".join(v) if isinstance(v, (list, tuple)) else v) for k, v in filters.items() if v not in (None, "")}
    return "#samples" + ("?" + urlencode(q) if q else "")


def anchor(task: str) -> str:
    return "task-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in task)


def model_name(model: str | None) -> str:
    return MODEL_NAMES.get(model or "", model or "?")


# -- the run's facts (tasks, labels, primary labels: harness.outputs.rundir.RunInfo) -----------

def transforms_of(manifest: dict, summary: dict) -> list[str]:
    """The spec's conjugates in order, then any the summary has that a hand-made spec did not list."""
    transforms = list((manifest.get("spec") or {}).get("transforms") or [])
    for r in summary.get("rows") or []:
        if r.get("transform") not in transforms:
            transforms.append(r["transform"])
    return transforms


def ordered(keys: set[str], transforms: list[str]) -> list[str]:
    """``keys`` (transform ids) in the spec's order, unknown ones last and alphabetically."""
    order = {t: i for i, t in enumerate(transforms)}
    return sorted(keys, key=lambda t: (order.get(t, len(order)), t))
