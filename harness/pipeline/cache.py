"""The on-disk request cache (SQLite): one table per request kind, in one file.

Each request kind (:mod:`harness.pipeline.execute`) keys its results by the
model key (identity, backend and the output-affecting options) and the exact
request: ``generations`` by sampling parameters and final prompt
(:func:`cache_key`), ``loglikelihoods`` by context and continuation
(:func:`ll_key`). Each batch is committed as soon as it completes, so a killed
run loses at most the batch in flight. Failures are *not* cached: a re-run
retries them. Each row's result is checksummed (:class:`harness.sqlitedb.Store`):
one that fails its checksum is recomputed, with a warning.

Runs sharing the file share finished work, not work in flight: a batch that
another run has committed is taken from the cache (the executor looks again
before each batch), but two identical runs started together generate
everything twice.

The key functions and table layouts are part of the on-disk format: caches
written by earlier versions stay valid only while they are unchanged.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from harness.sqlitedb import CacheError, Store, Table

__all__ = ["CacheError", "GENERATIONS", "LOGLIKELIHOODS", "GenerationCache", "Table", "cache_key", "ll_key"]


def cache_key(model_key: dict[str, Any], sampling: dict[str, Any], prompt: str) -> str:
    """Cache key of one generation."""
    blob = json.dumps([model_key, sampling, prompt], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def ll_key(model_key: dict[str, Any], context: str, continuation: str) -> str:
    """Cache key of one log-likelihood request (disjoint from :func:`cache_key` by the leading tag)."""
    blob = json.dumps(["loglikelihood", model_key, context, continuation], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


GENERATIONS = Table("generations", (("model", "TEXT"), ("sampling", "TEXT"), ("prompt", "TEXT"), ("response", "TEXT")),
                    ("response",))
LOGLIKELIHOODS = Table("loglikelihoods", (("model", "TEXT"), ("context", "TEXT"), ("continuation", "TEXT"),
                                          ("logprob", "REAL"), ("greedy", "INTEGER")), ("logprob", "greedy"))
WHERE = "--cache FILE or $CONJUGATE_CACHE"


class GenerationCache(Store):
    """The cache file; ``tables`` are created at once (more on first use), so the file's layout is stable.

    Opening, reading and writing it raise :class:`~harness.sqlitedb.CacheError` (one line with the fix) for a
    damaged file or an unusable path; a row that fails its checksum is a miss (:class:`~harness.sqlitedb.Store`).
    """

    def __init__(self, path: str | Path, tables: Iterable[Table] = (GENERATIONS, LOGLIKELIHOODS)):
        super().__init__(path, tables, "generation cache", WHERE, known=(GENERATIONS, LOGLIKELIHOODS))

    def count(self, table: Table = GENERATIONS) -> int:
        return super().count(table)

    def __len__(self) -> int:
        return self.count(GENERATIONS)
