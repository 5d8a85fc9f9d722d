"""Task-inference probe: P(ICL) from log-likelihoods, checked against raw logits of the tiny model."""
from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from harness.pipeline import probe as probing
from harness.analysis.summary.probe import probe_summary
from harness.io import read_jsonl
from harness.registry import TRANSFORMS
from harness.outputs.write import rerender
from harness.pipeline.runner import run
from harness.pipeline.spec import RunSpec
from harness.transform import Transform
from harness.types import ERROR, Sample


class _NoBlanks(Transform):
    """Upper-cases prompts; fails on prompts with a blank (so startblank samples are errors)."""

    name = "probe_noblanks"
    exact = False

    def forward(self, text: str) -> str:
        if "___" in text:
            raise ValueError("cannot handle blanks")
        return text.upper()

    def inverse(self, text: str) -> str:
        return text.lower()


class _Counting:
    """The real hf backend, counting loglikelihood calls and requests."""

    def __init__(self, ms, log: list):
        from harness.backends.hf import HFBackend

        self.inner, self.log = HFBackend(ms), log

    def generate(self, prompts, sampling):
        return self.inner.generate(prompts, sampling)

    def loglikelihood(self, requests):
        self.log.append(len(requests))
        return self.inner.loglikelihood(requests)

    def close(self):
        self.inner.close()


