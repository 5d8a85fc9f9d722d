"""The on-disk generation cache (SQLite).

Keyed by model identity (weights hash or hub commit), backend, the
generation-affecting model options, sampling parameters and the exact final
prompt. Each batch is committed as soon as it completes, so a killed run
loses at most the batch in flight. Failures are *not* cached: a re-run
retries them.

The same file holds a ``loglikelihoods`` table for the task-inference probe
(:mod:`harness.pipeline.probe`): ``log p(continuation | context)`` keyed by the model
key, the exact context and the exact continuation (:func:`ll_key`), committed
per batch in the same way.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable


def cache_key(model_key: dict[str, Any], sampling: dict[str, Any], prompt: str) -> str:
    blob = json.dumps([model_key, sampling, prompt], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def ll_key(model_key: dict[str, Any], context: str, continuation: str) -> str:
    """Cache key of one log-likelihood request (disjoint from :func:`cache_key` by the leading tag)."""
    blob = json.dumps(["loglikelihood", model_key, context, continuation], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class GenerationCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(self.path, timeout=60)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS generations ("
            " key TEXT PRIMARY KEY, model TEXT, sampling TEXT, prompt TEXT, response TEXT, created REAL)"
        )
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS loglikelihoods ("
            " key TEXT PRIMARY KEY, model TEXT, context TEXT, continuation TEXT, logprob REAL, greedy INTEGER,"
            " created REAL)"
        )
        self.con.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, response FROM generations WHERE key IN ({','.join('?' * len(chunk))})"
            out.update(dict(self.con.execute(q, chunk).fetchall()))
        return out

    def put_many(self, rows: Iterable[tuple[str, str, str, str, str]]) -> None:
        """rows: (key, model, sampling_json, prompt, response); committed at once."""
        now = time.time()
        with self.con:
            self.con.executemany(
                "INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?)",
                [(*r, now) for r in rows],
            )

    # -- log-likelihoods (the probe) ---------------------------------------------
    def get_ll_many(self, keys: Iterable[str]) -> dict[str, tuple[float, bool]]:
        """Cached ``(sum logprob, is_greedy)`` for those of ``keys`` that are stored."""
        keys = list(keys)
        out: dict[str, tuple[float, bool]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, logprob, greedy FROM loglikelihoods WHERE key IN ({','.join('?' * len(chunk))})"
            out.update({k: (float(lp), bool(g)) for k, lp, g in self.con.execute(q, chunk).fetchall()})
        return out

    def put_ll_many(self, rows: Iterable[tuple[str, str, str, str, float, bool]]) -> None:
        """rows: (key, model_json, context, continuation, logprob, greedy); committed at once."""
        now = time.time()
        with self.con:
            self.con.executemany(
                "INSERT OR REPLACE INTO loglikelihoods VALUES (?,?,?,?,?,?,?)",
                [(k, m, c, cont, float(lp), int(bool(g)), now) for k, m, c, cont, lp, g in rows],
            )

    def __len__(self) -> int:
        return self.con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        self.con.close()
