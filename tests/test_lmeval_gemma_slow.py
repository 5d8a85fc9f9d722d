"""The lm-eval bridge on Gemma-3-270M (the embedded default pair) against stock lm-eval's hf model. Slow."""
from __future__ import annotations

import json

import pytest

lm_eval = pytest.importorskip("lm_eval")

from harness.pipeline.models import DEFAULT_PRETRAINED, local_folder  # noqa: E402
from harness.pipeline.runner import run  # noqa: E402
from harness.pipeline.spec import RunSpec  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.slow
TASKS = ["conj_capitals_en", "conj_opposites_en"]


def test_gemma_identity_equals_stock_lm_eval(tmp_path, monkeypatch):
    """`conjugate run --tasks lmeval:T --transforms identity` on the default pair: the pretrained model's metrics
    are exactly stock lm-eval's (hf, float32, BOS as Gemma needs), document for document."""
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = local_folder(DEFAULT_PRETRAINED)[0]
    stock = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={folder},dtype=float32,add_bos_token=True",
                                    tasks=TASKS, limit=20, device="cpu", batch_size=8, bootstrap_iters=0,
                                    task_manager=TaskManager(include_path="tasks/data/lmeval", include_defaults=False))
    spec = RunSpec(tasks=[f"lmeval:{t}" for t in TASKS], transforms=["identity", "leetspeak"], limit=20,
                   lmeval_include=["tasks/data/lmeval"], out=str(tmp_path), cache=str(tmp_path / "g.sqlite"))
    run_dir = run(spec, progress=False)
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    for task in TASKS:
        mine = {s["example_id"]: s["metrics"] for s in samples
                if s["task"] == f"lmeval:{task}" and s["model"] == "pretrained" and s["transform"] == "identity"}
        theirs = {str(s["doc_id"]): {f"{m},{s['filter']}": float(s[m]) for m in s["metrics"]}
                  for s in stock["samples"][task]}
        assert len(mine) == len(theirs) == 20 and mine == theirs
        means = {r["metric"]: r["mean"] for r in summary["metrics"]
                 if r["task"] == f"lmeval:{task}" and r["model"] == "pretrained" and r["transform"] == "identity"}
        for metric, mean in means.items():
            assert mean == pytest.approx(stock["results"][task][metric], abs=1e-12)
    # Gemma knows capitals and opposites in English: a real signal, not noise
    assert stock["results"]["conj_opposites_en"]["acc,none"] >= 0.6
    assert all(s["error"] is None for s in samples)


def test_sigkill_mid_run_then_resume_recomputes_nothing_finished(tmp_path):
    """`kill -9` of `conjugate run --tasks lmeval:...` once some batches are committed; the re-run computes only
    the rest, and a third run computes nothing."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    cache, out = tmp_path / "g.sqlite", tmp_path / "results"
    cmd = [sys.executable, "-m", "harness.cli", "run", "--lmeval-include", "tasks/data/lmeval", "--tasks",
           f"lmeval:{TASKS[0]},lmeval:{TASKS[1]}", "--transforms", "identity,leetspeak", "--limit", "12",
           "--batch-size", "4", "--cache", str(cache), "--out", str(out), "--no-progress"]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1"}

    def rows() -> int:
        if not cache.exists():
            return 0
        con = sqlite3.connect(cache, timeout=30)
        try:
            return sum(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("generations", "loglikelihoods"))
        except sqlite3.OperationalError:  # tables not created yet
            return 0
        finally:
            con.close()

    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while rows() < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = rows()

    def manifest() -> dict:
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=1200)
        return json.loads(next(out.glob("*/manifest.json")).read_text())["lmeval"]

    counts = manifest()
    assert sum(c["cached"] for c in counts.values()) == done > 0
    assert sum(c["computed"] for c in counts.values()) == rows() - done
    again = manifest()
    assert sum(c["computed"] for c in again.values()) == 0
