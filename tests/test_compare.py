"""`conjugate compare RUN_A RUN_B`: known rates give known differences, a known McNemar p, clear errors.

Both runs are crafted in tmp_path (samples -> harness.analysis.summary.summarize -> summary.json), so no model is
loaded and results/ is not needed.

Run A and run B share 20 icl_vs_if examples. In the (identity, fine-tuned) cell A says ``icl`` on
examples 0-4 and B on 0-1 and 5-14: 5/20 -> 12/20, +35 points, discordant pairs 3 (A only) and 10
(B only), so McNemar's exact p = 2 * P(X <= 3), X ~ Bin(13, 1/2) = 2 * 378 / 8192. Under lang:fr, B's
prompts differ from A's (as after a task change), so nothing pairs and the test is the two-proportion
z-test: 4/20 vs 10/20.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.analysis.compare import TWO_PROPORTION, compare_runs
from harness.analysis.summary import summarize
from harness.types import Sample

try:
    from tests.conftest import run_cli
except ImportError:  # bare `pytest`, where the repository root is not on sys.path
    from conftest import run_cli

LABELS = {"icl_vs_if": ("icl", "if", "other"), "refusal": ("refuse", "answer", "ambiguous")}
PRIMARY = {"icl_vs_if": "icl", "refusal": "refuse"}
TRANSFORMS = ["identity", "lang:fr"]
N = 20
MCNEMAR_P = 2 * sum(math.comb(13, i) for i in range(4)) / 2 ** 13  # = 756 / 8192


def icl_on(which):
    return lambda i: "icl" if i in which else ("if" if i % 2 else "other")


def make_run(folder: Path, run_id: str, cells: dict, prompt_tag: dict | None = None, task: str = "icl_vs_if",
             pretrained_name: str = "pt-model") -> Path:
    """``cells``: {(transform, model): outcome(i)}; ``prompt_tag`` changes a transform's prompt text."""
    samples = []
    for (transform, model), outcome in cells.items():
        for i in range(N):
            prompt = f"prompt {i} {transform}{(prompt_tag or {}).get(transform, '')}"
            samples.append(Sample(model=model, task=task, transform=transform, example_id=f"ex-{i:03d}", group="all",
                                  mode="native", prompt=prompt, transformed_prompt=prompt, reference={},
                                  response=f"r{i}", inverted=f"r{i}", outcome=outcome(i), cached=True))
    summary = summarize(samples, {task: LABELS[task]}, {task: PRIMARY[task]}, TRANSFORMS)
    manifest = {"run_id": run_id, "spec": {"pretrained": {"name": pretrained_name}, "finetuned": {"name": "ft-model"},
                                           "tasks": [task], "transforms": TRANSFORMS},
                "task_labels": {task: list(LABELS[task])}, "primary_labels": {task: PRIMARY[task]}}
    folder.mkdir(parents=True)
    (folder / "samples.jsonl").write_text("".join(s.to_json() + "\n" for s in samples), encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    a = make_run(tmp_path / "run-a", "before", {
        ("identity", "pretrained"): icl_on(range(10)), ("identity", "finetuned"): icl_on(range(5)),
        ("lang:fr", "pretrained"): icl_on(range(8)), ("lang:fr", "finetuned"): icl_on(range(4)),
    }, pretrained_name="pt<script>alert(1)</script>")
    b = make_run(tmp_path / "run-b", "after", {
        ("identity", "pretrained"): icl_on(range(10)), ("identity", "finetuned"): icl_on({0, 1, *range(5, 15)}),
        ("lang:fr", "pretrained"): icl_on(range(8)), ("lang:fr", "finetuned"): icl_on(range(10)),
    }, prompt_tag={"lang:fr": " (v2)"})
    return a, b


def cell(result: dict, transform: str, model: str) -> dict:
    return next(c for c in result["cells"] if (c["transform"], c["model"]) == (transform, model))


def z_test(k1, n1, k2, n2):
    p = (k1 + k2) / (n1 + n2)
    z = (k2 / n2 - k1 / n1) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))


