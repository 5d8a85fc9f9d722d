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
