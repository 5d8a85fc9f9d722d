"""Task-inference probe: which of two competing continuations does a model expect?

Greedy accuracy is coarse for small models. For a task with two competing
continuations (:meth:`harness.task.Task.probe_continuations`; icl_vs_if: the
in-context answer ``" WHAT"`` versus the instruction-following answer
``" 10"``), the probe scores both with the backend's log-likelihoods and
reports, per sample,

    p_icl = p(icl) / (p(icl) + p(if)) = sigmoid(logp_icl - logp_if)

which makes the paper's "implicit task inference" visible even where the
greedy output is neither answer.

* Requests are ``(final prompt, continuation)`` pairs sent through the cached
  executor (:mod:`harness.pipeline.execute`, kind ``loglikelihood``), so they
  are deduplicated, batched, committed per batch, and a re-run computes
  nothing.
* For samples whose prompt a transform's ``forward`` produced (mode
  ``transform``), the same ``forward`` is applied to the continuations
  (:func:`harness.pipeline.plan.forward_continuations`).
* Samples with errors get no probe; a backend without log-likelihoods
  (openai) or any probe failure leaves the samples without a probe and adds a
  note; nothing here stops a run.

The ``probe`` summary section (:mod:`harness.analysis.summary.probe`) adds
``probe`` (mean P per model x transform x group with a bootstrap CI) and
``probe_correlation`` (Spearman of mean P vs the greedy rate across
(model, transform) cells, and per example) to ``summary.json``.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any, Callable, Sequence

from harness.backend import Backend
from harness.pipeline.execute import LOGLIKELIHOOD, Executor, Job, Loglikelihood, Outcome, Unsupported
from harness.pipeline.plan import forward_continuations
from harness.types import Failed, Sample


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


def continuations(samples: Sequence[Sample], tasks: dict, transforms: dict) -> tuple[dict[int, dict[str, str]], list[str]]:
    """Per sample (by ``id``), its two continuations in the final prompt's form; and notes.

    Samples with errors, of tasks without continuations, or whose
    continuations the transform could not map, get none.
    """
    items: list[tuple[Sample, dict[str, str]]] = []
    notes: list[str] = []
    bad_tasks: set[str] = set()
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
        items.append((s, dict(conts)))
    mapped = forward_continuations(items, transforms)
    out = {i: c for i, c in mapped.items() if not isinstance(c, Failed)}
    failed = Counter(s.transform for s, _ in items if isinstance(mapped.get(id(s)), Failed))
    first = {s.transform: mapped[id(s)].reason for s, _ in reversed(items) if isinstance(mapped.get(id(s)), Failed)}
    for tid, n in failed.items():
        notes.append(f"probe: {tid} forward failed on the continuations of {n} samples ({first[tid]}); "
                     f"they have no probe.")
    return out, notes


def requests(samples: Sequence[Sample], conts: dict[int, dict[str, str]]) -> tuple[list[Sample], list[Loglikelihood]]:
    """The samples to probe (no error, with continuations) and their requests, two per sample in order."""
    todo = [s for s in samples if s.error is None and id(s) in conts]
    return todo, [Loglikelihood(s.transformed_prompt, t) for s in todo for t in conts[id(s)].values()]


def lookup(executor: Executor, samples: Sequence[Sample], conts: dict[int, dict[str, str]]) -> Job:
    return executor.lookup(LOGLIKELIHOOD, requests(samples, conts)[1])


class Alongside:
    """The probe scored alongside generation: after each generation batch, the probe requests of the prompts it
    has just generated from (an ``after_batch`` of :meth:`Executor.run`).

    The hf backend keeps each generated prompt's prefill in a bounded store, and the probe's two continuations
    then cost a few decode steps instead of a prefill. Scored only after all generation, the prefills of a
    large run (``--limit 100``: ~1,000 prompts, ~7 GB of keys and values) are long evicted. Prompts whose
    generation failed are not probed (as :func:`probe_model` would not). The rest of the probe (prompts whose
    generation came from the cache) runs in :func:`probe_model`, which reports both parts as one.
    """

    def __init__(self, executor: Executor, job: Job, backend: Callable[[], Backend]) -> None:
        self.executor, self.job, self.backend = executor, job, backend
        self.out = Outcome(job)
        self.by_prompt: dict[str, list[str]] = {}
        for k in job.missing:
            self.by_prompt.setdefault(job.uniq[k].context, []).append(k)
        self.seconds = 0.0
        self.off: str | None = None  # why the backend cannot serve it (the rest of the probe then says so too)

    def __call__(self, _backend: Backend, generated: list[Any], results: list[Any]) -> None:
        keys = [k for r, res in zip(generated, results) if not isinstance(res, Failed)
                for k in self.by_prompt.pop(r.prompt, [])]
        if not keys or self.off is not None:
            return
        started = time.time()
        try:
            b = self.backend()
            self.off = b.unsupported(LOGLIKELIHOOD.name)
            if self.off is None:
                self.executor.run_keys(self.job, b, keys, self.out)
        except Unsupported as exc:
            self.off = str(exc)
        finally:
            self.seconds += time.time() - started

    def part(self, job: Job) -> tuple[Job, Outcome]:
        """``job`` (the probe looked up after generation) continuing this part: what was computed or failed here
        is this part's result, not a cache hit of ``job`` (the manifest counts it as computed)."""
        here = {k for k in self.out.values if k not in self.job.hits} | set(self.out.errors)
        job = Job(job.kind, job.keys, job.uniq, {k: v for k, v in job.hits.items() if k not in here})
        values = {k: self.out.values[k] for k in job.uniq if k in here and k in self.out.values}
        errors = {k: e for k, e in self.out.errors.items() if k in job.uniq}
        return job, Outcome(job, values=values, errors=errors, computed=len(values))


