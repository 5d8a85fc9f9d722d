"""The hf backend on the tiny random Llama: generation, stop strings, log-likelihoods, hub loading, YAML runs."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from harness.backends.hf import HFBackend, truncate_at_stop
from harness.pipeline.models import ModelSpec
from harness.types import Sampling

from .conftest import run_cli


@pytest.fixture(scope="module")
def backend(tiny_model):
    b = HFBackend(ModelSpec(name="tiny", model=str(tiny_model)))
    yield b
    b.close()


def test_batched_left_padded_generation_matches_one_by_one(backend):
    prompts = ["Input: a cat\nOutput:", "What is 5 plus 3?", "A much longer prompt that needs padding on the left side."]
    s = Sampling(max_new_tokens=6)
    batched = backend.generate(prompts, s)
    single = [backend.generate([p], s)[0] for p in prompts]
    assert batched == single
    assert all(isinstance(t, str) and t for t in batched)


def test_stop_strings_truncate_output(backend):
    s = Sampling(max_new_tokens=12)
    full = backend.generate(["Hello there"], s)[0]
    assert len(full) > 3
    stop = full[2:4]
    cut = backend.generate(["Hello there"], Sampling(max_new_tokens=12, stop=(stop,)))[0]
    assert cut == full[: full.find(stop)]
    assert truncate_at_stop("abc\ndef", ["\n"]) == "abc"
    assert truncate_at_stop("abc", ["\n"]) == "abc"


def test_loglikelihood_matches_hand_computation_from_full_logits(backend):
    ctx, cont = "The cat sat on", " the mat"
    (lp, greedy), = backend.loglikelihood([(ctx, cont)])
    ctx_ids = backend.encode(ctx)
    all_ids = backend.encode(ctx + cont)
    cont_ids = all_ids[len(ctx_ids):]
    assert all_ids[: len(ctx_ids)] == ctx_ids and cont_ids
    with torch.no_grad():
        logits = backend.model(torch.tensor([all_ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    expected = sum(logp[len(ctx_ids) - 1 + i, t].item() for i, t in enumerate(cont_ids))
    assert lp == pytest.approx(expected, abs=1e-4)
    assert greedy == all(logp[len(ctx_ids) - 1 + i].argmax().item() == t for i, t in enumerate(cont_ids))


def test_greedy_continuation_is_flagged_greedy(backend):
    ctx = "Hello there"
    cont = backend.generate([ctx], Sampling(max_new_tokens=3))[0]
    (_, greedy), = backend.loglikelihood([(ctx, cont)])
    assert greedy


def test_bos_policies(tiny_model):
    always = HFBackend(ModelSpec(name="t", model=str(tiny_model), bos="always"))
    never = HFBackend(ModelSpec(name="t", model=str(tiny_model), bos="never"))
    assert always.encode("hi")[0] == always.tok.bos_token_id
    assert never.encode("hi")[0] != never.tok.bos_token_id
    assert always.encode("hi")[1:] == never.encode("hi")


def test_hub_id_loads_from_the_local_hf_cache_offline(tiny_model, tmp_path):
    """The hub path (ID -> commit -> snapshot) on a local HF cache layout, with the Hub switched off."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-llama"
    snap = repo / "snapshots" / commit
    shutil.copytree(tiny_model, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    r = run_cli("run", "--pretrained", "acme/tiny-llama", "--finetuned", str(tiny_model), "--limit", "2",
                "--transforms", "identity", "--out", str(tmp_path / "res"), "--run-id", "hub",
                "--cache", str(tmp_path / "g.sqlite"), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "res" / "hub" / "manifest.json").read_text())
    assert manifest["models"]["pretrained"]["identity"] == f"hub:acme/tiny-llama@{commit}"
    samples = [json.loads(l) for l in (tmp_path / "res" / "hub" / "samples.jsonl").read_text().splitlines()]
    pt = [s["response"] for s in samples if s["model"] == "pretrained"]
    ft = [s["response"] for s in samples if s["model"] == "finetuned"]
    assert pt == ft  # the same weights, loaded once from the hub cache and once from the folder

    r = run_cli("run", "--pretrained", "acme/not-there", "--finetuned", str(tiny_model), "--limit", "1",
                "--out", str(tmp_path / "res"), "--cache", str(tmp_path / "g.sqlite"), env=env)
    assert r.returncode == 2 and "HF_HUB_OFFLINE" in r.stderr and "Traceback" not in r.stderr


def test_yaml_config_run(tiny_model, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"pretrained: {{model: {tiny_model}, name: tiny-a}}\n"
        f"finetuned: {{model: {tiny_model}, name: tiny-b, bos: always}}\n"
        "tasks: [icl_vs_if]\ntransforms: [lang:hu, leetspeak]\nlimit: 4\nseed: 3\n"
        "sampling: {max_new_tokens: 5}\n"
        f"out: {tmp_path / 'res'}\nrun_id: yaml\ncache: {tmp_path / 'g.sqlite'}\n"
    )
    r = run_cli("run", "--config", str(cfg), "--limit", "2", "--no-progress")  # flags override the file
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "res" / "yaml" / "manifest.json").read_text())
    assert manifest["spec"]["limit"] == 2 and manifest["spec"]["seed"] == 3
    assert manifest["spec"]["transforms"] == ["identity", "lang:hu", "leetspeak"]
    assert manifest["sampling"]["icl_vs_if"]["max_new_tokens"] == 5
    assert manifest["models"]["finetuned"]["spec"]["bos"] == "always"


