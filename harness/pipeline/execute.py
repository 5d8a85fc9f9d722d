"""One cached request executor for every request kind a backend serves (in the spirit of lm-eval's CachingLM).

A *request kind* (:class:`RequestKind`: :data:`GENERATE`, :data:`LOGLIKELIHOOD`)
knows its cache table and key, how to ask a backend for a batch and how to
check a result. For one model's requests of one kind the executor

1. deduplicates them by cache key and looks them up (:meth:`Executor.lookup`;
   cheap, done before any backend is opened, so a fully cached run opens none);
2. looks the missing ones up again (:meth:`Executor.run`: the other model of
   the pair may have just computed them), opens the backend only if some are
   still missing, and asks it in length-bucketed batches: requests grouped by
   :meth:`RequestKind.group` (the sampling parameters), longest first, cut into
   batches over *all* unique requests so that a resumed run batches the same
   way (already-cached ones are dropped from their batch, also those another
   run sharing the cache has committed since the look-up; requests two runs
   work on at the same time are computed by both: work in flight is not shared);
3. on a batch failure retries the batch one by one, so one bad request fails
   alone; commits every batch to the cache as it completes, so a killed run
   loses at most the batch in flight; never caches a failure;
4. returns an :class:`Outcome`: per request, the result or the failure reason,
   and whether it came from the cache, plus counts.

A backend that cannot serve a kind (its class does not declare it, the open
engine refuses it, or the method raises ``NotImplementedError``) raises
:class:`Unsupported`; the outcome then records the reason as ``skipped``.

Adding a kind is one small subclass of :class:`RequestKind` (and the backend
method of the same name, declared in ``Backend.capabilities``).
"""
from __future__ import annotations

import json
import math
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, NamedTuple, Sequence

from harness.backend import Backend
from harness.pipeline.cache import GENERATIONS, LOGLIKELIHOODS, GenerationCache, Table, cache_key, ll_key
from harness.types import Failed, Sampling


#: ``after_batch(backend, requests, results)`` of :meth:`Executor.run`
AfterBatch = Callable[[Backend, list[Any], list[Any]], None]


class Unsupported(Exception):
    """The backend cannot serve this kind of request (the message says why)."""


# -- request kinds -----------------------------------------------------------------------------------------
class RequestKind(ABC):
    """What the executor needs to know about one kind of request."""

    name: ClassVar[str]  # the Backend method (and capability) that answers a batch
    table: ClassVar[Table]
    unit: ClassVar[str] = "req"  # progress-bar unit
    nouns: ClassVar[tuple[str, str]] = ("results", "requests")  # for "backend returned 3 results for 4 requests"

    @abstractmethod
    def key(self, mkey: dict[str, Any], request: Any) -> str:
        """The request's cache key (part of the on-disk format: never change it for an existing kind)."""

    def group(self, request: Any) -> str:
        """Requests batched together share a group (generation: the sampling parameters)."""
        return ""

    @abstractmethod
    def length(self, request: Any) -> int:
        """Batches are filled longest first (similar lengths pad less)."""

    def text(self, request: Any) -> str:
        """What ``order="prefix"`` sorts by: requests sharing a prefix of it land in one batch."""
        return str(request)

    def shared(self, request: Any) -> str | None:
        """Requests with the same value share one sequence of a batch (log-likelihoods: the context); None: none.

        They are kept together, and the batch size counts them once, so a batch is ``batch_size`` sequences
        (multiple-choice options after the same question cost one row, as in lm-eval's hf model).
        """
        return None

    @abstractmethod
    def call(self, backend: Backend, requests: Sequence[Any]) -> list[Any]:
        """Ask the backend for one batch (all of one group)."""

    def check(self, result: Any) -> Any:
        """The result as stored, or :class:`Failed` when it is not a usable result."""
        return result

    @abstractmethod
    def row(self, key: str, mjson: str, request: Any, result: Any) -> tuple:
        """The cache row ``(key, *table columns)`` of a computed result."""

    @abstractmethod
    def decode(self, values: tuple) -> Any:
        """A result from the table's ``values`` columns."""