def _hand_logp(tok, model, context: str, continuation: str, add_bos: bool) -> float:
    """log p(continuation | context) from the full model's raw logits, tokenised independently of the harness."""
    import torch

    ctx = tok(context, add_special_tokens=False).input_ids
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    assert whole[: len(ctx)] == ctx and len(whole) > len(ctx)
    if add_bos:
        ctx, whole = [tok.bos_token_id] + ctx, [tok.bos_token_id] + whole
    with torch.no_grad():
        logits = model(torch.tensor([whole])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


def test_probe_matches_hand_computation_from_raw_logits(tiny_spec_kwargs, tiny_model):
    """Every probed sample of a tiny-model run (native and transformed prompts, both BOS policies) against torch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = RunSpec(transforms=["identity", "lang:fr", "rot13"], limit=4, **tiny_spec_kwargs)
    run_dir = run(spec, progress=False)
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert samples and all(s["probe"] is not None for s in samples)
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    auto_bos = tok("a").input_ids[0] == tok.bos_token_id
    checked = 0
    for s in samples:
        ref = s["reference"]
        icl, if_ = " " + ref["icl_answer"], " " + ref["if_answer"]
        if s["transform"] == "rot13":  # the transform's forward applies to the continuations too
            import codecs

            icl, if_ = codecs.encode(icl, "rot13"), codecs.encode(if_, "rot13")
            assert s["mode"] == "transform"
        add_bos = auto_bos if s["model"] == "pretrained" else True  # tiny-ft has bos="always"
        a = _hand_logp(tok, model, s["transformed_prompt"], icl, add_bos)
        b = _hand_logp(tok, model, s["transformed_prompt"], if_, add_bos)
        p = math.exp(a) / (math.exp(a) + math.exp(b))
        got = s["probe"]
        assert got["logp_icl"] == pytest.approx(a, rel=1e-5, abs=1e-4)
        assert got["logp_if"] == pytest.approx(b, rel=1e-5, abs=1e-4)
        assert got["p_icl"] == pytest.approx(p, abs=1e-5)
        assert (got["logp_icl"] - got["logp_if"]) == pytest.approx(a - b, rel=1e-5, abs=1e-4)  # also where p saturates
        checked += 1
    assert checked == 2 * 3 * 4


def test_run_probes_every_non_error_sample_and_rerun_computes_nothing(tiny_spec_kwargs):
    TRANSFORMS.register("probe_noblanks", _NoBlanks)
    spec = RunSpec(transforms=["identity", "piglatin", "probe_noblanks"], limit=4, **tiny_spec_kwargs)
    calls: list[int] = []
    run_dir = run(spec, progress=False, backend_factory=lambda ms: _Counting(ms, calls))
    samples = read_jsonl(run_dir / "samples.jsonl")
    errors = [s for s in samples if s["error"]]
    assert errors and all(s["probe"] is None for s in errors)
    ok = [s for s in samples if not s["error"]]
    assert ok and all(set(s["probe"]) == {"logp_icl", "logp_if", "p_icl"} and 0 <= s["probe"]["p_icl"] <= 1 for s in ok)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for role in ("pretrained", "finetuned"):
        c = manifest["probe"][role]
        assert c["probed"] == c["samples"] == sum(1 for s in ok if s["model"] == role)
        assert c["computed"] == c["unique"] and c["cached"] == 0 and c["failed"] == 0
    assert sum(calls) == sum(manifest["probe"][r]["computed"] for r in ("pretrained", "finetuned"))
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["probe"]
    cell = next(r for r in rows if r["model"] == "pretrained" and r["transform"] == "identity" and r["group"] == "all")
    ps = [s["probe"]["p_icl"] for s in ok if s["model"] == "pretrained" and s["transform"] == "identity"]
    assert cell["n"] == len(ps) == 4 and cell["mean"] == pytest.approx(sum(ps) / len(ps))
    assert cell["lo"] <= cell["mean"] <= cell["hi"] and "bootstrap" in cell["ci_method"]
    assert {r["group"] for r in rows} >= {"all", "capslock-math"}
    corr = summary["probe_correlation"]
    assert len(corr) == 1 and corr[0]["task"] == "icl_vs_if" and corr[0]["n_cells"] == 6
    assert {"spearman", "p", "n_cells", "cells", "per_example"} <= set(corr[0])

    # a re-run finds everything cached: no backend opened, no log-likelihood computed
    calls.clear()
    opened: list = []
    run_dir = run(spec, progress=False, backend_factory=lambda ms: opened.append(ms) or _Counting(ms, calls))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert not opened and not calls
    assert all(manifest["probe"][r]["computed"] == 0 and manifest["probe"][r]["cached"] == manifest["probe"][r]["unique"]
               for r in ("pretrained", "finetuned"))
    again = read_jsonl(run_dir / "samples.jsonl")
    assert [s["probe"] for s in again] == [s["probe"] for s in samples]
    # report re-rendering keeps the probe tables
    (run_dir / "summary.json").unlink()
    rerender(run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["probe"] == summary["probe"]


def test_generations_cached_but_probe_missing_opens_the_backend(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity"], limit=4, **tiny_spec_kwargs)
    run(spec, progress=False, probe=False)
    run_dir = run(spec, progress=False)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert all(manifest["generation"][r]["generated"] == 0 for r in ("pretrained", "finetuned"))
    assert all(manifest["probe"][r]["computed"] > 0 for r in ("pretrained", "finetuned"))
    assert all(s["probe"] is not None for s in read_jsonl(run_dir / "samples.jsonl"))


def test_no_probe_skips_it(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity"], limit=4, **tiny_spec_kwargs)
    calls: list[int] = []
    run_dir = run(spec, progress=False, probe=False, backend_factory=lambda ms: _Counting(ms, calls))
    assert not calls
    assert all(s["probe"] is None for s in read_jsonl(run_dir / "samples.jsonl"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["probe"] == {"enabled": False}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["probe"] == [] and summary["probe_correlation"] == []
    con = sqlite3.connect(tiny_spec_kwargs["cache"])
    assert con.execute("SELECT COUNT(*) FROM loglikelihoods").fetchone()[0] == 0
    con.close()


def test_cli_no_probe_flag(monkeypatch, tmp_path):
    import harness.cli as cli
    import harness.pipeline.runner as runner

    seen = {}

    def fake_run(spec, **kw):
        seen.update(kw)
        (tmp_path / "manifest.json").write_text(json.dumps({"generation": {}}))
        (tmp_path / "samples.jsonl").write_text("")  # a run folder always has its samples (the error share)
        return tmp_path

    monkeypatch.setattr(runner, "run", fake_run)
    assert cli.main(["run", "--no-probe", "--limit", "1", "--tasks", "icl_vs_if"]) == 0
    assert seen["probe"] is False
    assert cli.main(["run", "--limit", "1", "--tasks", "icl_vs_if"]) == 0
    assert seen["probe"] is True


def _no_ll_backend(ms):
    from harness.backends.hf import HFBackend

    class NoLoglikelihood(HFBackend):  # like the openai backend: generation only
        def loglikelihood(self, requests):
            raise NotImplementedError("backend 'hf-no-ll' does not support loglikelihood")

    return NoLoglikelihood(ms)


def test_backend_without_loglikelihood_gives_a_note_not_a_crash(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity"], limit=4, **tiny_spec_kwargs)
    run_dir = run(spec, progress=False, backend_factory=_no_ll_backend)
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert all(s["outcome"] != ERROR and s["probe"] is None for s in samples)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "does not support loglikelihood" in manifest["probe"]["pretrained"]["skipped"]
    assert any(n.startswith("probe skipped for pretrained") for n in manifest["notes"])
    assert "probe skipped" in (run_dir / "report.md").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["probe"] == []


def test_backend_class_without_loglikelihood_is_not_opened_for_the_probe(tiny_spec_kwargs, monkeypatch):
    from harness.backends.hf import HFBackend
    from harness.backends.openai import OpenAIBackend
    from harness.registry import BACKENDS

    assert HFBackend.lacks("loglikelihood") is None
    assert OpenAIBackend.lacks("loglikelihood") == "backend 'openai' does not support loglikelihood"
    spec = RunSpec(transforms=["identity"], limit=4, **tiny_spec_kwargs)
    run(spec, progress=False, probe=False)  # generations cached: only the probe is missing

    opened: list = []

    class GenerateOnly(HFBackend):  # a registered backend class that declares no log-likelihoods
        name = "hf-generate-only"
        capabilities = frozenset({"generate"})

        def __init__(self, ms, **kw):
            opened.append(ms)
            super().__init__(ms, **kw)

    monkeypatch.setitem(BACKENDS._entries, "hf", BACKENDS._entries["hf"].__class__("hf", GenerateOnly))
    run_dir = run(spec, progress=False)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert not opened and manifest["backends"] == {}
    assert manifest["probe"]["pretrained"]["skipped"] == "backend 'hf-generate-only' does not support loglikelihood"


def _ordered(log: list, fail: str | None = None):
    """The real hf backend, logging its calls in order; ``fail``: generation fails on prompts containing it."""
    from harness.backends.hf import HFBackend

    class Ordered(HFBackend):
        def generate(self, prompts, sampling):
            log.append(("generate", list(prompts)))
            if fail and any(fail in p for p in prompts):
                raise RuntimeError("generation exploded")
            return super().generate(prompts, sampling)

        def loglikelihood(self, requests):
            log.append(("loglikelihood", sorted({c for c, _ in requests})))
            return super().loglikelihood(requests)

    return Ordered


def test_probe_runs_alongside_generation_from_the_kept_prefills(tiny_spec_kwargs):
    """Each generation batch's prompts are probed right after it, so a prefix store that holds only about one
    batch of prefills still serves every probe context (scored after all generation, most would be evicted)."""
    from transformers import AutoTokenizer

    from harness.pipeline.models import ModelSpec

    kw = {**tiny_spec_kwargs, "batch_size": 2}
    for role in ("pretrained", "finetuned"):
        ms = kw[role]
        kw[role] = ModelSpec(name=ms.name, model=ms.model, bos=ms.bos, options={"prefix_cache_mb": 0.4})
    spec = RunSpec(transforms=["identity"], limit=8, **kw)
    log: list = []
    cls = _ordered(log)
    run_dir = run(spec, progress=False, backend_factory=lambda ms: cls(ms))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    samples = [s for s in read_jsonl(run_dir / "samples.jsonl") if s["model"] == "pretrained"]
    n = len(samples)
    cfg = json.loads((Path(spec.pretrained.model) / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(spec.pretrained.model)
    per_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"] * 4
    kept = sum(len(tok(s["transformed_prompt"]).input_ids) for s in samples) * per_token
    assert kept > 3 * 0.4 * 2**20  # the run's prefills are over three times the store (one batch fits)
    for role in ("pretrained", "finetuned"):
        c, b = manifest["probe"][role], manifest["backends"][role]
        assert c["computed"] == c["unique"] == c["alongside_generation"] == 2 * n and c["cached"] == 0
        assert b["prefix_hits"] == 2 * n and b["prefix_misses"] == 0  # both continuations of every prompt
    calls = log[: len(log) // 2]  # the pretrained model's calls (a backend per model, one after the other)
    assert [k for k, _ in calls] == ["generate", "loglikelihood"] * (n // 2)
    for (_, prompts), (_, contexts) in zip(calls[::2], calls[1::2]):
        assert contexts == sorted(set(prompts))  # the prompts just generated from, and only those


def test_failed_generations_are_not_probed_alongside(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity"], limit=8, **{**tiny_spec_kwargs, "batch_size": 2})
    log: list = []
    cls = _ordered(log, fail="What is")
    run_dir = run(spec, progress=False, backend_factory=lambda ms: cls(ms))
    samples = read_jsonl(run_dir / "samples.jsonl")
    failed = [s for s in samples if s["error"]]
    assert failed and all("generation exploded" in s["error"] and s["probe"] is None for s in failed)
    assert all(s["probe"] is not None for s in samples if not s["error"])
    scored = {c for kind, contexts in log if kind == "loglikelihood" for c in contexts}
    assert scored and not scored & {s["transformed_prompt"] for s in failed}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    c = manifest["probe"]["pretrained"]
    assert c["samples"] == c["probed"] == sum(1 for s in samples if s["model"] == "pretrained" and not s["error"])
    assert c["failed"] == 0 and c["computed"] == c["alongside_generation"] == 2 * c["samples"]


class _Flaky(_Counting):
    """Log-likelihood requests whose context mentions a marker fail (batch and one by one)."""

    def __init__(self, ms, log, marker):
        super().__init__(ms, log)
        self.marker = marker

    def loglikelihood(self, requests):
        if any(self.marker in c for c, _ in requests):
            raise RuntimeError("scoring exploded")
        return super().loglikelihood(requests)


def test_probe_failure_is_a_note_and_not_cached(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity"], limit=8, **tiny_spec_kwargs)
    run_dir = run(spec, progress=False, backend_factory=lambda ms: _Flaky(ms, [], "What is"))
    samples = read_jsonl(run_dir / "samples.jsonl")
    math_ = [s for s in samples if "math" in s["group"]]
    assert math_ and all(s["probe"] is None and s["outcome"] != ERROR for s in math_)
    assert all(s["probe"] is not None for s in samples if "startblank" in s["group"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["probe"]["pretrained"]["failed"] == 2 * len(math_) // 2
    assert any("scoring exploded" in n for n in manifest["notes"])
    calls: list[int] = []
    run_dir = run(spec, progress=False, backend_factory=lambda ms: _Counting(ms, calls))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["probe"]["pretrained"]["computed"] == len(math_)  # exactly the failed ones: 2 per math sample
    assert all(s["probe"] is not None for s in read_jsonl(run_dir / "samples.jsonl"))


class _Interrupted(_Counting):
    def loglikelihood(self, requests):
        if len(self.log) == 2:
            raise KeyboardInterrupt
        return super().loglikelihood(requests)


def test_interrupted_probe_resumes_without_recomputing(tiny_spec_kwargs):
    spec = RunSpec(transforms=["identity"], limit=8, **{**tiny_spec_kwargs, "batch_size": 2})
    with pytest.raises(KeyboardInterrupt):
        run(spec, progress=False, backend_factory=lambda ms: _Interrupted(ms, []))
    con = sqlite3.connect(tiny_spec_kwargs["cache"])
    done = con.execute("SELECT COUNT(*) FROM loglikelihoods").fetchone()[0]
    con.close()
    assert done == 8  # two committed batches of two prompts (two continuations each: one sequence per prompt)
    calls: list[int] = []
    run_dir = run(spec, progress=False, backend_factory=lambda ms: _Counting(ms, calls))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    pt = manifest["probe"]["pretrained"]
    assert pt["cached"] == done and pt["computed"] == pt["unique"] - done


def test_icl_vs_if_continuations_start_like_responses():
    from harness.tasks.icl_vs_if import IclVsIf

    task = IclVsIf()
    ex = task.examples(0)[0]
    for rendering in ("en", "fr", "leetspeak"):
        r = task.render(ex, rendering)
        assert r.prompt.endswith(":")  # "Output:", "Sortie:", ... and responses start with a space
        conts = task.probe_continuations(r.reference)
        assert conts == {"icl": " " + r.reference["icl_answer"], "if": " " + r.reference["if_answer"]}
    assert IclVsIf().probe_continuations({}) is None


def _sample(model, transform, p, outcome, i=0):
    return Sample(model=model, task="t", transform=transform, example_id=str(i), group="all", mode="native",
                  prompt="", transformed_prompt="", reference={}, outcome=outcome,
                  probe={"logp_icl": math.log(p), "logp_if": math.log(1 - p), "p_icl": p})


def test_probe_summary_ci_and_spearman():
    samples, rows = [], []
    for j, (model, tr, base) in enumerate([("pretrained", "identity", 0.9), ("finetuned", "identity", 0.2),
                                          ("pretrained", "x", 0.7), ("finetuned", "x", 0.4)]):
        ps = [min(0.99, max(0.01, base + d)) for d in (-0.05, 0.0, 0.05, 0.1)]
        outs = ["icl" if k < round(4 * base) else "if" for k in range(4)]
        samples += [_sample(model, tr, p, o, i) for i, (p, o) in enumerate(zip(ps, outs))]
        k = outs.count("icl")
        rows.append({"model": model, "task": "t", "transform": tr, "group": "all", "rates": {"icl": {"rate": k / 4}}})
    samples.append(Sample(model="pretrained", task="t", transform="x", example_id="9", group="all", mode="native",
                          prompt="", transformed_prompt="", reference={}, error="boom", probe=None))
    out = probe_summary(samples, {"rows": rows}, {"t": "icl"})
    assert [(r["model"], r["transform"]) for r in out["probe"]] == [
        ("pretrained", "identity"), ("finetuned", "identity"), ("pretrained", "x"), ("finetuned", "x")]
    first = out["probe"][0]
    assert first["n"] == 4 and first["mean"] == pytest.approx(0.9225) and first["lo"] < 0.9225 < first["hi"]
    assert out["probe"] == probe_summary(samples, {"rows": rows}, {"t": "icl"})["probe"]  # seeded
    c = out["probe_correlation"][0]
    assert c["n_cells"] == 4 and c["spearman"] == pytest.approx(1.0)
    assert c["per_example"]["n"] == 16 and c["per_example"]["spearman"] > 0
    assert [m["model"] for m in c["by_model"]] == ["pretrained", "finetuned"]
    assert all(m["n_cells"] == 2 and m["spearman"] is None for m in c["by_model"])  # 2 points: undefined
    json.dumps(out, allow_nan=False)


def test_sigmoid_of_difference_is_stable():
    assert probing.sigmoid_diff(-1000.0, 0.0) == pytest.approx(0.0, abs=1e-300)
    assert probing.sigmoid_diff(0.0, -1000.0) == 1.0
    assert probing.sigmoid_diff(-3.0, -3.0) == 0.5
    a, b = math.log(0.3), math.log(0.1)
    assert probing.sigmoid_diff(a, b) == pytest.approx(0.75)


def test_samples_without_probe_field_still_load():
    d = _sample("pretrained", "identity", 0.5, "icl").__dict__.copy()
    d.pop("probe")
    assert Sample.from_dict(d).probe is None
