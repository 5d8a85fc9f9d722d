"""Fault injection: the harness under kills, concurrency, damaged caches, torn run folders and a faulty server.

Usage: ``python bench/faults.py [--quick] [--limit N] [--keep DIR]``

Every case is real: ``conjugate`` CLI subprocesses on the tiny random Llama
(:func:`harness.training.tiny.build_tiny_llama`), real SQLite files, a real HTTP
server. Prints a markdown table ``case | tries | held | detail`` and exits 1 if
any case did not hold.

1. **kill**: SIGKILL a run three times at different points and Ctrl-C it once,
   then finish it; samples.jsonl must equal a clean run's (fields but
   ``cached``; probe values to 1e-4) and the finishing run must generate only
   what was missing.
2. **concurrency**: 4 ``conjugate report RUN`` at once on one finished folder;
   8 processes opening one brand-new generation cache at once.
3. **corrupt cache**: the generation, translation and file-hash caches
   truncated or overwritten with random bytes: exit non-zero, one line naming
   the file, no traceback. A cached response edited in SQLite is regenerated
   with a warning (checksums).
4. **torn folder**: a finished run without manifest.json, with different
   samples, a duplicated line, an empty samples.jsonl: ``conjugate report`` and
   ``conjugate check RUN --min 0.0`` exit non-zero with one line.
5. **faulty server**: an OpenAI-compatible server failing 30% of prompts
   (seeded; HTTP 500 or a dropped connection): every failure is an ERROR sample,
   and a re-run against the healed server fills them in.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.io import read_jsonl  # noqa: E402
from tests.test_runner import _count_rows as gen_rows  # noqa: E402 (committed generation rows, as the resume test waits)

TIMEOUT = 600


class Ctx:
    def __init__(self, tmp: Path, model: Path, limit: int, tries: int):
        self.tmp, self.model, self.limit, self.tries = tmp, model, limit, tries
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "CONJUGATE_CACHE": str(tmp / "user-cache")}
        self.finished: Path | None = None  # a clean, finished run folder (case 1 makes it)

    def run_args(self, cache: Path, out: Path, run_id: str, *extra: str) -> list[str]:
        return ["run", "--pretrained", str(self.model), "--finetuned", str(self.model), "--tasks", "icl_vs_if",
                "--transforms", "identity,leetspeak", "--limit", str(self.limit), "--batch-size", "2",
                "--max-new-tokens", "12", "--cache", str(cache), "--out", str(out), "--run-id", run_id,
                "--no-progress", *extra]

    def cli(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                              env={**self.env, **(env or {})}, cwd=ROOT, timeout=TIMEOUT)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=self.env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str | None:
    """None when ``proc`` failed as it should (non-zero, no traceback, a last line naming ``fragments``), else why."""
    lines = proc.stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    if proc.returncode == 0:
        return "exit 0"
    if "Traceback" in proc.stderr:
        return "traceback"
    if not last.startswith("conjugate: error: "):
        return f"last line {last[:80]!r}"
    missing = [f for f in fragments if f not in last]
    return f"{missing} not in {last[:120]!r}" if missing else None


def differences(a: list[dict], b: list[dict]) -> int:
    """Rows that differ (all fields but ``cached``; probe values to 1e-4), plus the difference in row count."""
    def same(x: dict, y: dict) -> bool:
        strip = lambda s: {k: v for k, v in s.items() if k not in ("cached", "probe")}  # noqa: E731
        if strip(x) != strip(y) or (x.get("probe") is None) != (y.get("probe") is None):
            return False
        px, py = x.get("probe") or {}, y.get("probe") or {}
        return px.keys() == py.keys() and all(abs(px[k] - py[k]) <= 1e-4 for k in px)
    return sum(not same(x, y) for x, y in zip(a, b)) + abs(len(a) - len(b))


# -- 1. kill ---------------------------------------------------------------------------------------------

def case_kill(c: Ctx) -> list[tuple]:
    cache, out = c.tmp / "kill.sqlite", c.tmp / "kill-res"
    args = c.run_args(cache, out, "r")
    total = 2 * c.limit  # unique prompts: both roles share the model, so the finetuned pass is all cache hits
    landed = []
    for k, sig in enumerate([signal.SIGKILL] * 3 + [signal.SIGINT], start=1):
        target = max(gen_rows(cache) + 1, total * k // 5)
        proc = c.popen(*args)
        deadline = time.time() + TIMEOUT
        while gen_rows(cache) < target and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        finished_first = proc.poll() is not None
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        tb = sig == signal.SIGINT and "Traceback" in err
        landed.append((sig.name, gen_rows(cache), proc.returncode, finished_first, tb))
    before = gen_rows(cache)
    final = c.cli(*args)
    clean = c.cli(*c.run_args(c.tmp / "clean.sqlite", c.tmp / "clean-res", "clean"))
    if final.returncode or clean.returncode:
        return [("kill", 4, False, f"final exit {final.returncode}, clean exit {clean.returncode}: "
                 f"{(final.stderr or clean.stderr).strip()[-200:]}")]
    c.finished = c.tmp / "clean-res" / "clean"
    gen = json.loads((out / "r" / "manifest.json").read_text())["generation"]
    generated = sum(g["generated"] for g in gen.values())
    total = gen_rows(cache)
    recomputed = generated - (total - before)
    diff = differences(read_jsonl(out / "r" / "samples.jsonl"), read_jsonl(c.finished / "samples.jsonl"))
    mid = all(0 < rows < total and not first for _, rows, _, first, _ in landed)
    tracebacks = sum(tb for *_, tb in landed)
    n = len(read_jsonl(c.finished / "samples.jsonl"))
    where = ", ".join(f"{s} at {rows}/{total} (exit {rc})" for s, rows, rc, _, _ in landed)
    held = diff == 0 and recomputed == 0 and mid and tracebacks == 0
    return [("kill: 3 SIGKILL + 1 SIGINT, then resume", 4, held,
             f"{where}; differences {diff}/{n} samples; rows recomputed {recomputed}; "
             f"Ctrl-C tracebacks {tracebacks}")]


# -- 2. concurrency --------------------------------------------------------------------------------------

def _open_cache(path: str, barrier, results) -> None:
    from harness.pipeline.cache import GenerationCache

    barrier.wait()
    try:
        GenerationCache(path).close()
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


def case_concurrency(c: Ctx) -> list[tuple]:
    rows = []
    if c.finished is None:
        rows.append(("concurrency: 4 reports at once", 0, False, "no finished run (kill case failed)"))
    else:
        folder = c.tmp / "conc-run"
        shutil.copytree(c.finished, folder)
        bad = []
        for _ in range(c.tries):
            procs = [c.popen("report", str(folder)) for _ in range(4)]
            for p in procs:
                _, err = p.communicate(timeout=TIMEOUT)
                if p.returncode or "Traceback" in err:
                    bad.append(f"exit {p.returncode}: {err.strip().splitlines()[-1:] }")
        rows.append(("concurrency: 4 `conjugate report` at once", 4 * c.tries, not bad,
                     f"failures {len(bad)}/{4 * c.tries}" + (f": {bad[0]}" if bad else "")))
    mp = multiprocessing.get_context("fork")
    fails = []
    for i in range(c.tries):
        path = c.tmp / f"new-cache-{i}" / "generations.sqlite"
        path.parent.mkdir()
        barrier, results = mp.Barrier(8), mp.Queue()
        procs = [mp.Process(target=_open_cache, args=(str(path), barrier, results)) for _ in range(8)]
        for p in procs:
            p.start()
        got = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        fails += [g for g in got if g != "ok"]
    rows.append(("concurrency: 8 opens of a brand-new cache", 8 * c.tries, not fails,
                 f"failures {len(fails)}/{8 * c.tries}" + (f": {fails[0][:100]}" if fails else "")))
    return rows


# -- 3. corrupt caches -----------------------------------------------------------------------------------

def case_corrupt(c: Ctx) -> list[tuple]:
    from tests.test_cache_integrity import OPENERS, _cli_for, _damage

    bad_rows = []
    tries = 0
    for kind in sorted(OPENERS):
        for how in ("truncated", "random bytes"):
            tries += 1
            tmp = Path(tempfile.mkdtemp(dir=c.tmp))
            bad = tmp / "user-cache" / OPENERS[kind][1]
            bad.parent.mkdir()
            _damage(kind, how, bad)
            args, env = _cli_for(kind, c.model, tmp, bad)
            why = one_line_error(c.cli(*args, env=env), str(bad))
            if why:
                bad_rows.append(f"{kind}/{how}: {why}")
    rows = [("corrupt cache: gen/translation/file-hash, truncated/random", tries, not bad_rows,
             f"one-line errors naming the file {tries - len(bad_rows)}/{tries}"
             + (f"; {bad_rows[0]}" if bad_rows else ""))]
    rows.append(_edited_response(c))
    return rows


def _edited_response(c: Ctx) -> tuple:
    cache, out = c.tmp / "edit.sqlite", c.tmp / "edit-res"
    args = c.run_args(cache, out, "e", "--no-probe")
    first = c.cli(*args)
    if first.returncode:
        return ("corrupt cache: edited cached response", 1, False, f"first run exit {first.returncode}")
    con = sqlite3.connect(cache)
    with con:
        edited = con.execute("UPDATE generations SET response = ' ALTERED' WHERE key IN "
                             "(SELECT key FROM generations ORDER BY key LIMIT 3)").rowcount
    con.close()
    again = c.cli(*args)
    responses = [s.get("response") for s in read_jsonl(out / "e" / "samples.jsonl")]
    warned = "integrity check" in again.stderr and str(cache) in again.stderr
    held = again.returncode == 0 and warned and " ALTERED" not in responses
    return ("corrupt cache: cached responses edited in SQLite", 1, held,
            f"{edited} rows edited; re-run exit {again.returncode}, warning {'yes' if warned else 'no'}, "
            f"altered responses used {responses.count(' ALTERED')}")


# -- 4. torn folders -------------------------------------------------------------------------------------

def _tear(folder: Path, how: str) -> None:
    samples = folder / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    if how == "no manifest.json":
        (folder / "manifest.json").unlink()
    elif how == "different samples":
        rows = [json.loads(x) for x in lines]
        for r in rows[: max(1, len(rows) // 4)]:
            r["outcome"] = "refuse" if r.get("outcome") != "refuse" else "answer"
        samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif how == "duplicated line":
        samples.write_text("".join(lines + lines[:1]))
    elif how == "empty samples.jsonl":
        samples.write_text("")


def case_torn(c: Ctx) -> list[tuple]:
    if c.finished is None:
        return [("torn folder", 0, False, "no finished run (kill case failed)")]
    bad, tries = [], 0
    for how in ("no manifest.json", "different samples", "duplicated line", "empty samples.jsonl"):
        for cmd in (["report"], ["check", "--min", "0.0"]):
            tries += 1
            folder = c.tmp / f"torn-{tries}"
            shutil.copytree(c.finished, folder)
            _tear(folder, how)
            why = one_line_error(c.cli(cmd[0], str(folder), *cmd[1:]))
            if why:
                bad.append(f"{how}/{cmd[0]}: {why}")
    return [("torn folder: no manifest, other/duplicated/empty samples", tries, not bad,
             f"report+check one-line errors {tries - len(bad)}/{tries}" + (f"; {bad[0]}" if bad else ""))]


# -- 5. faulty server ------------------------------------------------------------------------------------

def _faulty(seed: int, rate: float):
    """A FakeOpenAI that fails ``rate`` of prompts (seeded on the prompt): HTTP 500 or a dropped connection."""
    from tests.test_openai_backend import FakeOpenAI, error, prompt_of

    server = FakeOpenAI()
    server.httpd.handle_error = lambda *a: None  # a dropped connection is the point, not a server bug
    state = {"healthy": False, "failed": set()}

    def respond(body):
        prompt = json.dumps(prompt_of(body))
        h = int(hashlib.sha256(f"{seed}:{prompt}".encode()).hexdigest(), 16)
        if state["healthy"] or (h % 1000) / 1000 >= rate:
            return None
        state["failed"].add(prompt)
        if h % 2:
            return error(500, "injected failure")
        raise ConnectionAbortedError("injected: drop the connection")  # the handler dies without answering
    server.responder = respond
    return server, state


def case_server(c: Ctx, seed: int = 0, rate: float = 0.3) -> list[tuple]:
    from tests.test_openai_backend import HOSTED

    server, state = _faulty(seed, rate)
    try:
        args = ["run", "--pretrained", HOSTED, "--finetuned", HOSTED, "--server", server.url, "--tasks", "icl_vs_if",
                "--transforms", "identity,leetspeak", "--limit", str(4 * c.limit), "--no-probe", "--no-progress",
                "--backend-option", "max_retries=0", "--cache", str(c.tmp / "srv.sqlite"),
                "--out", str(c.tmp / "srv-res"), "--run-id", "s"]
        first = c.cli(*args)
        s1 = read_jsonl(c.tmp / "srv-res" / "s" / "samples.jsonl") if first.returncode in (0, 1) else []
        state["healthy"] = True
        second = c.cli(*args)
        s2 = read_jsonl(c.tmp / "srv-res" / "s" / "samples.jsonl") if second.returncode == 0 else []
    finally:
        server.stop()
    # a sample is an error exactly when its prompt's request failed; its response is never scored
    failed = state["failed"]
    wrong = [s for s in s1 if (s["outcome"] == "error") != (json.dumps(s["transformed_prompt"]) in failed)
             or (s["outcome"] == "error" and s.get("response"))]
    e1, e2 = (sum(s["outcome"] == "error" for s in rows) for rows in (s1, s2))
    held = bool(s1) and e1 > 0 and not wrong and bool(s2) and e2 == 0 and len(s2) == len(s1)
    return [("faulty server: 30% HTTP 500 / dropped, then healed", 2, held,
             f"run 1 exit {first.returncode}: errors {e1}/{len(s1)} ({len(failed)} prompts failed, "
             f"misclassified {len(wrong)}); run 2 exit {second.returncode}: errors {e2}/{len(s2)}")]


# -- main ------------------------------------------------------------------------------------------------

CASES = {"kill": case_kill, "concurrency": case_concurrency, "corrupt": case_corrupt, "torn": case_torn,
         "server": case_server}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (the slow test uses this)")
    p.add_argument("--limit", type=int, help="examples per run (default 20, --quick 8)")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    a = p.parse_args(argv)
    limit, tries = a.limit or (8 if a.quick else 20), 1 if a.quick else 3
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="conjugate-faults-"))
    tmp.mkdir(parents=True, exist_ok=True)
    from harness.training.tiny import build_tiny_llama

    c = Ctx(tmp, build_tiny_llama(tmp / "tiny"), limit, tries)
    rows = []
    try:
        for name in a.cases.split(","):
            t = time.time()
            try:
                got = CASES[name](c)
            except Exception as exc:  # noqa: BLE001 - a case that crashed did not hold
                got = [(name, 0, False, f"crashed: {type(exc).__name__}: {exc}")]
            rows += got
            print(f"# {name}: {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("| case | tries | held | detail |\n|---|---|---|---|")
    for case, n, held, detail in rows:
        print(f"| {case} | {n} | {'yes' if held else 'NO'} | {detail.replace('|', '/')} |")
    return 0 if all(r[2] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