class Generate(NamedTuple):
    prompt: str
    sampling: Sampling


class GenerateKind(RequestKind):
    """Text generation: ``Backend.generate(prompts, sampling)``, cached in ``generations``."""

    name, table, unit, nouns = "generate", GENERATIONS, "prompt", ("responses", "prompts")

    def key(self, mkey: dict[str, Any], request: Generate) -> str:
        return cache_key(mkey, request.sampling.key(), request.prompt)

    def group(self, request: Generate) -> str:
        return json.dumps(request.sampling.key(), sort_keys=True)

    def length(self, request: Generate) -> int:
        return len(request.prompt)

    def text(self, request: Generate) -> str:
        return request.prompt

    def call(self, backend: Backend, requests: Sequence[Generate]) -> list[str | Failed]:
        return backend.generate([r.prompt for r in requests], requests[0].sampling)

    def check(self, result: Any) -> str | Failed:
        if isinstance(result, (str, Failed)):
            return result
        return Failed(f"backend returned {type(result).__name__}, not text")

    def row(self, key: str, mjson: str, request: Generate, result: str) -> tuple:
        return key, mjson, self.group(request), request.prompt, result

    def decode(self, values: tuple) -> str:
        return values[0]


class Loglikelihood(NamedTuple):
    context: str
    continuation: str


class LoglikelihoodKind(RequestKind):
    """``(sum log p(continuation | context), is greedy)``: ``Backend.loglikelihood``, cached in ``loglikelihoods``."""

    name, table, nouns = "loglikelihood", LOGLIKELIHOODS, ("log-likelihoods", "requests")

    def key(self, mkey: dict[str, Any], request: Loglikelihood) -> str:
        return ll_key(mkey, request.context, request.continuation)

    def length(self, request: Loglikelihood) -> int:
        return len(request.context)

    def text(self, request: Loglikelihood) -> str:
        return request.context + "\0" + request.continuation

    def shared(self, request: Loglikelihood) -> str:
        return request.context

    def call(self, backend: Backend, requests: Sequence[Loglikelihood]) -> list[tuple[float, bool]]:
        return backend.loglikelihood([tuple(r) for r in requests])

    def check(self, result: Any) -> tuple[float, bool] | Failed:
        if isinstance(result, Failed):
            return result
        lp, greedy = result
        lp = float(lp)
        return (lp, bool(greedy)) if math.isfinite(lp) else Failed(f"non-finite log-likelihood {lp}")

    def row(self, key: str, mjson: str, request: Loglikelihood, result: tuple[float, bool]) -> tuple:
        return key, mjson, request.context, request.continuation, float(result[0]), int(bool(result[1]))

    def decode(self, values: tuple) -> tuple[float, bool]:
        return float(values[0]), bool(values[1])


GENERATE = GenerateKind()
LOGLIKELIHOOD = LoglikelihoodKind()
KINDS: dict[str, RequestKind] = {k.name: k for k in (GENERATE, LOGLIKELIHOOD)}


# -- one model's requests of one kind -----------------------------------------------------------------------
@dataclass
class Job:
    """One model's requests of one kind, deduplicated and looked up in the cache."""

    kind: RequestKind
    keys: list[str]  # per request, in the caller's order
    uniq: dict[str, Any]  # cache key -> the first request with it
    hits: dict[str, Any]  # cache key -> result, from the cache

    @property
    def missing(self) -> list[str]:
        return [k for k in self.uniq if k not in self.hits]


class Result(NamedTuple):
    value: Any  # the kind's result, or None when it failed
    error: str | None  # why it failed (never cached: a re-run retries it)
    cached: bool


