"""Regularised fine-tuning (`conjugate finetune --regularize`) on the tiny random Llama: importance, penalty, cache."""
from __future__ import annotations

import json
import math
import random

import pytest

from harness.errors import ConfigError
from harness.training.finetune import FinetuneConfig, train

from .conftest import run_cli

GENERAL = ("The river runs past the old mill and into the lake.\n\nA farmer sells apples, pears and bread at "
           "the market on Saturday.\n\nThe children read a story about a cat who climbs the tallest tree.\n")


@pytest.fixture(scope="module")
def sums_jsonl(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "sums.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"What is {a} plus {b}?", "response": str(a + b)}) + "\n"
                            for a, b in ((rng.randint(2, 30), rng.randint(2, 30)) for _ in range(200))))
    return path


@pytest.fixture(scope="module")
def general_txt(tmp_path_factory):
    path = tmp_path_factory.mktemp("general") / "general.txt"
    path.write_text(GENERAL)
    return path


@pytest.fixture
def cache_dir(tiny_model, tmp_path, monkeypatch):
    """An empty conjugate cache for the importance files (after the tiny model is built)."""
    monkeypatch.setenv("CONJUGATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def untied_model(tiny_model, tmp_path_factory):
    """The tiny Llama with separate input and output embeddings: an absent token's input row cannot matter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("untied")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(tiny_model)).save_pretrained(folder)
    return folder


def _cfg(base, data, out, **kw):
    d = dict(base=str(base), data=str(data), steps=30, lr=1e-2, warmup=2, target_modules=["q_proj", "v_proj"],
             batch_size=8, out=str(out))
    return FinetuneConfig(**{**d, **kw})


def _lora_deltas(folder):
    """{base weight name: B @ A * alpha / r} of a saved adapter."""
    from safetensors.torch import load_file

    cfg = json.loads((folder / "adapter_config.json").read_text())
    sd = load_file(str(folder / "adapter_model.safetensors"))
    scale = cfg["lora_alpha"] / cfg["r"]
    out = {}
    for key, a in sd.items():
        if ".lora_A." in key:
            b = sd[key.replace(".lora_A.", ".lora_B.")]
            out[key.split("base_model.model.", 1)[1].replace(".lora_A.weight", ".weight")] = (b @ a) * scale
    return out


def test_a_weight_that_never_affects_the_text_gets_zero_importance(untied_model, general_txt, sums_jsonl, cache_dir,
                                                                 tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from harness.training.importance import text_windows

    out = train(_cfg(untied_model, sums_jsonl, tmp_path / "full", steps=3, method="full", regularize="elementwise",
                     importance_data=str(general_txt)), progress=False)
    recipe = json.loads((out / "recipe.json").read_text())
    imp = recipe["regularization"]["importance"]
    omega = load_file(imp["cache"])
    emb = omega["model.embed_tokens.weight"]
    tok = AutoTokenizer.from_pretrained(str(untied_model))
    inputs = {i for seq in text_windows(tok, True, GENERAL) for i in seq[:-1]}  # tokens the model reads
    absent = [i for i in range(1000, 1100) if i not in inputs]
    assert len(absent) > 50 and all(float(emb[i].abs().max()) == 0.0 for i in absent)  # exactly zero, not small
    assert sum(float(emb[i].abs().sum()) > 0 for i in inputs) >= len(inputs) - 2  # (window ends may differ by BOS)
    assert float(omega["model.layers.0.self_attn.q_proj.weight"].sum()) > 0
    assert imp["zero_elements"] >= len(absent) * emb.shape[1] and imp["elements"] == sum(t.numel() for t in omega.values())
    assert (out / "model.safetensors").exists() and "weights_sha256" in recipe


def test_penalised_run_moves_important_weights_less(tiny_model, sums_jsonl, cache_dir, tmp_path):
    """Same seed, same data: the regularised LoRA changes the weights that matter for general text less (measured)."""
    import torch
    from safetensors.torch import load_file

    plain = train(_cfg(tiny_model, sums_jsonl, tmp_path / "plain"), progress=False)
    runs = {mode: train(_cfg(tiny_model, sums_jsonl, tmp_path / mode, regularize=mode), progress=False)
            for mode in ("elementwise", "both")}
    recipe = json.loads((runs["both"] / "recipe.json").read_text())
    omega = load_file(recipe["regularization"]["importance"]["cache"])
    d_plain = _lora_deltas(plain)
    assert set(d_plain) == set(omega)

    def weighted_drift(deltas):
        return sum(float((omega[k] * deltas[k] ** 2).sum()) for k in deltas)

    def top_drift(deltas):  # mean |change| of the 1% most important elements
        w = torch.cat([omega[k].flatten() for k in sorted(deltas)])
        d = torch.cat([deltas[k].flatten() for k in sorted(deltas)]).abs()
        return float(d[w >= torch.quantile(w, 0.99)].mean())

    for mode, folder in runs.items():
        d = _lora_deltas(folder)
        assert weighted_drift(d) < 0.7 * weighted_drift(d_plain), mode
        assert top_drift(d) < top_drift(d_plain), mode
    # it still learns the task
    last = json.loads((runs["both"] / "recipe.json").read_text())
    assert last["mean_loss_last_10pct"] < 0.8 * last["mean_loss_first_10pct"]


def test_both_terms_logged_and_plotted(tiny_model, sums_jsonl, cache_dir, tmp_path):
    out = train(_cfg(tiny_model, sums_jsonl, tmp_path / "lw", steps=12, regularize="layerwise", reg_lambda=0.3),
                progress=False)
    log = [json.loads(line) for line in (out / "training.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert all({"loss", "reg", "drift"} <= set(r) for r in log)
    assert log[0]["drift"] == 0.0 and log[-1]["drift"] > 0 and log[-1]["reg"] > 0  # LoRA starts at the base
    recipe = json.loads((out / "recipe.json").read_text())
    reg = recipe["regularization"]
    assert reg["mode"] == "layerwise" and reg["lambda"] == 0.3 and "importance" not in reg and reg["layer_rule"]
    assert recipe["config"]["regularize"] == "layerwise" and recipe["last_reg"] == log[-1]["reg"]
    assert (out / "loss.png").stat().st_size > 0


def test_layer_coefficient_balances_the_gradients():
    """layerwise: in each layer the penalty's gradient has lambda times the norm of the task gradient."""
    import torch

    from harness.training.regularize import Regularizer, Target

    torch.manual_seed(0)
    w = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(2)]
    w0 = [p.detach().clone() - 0.1 * (i + 1) for i, p in enumerate(w)]
    targets = [Target(f"w{i}", [p], lambda p=p, q=q: p - q) for i, (p, q) in enumerate(zip(w, w0))]
    ce = (w[0].sum() * 3.0) + (w[1] ** 2).sum()
    g_ce = [g.clone() for g in torch.autograd.grad(ce, w, retain_graph=True)]
    terms = Regularizer("layerwise", 0.25, targets).backward(ce)
    for p, g, q in zip(w, g_ce, w0):
        g_reg = p.grad - g
        assert math.isclose(float(g_reg.norm()), 0.25 * float(g.norm()), rel_tol=1e-5)
        assert float((g_reg * (p - q).detach()).sum()) > 0  # it pulls back towards the pretrained value
    assert terms["drift"] > 0 and terms["reg"] > 0