def probe_model(label: str, executor: Executor, samples: Sequence[Sample], conts: dict[int, dict[str, str]],
                backend: Callable[[], Backend], progress_desc: str = "",
                alongside: Alongside | None = None) -> tuple[dict[str, Any], list[str]]:
    """Fill ``probe`` of one model's samples from the cache or the backend; return (counts, notes).

    ``label`` names the model in notes (``pretrained (gemma-3-270m)``). Samples
    whose generation failed get no probe. ``alongside``: the part already scored
    during generation. Never raises except on Ctrl-C.
    """
    started = time.time() - (alongside.seconds if alongside else 0.0)
    todo, reqs = requests(samples, conts)
    notes: list[str] = []
    try:
        job = executor.lookup(LOGLIKELIHOOD, reqs)
        if alongside is None:
            outcome = executor.run(job, backend, progress_desc)
        else:  # its requests and results, less those of samples whose generation failed since
            job, out = alongside.part(job)
            outcome = executor.run(job, backend, progress_desc, out=out)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a cache or bookkeeping failure: the run goes on without this model's probe
        counts = {"samples": len(todo), "skipped": f"{type(exc).__name__}: {exc}", "probed": 0,
                  "seconds": round(time.time() - started, 2)}
        return counts, [f"probe for {label} stopped: {type(exc).__name__}: {exc}"]
    results = list(outcome)
    for i, s in enumerate(todo):
        pair = results[2 * i : 2 * i + 2]
        if all(r.error is None for r in pair):
            s.probe = probe_values(list(conts[id(s)]), [r.value[0] for r in pair])
    if outcome.skipped is not None:
        notes.append(f"probe skipped for {label}: {outcome.skipped}; its samples have no probe values.")
    if outcome.errors:
        notes.append(f"probe for {label}: {len(outcome.errors)} log-likelihood requests failed (first: "
                     f"{outcome.first_error}); their samples have no probe (failures are not cached: a re-run "
                     f"retries them).")
    counts = {"samples": len(todo), **outcome.counts, "probed": sum(1 for s in todo if s.probe is not None),
              "seconds": round(time.time() - started, 2)}
    if alongside is not None:
        counts["alongside_generation"] = alongside.out.computed
    return counts, notes
