"""Shared fixtures: a tiny random Llama built once per session, and an isolated generation cache."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from harness.training.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def soft_tiny(tiny_model, tmp_path_factory) -> Path:
    """The tiny Llama with embeddings x0.25: next-token entropy about 4 nats (the original is ~0), so the
    forgetting cross-entropy moves with training."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("soft-tiny")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(0.25)
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(tiny_model)).save_pretrained(folder)
    return folder


@pytest.fixture
def gen_cache(tmp_path) -> Path:
    return tmp_path / "generations.sqlite"


@pytest.fixture
def tiny_spec_kwargs(tiny_model, tmp_path, gen_cache):
    """RunSpec fields for a fast run of the tiny model against itself (different dtype is not needed)."""
    from harness.pipeline.models import ModelSpec

    return dict(
        pretrained=ModelSpec(name="tiny-pt", model=str(tiny_model)),
        finetuned=ModelSpec(name="tiny-ft", model=str(tiny_model), bos="always"),
        tasks=["icl_vs_if"],
        out=str(tmp_path / "results"),
        cache=str(gen_cache),
        batch_size=8,
    )


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    """Run the `conjugate` CLI in a subprocess; return CompletedProcess."""
    import subprocess

    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          env=e, cwd=cwd or ROOT, timeout=600)