def test_empty_batches_return_empty_lists(backend):
    """An empty batch (e.g. a caller with no log-likelihood requests) is a no-op, not a max() of nothing."""
    assert backend.generate([], Sampling(max_new_tokens=4)) == []
    assert backend.loglikelihood([]) == []


PROBE_PROMPTS = ["Capitalize every word.\n\nInput: the cat sat\nOutput: THE CAT SAT\n\nInput: a dog ran\nOutput:",
                 "What is 5 plus 3?", "A longer prompt that needs padding on the left side, with more words.\nOutput:"]
PROBE_CONTS = [" A DOG RAN", " a", " 8", " eight", " no no no"]


def test_loglikelihood_after_generate_reuses_the_prompt_prefill_and_agrees(tiny_model):
    """The probe's path: log-likelihoods of continuations of prompts just generated from continue from the kept
    prefill (no second prefill), and agree with one full forward pass (``decode=generate``) to float rounding."""
    b = HFBackend(ModelSpec(name="tiny", model=str(tiny_model)))
    ref = HFBackend(ModelSpec(name="tiny", model=str(tiny_model), options={"decode": "generate"}))
    try:
        reqs = [(p, c) for p in PROBE_PROMPTS for c in PROBE_CONTS]
        full = ref.loglikelihood(reqs)
        assert not ref.prefix.items  # the full forward pass keeps nothing
        b.generate(PROBE_PROMPTS, Sampling(max_new_tokens=4))
        assert len(b.prefix.items) == len(PROBE_PROMPTS)
        computed = b.prefill_stats["computed_tokens"]
        reused = b.loglikelihood(reqs)
        assert b.prefix.hits == len(reqs) and b.prefix.misses == 0
        assert b.prefill_stats["computed_tokens"] == computed  # nothing prefilled again
        assert [g for _, g in reused] == [g for _, g in full]
        assert max(abs(a - c) for (a, _), (c, _) in zip(full, reused)) < 1e-4
        # a context not generated from is prefilled (once for its continuations) in the same call, and agrees too
        other = [("Some other context", " x"), ("Some other context", " y z"), reqs[0]]
        mixed = b.loglikelihood(other)
        assert b.prefix.misses == 2 and b.prefill_stats["computed_tokens"] == computed + len(b.encode(other[0][0])) - 1
        assert max(abs(a - c) for (a, _), (c, _) in zip(ref.loglikelihood(other), mixed)) < 1e-4
    finally:
        b.close()
        ref.close()


def test_prefix_cache_budget_evicts_oldest_and_zero_turns_it_off(tiny_model):
    b = HFBackend(ModelSpec(name="tiny", model=str(tiny_model), options={"prefix_cache_mb": 0}))
    try:
        b.generate(PROBE_PROMPTS, Sampling(max_new_tokens=2))
        assert not b.prefix.items and b.describe()["prefix_cache_mb"] == 0
        one = next(iter([b.prefix]))
        one.max_bytes = 1
        b.generate(PROBE_PROMPTS[:1], Sampling(max_new_tokens=2))
        assert not one.items  # larger than the whole budget: not kept
        b.prefix.max_bytes = 10**9
        b.generate(PROBE_PROMPTS, Sampling(max_new_tokens=2))
        sizes = [p.nbytes for p in b.prefix.items.values()]
        b.prefix.max_bytes = sum(sizes) - 1  # room for all but one: the next put evicts the oldest
        first = next(iter(b.prefix.items))
        b.prefix.items.pop(first)
        b.prefix.bytes -= sizes[0]
        b.generate(PROBE_PROMPTS[:1], Sampling(max_new_tokens=2))
        assert first in b.prefix.items and b.prefix.bytes <= b.prefix.max_bytes
    finally:
        b.close()


def test_unknown_hf_option_is_a_one_line_error_naming_the_known_ones():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="nosuch.*known: decode, fp32_matmul, head, prefix_cache_mb"):
        HFBackend.validate(ModelSpec(name="m", model="x", options={"nosuch": 1}))
    with pytest.raises(ConfigError, match="prefix_cache_mb must be a number"):
        HFBackend.validate(ModelSpec(name="m", model="x", options={"prefix_cache_mb": "lots"}))


def test_a_pair_of_one_base_loads_its_tokenizer_once_and_a_rewritten_folder_reloads(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_model, folder)
    a = HFBackend(ModelSpec(name="a", model=str(folder)))
    b = HFBackend(ModelSpec(name="b", model=str(folder)))
    assert a.tok is b.tok
    config = folder / "tokenizer_config.json"
    config.write_text(config.read_text())  # a new mtime: the folder may hold another tokenizer now
    assert HFBackend(ModelSpec(name="c", model=str(folder))).tok is not a.tok
