"""The sample browser's data (report.html only): every sample, compact, for the page's JavaScript.

Prompts are shared between the two models, so texts are stored once in ``texts`` and samples refer to
them by index; texts longer than :data:`MAX_TEXT` are cut (samples.jsonl keeps them whole).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable

from harness.outputs.format import display_name
from harness.outputs.views.common import MODEL_NAMES, MODELS, ordered

#: texts longer than this are cut in the embedded sample JSON (samples.jsonl keeps them whole)
MAX_TEXT = 4000


def as_dict(sample: Any) -> dict:
    """A Sample (or its JSON dict) as a dict."""
    if isinstance(sample, dict):
        return sample
    if dataclasses.is_dataclass(sample):
        return dataclasses.asdict(sample)
    if hasattr(sample, "to_json"):
        return json.loads(sample.to_json())
    raise TypeError(f"not a sample: {type(sample).__name__}")


def truncate(text: Any) -> tuple[Any, bool]:
    if not isinstance(text, str) or len(text) <= MAX_TEXT:
        return text, False
    return text[:MAX_TEXT] + f"\n… [{len(text) - MAX_TEXT} more characters cut here; samples.jsonl has the full text]", True


class _Texts:
    """Deduplicated, truncated texts; counts what was cut."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.index: dict[str, int] = {}
        self.truncated = 0

    def id(self, s: Any) -> int | None:
        if s is None:
            return None
        s, cut = truncate(s)
        self.truncated += cut
        if s not in self.index:
            self.index[s] = len(self.texts)
            self.texts.append(s)
        return self.index[s]


def _row(i: int, d: dict, texts: _Texts) -> dict:
    response, cut_r = truncate(d.get("response"))
    inverted, cut_i = truncate(d.get("inverted"))
    texts.truncated += cut_r + (cut_i and inverted != response)
    row = {"i": i, "m": d.get("model"), "t": d.get("task"), "x": d.get("transform"), "e": d.get("example_id"),
           "g": d.get("group"), "md": d.get("mode"), "o": d.get("outcome"),
           "p": texts.id(d.get("prompt")), "q": texts.id(d.get("transformed_prompt")), "r": response, "v": inverted}
    for key, short in (("detail", "d"), ("error", "err"), ("reference", "ref"), ("probe", "pr")):
        if d.get(key) not in (None, "", {}):
            row[short] = d[key]
    if d.get("cached"):
        row["c"] = 1
    return row


def sample_browser_view(samples: Iterable[Any], transforms: list[str], task_labels: dict[str, list[str]],
                        probe_names: dict[str, dict[str, str]]) -> dict:
    """The JSON the page embeds: samples, the filters' options, display names. ``probe_names``: per task,
    the probe's continuation keys to their words (``{"icl": "ICL", "if": "IF"}``)."""
    texts = _Texts()
    out = [_row(i, as_dict(s), texts) for i, s in enumerate(samples)]
    seen_transforms = ordered({r["x"] for r in out if r["x"] is not None}, transforms)
    outcomes: list[str] = []
    for labels in task_labels.values():
        outcomes += [l for l in labels if l not in outcomes]
    outcomes += sorted({r["o"] for r in out if r["o"] and r["o"] not in outcomes and r["o"] != "error"}) + ["error"]
    task_order = list(task_labels)
    return {
        "texts": texts.texts, "samples": out, "truncated": texts.truncated, "max_text": MAX_TEXT,
        "has_probe": any("pr" in r for r in out),
        "options": {
            "task": sorted({r["t"] for r in out if r["t"]}, key=lambda t: (task_order.index(t) if t in task_order else 99, t)),
            "transform": seen_transforms,
            "model": [m for m in MODELS if any(r["m"] == m for r in out)] + sorted({r["m"] for r in out if r["m"] and r["m"] not in MODELS}),
            "group": sorted({r["g"] for r in out if r["g"]}, key=lambda g: (g != "all", g)),
            "outcome": outcomes,
        },
        "names": {t: display_name(t) for t in seen_transforms},
        "model_names": MODEL_NAMES, "probe_names": probe_names,
    }
