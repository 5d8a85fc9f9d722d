"""Task-inference probe: which of two competing continuations does a model expect?

Greedy accuracy is coarse for small models. For a task with two competing
continuations (:meth:`harness.task.Task.probe_continuations`; icl_vs_if: the
in-context answer ``" WHAT"`` versus the instruction-following answer
``" 10"``), the probe scores both with the backend's log-likelihoods and
reports, per sample,

    p_icl = p(icl) / (p(icl) + p(if)) = sigmoid(logp_icl - logp_if)

which makes the paper's "implicit task inference" visible even where the
greedy output is neither answer.

* Requests are ``(final prompt, continuation)`` pairs, deduplicated, batched
  through ``Backend.loglikelihood`` and cached in the generation cache's
  ``loglikelihoods`` table (committed per batch), so a killed run resumes and
  a re-run computes nothing.
* For samples whose prompt a transform's ``forward`` produced (mode
  ``transform``), the same ``forward`` is applied to the continuations (their
  leading whitespace kept). For transforms that do not act word by word
  (base64, machine translation) that is only approximately how a response to
  the transformed prompt would start.
* Samples with errors get no probe; a backend without log-likelihoods
  (openai) or any probe failure leaves the samples without a probe and adds a
  note; nothing here stops a run.

:mod:`harness.analysis.probe_summary` adds ``probe`` (mean P per model x transform x group with
a bootstrap CI) and ``probe_correlation`` (Spearman of mean P vs the greedy
rate across (model, transform) cells, and per example) to ``summary.json``.
"""
from __future__ import annotations

import json
import math
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.backend import Backend, Failed
from harness.pipeline.cache import GenerationCache, ll_key
from harness.types import Sample

_LEAD = re.compile(r"^\s*")


class ProbeUnsupported(Exception):
    """The backend cannot score continuations (no ``loglikelihood``)."""


def sigmoid_diff(a: float, b: float) -> float:
    """``exp(a) / (exp(a) + exp(b))`` without overflow: the logistic function of ``a - b``."""
    d = a - b
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


def probe_values(names: Sequence[str], logps: Sequence[float]) -> dict[str, float]:
    """``{"logp_icl", "logp_if", "p_icl"}`` for names ``("icl", "if")``."""
    (a, b), (la, lb) = names, logps
    return {f"logp_{a}": la, f"logp_{b}": lb, f"p_{a}": sigmoid_diff(la, lb)}


# -- requests -------------------------------------------------------------------------
def continuations(samples: Sequence[Sample], tasks: dict, transforms: dict) -> tuple[dict[int, dict[str, str]], list[str]]:
    """Per sample (by ``id``), its two continuations in the final prompt's form; and notes.

    Samples with errors, of tasks without continuations, or whose
    continuations the transform could not map, get none.
    """
    out: dict[int, dict[str, str]] = {}
    notes: list[str] = []
    bad_tasks: set[str] = set()
    pending: dict[str, list[tuple[Sample, dict[str, str]]]] = defaultdict(list)  # transform -> samples to forward
    for s in samples:
        task = tasks.get(s.task)
        if s.error is not None or task is None or s.task in bad_tasks:
            continue
        try:
            conts = task.probe_continuations(s.reference)
        except Exception as exc:
            notes.append(f"probe: {s.task}.probe_continuations failed ({type(exc).__name__}: {exc}); "
                         f"no probe for {s.task}.")
            bad_tasks.add(s.task)
            continue
        if conts is None:
            continue
        if len(conts) != 2 or not all(isinstance(v, str) and v for v in conts.values()):
            notes.append(f"probe: {s.task}.probe_continuations must return two non-empty continuations, got "
                         f"{conts!r}; no probe for {s.task}.")
            bad_tasks.add(s.task)
            continue
        if s.mode == "transform":
            pending[s.transform].append((s, dict(conts)))
        else:
            out[id(s)] = dict(conts)
    for tid, group in pending.items():
        tr = transforms.get(tid)
        if tr is None:
            continue
        lead = {t: _LEAD.match(t).group(0) for _, conts in group for t in conts.values()}
        uniq = list(dict.fromkeys(t[len(lead[t]):] for _, conts in group for t in conts.values()))
        try:
            mapped = dict(zip(uniq, tr.forward_batch(uniq)))
        except Exception as exc:
            mapped = {t: Failed(f"{type(exc).__name__}: {exc}") for t in uniq}
        failed = 0
        for s, conts in group:
            fwd = {k: mapped[t[len(lead[t]):]] for k, t in conts.items()}
            if any(isinstance(v, Failed) for v in fwd.values()):
                failed += 1
                continue
            out[id(s)] = {k: lead[conts[k]] + v for k, v in fwd.items()}
        if failed:
            first = next(v.reason for v in mapped.values() if isinstance(v, Failed))
            notes.append(f"probe: {tid} forward failed on the continuations of {failed} samples ({first}); "
                         f"they have no probe.")
    return out, notes