def test_known_rates_differences_and_tests(runs):
    r = compare_runs(*runs)
    assert [(c["transform"], c["model"]) for c in r["cells"]] == [
        ("identity", "pretrained"), ("identity", "finetuned"), ("lang:fr", "pretrained"), ("lang:fr", "finetuned")]
    ft = cell(r, "identity", "finetuned")
    assert (ft["a"]["rate"], ft["b"]["rate"]) == (0.25, 0.6)
    assert ft["diff"] == pytest.approx(0.35)
    assert ft["paired"] and ft["n_pairs"] == N and (ft["a_only"], ft["b_only"]) == (3, 10)
    assert ft["p"] == pytest.approx(MCNEMAR_P) == pytest.approx(0.0922851562)
    assert ft["test"].startswith("McNemar exact")
    pt = cell(r, "identity", "pretrained")
    assert pt["diff"] == 0 and (pt["a_only"], pt["b_only"]) == (0, 0) and pt["p"] == 1.0
    fr = cell(r, "lang:fr", "finetuned")
    assert not fr["paired"] and fr["test"] == TWO_PROPORTION and fr["a_only"] is None
    assert fr["diff"] == pytest.approx(0.30)
    assert fr["p"] == pytest.approx(z_test(4, N, 10, N)) == pytest.approx(0.0467, abs=5e-4)
    assert cell(r, "lang:fr", "pretrained")["p"] == 1.0
    # Holm over the four cells: the smallest p times 4, the next times 3
    assert fr["p_holm"] == pytest.approx(4 * fr["p"])
    assert ft["p_holm"] == pytest.approx(max(3 * ft["p"], 4 * fr["p"]))
    # recovery under lang:fr: A (0.20 - 0.25) / (0.50 - 0.25) = -0.2; B (0.50 - 0.60) / (0.50 - 0.60) = 1
    rec = next(x for x in r["recovery"] if x["transform"] == "lang:fr")
    assert (rec["a"], rec["b"], rec["diff"]) == (pytest.approx(-0.2), pytest.approx(1.0), pytest.approx(1.2))
    assert next(x for x in r["recovery"] if x["transform"] == "identity")["a_note"] == "baseline"


def test_metric_option(runs):
    r = compare_runs(*runs, metric="if")
    assert {c["label"] for c in r["cells"]} == {"if"}
    ft = cell(r, "identity", "finetuned")  # `if` on the odd examples that are not icl: A 8/20, B 4/20
    assert (ft["a"]["k"], ft["b"]["k"]) == (8, 4)


def test_no_samples_means_unpaired(runs):
    (runs[0] / "samples.jsonl").unlink()
    r = compare_runs(*runs)
    assert all(c["test"] == TWO_PROPORTION for c in r["cells"] if c["p"] is not None)
    assert any("no paired tests: A has no samples" in n for n in r["notes"])


def test_cli_table_and_files(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "+35.0" in text and "McNemar (n=20, 3/10)" in text and "two-prop. z" in text
    assert "McNemar exact (two-sided binomial on discordant pairs)" in text and "two-proportion z-test" in text
    md = (out / "compare.md").read_text(encoding="utf-8")
    assert "| icl_vs_if | English | fine-tuned | icl | 25.0 (20) | 60.0 (20) | +35.0 |" in md
    assert f"{MCNEMAR_P:.3f}" in md and "## Recovery" in md
    html = (out / "compare.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "pt&lt;script&gt;" in html
    assert not re.search(r'(?:src|href)\s*=\s*"(?:https?:)?//', html) and "https://" not in html
    assert "<script" not in html  # no JavaScript needed


def test_cli_default_out_and_json(runs, capsys):
    assert main(["compare", str(runs[0]), str(runs[1]), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert len(data["cells"]) == 4 and data["a"]["run_id"] == "before"
    assert (runs[1] / "compare-before" / "compare.md").exists() and (runs[1] / "compare-before" / "compare.html").exists()
    assert "wrote" in captured.err


def test_errors_exit_2(runs, tmp_path, capsys):
    def err(*args):
        assert main(["compare", *map(str, args)]) == 2
        e = capsys.readouterr().err.strip()
        assert e.startswith("conjugate: error: ") and "\n" not in e and "Traceback" not in e
        return e

    assert "not a finished run folder" in err(tmp_path, runs[1])
    assert "nope: no such folder" in err(tmp_path / "nope", runs[1])
    other = make_run(tmp_path / "refusal-run", "other", {("identity", "pretrained"): lambda i: "refuse"}, task="refusal")
    assert "no (task, conjugate, model) cell in common" in err(runs[0], other)
    assert "--metric 'nope' is not an outcome label" in err(runs[0], runs[1], "--metric", "nope")


def test_real_cli_subprocess(runs, tmp_path):
    proc = run_cli("compare", str(runs[0]), str(tmp_path / "missing"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "missing: no such folder" in proc.stderr
    proc = run_cli("compare", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "compare.html").exists()
