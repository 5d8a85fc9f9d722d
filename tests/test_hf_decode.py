"""The hf backend's greedy decoder (harness.backends.hf_decode) against transformers' generate, on real tiny models."""
from __future__ import annotations

import pytest

from harness.backends import hf_decode
from harness.backends.hf import HFBackend
from harness.pipeline.models import ModelSpec
from harness.types import Sampling

PROMPTS = ["Input: a cat\nOutput:", "What is 5 plus 3?", "A much longer prompt that needs padding on the left side.",
           "x", "Translate to French: the house is small and the garden is large, but the dog is happy."]


def pair(folder, **options):
    fast = HFBackend(ModelSpec(name="m", model=str(folder), options=options))
    slow = HFBackend(ModelSpec(name="m", model=str(folder), options={**options, "decode": "generate"}))
    return fast, slow


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    """A random two-layer Gemma-3 text model (sliding-window and global layers, logit softcapping) with the SmolLM2 tokenizer."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    from harness.pipeline.models import gguf_to_folder, packaged_gguf

    folder = tmp_path_factory.mktemp("tiny-gemma3")
    tok = AutoTokenizer.from_pretrained(str(gguf_to_folder(packaged_gguf("smollm2-135m-instruct"), progress=False)))
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=64,
                              layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=30.0,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_greedy_fast_path_equals_generate_and_is_used(tiny_model):
    fast, slow = pair(tiny_model)
    s = Sampling(max_new_tokens=8)
    assert fast.generate(PROMPTS, s) == slow.generate(PROMPTS, s)
    assert fast.describe()["decoded_prompts"] == {"fast": len(PROMPTS), "generate": 0}
    assert slow.describe()["decoded_prompts"] == {"fast": 0, "generate": len(PROMPTS)}
    # sampling is generate's job (its seeded sampler is the cached behaviour)
    fast.generate(PROMPTS[:2], Sampling(max_new_tokens=4, temperature=0.7, seed=1))
    assert fast.decoded["generate"] == 2


def test_rows_leave_the_batch_at_end_of_sequence_and_at_stop_strings(tiny_model):
    fast, slow = pair(tiny_model)
    s = Sampling(max_new_tokens=10)
    full = fast.generate(PROMPTS, s)
    # make the token one prompt's answer starts with the end of sequence: that row stops after it, others run on
    first = hf_decode.greedy(fast.model, [fast.encode(PROMPTS[1])], 1, fast.prefix, fast.pad_id, lambda t: False)[0][0]
    for b in (fast, slow):
        b.model.generation_config.eos_token_id = [first]
    cut_fast, cut_slow = fast.generate(PROMPTS, s), slow.generate(PROMPTS, s)
    assert cut_fast == cut_slow
    assert len(cut_fast[1]) < len(full[1]) and sum(a == b for a, b in zip(cut_fast, full)) >= 3
    stop = full[0][3:5]
    st = Sampling(max_new_tokens=10, stop=(stop,))
    assert fast.generate(PROMPTS, st) == slow.generate(PROMPTS, st)
    assert fast.generate(PROMPTS[:1], st)[0] == full[0][: full[0].find(stop)]


def test_fast_path_keeps_prefills_for_the_probe(tiny_model):
    fast, slow = pair(tiny_model)
    prompts = [p for p in PROMPTS if len(fast.encode(p)) > 1]  # a one-token prompt has no prefill to keep
    reqs = [(p, c) for p in prompts for c in (" A", " yes no")]
    full = slow.loglikelihood(reqs)
    fast.generate(prompts, Sampling(max_new_tokens=3))
    got = fast.loglikelihood(reqs)
    assert fast.prefix.hits == len(reqs) and fast.prefix.misses == 0
    assert max(abs(a - b) for (a, _), (b, _) in zip(full, got)) < 1e-4


def test_gemma3_sliding_window_model_matches_generate_and_long_prompts_fall_back(tiny_gemma):
    fast, slow = pair(tiny_gemma)
    s = Sampling(max_new_tokens=8)
    assert fast.generate(PROMPTS, s) == slow.generate(PROMPTS, s)
    assert fast.decoded == {"fast": len(PROMPTS), "generate": 0}
    long = ["word " * 70]  # longer than the 64-token sliding window: generate's windowed cache decides
    assert fast.generate(long, s) == slow.generate(long, s)
    assert fast.decoded["generate"] == 1


def test_decode_option_is_validated():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="decode must be 'fast' or 'generate'"):
        HFBackend.validate(ModelSpec(name="m", model="x", options={"decode": "turbo"}))


def test_shared_prompt_prefixes_are_prefilled_once_and_agree_with_separate_prefills(tiny_model):
    """Few-shot prompts sharing an instruction and a demonstration: the shared prefix is computed once (also nested:
    a prefix shared by all and a longer one shared by some), keys and values agree with each prompt's own forward pass."""
    fast, slow = pair(tiny_model)
    head = "Capitalize every character.\n\nInput: the cat sat on the mat.\nOutput: THE CAT SAT ON THE MAT.\n\n"
    second = "Input: a dog ran in the park today.\nOutput: A DOG RAN IN THE PARK TODAY.\n\n"
    prompts = [head + second + "Input: What is 2 plus 2?\nOutput:", head + second + "Input: Name a color.\nOutput:",
               head + "Input: birds fly south.\nOutput:", "Unrelated prompt with nothing shared.", "x y"]
    seqs = [fast.encode(p) for p in prompts]
    stats: dict = {}
    shared = hf_decode.prefill(fast.model, seqs, fast.prefix, fast.pad_id, stats)
    alone = hf_decode._forward(fast.model, [tuple(s[:-1]) for s in seqs], fast.pad_id)
    assert stats["prompt_tokens"] == sum(len(s) - 1 for s in seqs)
    lcp_all = len(fast.encode(head)) - 2  # shared by the first three (minus BOS/boundary tokens at the edge)
    assert stats["computed_tokens"] < stats["prompt_tokens"] - lcp_all  # the shared head counted once, not three times
    for a, b in zip(shared, alone):
        assert a.length == b.length
        assert max(float((x - y).abs().max()) for (x, _), (y, _) in zip(a.kv, b.kv)) < 1e-4
    fast.prefix.clear()  # generate prefills again (what it finds in the prefix store it does not compute)
    s = Sampling(max_new_tokens=6)
    assert fast.generate(prompts, s) == slow.generate(prompts, s)
    counts = fast.describe()["prefill_tokens"]
    assert counts == {"prompt": stats["prompt_tokens"], "computed": stats["computed_tokens"]}