@dataclass
class Outcome:
    """What :meth:`Executor.run` returns: per-request results, failures and counts."""

    job: Job
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None  # why the backend was not (or no longer) asked
    computed: int = 0

    def __iter__(self) -> Iterator[Result]:
        """One :class:`Result` per request, in the order given to :meth:`Executor.lookup`."""
        for k in self.job.keys:
            if k in self.values:
                yield Result(self.values[k], None, k in self.job.hits)
            else:
                yield Result(None, self.errors.get(k) or self.skipped or "no result", False)

    @property
    def counts(self) -> dict[str, Any]:
        c: dict[str, Any] = {"requests": len(self.job.keys), "unique": len(self.job.uniq),
                             "cached": len(self.job.hits), "computed": self.computed, "failed": len(self.errors)}
        if self.skipped is not None:
            c["skipped"] = self.skipped
        return c

    def settled(self, key: str) -> bool:
        """Whether ``key`` has its result or its failure here."""
        return key in self.values or key in self.errors

    @property
    def first_error(self) -> str | None:
        return next(iter(self.errors.values()), None)


class Executor:
    """Runs one model's requests through the cache and, for what is missing, the backend."""

    #: how a group's requests are ordered before they are cut into batches: ``length`` (longest first: padded
    #: batches pad less) or ``prefix`` (by text: requests sharing a prefix share a batch, for a backend that
    #: prefills a shared prefix once; see :meth:`Backend.batch_order`)
    order = "length"

    def __init__(self, cache: GenerationCache, mkey: dict[str, Any], batch_size: int, progress: bool = False) -> None:
        self.cache, self.mkey, self.batch_size, self.progress = cache, mkey, batch_size, progress
        self.mjson = json.dumps(mkey, sort_keys=True)

    def lookup(self, kind: RequestKind, requests: Sequence[Any]) -> Job:
        keys = [kind.key(self.mkey, r) for r in requests]
        uniq: dict[str, Any] = {}
        for k, r in zip(keys, requests):
            uniq.setdefault(k, r)
        return Job(kind, keys, uniq, self._get(kind, uniq))

    def run(self, job: Job, backend: Callable[[], Backend], desc: str = "", after_batch: AfterBatch | None = None,
            out: Outcome | None = None) -> Outcome:
        """Fill ``job``'s missing results; ``backend`` opens the backend (called only if something is missing).

        ``backend`` may raise :class:`Unsupported`; the outcome then records it
        as ``skipped``. Other exceptions (a backend that cannot be loaded,
        Ctrl-C) propagate; batches committed until then stay cached.
        ``after_batch(backend, requests, results)``: called once each computed batch is committed (results are
        values or :class:`Failed`); the probe scores the prompts a batch has just generated from there, while
        the backend still keeps their prefills. ``out``: an outcome some of whose requests were computed already
        (by :meth:`run_keys`); they are not asked again.
        """
        kind = job.kind
        out = Outcome(job) if out is None else out
        left = [k for k in job.missing if not out.settled(k)]
        if left:  # the other model may have just computed them (same weights and options)
            job.hits.update(self._get(kind, left))
        out.values.update(job.hits)
        left = [k for k in left if k not in job.hits]
        if not left:
            return out
        try:
            b = backend()
            why = b.unsupported(kind.name)
            if why is not None:
                raise Unsupported(why)
            with _progress(len(left), desc, kind.unit, self.progress) as bar:
                for batch in self.batches(job):
                    batch = [k for k in batch if not out.settled(k)]
                    todo = self._not_cached_yet(job, batch, out)
                    if todo:
                        results = self._run_batch(b, job, todo, out)
                        if after_batch is not None:
                            after_batch(b, [job.uniq[k] for k in todo], results)
                    bar.update(len(batch))
        except Unsupported as exc:
            out.skipped = str(exc)
        return out

    def run_keys(self, job: Job, backend: Backend, keys: Sequence[str], out: Outcome) -> None:
        """Compute ``keys`` of ``job`` now (in batches, not those cached since), into ``out``: a part of
        :meth:`run` ahead of it (``run(job, ..., out=out)`` then asks only for the rest)."""
        for cut in self._cut(job.kind, job, [k for k in keys if not out.settled(k)]):
            todo = self._not_cached_yet(job, cut, out)
            if todo:
                self._run_batch(backend, job, todo, out)

    def batches(self, job: Job) -> Iterator[list[str]]:
        """Missing keys in batches: per group, in :attr:`order`, cut over *all* unique requests (resumes batch alike)."""
        kind, groups = job.kind, {}
        for k, r in job.uniq.items():
            groups.setdefault(kind.group(r), []).append(k)
        for keys in groups.values():
            if self.order == "prefix":
                keys.sort(key=lambda k: (kind.text(job.uniq[k]), k))
            else:
                keys.sort(key=lambda k: (-kind.length(job.uniq[k]), kind.shared(job.uniq[k]) or "", k))
            for cut in self._cut(kind, job, keys):
                batch = [k for k in cut if k not in job.hits]
                if batch:
                    yield batch

    def _cut(self, kind: RequestKind, job: Job, keys: list[str]) -> Iterator[list[str]]:
        """``keys`` in batches of ``batch_size`` sequences (requests that share one count once)."""
        batch: list[str] = []
        seen: set = set()
        for k in keys:
            share = kind.shared(job.uniq[k])
            tag = k if share is None else ("shared", share)
            if tag not in seen and len(seen) == self.batch_size:
                yield batch
                batch, seen = [], set()
            batch.append(k)
            seen.add(tag)
        if batch:
            yield batch

    def _not_cached_yet(self, job: Job, batch: list[str], out: Outcome) -> list[str]:
        """``batch`` less what another run sharing the cache has committed since the look-up (taken from it)."""
        fresh = self._get(job.kind, batch)
        job.hits.update(fresh)
        out.values.update(fresh)
        return [k for k in batch if k not in fresh]

    def _run_batch(self, backend: Backend, job: Job, batch: list[str], out: Outcome) -> list[Any]:
        results = ask(job.kind, backend, [job.uniq[k] for k in batch])
        self._commit(job, batch, results, out)
        return results

    def _commit(self, job: Job, batch: list[str], results: list[Any], out: Outcome) -> None:
        """One batch's results into ``out``; the successes committed to the cache (failures are never cached)."""
        kind, rows = job.kind, []
        for k, r in zip(batch, results):
            if isinstance(r, Failed):
                out.errors[k] = r.reason
            else:
                out.values[k] = r
                rows.append(kind.row(k, self.mjson, job.uniq[k], r))
        self.cache.put(kind.table, rows)
        out.computed += len(rows)

    def _get(self, kind: RequestKind, keys) -> dict[str, Any]:
        return {k: kind.decode(v) for k, v in self.cache.get(kind.table, keys).items()}


