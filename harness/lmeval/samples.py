"""lm-eval's per-document log (``log_samples``) plus ConjugateLM's request records -> harness samples."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from harness.lmeval.lm import RequestRecord
from harness.types import ERROR, Sample


@dataclass(frozen=True)
class Cell:
    """One (harness task, conjugate) cell of a run and the lm-eval task that serves it."""

    task: str  # the harness task, lmeval:<name>
    base: str  # the lm-eval task the harness task names
    lm_task: str  # the lm-eval task evaluated (a native rendering's task, or ``base``)
    transform: str  # the conjugate's id
    mode: str  # "transform" (forward/inverse around lm-eval's requests) or "native"


def to_samples(logged: Iterable[dict], records: dict[tuple, RequestRecord], role: str, cell: Cell,
               output_type: str) -> list[Sample]:
    """One sample per document; every filter's metrics merged into ``metrics`` (``name,filter`` keys)."""
    from harness.tasks.lmeval import outcome_of

    docs: dict[Any, list[dict]] = defaultdict(list)
    for entry in logged:
        docs[entry["doc_id"]].append(entry)
    out = []
    for doc_id, entries in docs.items():
        first = entries[0]
        recs = [records.get((cell.lm_task, doc_id, i)) for i in range(len(first["arguments"]))]
        metrics = {f"{m},{e['filter']}": v for e in entries for m in e["metrics"]
                   if _number(v := e.get(m)) is not None}
        metrics = {k: _number(v) for k, v in metrics.items()}
        primary = f"{first['metrics'][0]},{first['filter']}" if first["metrics"] else None
        error = next((r.error for r in recs if r is not None and r.error), None)
        if error is None and any(r is None for r in recs):
            error = "no record of the request (lm-eval did not send it through ConjugateLM)"
        s = Sample(model=role, task=cell.task, transform=cell.transform, example_id=str(doc_id), group="all",
                   mode=cell.mode, prompt=str(first["arguments"][0][0]),
                   transformed_prompt=str(recs[0].transformed[0]) if recs and recs[0] else "",
                   reference=_reference(cell, first, recs, metrics, primary, output_type),
                   cached=all(r is not None and r.cached for r in recs))
        if error is not None:
            s.error, s.outcome = error, ERROR
        else:
            _answer(s, first, recs, output_type)
            s.metrics = metrics
            sc = outcome_of(metrics, primary)
            s.outcome, s.detail = sc.label, sc.detail
        out.append(s)
    return out


def _answer(s: Sample, first: dict, recs: list[RequestRecord], output_type: str) -> None:
    """``response`` (raw) and ``inverted`` (what lm-eval scored), or the choices' log-likelihoods."""
    if output_type == "generate_until":
        s.response = recs[0].raw
        s.inverted = first["resps"][0][0] if first["resps"] and first["resps"][0] else None
    elif output_type == "multiple_choice":
        names = _choice_names([str(a[1]) for a in first["arguments"]])
        s.choice_logprobs = {n: float(r.raw[0]) for n, r in zip(names, recs)}
        s.response = s.inverted = max(s.choice_logprobs, key=s.choice_logprobs.__getitem__)
    else:  # loglikelihood, loglikelihood_rolling: the log-likelihood(s)
        s.response = s.inverted = json.dumps([_jsonable(r.raw) for r in recs])


def _reference(cell: Cell, first: dict, recs: list, metrics: dict, primary: str | None, output_type: str) -> dict:
    ref = {"lmeval_task": cell.lm_task, "output_type": output_type, "doc_id": first["doc_id"],
           "target": _jsonable(first.get("target")), "doc": _jsonable(first.get("doc")),
           "filtered": _jsonable(first.get("filtered_resps")), "metrics": metrics, "primary": primary,
           "doc_hash": first.get("doc_hash")}
    if output_type != "generate_until":
        ref["requests"] = [{"args": _jsonable(list(a)), "sent": _jsonable(list(r.transformed)) if r else None}
                           for a, r in zip(first["arguments"], recs)]
    return ref


def _choice_names(conts: list[str]) -> list[str]:
    """Choices by their text (stripped), made unique with their index where two read the same."""
    names = [c.strip() or str(i) for i, c in enumerate(conts)]
    return [n if names.count(n) == 1 else f"{i}:{n}" for i, n in enumerate(names)]


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(float(v)):
        return float(v)
    try:  # numpy scalars
        f = float(v)
        return f if math.isfinite(f) and not isinstance(v, (str, bytes, list, tuple, dict)) else None
    except (TypeError, ValueError):
        return None


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str, ensure_ascii=False))
