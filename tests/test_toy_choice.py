"""toy_choice: a multiple-choice task scored by log-likelihood, end to end on the tiny model with the hf backend."""
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
from harness.outputs.write import rerender
from harness.pipeline.runner import run
from harness.pipeline.spec import RunSpec
from harness.types import ERROR

from .conftest import ROOT, run_cli


def _choice_spec(kw: dict, **over) -> RunSpec:
    return RunSpec(**{**kw, "tasks": ["toy_choice", "icl_vs_if"], "transforms": ["identity", "leetspeak"],
                      "limit": 6, **over})


def test_task_examples_and_default_scoring():
    from harness.tasks.toy_choice import ToyChoice
    from harness.types import Score

    t = ToyChoice()
    exs = t.examples(0)
    assert len(exs) == 24 and [e.group for e in exs[:4]] == ["opposites", "categories"] * 2
    assert exs == ToyChoice().examples(0) and exs != t.examples(1)  # the options' order follows the seed
    ref = t.render(exs[0]).reference
    conts = t.choices(ref)
    assert set(conts) == {"a", "b", "c"} and all(c.startswith(" ") for c in conts.values())
    gold = ref["gold"]
    other = next(n for n in conts if n != gold)
    assert t.score_choices({gold: -1.0, other: -2.0, "x": -3.0}, ref) == Score("correct", f"chose {gold}, gold {gold}")
    assert t.score_choices({gold: -5.0, other: -2.0}, ref).label == "incorrect"


def test_runs_under_identity_and_leetspeak_and_a_rerun_computes_nothing(tiny_spec_kwargs, tiny_model):
    from harness.backends.hf import HFBackend
    from harness.pipeline.models import ModelSpec
    from harness.translators.leetspeak import to_leet

    spec = _choice_spec(tiny_spec_kwargs)
    run_dir = run(spec, progress=False)
    rows = read_jsonl(run_dir / "samples.jsonl")
    toy = [s for s in rows if s["task"] == "toy_choice"]
    assert len(toy) == 2 * 2 * 6 and all(s["error"] is None for s in toy)
    assert all("choice_logprobs" not in s for s in rows if s["task"] == "icl_vs_if")  # unchanged lines
    hf = {"pretrained": HFBackend(ModelSpec(name="p", model=str(tiny_model))),
          "finetuned": HFBackend(ModelSpec(name="f", model=str(tiny_model), bos="always"))}
    for s in toy:
        lps = s["choice_logprobs"]
        assert set(lps) == {"a", "b", "c"} and s["response"] == max(lps, key=lps.get)
        assert s["outcome"] == ("correct" if s["response"] == s["reference"]["gold"] else "incorrect")
        words = s["reference"]["options"]
        if s["transform"] == "leetspeak":  # context and continuations both went through forward
            assert s["mode"] == "transform" and s["transformed_prompt"] == to_leet(s["prompt"])
            conts = {n: " " + to_leet(w) for n, w in words.items()}
        else:
            conts = {n: " " + w for n, w in words.items()}
        want = hf[s["model"]].loglikelihood([(s["transformed_prompt"], conts[n]) for n in "abc"])
        assert [lps[n] for n in "abc"] == pytest.approx([lp for lp, _ in want], rel=1e-5)
    m = json.loads((run_dir / "manifest.json").read_text())
    for role in ("pretrained", "finetuned"):
        c = m["choices"][role]
        assert c["samples"] == 12 and c["requests"] == 36 and c["computed"] == c["unique"] and c["failed"] == 0
        assert m["generation"][role]["prompts"] == 12  # only icl_vs_if generates
    summary = json.loads((run_dir / "summary.json").read_text())
    cell = next(r for r in summary["rows"] if r["task"] == "toy_choice" and r["transform"] == "leetspeak"
                and r["model"] == "pretrained" and r["group"] == "all")
    assert cell["n"] == 6 and set(cell["rates"]) == {"correct", "incorrect"}

    opened: list = []
    factory = lambda ms: opened.append(ms) or HFBackend(ms)  # noqa: E731
    factory.cache_identity = None  # the registry's own backend: shares the plain run's cache
    run_dir = run(spec, progress=False, backend_factory=factory)
    m2 = json.loads((run_dir / "manifest.json").read_text())
    assert not opened and m2["backends"] == {}
    for role in ("pretrained", "finetuned"):
        assert m2["choices"][role]["computed"] == 0 and m2["choices"][role]["cached"] == m["choices"][role]["unique"]
    again = read_jsonl(run_dir / "samples.jsonl")
    assert [s["choice_logprobs"] for s in again if s["task"] == "toy_choice"] == [s["choice_logprobs"] for s in toy]
    assert all(s["cached"] for s in again if s["task"] == "toy_choice")

    rerender(run_dir, rescore=True)  # scoring from the stored log-likelihoods, nothing generated
    assert [s["outcome"] for s in read_jsonl(run_dir / "samples.jsonl")] == [s["outcome"] for s in again]


