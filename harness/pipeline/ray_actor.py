"""The Ray actor of ``--executor ray``: one backend, answering whole batches (:mod:`harness.pipeline.ray_exec`).

The class here is plain Python; :mod:`harness.pipeline.ray_exec` wraps it with
``ray.remote`` when it starts actors, so importing this module never imports
Ray. An actor opens its backend from the model's :class:`ModelSpec` exactly as
the in-process pool does (the registry, or the run's ``backend_factory``) and
answers a batch with :func:`harness.pipeline.execute.ask`, so a failing batch
is retried request by request on the actor, as in-process.

Replies are tagged tuples, never exceptions, so that the driver can tell a
backend's answer from a lost actor (which Ray reports as ``RayActorError``):

* ``("ok", results)``: one result or :class:`~harness.types.Failed` per request;
* ``("unsupported", reason)``: the backend cannot serve this kind;
* ``("error", exception)``: the backend could not be opened (the driver raises it).
"""
from __future__ import annotations

import os
import socket
from typing import Any, Callable, Sequence

from harness.errors import ConjugateError, ModelLoadError
from harness.pipeline.models import ModelSpec


def open_backend(spec: ModelSpec, threads: int | None, factory: Callable[[ModelSpec], Any] | None):
    """The backend of ``spec``: the run's ``backend_factory`` (wrapped as the pool does) or the registry's."""
    from harness.pipeline.pool import as_backend
    from harness.registry import BACKENDS

    if factory is not None:
        return as_backend(factory(spec), spec)
    return BACKENDS.create(spec.backend, spec, threads=threads)


def portable(exc: BaseException, spec: ModelSpec) -> ConjugateError:
    """``exc`` as an error that pickles and prints as one line (a ConjugateError as it is)."""
    if isinstance(exc, ConjugateError):
        return exc
    first = (str(exc).strip().splitlines() or [""])[0]
    return ModelLoadError(f"model {spec.name!r}: a Ray actor could not open its {spec.backend} backend on "
                          f"{socket.gethostname()}: {type(exc).__name__}: {first}")


class BackendActor:
    """Holds one backend for the life of the actor; the driver sends it batches of one request kind."""

    def __init__(self, spec: ModelSpec, threads: int | None = None,
                 factory: Callable[[ModelSpec], Any] | None = None) -> None:
        self.spec, self.backend, self.error = spec, None, None
        try:
            self.backend = open_backend(spec, threads, factory)
        except Exception as exc:  # reported by ready()/ask(), so the driver raises it as a one-line error
            self.error = portable(exc, spec)

    def ready(self) -> dict[str, Any]:
        """Where the actor runs and what its backend says about itself (or why it could not open it)."""
        import ray

        info: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(),
                                "node": ray.get_runtime_context().get_node_id(), "error": self.error}
        if self.backend is not None:
            info["describe"] = self.describe()
        return info

    def unsupported(self, kind: str) -> str | None:
        return None if self.backend is None else self.backend.unsupported(kind)

    def ask(self, kind: str, requests: Sequence[Any]) -> tuple[str, Any]:
        from harness.pipeline.execute import KINDS, Unsupported, ask

        if self.backend is None:
            return "error", self.error
        try:
            return "ok", ask(KINDS[kind], self.backend, list(requests))
        except Unsupported as exc:
            return "unsupported", str(exc)

    def describe(self) -> dict[str, Any]:
        try:
            return self.backend.describe() if self.backend is not None else {}
        except Exception as exc:  # the manifest says why the backend's counts are missing
            return {"describe_error": f"{type(exc).__name__}: {exc}"}

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
