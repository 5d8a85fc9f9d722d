"""The on-disk request cache (SQLite): one table per request kind, in one file.

Each request kind (:mod:`harness.pipeline.execute`) keys its results by the
model key (identity, backend and the output-affecting options) and the exact
request: ``generations`` by sampling parameters and final prompt
(:func:`cache_key`), ``loglikelihoods`` by context and continuation
(:func:`ll_key`). Each batch is committed as soon as it completes, so a killed
run loses at most the batch in flight. Failures are *not* cached: a re-run
retries them.

The key functions and table layouts are part of the on-disk format: caches
written by earlier versions stay valid only while they are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence


def cache_key(model_key: dict[str, Any], sampling: dict[str, Any], prompt: str) -> str:
    """Cache key of one generation."""
    blob = json.dumps([model_key, sampling, prompt], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def ll_key(model_key: dict[str, Any], context: str, continuation: str) -> str:
    """Cache key of one log-likelihood request (disjoint from :func:`cache_key` by the leading tag)."""
    blob = json.dumps(["loglikelihood", model_key, context, continuation], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Table:
    """One request kind's table: ``key TEXT PRIMARY KEY``, ``columns``, then ``created REAL``.

    ``values`` are the columns a cache hit returns (the result).
    """

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type)
    values: tuple[str, ...]

    def create_sql(self) -> str:
        cols = ", ".join(f"{n} {t}" for n, t in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ( key TEXT PRIMARY KEY, {cols}, created REAL)"


GENERATIONS = Table("generations", (("model", "TEXT"), ("sampling", "TEXT"), ("prompt", "TEXT"), ("response", "TEXT")),
                    ("response",))
LOGLIKELIHOODS = Table("loglikelihoods", (("model", "TEXT"), ("context", "TEXT"), ("continuation", "TEXT"),
                                          ("logprob", "REAL"), ("greedy", "INTEGER")), ("logprob", "greedy"))


class GenerationCache:
    """The cache file; ``tables`` are created at once (more on first use), so the file's layout is stable."""

    def __init__(self, path: str | Path, tables: Iterable[Table] = (GENERATIONS, LOGLIKELIHOODS)):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(self.path, timeout=60)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self._tables: set[str] = set()
        for t in tables:
            self.ensure(t)

    def ensure(self, table: Table) -> None:
        if table.name not in self._tables:
            with self.con:
                self.con.execute(table.create_sql())
            self._tables.add(table.name)

    def get(self, table: Table, keys: Iterable[str]) -> dict[str, tuple]:
        """The stored ``values`` of those of ``keys`` that are in ``table``."""
        self.ensure(table)
        keys = list(keys)
        out: dict[str, tuple] = {}
        cols = ", ".join(table.values)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, {cols} FROM {table.name} WHERE key IN ({','.join('?' * len(chunk))})"
            out.update({row[0]: tuple(row[1:]) for row in self.con.execute(q, chunk).fetchall()})
        return out

    def put(self, table: Table, rows: Iterable[Sequence[Any]]) -> None:
        """rows: ``(key, *columns)``; committed at once."""
        self.ensure(table)
        now = time.time()
        marks = ",".join("?" * (len(table.columns) + 2))
        with self.con:
            self.con.executemany(f"INSERT OR REPLACE INTO {table.name} VALUES ({marks})", [(*r, now) for r in rows])

    def count(self, table: Table = GENERATIONS) -> int:
        self.ensure(table)
        return self.con.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()[0]

    def __len__(self) -> int:
        return self.count(GENERATIONS)

    def close(self) -> None:
        self.con.close()
