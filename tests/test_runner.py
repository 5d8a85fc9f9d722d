"""Runner, cache, resume and failure handling, on a tiny random Llama built at test time."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.io import read_jsonl
from harness.registry import TRANSFORMS
from harness.outputs.rundir import RunDir
from harness.outputs.write import rerender
from harness.pipeline.runner import plan, run
from harness.pipeline.spec import RunSpec
from harness.transform import Transform
from harness.types import ERROR

from .conftest import ROOT, run_cli

PINNED_PROMPT = (  # task version 3: the paper's format and draw (random.seed(10))
    "Capitalize every character.\n\n"
    "Input: Scientists study how glaciers move over time.\n"
    "Output: SCIENTISTS STUDY HOW GLACIERS MOVE OVER TIME.\n\n"
    "Input: A flock of geese flew south over the lake.\n"
    "Output: A FLOCK OF GEESE FLEW SOUTH OVER THE LAKE.\n\n"
    "Input: What is 19 plus 4?\n"
    "Output:"
)


def test_pinned_english_prompt_of_seeded_example():
    from harness.tasks.icl_vs_if import IclVsIf

    task = IclVsIf()
    ex = task.examples(seed=0)[0]
    assert ex.id == "capslock-math-000"
    rendered = task.render(ex, "en")
    assert rendered.prompt == PINNED_PROMPT
    assert rendered.reference["icl_answer"] == "WHAT"
    assert rendered.reference["if_answer"] == "23"


def test_plan_expands_task_transform_example(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity", "lang:fr", "leetspeak"], limit=4, **tiny_spec_kwargs)
    p = plan(spec)
    assert len(p.samples) == 2 * 3 * 4  # models x transforms x examples
    fr = [s for s in p.samples if s.transform == "lang:fr"]
    assert all(s.mode == "native" and "Saisir:" in s.transformed_prompt for s in fr)
    leet = [s for s in p.samples if s.transform == "leetspeak"]
    assert all(s.mode == "native" and "1npu7:" in s.transformed_prompt for s in leet)
    assert {s.group for s in p.samples} == {"capslock-math", "capslock-startblank", "repeat-math", "repeat-startblank"}


def test_run_writes_outputs_and_rerun_generates_nothing(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity", "lang:es", "piglatin"], limit=8, **tiny_spec_kwargs)
    run_dir = run(spec, progress=False)
    for name in ("manifest.json", "samples.jsonl", "summary.json", "report.md", "icl_vs_if.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "icl_vs_if.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m1 = json.loads((run_dir / "manifest.json").read_text())
    # pretrained and finetuned are the same weights but a different BOS policy: different cache keys
    assert m1["generation"]["pretrained"]["generated"] == m1["generation"]["pretrained"]["unique_prompts"] > 0
    assert m1["generation"]["pretrained"]["cached"] == 0
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert len(samples) == 2 * 3 * 8
    for s in samples:
        assert s["outcome"] in {"icl", "if", "other"} and s["error"] is None
        assert s["response"] is not None and s["inverted"] is not None
    report = (run_dir / "report.md").read_text()
    assert "| Conjugate | Pretrained | Fine-tuned | Drop | Recovery |" in report
    assert "| Spanish |" in report and "| Pig Latin |" in report

    run_dir2 = run(spec, progress=False)
    m2 = json.loads((run_dir2 / "manifest.json").read_text())
    for role in ("pretrained", "finetuned"):
        assert m2["generation"][role]["generated"] == 0
        assert m2["generation"][role]["cached"] == m1["generation"][role]["unique_prompts"]
    assert [s["response"] for s in read_jsonl(run_dir2 / "samples.jsonl")] == [s["response"] for s in samples]


def test_batched_equals_unbatched(tiny_spec_kwargs, tmp_path):
    kw = dict(tiny_spec_kwargs)
    a = run(RunSpec(limit=8, transforms=["identity"], **{**kw, "batch_size": 8, "run_id": "a"}), progress=False)
    kw["cache"] = str(tmp_path / "other.sqlite")
    b = run(RunSpec(limit=8, transforms=["identity"], **{**kw, "batch_size": 1, "run_id": "b"}), progress=False)
    ra = [s["response"] for s in read_jsonl(a / "samples.jsonl")]
    rb = [s["response"] for s in read_jsonl(b / "samples.jsonl")]
    assert ra == rb


class _Boom(Transform):
    """Fails on startblank prompts, to test that transform failures are recorded."""

    name = "boom"

    def forward(self, text: str) -> str:
        if "___" in text:
            raise ValueError("cannot handle blanks")
        return text.upper()

    def inverse(self, text: str) -> str:
        return text.lower()


def test_transform_failure_is_an_error_not_a_behaviour(tiny_spec_kwargs):
    TRANSFORMS.register("boom", _Boom)
    spec = RunSpec(transforms=["identity", "boom"], limit=8, **tiny_spec_kwargs)
    run_dir = run(spec, progress=False)
    samples = read_jsonl(run_dir / "samples.jsonl")
    boom = [s for s in samples if s["transform"] == "boom"]
    failed = [s for s in boom if "startblank" in s["group"]]
    assert failed and all(s["outcome"] == ERROR for s in failed)
    assert all("cannot handle blanks" in s["error"] for s in failed)
    assert all(s["response"] is None for s in failed)  # never sent to the model
    ok = [s for s in boom if "math" in s["group"]]
    assert all(s["outcome"] != ERROR and s["transformed_prompt"].isupper() for s in ok)
    summary = json.loads((run_dir / "summary.json").read_text())
    row = next(r for r in summary["rows"] if r["transform"] == "boom" and r["group"] == "all" and r["model"] == "pretrained")
    assert row["errors"] == len(failed) // 2 and row["n"] == len(ok) // 2


class _FlakyBackend:
    """The real hf backend, with a fault injected for prompts that contain a marker."""

    def __init__(self, ms, marker: str):
        from harness.backends.hf import HFBackend

        self.inner, self.marker, self.calls = HFBackend(ms), marker, []

    def generate(self, prompts, sampling):
        self.calls.append(len(prompts))
        if any(self.marker in p for p in prompts):
            raise RuntimeError("server said 500")
        return self.inner.generate(prompts, sampling)

    def close(self):
        self.inner.close()


def test_backend_failure_is_recorded_per_sample_and_not_cached(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity"], limit=8, **tiny_spec_kwargs)
    backends = []

    def factory(ms):
        backends.append(_FlakyBackend(ms, "What is"))
        return backends[-1]

    factory.cache_identity = None  # the real backend (answers or fails): shares the plain re-run's cache
    run_dir = run(spec, progress=False, backend_factory=factory)
    samples = read_jsonl(run_dir / "samples.jsonl")
    math = [s for s in samples if "math" in s["group"]]
    blank = [s for s in samples if "startblank" in s["group"]]
    assert all(s["outcome"] == ERROR and "server said 500" in s["error"] for s in math)
    assert all(s["outcome"] != ERROR for s in blank)  # the batch was retried prompt by prompt
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["generation"]["pretrained"]["failed"] == 4
    # failures are not cached: a re-run with a healthy backend generates exactly them
    run_dir = run(spec, progress=False)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["generation"]["pretrained"]["generated"] == 4
    assert all(s["outcome"] != ERROR for s in read_jsonl(run_dir / "samples.jsonl"))


def test_report_rerenders_and_rescores_without_generating(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity"], limit=4, **tiny_spec_kwargs)
    run_dir = run(spec, progress=False)
    (run_dir / "report.md").unlink()
    done = RunDir(run_dir).read()
    done.sample_records[0]["outcome"] = "if"  # tamper (committed: readers refuse files a write did not make)
    RunDir(run_dir).write(done.manifest, done.summary, done.sample_records)  # --rescore must restore it
    rerender(run_dir)
    assert (run_dir / "report.md").exists()
    assert read_jsonl(run_dir / "samples.jsonl")[0]["outcome"] == "if"
    rerender(run_dir, rescore=True)
    fresh = read_jsonl(run_dir / "samples.jsonl")[0]
    from harness.tasks.icl_vs_if import IclVsIf

    assert fresh["outcome"] == IclVsIf().score(fresh["inverted"], fresh["reference"]).label


def _count_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def test_sigkill_midway_then_resume_redoes_nothing(tiny_model, tmp_path):
    """Kill a real CLI run with SIGKILL part-way; the re-run generates only what was missing."""
    cache = tmp_path / "gen.sqlite"
    args = ["run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--limit", "60", "--tasks", "icl_vs_if",
            "--transforms", "identity,lang:fr,lang:nl,leetspeak", "--batch-size", "2", "--max-new-tokens", "12",
            "--out", str(tmp_path / "res"), "--run-id", "killed", "--cache", str(cache), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _count_rows(cache) < 20 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _count_rows(cache)
    total = 60 * 4  # unique prompts per model: pretrained and finetuned share weights and options
    assert 0 < done_before < total, f"kill landed at {done_before}/{total}; make the run longer"
    assert not (tmp_path / "res" / "killed" / "manifest.json").exists()

    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "res" / "killed" / "manifest.json").read_text())
    gen = manifest["generation"]
    # both roles have the same model key, so the finetuned pass is served entirely from cache
    assert gen["pretrained"]["cached"] == done_before
    assert gen["pretrained"]["generated"] == total - done_before
    assert gen["finetuned"]["generated"] == 0 and gen["finetuned"]["cached"] == total
    assert _count_rows(cache) == total

    # the final samples equal an uninterrupted run's (fresh cache, fresh folder)
    clean = [a if a != str(cache) else str(tmp_path / "clean.sqlite") for a in args]
    clean[clean.index("killed")] = "clean"
    r = run_cli(*clean)
    assert r.returncode == 0, r.stderr
    # the probe's log-likelihoods agree to float rounding: a prompt generated in this process continues from its kept
    # prefill (harness.backends.prefix), one generated before the kill takes the full forward pass
    strip = lambda rows: [{k: v for k, v in s.items() if k not in ("cached", "probe")} for s in rows]
    killed, clean_rows = (read_jsonl(tmp_path / "res" / n / "samples.jsonl") for n in ("killed", "clean"))
    assert strip(killed) == strip(clean_rows)
    for a, b in zip(killed, clean_rows):
        assert (a.get("probe") is None) == (b.get("probe") is None)
        for k, v in (a.get("probe") or {}).items():
            assert v == pytest.approx(b["probe"][k], abs=1e-4), (a["example_id"], k)
