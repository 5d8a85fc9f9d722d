"""A tiny random Llama (hidden 128, 2 layers, head_dim 64) with the SmolLM2 tokenizer.

Builds in about two seconds; used by the unit tests and benchmarks that need a
real transformers model but not a good one. The weights are random but fixed
by ``seed``, so its greedy outputs are deterministic.
"""
from __future__ import annotations

from pathlib import Path

from harness.pipeline.models import ModelSpec, gguf_to_folder, packaged_gguf


def build_tiny_llama(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    tok_src = gguf_to_folder(packaged_gguf("smollm2-135m-instruct"), progress=False)
    tok = AutoTokenizer.from_pretrained(str(tok_src))
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # random init gives near-uniform logits; scale up so greedy outputs vary with the prompt
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def tiny_spec(folder: str | Path, name: str = "tiny-llama", **kw) -> ModelSpec:
    return ModelSpec(name=name, model=str(folder), **kw)
