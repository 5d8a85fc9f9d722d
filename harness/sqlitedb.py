"""The SQLite files of the user cache: opened safely, failures as one-line errors, rows checked on read.

Three caches are SQLite files: generations and log-likelihoods
(:mod:`harness.pipeline.cache`), translations (:mod:`harness.mt.cache`) and
file hashes (:func:`harness.pipeline.models.file_sha256`). What they share
lives here:

* :func:`connect` opens one in WAL mode. Several processes opening a
  brand-new file at once race for the lock that ``PRAGMA journal_mode=WAL``
  and the first ``CREATE TABLE`` need, and SQLite answers some of them
  ``database is locked`` at once, without waiting for its busy timeout; those
  are retried (with jittered backoff) until :data:`TIMEOUT` has passed.
* Every SQLite failure a user can cause or meet (a damaged or foreign file,
  a folder or read-only path given as the file, a full disk, a lock held for
  minutes) becomes a :class:`CacheError`: one line naming the file and the
  fix (:func:`cache_error`, and :meth:`Store.guard` around every statement).
* :class:`Store` keeps a checksum of each row's stored result (sha256 of the
  table, key and values) in a ``checksums`` table beside the data tables, so
  the data tables keep the layout earlier versions wrote. A row whose result
  no longer matches its checksum (edited, damaged) is not used: :meth:`Store.get`
  leaves it out, so it is recomputed like a missing one and replaced, and
  :meth:`Store.close` prints one warning with the count. A file from before
  checksums gets them for all its rows the first time it is opened; a row
  without one (written later by an older version sharing the file) gets its
  checksum when first read, as the rows of an old file did.

This is an integrity check against damage and casual edits, not a signature:
whoever can write the file can also recompute a checksum.
"""
from __future__ import annotations

import hashlib
import json
import random
import shlex
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from harness.errors import ConjugateError

TIMEOUT = 60.0  # seconds a statement (or opening a new file) waits for another process's lock

# SQLite primary result codes (the low byte of an extended code)
_BUSY, _LOCKED, _READONLY, _CANTOPEN, _PERM, _IOERR, _FULL, _CORRUPT, _NOTADB = 5, 6, 8, 14, 3, 10, 13, 11, 26


class CacheError(ConjugateError):
    """A cache file cannot be used (damaged, not a database, not writable, locked); the message names it and the fix."""


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF
    msg = str(exc).lower()
    for needle, c in (("locked", _LOCKED), ("busy", _BUSY), ("readonly", _READONLY), ("unable to open", _CANTOPEN),
                      ("malformed", _CORRUPT), ("not a database", _NOTADB), ("disk is full", _FULL),
                      ("disk i/o", _IOERR)):
        if needle in msg:
            return c
    return None


def _locked(exc: sqlite3.Error) -> bool:
    return _code(exc) in (_BUSY, _LOCKED)


def cache_error(exc: sqlite3.Error, path: Path, what: str, where: str = "") -> CacheError:
    """``exc`` (met using the cache file ``path``) as a one-line :class:`CacheError` with the fix.

    ``what`` names the cache ("generation cache"); ``where`` says how to give another file
    ("--cache FILE or $CONJUGATE_CACHE"), for the errors whose fix is another location.
    """
    code, detail, q = _code(exc), str(exc) or type(exc).__name__, shlex.quote(str(path))
    other = f"give another path with {where}" if where else "give another path"
    if code in (_CORRUPT, _NOTADB):
        return CacheError(f"{what} {path} is damaged or not an SQLite file ({detail}); if it is the cache, move it "
                          f"aside: mv {q} {q}.bad - only cached work is lost, and it will be recomputed; if it is "
                          f"another file, {other}")
    if path.is_dir():
        return folder_error(path, what, where)
    if code in (_READONLY, _CANTOPEN, _PERM):
        return CacheError(f"cannot write {what} {path} ({detail}): it must be a writable file in a writable folder; "
                          f"fix the permissions or {other}")
    if code == _FULL:
        return CacheError(f"no space left for {what} {path} ({detail}); free some space or {other}")
    if code in (_BUSY, _LOCKED):
        return CacheError(f"{what} {path} stayed locked by another process for {TIMEOUT:g} s ({detail}); wait for "
                          f"the other run to finish or {other}")
    return CacheError(f"cannot use {what} {path} ({type(exc).__name__}: {detail}); if this persists, move it aside: "
                      f"mv {q} {q}.bad - only cached work is lost, and it will be recomputed")