def test_importance_is_cached_and_recorded(tiny_model, sums_jsonl, general_txt, cache_dir, tmp_path):
    import hashlib

    lines: list[str] = []
    cfg = dict(steps=2, regularize="both", importance_data=str(general_txt))
    first = train(_cfg(tiny_model, sums_jsonl, tmp_path / "a", **cfg), progress=False, log=lines.append)
    second = train(_cfg(tiny_model, sums_jsonl, tmp_path / "b", **cfg), progress=False, log=lines.append)
    a = json.loads((first / "recipe.json").read_text())["regularization"]["importance"]
    b = json.loads((second / "recipe.json").read_text())["regularization"]["importance"]
    assert a["cached"] is False and b["cached"] is True
    assert sum("importance: cache hit" in line for line in lines) == 1
    assert a["sha256"] == b["sha256"] and a["cache"] == b["cache"] and a["data"] == str(general_txt)
    assert a["data_sha256"] == hashlib.sha256(GENERAL.encode()).hexdigest() and a["method"] == "fisher-diagonal-v1"
    cached = list((cache_dir / "importance").glob("*.safetensors"))
    assert [str(p) for p in cached] == [a["cache"]]
    # another text is another cache entry
    other = tmp_path / "other.txt"
    other.write_text("Completely different words about mountains and snow.\n")
    third = train(_cfg(tiny_model, sums_jsonl, tmp_path / "c", steps=2, regularize="elementwise",
                       importance_data=str(other)), progress=False)
    c = json.loads((third / "recipe.json").read_text())["regularization"]["importance"]
    assert c["cached"] is False and c["cache"] != a["cache"]


def test_default_importance_text_is_the_reference_text(tiny_model, sums_jsonl, cache_dir, tmp_path):
    from harness.training.forgetting.text import reference_text_path

    out = train(_cfg(tiny_model, sums_jsonl, tmp_path / "d", steps=1, regularize="elementwise"), progress=False)
    imp = json.loads((out / "recipe.json").read_text())["regularization"]["importance"]
    assert imp["data_default"] is True and imp["data"] == str(reference_text_path())


@pytest.mark.parametrize("kw, field", [
    ({"regularize": "l2"}, "--regularize"),
    ({"regularize": "both", "reg_lambda": -1.0}, "--reg-lambda"),
    ({"regularize": "both", "reg_lambda": float("nan")}, "--reg-lambda"),
    ({"reg_lambda": 0.1}, "--reg-lambda"),
    ({"method": "qlora"}, "--method"),
    ({"regularize": "layerwise", "importance_data": "x.txt"}, "--importance-data"),
    ({"regularize": "both", "importance_data": "/no/such/file.txt"}, "--importance-data"),
    ({"snapshots": [0]}, "snapshot"),
])
def test_bad_options_are_one_line_errors(kw, field):
    with pytest.raises(ConfigError, match=field.replace("-", r"\-")) as e:
        FinetuneConfig(**kw)
    assert "\n" not in str(e.value)


def test_cli_bad_options(tmp_path):
    r = run_cli("finetune", "--regularize", "l2", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--regularize" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("finetune", "--regularize", "both", "--importance-data", str(tmp_path / "none.txt"), "--out",
                str(tmp_path / "o"))
    assert r.returncode == 2 and "--importance-data" in r.stderr and "no such file" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