def test_the_executor_batches_hf_requests_by_shared_prefix(tiny_model, tmp_path):
    """For the greedy decoder, prompts sharing a prefix go in one batch (it prefills the prefix once): with batches
    of 2, the two prompts of each instruction pair up, whatever their lengths."""
    from harness.pipeline.cache import GenerationCache
    from harness.pipeline.execute import GENERATE, Executor, Generate

    spec = ModelSpec(name="m", model=str(tiny_model))
    assert HFBackend.batch_order(spec) == "prefix"
    assert HFBackend.batch_order(ModelSpec(name="m", model="x", options={"decode": "generate"})) == "length"
    s = Sampling(max_new_tokens=2)
    reqs = [Generate(p, s) for p in ("Translate: a very long sentence about many things", "Summarise: hi",
                                     "Translate: short", "Summarise: another much longer text to summarise")]
    ex = Executor(GenerationCache(tmp_path / "g.sqlite", [GENERATE.table]), {"m": 1}, 2)
    ex.order = "prefix"
    job = ex.lookup(GENERATE, reqs)
    batches = [sorted(job.uniq[k].prompt.split(":")[0] for k in b) for b in ex.batches(job)]
    assert batches == [["Summarise", "Summarise"], ["Translate", "Translate"]]
    ex.order = "length"
    assert [sorted(job.uniq[k].prompt.split(":")[0] for k in b) for b in ex.batches(job)] == [
        ["Summarise", "Translate"], ["Summarise", "Translate"]]