def ask(kind: RequestKind, backend: Backend, requests: list[Any]) -> list[Any]:
    """One batch's results; if the batch fails, each request alone, so a bad request fails alone (as Failed)."""
    try:
        return _call(kind, backend, requests)
    except (KeyboardInterrupt, SystemExit, Unsupported):
        raise
    except Exception as exc:
        if len(requests) == 1:
            return [Failed(f"{type(exc).__name__}: {exc}")]
    out: list[Any] = []
    for r in requests:
        try:
            out.extend(_call(kind, backend, [r]))
        except (KeyboardInterrupt, SystemExit, Unsupported):
            raise
        except Exception as exc:
            out.append(Failed(f"{type(exc).__name__}: {exc}"))
    return out


def _call(kind: RequestKind, backend: Backend, requests: list[Any]) -> list[Any]:
    try:
        res = kind.call(backend, requests)
    except NotImplementedError as exc:
        raise Unsupported(str(exc) or f"backend {type(backend).__name__} does not support {kind.name}") from None
    if len(res) != len(requests):
        got, asked = kind.nouns
        raise RuntimeError(f"backend returned {len(res)} {got} for {len(requests)} {asked}")
    return [kind.check(r) for r in res]


def _progress(total: int, desc: str, unit: str, enabled: bool):
    """A tqdm bar on stderr (stdout stays clean for the run folder's path); off with --no-progress."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled or total == 0, dynamic_ncols=True,
                file=sys.stderr, smoothing=0.1)
