"""One model's requests for ConjugateLM: the cached executor plus a backend opened on first need."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from harness.pipeline.execute import Executor, RequestKind


@dataclass
class ModelService:
    """One model's requests through the cache and, for what is missing, its backend (opened on first need)."""

    executor: Executor
    opener: Callable[[], Any]
    label: str = ""
    counts: dict[str, int] = field(default_factory=lambda: {"requests": 0, "cached": 0, "computed": 0, "failed": 0})
    skipped: list[str] = field(default_factory=list)

    def serve(self, kind: RequestKind, requests: Sequence[Any]) -> list[tuple[Any, str | None, bool]]:
        job = self.executor.lookup(kind, requests)
        out = self.executor.run(job, self.opener, f"{self.label}: {kind.name}" if self.label else kind.name)
        c = out.counts
        for k in ("requests", "cached", "computed", "failed"):
            self.counts[k] += c[k]
        if out.skipped:
            self.skipped.append(out.skipped)
        return [tuple(r) for r in out]