@dataclass
class ProbeLookup:
    """One model's probe requests looked up in the cache."""

    samples: list[Sample]
    conts: list[dict[str, str]]
    keys: list[dict[str, str]]  # per sample: continuation name -> cache key
    uniq: dict[str, tuple[str, str]]  # cache key -> (context, continuation)
    hits: dict[str, tuple[float, bool]] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return [k for k in self.uniq if k not in self.hits]


def lookup(mkey: dict[str, Any], samples: Sequence[Sample], conts: dict[int, dict[str, str]],
           cache: GenerationCache) -> ProbeLookup:
    todo = [s for s in samples if s.error is None and id(s) in conts]
    cs = [conts[id(s)] for s in todo]
    keys, uniq = [], {}
    for s, c in zip(todo, cs):
        ks = {}
        for name, text in c.items():
            k = ll_key(mkey, s.transformed_prompt, text)
            uniq.setdefault(k, (s.transformed_prompt, text))
            ks[name] = k
        keys.append(ks)
    return ProbeLookup(todo, cs, keys, uniq, cache.get_ll_many(uniq))


def supports_loglikelihood(backend_cls: type) -> bool:
    """Whether a backend class implements ``loglikelihood`` (the base class only raises)."""
    fn = getattr(backend_cls, "loglikelihood", None)
    return fn is not None and fn is not Backend.loglikelihood


def _score_batch(backend, requests: list[tuple[str, str]]) -> list[tuple[float, bool] | str]:
    """Log-likelihoods of a batch; on failure retry one by one so a bad request fails alone.

    Returns ``(logprob, greedy)`` or the failure reason per request. Raises
    :class:`ProbeUnsupported` when the backend cannot score at all.
    """
    fn = getattr(backend, "loglikelihood", None)
    if fn is None:
        raise ProbeUnsupported(f"backend {type(backend).__name__} has no loglikelihood")

    def call(reqs):
        try:
            out = fn(reqs)
        except NotImplementedError as exc:
            raise ProbeUnsupported(str(exc) or f"backend {type(backend).__name__} does not support loglikelihood") from None
        if len(out) != len(reqs):
            raise RuntimeError(f"backend returned {len(out)} log-likelihoods for {len(reqs)} requests")
        res = []
        for lp, greedy in out:
            lp = float(lp)
            res.append((lp, bool(greedy)) if math.isfinite(lp) else f"non-finite log-likelihood {lp}")
        return res

    try:
        return call(requests)
    except (KeyboardInterrupt, SystemExit, ProbeUnsupported):
        raise
    except Exception as batch_exc:
        if len(requests) == 1:
            return [f"{type(batch_exc).__name__}: {batch_exc}"]
        out: list = []
        for r in requests:
            try:
                out.extend(call([r]))
            except (KeyboardInterrupt, SystemExit, ProbeUnsupported):
                raise
            except Exception as exc:
                out.append(f"{type(exc).__name__}: {exc}")
        return out


