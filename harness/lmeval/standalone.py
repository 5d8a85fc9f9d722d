"""A model service for ConjugateLM used on its own (``lm_eval.simple_evaluate(model=ConjugateLM(...))``)."""
from __future__ import annotations

import atexit
from typing import Any

from harness.lmeval.service import ModelService
from harness.pipeline.cache import GenerationCache
from harness.pipeline.execute import KINDS, Executor
from harness.pipeline.models import ModelSpec, cache_root
from harness.pipeline.pool import backend_class, model_key
from harness.registry import BACKENDS


def standalone_service(model: dict[str, Any], cache: str | None = None, batch_size: int | None = None,
                       progress: bool = True) -> ModelService:
    """The model's cached executor (the same cache file and keys as ``conjugate run``) and a lazy backend."""
    spec = ModelSpec.from_dict("model", {**model, "options": dict(model.get("options") or {})})
    mkey = model_key(spec)
    store = GenerationCache(cache or cache_root() / "generations.sqlite", [k.table for k in KINDS.values()])
    ex = Executor(store, mkey, batch_size or backend_class(spec).default_batch_size, progress)
    ex.order = backend_class(spec).batch_order(spec)
    opened: dict[str, Any] = {}

    def opener():
        if "backend" not in opened:
            opened["backend"] = BACKENDS.create(spec.backend, spec)
        return opened["backend"]

    def close() -> None:
        b = opened.pop("backend", None)
        if b is not None:
            b.close()
        store.close()

    atexit.register(close)
    return ModelService(ex, opener, label=spec.model)
