"""`conjugate finetune` on the tiny random Llama: loss goes down, runs are deterministic, adapters load."""
from __future__ import annotations

import json
import random

import pytest

from harness.errors import ConfigError
from harness.training.finetune import FinetuneConfig, encode_example, load_examples, train
from harness.pipeline.models import ModelSpec, model_identity
from harness.types import Sampling

from .conftest import run_cli


@pytest.fixture(scope="module")
def arithmetic_jsonl(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "sums.jsonl"
    rows = []
    for _ in range(200):
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        rows.append(json.dumps({"instruction": f"What is {a} plus {b}?", "response": str(a + b)}))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def adapter(tiny_model, arithmetic_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapter")
    cfg = FinetuneConfig(base=str(tiny_model), data=str(arithmetic_jsonl), steps=40, lr=1e-2, warmup=2,
                         target_modules=["q_proj", "v_proj"], batch_size=8, out=str(out))
    return train(cfg, progress=False)


def test_training_lowers_loss_and_writes_artifacts(adapter):
    recipe = json.loads((adapter / "recipe.json").read_text())
    assert recipe["mean_loss_last_10pct"] < 0.7 * recipe["mean_loss_first_10pct"]
    log = [json.loads(l) for l in (adapter / "training.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))
    assert all(r["tokens"] > 0 for r in log)
    for name in ("adapter_model.safetensors", "adapter_config.json", "loss.png"):
        assert (adapter / name).stat().st_size > 0, name
    from harness.training.finetune import sha256_file

    assert recipe["adapter_sha256"] == sha256_file(adapter / "adapter_model.safetensors")


def test_same_seed_same_adapter(tiny_model, arithmetic_jsonl, tmp_path, adapter):
    cfg = FinetuneConfig(base=str(tiny_model), data=str(arithmetic_jsonl), steps=40, lr=1e-2, warmup=2,
                         target_modules=["q_proj", "v_proj"], batch_size=8, out=str(tmp_path / "again"))
    again = train(cfg, progress=False)
    a = json.loads((adapter / "recipe.json").read_text())["adapter_sha256"]
    b = json.loads((again / "recipe.json").read_text())["adapter_sha256"]
    assert a == b


def test_loss_only_on_response_tokens(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    ids, labels = encode_example(tok, True, "What is 2 plus 3?", "5", max_len=64)
    prompt_len = 1 + len(tok("What is 2 plus 3?\n", add_special_tokens=False).input_ids)
    assert ids[0] == tok.bos_token_id and len(ids) == len(labels)
    assert labels[:prompt_len] == [-100] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:] and labels[-1] == tok.eos_token_id


def test_adapter_loads_and_changes_outputs(tiny_model, adapter):
    from harness.backends.hf import HFBackend

    prompts = [f"What is {a} plus {b}?\n" for a, b in [(3, 4), (10, 12), (25, 2), (7, 7)]]
    base = HFBackend(ModelSpec(name="base", model=str(tiny_model)))
    tuned = HFBackend(ModelSpec(name="tuned", model=str(tiny_model), adapter=str(adapter)))
    s = Sampling(max_new_tokens=4)
    out_base, out_tuned = base.generate(prompts, s), tuned.generate(prompts, s)
    assert out_base != out_tuned
    assert all(o.strip()[:1].isdigit() for o in out_tuned)  # it learned to answer with a number
    assert model_identity(ModelSpec(name="t", model=str(tiny_model), adapter=str(adapter))) != model_identity(
        ModelSpec(name="b", model=str(tiny_model)))


def test_run_with_base_plus_adapter(tiny_model, adapter, tmp_path):
    r = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", f"{tiny_model}+{adapter}", "--limit", "4",
                "--transforms", "identity", "--out", str(tmp_path), "--run-id", "ft", "--cache",
                str(tmp_path / "g.sqlite"), "--no-progress")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "ft" / "manifest.json").read_text())
    assert manifest["models"]["finetuned"]["spec"]["adapter"] == str(adapter)
    assert "+adapter-sha256:" in manifest["models"]["finetuned"]["identity"]
    r = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", f"{tiny_model}+{tmp_path}", "--limit", "1",
                "--out", str(tmp_path), "--cache", str(tmp_path / "g.sqlite"))
    assert r.returncode == 2 and "adapter_config.json" in r.stderr and "Traceback" not in r.stderr


def test_bad_data_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "hi", "response": "hello"}\n{"instruction": "no response"}\n')
    with pytest.raises(ConfigError, match="line 2"):
        load_examples(str(bad), 10, 0)
    with pytest.raises(ConfigError, match="Did you mean"):
        load_examples("assistant-eng", 10, 0)
    r = run_cli("finetune", "--data", str(tmp_path / "nope.jsonl"), "--steps", "1", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_cli("finetune", "--steps", "0", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--steps" in r.stderr


def test_killed_finetune_resumes_to_the_same_adapter(tiny_model, arithmetic_jsonl, tmp_path):
    """SIGKILL a real `conjugate finetune` after a checkpoint; the re-run resumes and matches an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import ROOT

    def args(out):
        return ["finetune", "--base", str(tiny_model), "--data", str(arithmetic_jsonl), "--steps", "150", "--lr", "1e-2",
                "--target-modules", "q_proj,v_proj", "--batch-size", "8", "--save-every", "5", "--out", str(out),
                "--no-progress"]

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args(killed)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "recipe.json").exists(), "the run finished before the kill; make it longer"
    r = run_cli(*args(killed))
    assert r.returncode == 0, r.stderr
    assert "resuming after step" in r.stderr
    r = run_cli(*args(tmp_path / "clean"))
    assert r.returncode == 0, r.stderr
    a = json.loads((killed / "recipe.json").read_text())
    b = json.loads((tmp_path / "clean" / "recipe.json").read_text())
    assert a["adapter_sha256"] == b["adapter_sha256"]
    log_a = [json.loads(l)["loss"] for l in (killed / "training.jsonl").read_text().splitlines()]
    log_b = [json.loads(l)["loss"] for l in (tmp_path / "clean" / "training.jsonl").read_text().splitlines()]
    assert log_a == log_b and len(log_a) == 150
    assert not (killed / "checkpoint.pt").exists()
