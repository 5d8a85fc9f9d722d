"""The pair's backends: what a model's results are cached under, and opening each backend once, when needed."""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Sequence

from harness.backend import REQUEST_KINDS, Backend
from harness.errors import ConfigError
from harness.pipeline.execute import Unsupported
from harness.pipeline.models import ModelSpec, model_identity
from harness.pipeline.spec import RunSpec
from harness.registry import BACKENDS
from harness.types import Sampling

ROLES = ("pretrained", "finetuned")


def backend_class(ms: ModelSpec) -> type[Backend]:
    """The registered backend class of ``ms`` (a plugin that is not a :class:`Backend` is a ConfigError)."""
    entry = BACKENDS.entry(ms.backend)
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigError(f"model {ms.name!r}: backend {ms.backend!r} ({entry.origin}) is not a harness.backend.Backend "
                          f"subclass; fix or uninstall the plugin")
    return cls


def model_key(ms: ModelSpec, factory: Callable[[ModelSpec], Any] | None = None) -> dict[str, Any]:
    """What a model's results are cached under: its identity and everything that changes its outputs.

    Options a backend lists as ``runtime_options`` (server address, engine
    memory, concurrency) are left out, so a restarted server or a different
    GPU share reuses the cache. ``factory``: the run's ``backend_factory``,
    whose :func:`factory_identity` joins the key (its backends are not the registry's).
    """
    cls = backend_class(ms)
    cls.validate(ms)
    identity = cls.identity(ms) or model_identity(ms)
    key = {
        "identity": identity, "backend": ms.backend, "dtype": ms.dtype, "bos": ms.bos,
        "chat_template": ms.chat_template,
        "options": {k: v for k, v in ms.options.items() if k not in cls.runtime_options},
    }
    numerics = cls.numerics(ms)
    if numerics:
        key["numerics"] = numerics
    made_by = factory_identity(factory) if factory is not None else None
    if made_by is not None:
        key["factory"] = made_by
    return key


def factory_identity(factory: Callable[[ModelSpec], Any]) -> str | None:
    """What a ``backend_factory``'s results are cached under, apart from the registry's; None: the registry's key.

    A factory's backends may answer differently from the registered backend (a fake, a test double), so their
    results are kept apart, under where the factory is defined: its module and qualified name (a class, a
    function, a callable object's class; all lambdas of one function share ``f.<locals>.<lambda>``). A factory
    names itself with a ``cache_identity`` string attribute, or sets it to None to declare that its backends
    answer exactly as the registry's (a wrapper that counts or times the real backend's calls): then it
    shares the plain run's cache.
    """
    if hasattr(factory, "cache_identity"):
        named = factory.cache_identity
        if named is not None and not isinstance(named, str):
            raise ConfigError(f"backend_factory.cache_identity must be a string or None, got {named!r}")
        return named
    target = factory
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)  # a bound method: its function
    if not isinstance(target, type) and not hasattr(target, "__qualname__"):
        target = type(target)  # a callable object: its class
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__qualname__)}"


class BackendPool:
    """Opens each role's backend when it is first needed and closes it when done.

    When both models need a backend of the same kind, the backend's
    ``open_pair`` may serve both from one engine (vLLM: base + LoRA request;
    ``vllm serve``: one server with the adapter as a LoRA module). Either way
    everything is closed in :meth:`close_all`, also on errors and Ctrl-C.

    ``factory`` (tests, benchmarks) replaces the registry: it gets a role's
    ModelSpec and returns a backend; then nothing is known about a backend
    before it is opened.
    """

    def __init__(self, spec: RunSpec, factory: Callable[[ModelSpec], Any] | None = None,
                 needed: set[str] | None = None) -> None:
        self.spec, self.factory = spec, factory
        self.needed = set(ROLES) if needed is None else set(needed)
        self.open: dict[str, Backend] = {}
        self.load_seconds: dict[str, float] = {}  # time to open each role's backend (model load), for the manifest
        self.described: dict[str, dict[str, Any]] = {}
        self._pair_tried = False

    def lacks(self, role: str, kind: str) -> str | None:
        """Why ``role``'s backend cannot serve ``kind``, when its class says so (None: unknown or it can)."""
        return None if self.factory is not None else backend_class(getattr(self.spec, role)).lacks(kind)

    def opener(self, role: str, kind: str, quiet: bool = False) -> Callable[[], Backend]:
        """For :meth:`Executor.run`: open ``role``'s backend for ``kind`` requests, or raise Unsupported.

        ``quiet``: a backend that cannot be opened is Unsupported too (the probe: an extra), not an error.
        """
        def open_() -> Backend:
            why = self.lacks(role, kind)
            if why is not None:
                raise Unsupported(why)
            if not quiet:
                return self.get(role)
            try:
                return self.get(role)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                raise Unsupported(f"could not open the backend: {type(exc).__name__}: {exc}") from None

        return open_

    def get(self, role: str) -> Backend:
        if role in self.open:
            return self.open[role]
        ms: ModelSpec = getattr(self.spec, role)
        started = time.time()
        if self.factory is not None:
            self.open[role] = as_backend(self.factory(ms), ms)
        elif not self._open_pair():
            self.open[role] = BACKENDS.create(ms.backend, ms, threads=self.spec.threads)
        for r in self.open:  # a pair opened together: the load is counted once, on the role that asked
            self.described.setdefault(r, self.open[r].describe())
        self.load_seconds[role] = round(time.time() - started, 2)
        self.described[role]["load_seconds"] = self.load_seconds[role]
        return self.open[role]

    def _open_pair(self) -> bool:
        pre, ft = self.spec.pretrained, self.spec.finetuned
        if self._pair_tried or pre.backend != ft.backend or not self.needed >= set(ROLES):
            return False
        self._pair_tried = True
        pair = backend_class(pre).open_pair(pre, ft, threads=self.spec.threads)
        if pair is None:
            return False
        self.open.update(zip(ROLES, pair))
        return True

    def release(self, role: str) -> None:
        backend = self.open.pop(role, None)
        if backend is not None:
            described = self.described.setdefault(role, {})
            try:  # what the backend counted while it ran (the hf prefix reuse), for the manifest
                described.update(backend.describe())
            except Exception as exc:  # the work is done; the manifest says why the counts are missing
                described["describe_error"] = f"{type(exc).__name__}: {exc}"
            backend.close()

    def close_all(self) -> None:
        for role in list(self.open):
            self.release(role)


class Adapted(Backend):
    """A ``backend_factory`` product that does not subclass :class:`Backend` (a test double, a benchmark wrapper).

    Its request methods are taken as found: this is the one place that looks
    at a backend's attributes instead of its declared capabilities.
    """

    name = "factory"

    def __init__(self, obj: Any, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.obj = obj
        self.kinds = frozenset(k for k in REQUEST_KINDS if callable(getattr(obj, k, None)))

    def unsupported(self, kind: str) -> str | None:
        return None if kind in self.kinds else f"backend {type(self.obj).__name__} does not support {kind}"

    def generate(self, prompts: Sequence[str], sampling: Sampling):
        return self.obj.generate(prompts, sampling)

    def loglikelihood(self, requests):
        return self.obj.loglikelihood(requests)

    def describe(self) -> dict[str, Any]:
        d = getattr(self.obj, "describe", None)
        return d() if callable(d) else {"backend": getattr(self.obj, "name", "?")}

    def close(self) -> None:
        close = getattr(self.obj, "close", None)
        if callable(close):
            close()


def as_backend(obj: Any, spec: ModelSpec) -> Backend:
    return obj if isinstance(obj, Backend) else Adapted(obj, spec)
