"""The translation cache (SQLite), shared across runs.

Keyed by provider (name, version and output-affecting options), source and
target language, and the exact text sent. Each batch is committed as soon as
it completes, so a killed run keeps every finished translation. Failures are
never cached: a re-run asks again.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable


def translation_key(provider: str, source: str, target: str, text: str) -> str:
    return hashlib.sha256(json.dumps([provider, source, target, text], ensure_ascii=False).encode()).hexdigest()


class TranslationCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.con = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS translations (key TEXT PRIMARY KEY, provider TEXT, source TEXT,"
            " target TEXT, text TEXT, translation TEXT, created REAL)"
        )
        self.con.commit()

    def get_many(self, provider: str, source: str, target: str, texts: Iterable[str]) -> dict[str, str]:
        """text -> cached translation, for the texts that have one."""
        by_key = {translation_key(provider, source, target, t): t for t in texts}
        keys = list(by_key)
        out: dict[str, str] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT key, translation FROM translations WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self.con.execute(q, chunk).fetchall():
                    out[by_key[k]] = v
        return out

    def put_many(self, provider: str, source: str, target: str, pairs: Iterable[tuple[str, str]]) -> None:
        """(text, translation) pairs, committed at once."""
        now = time.time()
        rows = [(translation_key(provider, source, target, t), provider, source, target, t, tr, now) for t, tr in pairs]
        with self._lock, self.con:
            self.con.executemany("INSERT OR REPLACE INTO translations VALUES (?,?,?,?,?,?,?)", rows)

    def __len__(self) -> int:
        with self._lock:
            return self.con.execute("SELECT COUNT(*) FROM translations").fetchone()[0]

    def close(self) -> None:
        self.con.close()