def folder_error(path: Path, what: str, where: str = "") -> CacheError:
    return CacheError(f"{what} {path} is a folder, not a file; give a file path such as {path / 'cache.sqlite'}"
                      f"{f' with {where}' if where else ''}")


def connect(path: str | Path, what: str, where: str = "", setup: Callable[[sqlite3.Connection], None] | None = None,
            check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) the SQLite file ``path`` in WAL mode, then ``setup(con)`` (create its tables).

    A lock met while doing so is retried until :data:`TIMEOUT` (many runs
    starting on a brand-new cache at once); every other failure, and a
    folder or unwritable path, is a :class:`CacheError`.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise folder_error(path, what, where)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((a for a in path.parents if a.exists()), None)
        why = f"{blocker} is a file" if blocker is not None and not blocker.is_dir() else exc.strerror or str(exc)
        raise CacheError(f"cannot create the folder of {what} {path} ({why}); give a path in a writable folder"
                         f"{f' with {where}' if where else ''}") from None
    deadline, delay = time.monotonic() + TIMEOUT, 0.01
    while True:
        con = None
        try:
            con = sqlite3.connect(path, timeout=TIMEOUT, check_same_thread=check_same_thread)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            if setup is not None:
                setup(con)
            return con
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.Error as exc:
            if con is not None:
                con.close()
            if not (_locked(exc) and time.monotonic() < deadline):
                raise cache_error(exc, path, what, where) from None
            time.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 0.5)


