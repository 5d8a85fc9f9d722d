"""The committed default adapter matches its recipe: checksum, config, size."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.training.finetune import FinetuneConfig, sha256_file
from harness.pipeline.models import DEFAULT_FINETUNED, adapter_folder

ADAPTER = Path(__file__).resolve().parents[1] / "harness" / "adapters" / "gemma3-270m-assistant-en"

pytestmark = pytest.mark.skipif(not ADAPTER.exists(), reason="no committed default adapter in this checkout")


def test_checksum_matches_recipe():
    recipe = json.loads((ADAPTER / "recipe.json").read_text())
    assert recipe["adapter_sha256"] == sha256_file(ADAPTER / "adapter_model.safetensors")


def test_recipe_is_the_default_recipe():
    recipe = json.loads((ADAPTER / "recipe.json").read_text())["config"]
    defaults = FinetuneConfig().to_dict()
    for key in (f.name for f in dataclasses.fields(FinetuneConfig)):
        if key in ("out", "threads", "save_every", "snapshots"):  # where and how often to save: not the result
            continue
        from harness.training.finetune import Checkpoint  # fields added later: their old value when absent

        assert recipe.get(key, Checkpoint.LATER.get(key, KeyError)) == defaults[key], key


def test_small_enough_to_commit():
    assert (ADAPTER / "adapter_model.safetensors").stat().st_size <= 10 * 1024 * 1024


def test_default_finetuned_model_uses_it():
    assert adapter_folder(DEFAULT_FINETUNED).resolve() == ADAPTER.resolve()
