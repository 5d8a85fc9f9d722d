"""`conjugate forgetting`: forgetting cross-entropy of a fine-tuned model against its pretrained base.

Runs on a softened copy of the tiny random Llama (embeddings scaled down so
that its next-token entropy is about 4 nats instead of ~0) and on LoRA
adapters with random, non-zero B matrices.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.backend import Failed
from harness.errors import ConjugateError
from harness.analysis.stats import bootstrap_weights, ratio_ci
from harness.training.forgetting import (PairScorer, evaluate, fit_power_law, load_model, paragraphs,
                                         shifted_power_law, split_chunks, steps_of, windows)
from harness.pipeline.models import ModelSpec
from harness.transform import Transform

from .conftest import run_cli

TEXT = (
    "The river ran quickly past the old mill. Children watched the boats.\n\n"
    "Bread needs flour, water, salt and time; the dough rises slowly.\n\n"
    "Stars are easier to see far from the lights of a city.\n\n"
    "A small garden can grow beans, lettuce and tomatoes in summer.\n"
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: with a background job on a 2-core machine, 2 spinning threads make tiny ops 50x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_adapter(base, folder, scale: float = 1.0, seed: int = 1):
    """A LoRA adapter with random non-zero A and B (B scaled by ``scale``), saved to ``folder``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(scale)
    peft_model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def adapters(soft_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return [make_adapter(soft_tiny, root / f"s{i}", scale) for i, scale in enumerate((0.5, 1.0, 2.0))]


@pytest.fixture(scope="module")
def models(soft_tiny, adapters):
    tok, pre, bos = load_model(ModelSpec(name="pre", model=str(soft_tiny)))
    _, ft, _ = load_model(ModelSpec(name="ft", model=str(soft_tiny), adapter=str(adapters[1])))
    return tok, pre, ft, bos


def ids_of(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


# -- the per-token quantities ----------------------------------------------------------------

def test_model_against_itself_ce_is_entropy(models):
    import copy

    tok, pre, _, _ = models
    seqs = [ids_of(tok, p) for p in paragraphs(TEXT)]
    for other in (pre, copy.deepcopy(pre)):  # the same object, and a separate model with the same weights
        for st in PairScorer(pre, other).score(seqs, batch_size=3):
            assert np.max(np.abs(st.ce - st.entropy)) < 1e-5
            assert np.max(np.abs(st.kl)) < 1e-5
            assert st.entropy.mean() > 1.0  # a non-degenerate distribution


def test_matches_hand_computation_from_raw_logits(models):
    import torch

    tok, pre, ft, _ = models
    ids = ids_of(tok, "The river ran quickly past the old mill.")
    with torch.no_grad():
        lp = torch.log_softmax(pre(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        lq = torch.log_softmax(ft(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    ce, ent, nll_q = [], [], []
    for t in range(len(ids) - 1):  # position t predicts token t + 1
        p = lp[t].exp()
        ce.append(-float((p * lq[t]).sum()))
        ent.append(-float((p * lp[t]).sum()))
        nll_q.append(-float(lq[t, ids[t + 1]]))
    [st] = PairScorer(pre, ft).score([ids], batch_size=1)
    assert len(st) == len(ids) - 1
    np.testing.assert_allclose(st.ce, ce, atol=2e-4)
    np.testing.assert_allclose(st.entropy, ent, atol=2e-4)
    np.testing.assert_allclose(st.kl, np.array(ce) - np.array(ent), atol=2e-4)
    np.testing.assert_allclose(st.nll_finetuned, nll_q, atol=2e-4)
    # padding in a batch does not change a sequence's numbers
    [st_b, _] = PairScorer(pre, ft).score([ids, ids + ids_of(tok, " And then it rained for days.")], batch_size=2)
    np.testing.assert_allclose(st_b.ce, st.ce, atol=1e-4)
    # deterministic: the same batches give the same bits
    [again] = PairScorer(pre, ft).score([ids], batch_size=1)
    assert np.array_equal(again.ce, st.ce) and np.array_equal(again.kl, st.kl)


class FailFirst(Transform):
    """test: upper-cases every chunk but the first, which fails"""

    name = "test-fail-first"

    def forward_batch(self, texts):
        return [Failed("no") if i == 0 else t.upper() for i, t in enumerate(texts)]

    def forward(self, text):
        return text.upper()

    def inverse(self, text):
        return text


@pytest.fixture(scope="module")
def evaluated(soft_tiny, adapters):
    """The base against itself and against the three adapters, on the text and under a transform."""
    from harness.registry import TRANSFORMS

    TRANSFORMS.register("test-fail-first", FailFirst)
    pre = ModelSpec(name="pre", model=str(soft_tiny))
    fts = [ModelSpec(name=f"ft{i}", model=str(soft_tiny), adapter=str(a)) for i, a in enumerate(adapters)]
    try:
        yield evaluate(pre, [pre] + fts, TEXT, transforms=["identity", "test-fail-first"], max_tokens=16,
                       batch_size=4, progress=False)
    finally:
        TRANSFORMS._entries.pop("test-fail-first", None)  # keep the registry as other tests expect it


def test_lora_adapter_has_positive_kl_with_ci(evaluated, soft_tiny, adapters):
    rows = {r["model"]: r for r in evaluated["results"] if r["condition"] == "identity"}
    assert len(evaluated["chunks"]) == 4 and rows["pre"]["n_chunks"] == 4
    assert abs(rows["pre"]["kl"]["mean"]) < 1e-6 and abs(rows["pre"]["ce"]["mean"] - rows["pre"]["entropy"]["mean"]) < 1e-6
    kls = [rows[f"ft{i}"]["kl"]["mean"] for i in range(3)]
    for i in range(3):
        r = rows[f"ft{i}"]
        assert r["kl"]["lo"] > 0 and r["kl"]["lo"] <= r["kl"]["mean"] <= r["kl"]["hi"]
        assert r["ce"]["mean"] == pytest.approx(r["entropy"]["mean"] + r["kl"]["mean"], abs=1e-5)
        assert r["entropy"]["mean"] == pytest.approx(rows["pre"]["entropy"]["mean"], abs=1e-6)  # same target
    assert kls[0] < kls[1] < kls[2]  # larger LoRA deltas, more forgetting
    # the same numbers alone (other batches: equal up to float32 rounding)
    pre = ModelSpec(name="pre", model=str(soft_tiny))
    again = evaluate(pre, [ModelSpec(name="ft0", model=str(soft_tiny), adapter=str(adapters[0]))], TEXT,
                     max_tokens=16, batch_size=4, progress=False)
    for key in ("mean", "lo", "hi"):
        assert again["results"][0]["ce"][key] == pytest.approx(rows["ft0"]["ce"][key], abs=1e-5)


def test_transforms_and_failed_chunks(evaluated):
    assert evaluated["conditions"] == ["identity", "test-fail-first"]
    rows = {r["condition"]: r for r in evaluated["results"] if r["model"] == "ft1"}
    assert rows["test-fail-first"]["n_chunks"] == 3 and rows["test-fail-first"]["failed_chunks"] == 1
    assert evaluated["failed"] == {"test-fail-first": 1}
    d = rows["test-fail-first"]["kl_minus_identity"]
    assert d["lo"] <= d["mean"] <= d["hi"]
    assert "kl_minus_identity" not in rows["identity"]


# -- chunking, statistics, the power law -----------------------------------------------------

def test_chunking():
    assert paragraphs("a\nb\n\nc\n") == ["a\nb", "c"]
    assert paragraphs("one\ntwo\nthree") == ["one", "two", "three"]
    words = lambda s: len(s.split())  # noqa: E731
    para = "One two three. Four five six. Seven eight nine ten eleven twelve thirteen."
    assert split_chunks(para, words, 6) == ["One two three. Four five six.", "Seven eight nine ten eleven twelve thirteen."]
    assert split_chunks(para, words, 100) == [para]
    assert windows(list(range(7)), 4, bos_id=99) == [[99, 0, 1, 2], [99, 3, 4, 5], [99, 6]]
    assert windows(list(range(7)), 4, bos_id=None) == [[0, 1, 2, 3], [4, 5, 6]]
    assert windows([5], 4, bos_id=None) == []  # nothing to predict


def test_bootstrap_is_seeded_and_token_weighted():
    sums, counts = np.array([1.0, 2.0, 6.0]), np.array([1.0, 1.0, 2.0])
    a = ratio_ci(sums, counts, bootstrap_weights(3, seed=0))
    assert a["mean"] == pytest.approx(9 / 4)
    assert a == ratio_ci(sums, counts, bootstrap_weights(3, seed=0))
    assert a["lo"] < a["mean"] < a["hi"]
    assert bootstrap_weights(5, seed=1).sum(1).tolist() == [5.0] * 2000


def test_power_law_fit_recovers_parameters():
    t = np.array([10, 20, 50, 100, 200, 400, 800], float)
    y = shifted_power_law(t, 0.3, 0.4, 2.5)
    fit = fit_power_law(t, y)
    assert fit["A"] == pytest.approx(0.3, rel=1e-3)
    assert fit["alpha"] == pytest.approx(0.4, rel=1e-3)
    assert fit["c"] == pytest.approx(2.5, rel=1e-3)
    assert fit["r2"] > 0.9999 and fit["dof"] == 4
    # with noise and weights, still close
    rng = np.random.default_rng(0)
    noisy = y + rng.normal(0, 0.002, len(y))
    f2 = fit_power_law(t, noisy, sigma=np.full(len(y), 0.002))
    assert f2["alpha"] == pytest.approx(0.4, abs=0.05) and f2["weighted"]
    # three points: an exact fit with no degrees of freedom
    f3 = fit_power_law(t[[0, 3, 6]], y[[0, 3, 6]])
    assert f3["dof"] == 0 and f3["stderr"] is None and max(abs(p["fitted"] - p["value"]) for p in f3["points"]) < 1e-6


def test_power_law_fit_needs_three_points():
    with pytest.raises(ConjugateError, match="at least 3"):
        fit_power_law([100, 200], [3.0, 3.1])
    with pytest.raises(ConjugateError, match="at least 3"):
        fit_power_law([100, 100, 200], [3.0, 3.0, 3.1])


def test_steps_from_folders(tmp_path):
    a = tmp_path / "ft"
    a.mkdir()
    (a / "adapter_config.json").write_text("{}")
    (a / "recipe.json").write_text(json.dumps({"config": {"steps": 250}}))
    assert steps_of(ModelSpec(name="x", model="base", adapter=str(a)))[0] == 250
    b = tmp_path / "checkpoint-120"
    b.mkdir()
    (b / "adapter_config.json").write_text("{}")
    assert steps_of(ModelSpec(name="x", model="base", adapter=str(b)))[0] == 120
    (b / "trainer_state.json").write_text(json.dumps({"global_step": 121}))
    assert steps_of(ModelSpec(name="x", model="base", adapter=str(b)))[0] == 121
    assert steps_of(ModelSpec(name="x", model="base"))[0] is None
    assert steps_of(ModelSpec(name="x", model="pkg:gemma3-270m", adapter="pkg:gemma3-270m-assistant-en"))[0] == 400


# -- the command line ------------------------------------------------------------------------

def test_cli_end_to_end(soft_tiny, adapters, tmp_path):
    text = tmp_path / "small.txt"
    text.write_text(TEXT)
    out = tmp_path / "out"
    proc = run_cli("forgetting", "--pretrained", str(soft_tiny), "--finetuned", f"{soft_tiny}+{adapters[2]}",
                   "--text", str(text), "--out", str(out), "--no-progress", "--max-tokens", "32", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "forgetting.json").read_text())
    [row] = doc["results"]
    assert row["condition"] == "identity" and row["n_chunks"] == 4 and row["kl"]["mean"] > 0
    assert doc["text"]["chunks"] == 4 and doc["settings"]["max_tokens"] == 32
    assert (out / "forgetting.png").stat().st_size > 0 and "Forgetting" in (out / "forgetting.md").read_text()
    assert "CE [95% CI]" in proc.stdout and proc.stdout.strip().endswith("forgetting.md")


def test_cli_several_checkpoints_fit_the_power_law(soft_tiny, adapters, tmp_path, capsys):
    from harness.cli import main

    text = tmp_path / "small.txt"
    text.write_text(TEXT)
    out = tmp_path / "out"
    args = ["forgetting", "--pretrained", str(soft_tiny), "--steps", "10,20,40", "--text", str(text), "--out", str(out),
            "--no-progress", "--transforms", "leetspeak", "--batch-size", "4", "--threads", "1"]
    for a in adapters:
        args += ["--finetuned", f"{soft_tiny}+{a}"]
    assert main(args) == 0
    doc = json.loads((out / "forgetting.json").read_text())
    assert len(doc["results"]) == 6 and [f["steps"] for f in doc["finetuned"]] == [10, 20, 40]
    assert set(doc["fit"]) == {"identity", "leetspeak"}
    tokens = {r["condition"]: r["n_tokens"] for r in doc["results"]}
    assert tokens["leetspeak"] > tokens["identity"]  # digits split words into more tokens
    assert all("kl_minus_identity" in r for r in doc["results"] if r["condition"] == "leetspeak")
    assert doc["fit"]["identity"]["alpha"] > 0 and doc["fit"]["identity"]["n_points"] == 3
    assert (out / "forgetting-fit.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "power law (English, 3 checkpoints)" in printed and "anchored at the pretrained entropy" in printed
    assert doc["fit"]["identity"]["anchored"]["c_fixed"]


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and "\n" not in err and err.startswith("conjugate: error: "), err
    for f in fragments:
        assert f in err, err


def test_cli_bad_input(soft_tiny, tmp_path, capsys):
    assert_one_line_error(run_cli("forgetting", "--pretrained", str(soft_tiny), "--finetuned", str(soft_tiny),
                                  "--text", str(tmp_path / "missing.txt")), "missing.txt", "no such file")
    assert_one_line_error(run_cli("forgetting", "--pretrained", "a", "--finetuned", "b", "--finetuned", "c",
                                  "--steps", "1,2,3"), "--steps has 3 value(s) but 2 --finetuned")
    assert_one_line_error(run_cli("forgetting", "--pretrained", "a"), "--finetuned is missing")
    assert_one_line_error(run_cli("forgetting", "--max-tokens", "0"), "--max-tokens")
    # another vocabulary: fails on the tokenizers, before any weights load
    from transformers import AutoTokenizer

    from harness.cli import main

    other = tmp_path / "other"
    other.mkdir()
    for f in soft_tiny.iterdir():
        (other / f.name).symlink_to(f)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        if (other / name).exists():
            (other / name).unlink()
    tok = AutoTokenizer.from_pretrained(str(soft_tiny))
    tok.add_tokens(["<only-here>"])
    tok.save_pretrained(other)
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    capsys.readouterr()
    assert main(["forgetting", "--pretrained", str(soft_tiny), "--finetuned", str(other), "--text", str(text),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "do not share a tokenizer" in err and "<only-here>" in err, err


def test_power_law_fit_with_fixed_shift():
    t = np.array([5, 10, 20, 40, 80], float)
    y = shifted_power_law(t, 0.2, 0.6, 3.0)
    fit = fit_power_law(t, y, c=3.0)
    assert fit["c_fixed"] and fit["c"] == 3.0 and fit["dof"] == 3
    assert fit["A"] == pytest.approx(0.2, rel=1e-4) and fit["alpha"] == pytest.approx(0.6, rel=1e-4)