def test_a_backend_without_loglikelihoods_makes_choice_samples_errors(tiny_spec_kwargs):
    from harness.backend import Backend
    from harness.backends.hf import HFBackend

    class GenerateOnly(Backend):
        name = "generate-only"

        def __init__(self, ms):
            super().__init__(ms)
            self.inner = HFBackend(ms)

        def generate(self, prompts, sampling):
            return self.inner.generate(prompts, sampling)

    run_dir = run(_choice_spec(tiny_spec_kwargs, limit=2), progress=False, backend_factory=GenerateOnly)
    rows = read_jsonl(run_dir / "samples.jsonl")
    toy = [s for s in rows if s["task"] == "toy_choice"]
    assert toy and all(s["outcome"] == ERROR and s["response"] is None for s in toy)
    assert {s["error"] for s in toy} == {"backend error: backend 'generate-only' does not support loglikelihood"}
    assert all(s["error"] is None for s in rows if s["task"] == "icl_vs_if")
    assert not sqlite3.connect(tiny_spec_kwargs["cache"]).execute("SELECT COUNT(*) FROM loglikelihoods").fetchone()[0]


def _rows(db: Path) -> dict[str, float]:
    """key -> created, of the committed log-likelihood rows (empty while the table does not exist yet)."""
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(db, timeout=1)
        try:
            return dict(con.execute("SELECT key, created FROM loglikelihoods").fetchall())
        finally:
            con.close()
    except sqlite3.OperationalError:
        return {}


def test_sigkill_after_the_first_batch_then_resume_recomputes_nothing_finished(tiny_model, tmp_path):
    """Kill a real CLI run once its first batch of choices is committed; the re-run computes only the rest."""
    cache = tmp_path / "gen.sqlite"
    args = ["run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "toy_choice",
            "--transforms", "identity,leetspeak,piglatin,rot13,reverse_words", "--limit", "24", "--batch-size", "2",
            "--out", str(tmp_path / "res"), "--run-id", "killed", "--cache", str(cache), "--no-progress", "--no-probe"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(_rows(cache)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _rows(cache)
    total = 24 * 5 * 3  # unique requests: both models have the same key, so the fine-tuned one is all cache hits
    assert 2 <= len(before) < total, f"kill landed at {len(before)}/{total}; make the run longer"
    assert not (tmp_path / "res" / "killed" / "manifest.json").exists()

    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    after = _rows(cache)
    assert len(after) == total
    assert {k: after[k] for k in before} == before  # not one finished request was computed (or written) again
    m = json.loads((tmp_path / "res" / "killed" / "manifest.json").read_text())
    c = m["choices"]
    assert c["pretrained"]["cached"] == len(before) and c["pretrained"]["computed"] == total - len(before)
    assert c["finetuned"]["computed"] == 0 and c["finetuned"]["cached"] == total