def probe_for_model(role: str, ms, mkey: dict[str, Any], found: ProbeLookup, cache: GenerationCache, pool,
                    batch_size: int, backend_cls: type | None = None, progress: bool = False) -> tuple[dict, list[str]]:
    """Fill ``probe`` of one model's samples from the cache or the backend; return (counts, notes).

    ``backend_cls``: the backend's class when known before opening it (a
    class without ``loglikelihood`` is skipped without being opened).
    Never raises except on Ctrl-C.
    """
    started = time.time()
    keep = [i for i, s in enumerate(found.samples) if s.error is None]  # generation may have failed since lookup
    found = ProbeLookup([found.samples[i] for i in keep], [found.conts[i] for i in keep],
                        [found.keys[i] for i in keep], found.uniq, found.hits)
    needed = {k for ks in found.keys for k in ks.values()}
    found.uniq = {k: v for k, v in found.uniq.items() if k in needed}
    if found.missing:  # the other model may have just computed them (same weights and options)
        found.hits.update(cache.get_ll_many(found.missing))
    results: dict[str, tuple[float, bool]] = {k: v for k, v in found.hits.items() if k in found.uniq}
    missing = found.missing
    counts: dict[str, Any] = {"samples": len(found.samples), "requests": 2 * len(found.samples),
                              "unique": len(found.uniq), "cached": len(results), "computed": 0, "failed": 0}
    notes: list[str] = []
    errors: dict[str, str] = {}
    if missing:
        skip = None
        if backend_cls is not None and not supports_loglikelihood(backend_cls):
            skip = f"backend {getattr(backend_cls, 'name', backend_cls.__name__)!r} does not support loglikelihood"
        backend = None
        if skip is None:
            try:
                backend = pool.get(role)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                skip = f"could not open the backend: {type(exc).__name__}: {exc}"
        if backend is not None:
            order = sorted(missing, key=lambda k: (-len(found.uniq[k][0]), found.uniq[k], k))
            bar = _progress(len(order), f"probe {role}: {ms.name}", progress)
            mjson = json.dumps(mkey, sort_keys=True)
            try:
                for i in range(0, len(order), batch_size):
                    batch = order[i : i + batch_size]
                    out = _score_batch(backend, [found.uniq[k] for k in batch])
                    rows = []
                    for k, r in zip(batch, out):
                        if isinstance(r, str):
                            errors[k] = r
                        else:
                            results[k] = r
                            rows.append((k, mjson, *found.uniq[k], *r))
                    cache.put_ll_many(rows)
                    counts["computed"] += len(rows)
                    counts["failed"] += len(batch) - len(rows)
                    bar.update(len(batch))
            except ProbeUnsupported as exc:
                skip = str(exc)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # a cache or bookkeeping failure: keep what was computed
                notes.append(f"probe for {role} ({ms.name}) stopped: {type(exc).__name__}: {exc}")
            finally:
                bar.close()
        if skip is not None:
            counts["skipped"] = skip
            notes.append(f"probe skipped for {role} ({ms.name}): {skip}; its samples have no P(ICL) values.")
    for s, ks in zip(found.samples, found.keys):
        names = list(ks)
        if all(ks[n] in results for n in names):
            s.probe = probe_values(names, [results[ks[n]][0] for n in names])
    if errors:
        first = next(iter(errors.values()))
        notes.append(f"probe for {role} ({ms.name}): {len(errors)} log-likelihood requests failed (first: {first}); "
                     f"their samples have no probe (failures are not cached: a re-run retries them).")
    counts["probed"] = sum(1 for s in found.samples if s.probe is not None)
    counts["seconds"] = round(time.time() - started, 2)
    return counts, notes


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="req", disable=not enabled or total == 0, dynamic_ncols=True,
                file=sys.stderr, smoothing=0.1)
