"""The greedy LM head (harness.backends.hf_head): the fp32 argmax from bf16 logits plus an fp32 rescoring."""
from __future__ import annotations

import pytest

from harness.backends import hf_head
from harness.backends.hf import HFBackend
from harness.backends.hf_head import GreedyHead
from harness.pipeline.models import ModelSpec
from harness.types import Sampling

needs_bf16 = pytest.mark.skipif(not hf_head.native_bf16(), reason="the bf16 path runs only on CPUs with native bf16")


def model_of(folder):
    return HFBackend(ModelSpec(name="m", model=str(folder))).model


@needs_bf16
def test_the_argmax_is_the_fp32_argmax_on_hidden_states_of_every_kind(tiny_model):
    import torch

    model = model_of(tiny_model)
    head, w = GreedyHead(model), model.get_output_embeddings().weight
    assert head.fast and head.kind == "bf16-window-fp32"
    torch.manual_seed(0)
    h = [torch.randn(512, w.shape[1]) * s for s in (0.1, 1.0, 10.0, 100.0)]
    # rows built to be near-ties: halfway between two tokens' rows (bf16 alone gets many of these wrong)
    a, b = torch.randint(0, w.shape[0], (2, 512))
    h.append((w[a] + w[b]) * 50 + torch.randn(512, w.shape[1]) * 1e-3)
    h = torch.cat(h)
    with torch.inference_mode():
        want = (h @ w.T).argmax(-1)
        got = head(h)
        plain_bf16 = (h.to(torch.bfloat16) @ w.to(torch.bfloat16).T).float().argmax(-1)
    assert torch.equal(got, want)
    assert (plain_bf16 != want).sum() > 10  # the test has rows where bf16 alone is wrong
    assert head.stats["rows"] == h.shape[0] and head.stats["candidates"] >= h.shape[0] - head.stats["full_rows"]


@needs_bf16
def test_a_flat_row_is_scored_in_full(tiny_model):
    import torch

    model = model_of(tiny_model)
    head, w = GreedyHead(model), model.get_output_embeddings().weight
    h = torch.zeros(3, w.shape[1])
    h[1] = w[7] * 5  # one peaked row between two all-tie rows (every logit 0: token 0 wins, as argmax says)
    with torch.inference_mode():
        assert head(h).tolist() == (h @ w.T).argmax(-1).tolist()
    assert head.stats["full_rows"] == 2


def test_fp32_mode_and_bf16_models_use_the_plain_head(tiny_model):
    import torch

    model = model_of(tiny_model)
    assert GreedyHead(model, "fp32").kind == "fp32"
    assert GreedyHead(model.to(torch.bfloat16)).kind == "fp32"


def test_generations_with_either_head_are_the_same_and_the_manifest_says_which(tiny_model):
    auto = HFBackend(ModelSpec(name="m", model=str(tiny_model)))
    fp32 = HFBackend(ModelSpec(name="m", model=str(tiny_model), options={"head": "fp32"}))
    s = Sampling(max_new_tokens=12)
    prompts = ["Input: a cat\nOutput:", "What is 5 plus 3?", "x", "Translate to French: the house is small."] * 3
    assert auto.generate(prompts, s) == fp32.generate(prompts, s)
    assert fp32.describe()["greedy_head"]["kind"] == "fp32"
    assert auto.describe()["greedy_head"]["kind"] == ("bf16-window-fp32" if hf_head.native_bf16() else "fp32")


def test_head_option_is_validated():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="head must be 'auto' or 'fp32'"):
        HFBackend.validate(ModelSpec(name="m", model="x", options={"head": "bf16"}))