# -- checked tables ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """One table: ``key TEXT PRIMARY KEY``, ``columns``, then ``created REAL``.

    ``values`` are the columns a cache hit returns (the result); they are what a row's checksum covers.
    """

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type)
    values: tuple[str, ...]

    def create_sql(self) -> str:
        cols = ", ".join(f"{n} {t}" for n, t in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ( key TEXT PRIMARY KEY, {cols}, created REAL)"

    def checksum(self, key: str, values: Sequence[Any]) -> str:
        """sha256 of the table, the key and the result as SQLite returns it (REAL as float, INTEGER as int)."""
        types = dict(self.columns)
        norm = [None if v is None else _TYPES.get(types[c], str)(v) for c, v in zip(self.values, values)]
        return hashlib.sha256(json.dumps([self.name, key, *norm], ensure_ascii=False).encode()).hexdigest()

    def value_positions(self) -> list[int]:
        """Where the ``values`` are in a row ``(key, *columns)``."""
        names = [n for n, _ in self.columns]
        return [1 + names.index(v) for v in self.values]


_TYPES: dict[str, Callable[[Any], Any]] = {"REAL": float, "INTEGER": int, "TEXT": str}
CHECKSUMS_SQL = ("CREATE TABLE IF NOT EXISTS checksums (tbl TEXT NOT NULL, key TEXT NOT NULL, sha256 TEXT NOT NULL, "
                 "PRIMARY KEY (tbl, key))")


class Store:
    """An SQLite cache file of :class:`Table` s whose rows are checked on read (see the module docstring).

    ``known``: every table this kind of file may hold, so a file from before checksums gets them for all of its
    rows at once. Safe to share between threads.
    """

    def __init__(self, path: str | Path, tables: Iterable[Table], what: str, where: str = "",
                 known: Iterable[Table] = ()) -> None:
        self.path, self.what, self.where = Path(path).expanduser(), what, where
        self._lock = threading.RLock()
        self._known = {t.name: t for t in (*known, *tables)}
        self._tables: set[str] = {t.name for t in tables}  # created when the file is opened
        self.rejected: dict[str, set[str]] = {}  # table -> keys of rows that failed their checksum
        self.con = connect(self.path, what, where, self._setup, check_same_thread=False)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """SQLite failures in the block as a :class:`CacheError` that names the file and the fix."""
        try:
            with self._lock:
                yield
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.Error as exc:
            raise cache_error(exc, self.path, self.what, self.where) from None

    def _setup(self, con: sqlite3.Connection) -> None:
        """Create the tables (and checksums for the rows of a file from before them) in one write transaction."""
        con.execute("BEGIN IMMEDIATE")
        try:
            had = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            con.execute(CHECKSUMS_SQL)
            for t in self._known.values():
                if t.name in self._tables:
                    con.execute(t.create_sql())
                if t.name in had and "checksums" not in had:
                    self._add_checksums(con, t)
            con.commit()
        except BaseException:
            con.rollback()
            raise

    @staticmethod
    def _add_checksums(con: sqlite3.Connection, t: Table) -> None:
        cur = con.execute(f"SELECT key, {', '.join(t.values)} FROM {t.name}")
        while rows := cur.fetchmany(10_000):
            con.executemany("INSERT OR REPLACE INTO checksums VALUES (?,?,?)",
                            [(t.name, r[0], t.checksum(r[0], r[1:])) for r in rows])

    def ensure(self, table: Table) -> None:
        if table.name not in self._tables:
            with self.guard(), self.con:
                self.con.execute(table.create_sql())
            self._tables.add(table.name)

    def get(self, table: Table, keys: Iterable[str]) -> dict[str, tuple]:
        """The stored ``values`` of those of ``keys`` that are in ``table`` and pass their checksum."""
        self.ensure(table)
        keys = list(dict.fromkeys(keys))
        out: dict[str, tuple] = {}
        adopt: list[tuple[str, str, str]] = []
        cols = ", ".join(f"t.{c}" for c in table.values)
        with self.guard():
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = (f"SELECT t.key, c.sha256, {cols} FROM {table.name} t LEFT JOIN checksums c "
                     f"ON c.tbl = ? AND c.key = t.key WHERE t.key IN ({','.join('?' * len(chunk))})")
                for key, stored, *values in self.con.execute(q, [table.name, *chunk]).fetchall():
                    if stored is None:  # written by a version without checksums (sharing this file): adopt it
                        adopt.append((table.name, key, table.checksum(key, values)))
                        out[key] = tuple(values)
                    elif stored == table.checksum(key, values):
                        out[key] = tuple(values)
                    else:
                        self.rejected.setdefault(table.name, set()).add(key)
        if adopt:
            with self.guard(), self.con:
                self.con.executemany("INSERT OR REPLACE INTO checksums VALUES (?,?,?)", adopt)
        return out

    def put(self, table: Table, rows: Iterable[Sequence[Any]]) -> None:
        """rows: ``(key, *columns)``; committed at once, with their checksums."""
        self.ensure(table)
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        now, pos = time.time(), table.value_positions()
        marks = ",".join("?" * (len(table.columns) + 2))
        sums = [(table.name, r[0], table.checksum(r[0], [r[i] for i in pos])) for r in rows]
        with self.guard(), self.con:
            self.con.executemany(f"INSERT OR REPLACE INTO {table.name} VALUES ({marks})", [(*r, now) for r in rows])
            self.con.executemany("INSERT OR REPLACE INTO checksums VALUES (?,?,?)", sums)

    def count(self, table: Table) -> int:
        self.ensure(table)
        with self.guard():
            return self.con.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()[0]

    def warning(self) -> str | None:
        """One line about the rows that failed their checksum (None: none did)."""
        n = sum(len(keys) for keys in self.rejected.values())
        if not n:
            return None
        many = n != 1
        return (f"warning: {n} cached result{'s' if many else ''} in {self.path} failed {'their' if many else 'its'} "
                f"integrity check (edited or damaged) and {'were' if many else 'was'} not used: recomputed like "
                f"missing ones")

    def close(self) -> None:
        """Close the file; print :meth:`warning` (once) if rows failed their checksum."""
        line = self.warning()
        if line:
            print(f"[conjugate] {line}", file=sys.stderr, flush=True)
            self.rejected.clear()
        self.con.close()
