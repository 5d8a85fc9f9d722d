"""`conjugate sweep` on the tiny random Llama (tiny step counts): every checkpoint measured, resumable, fitted."""
from __future__ import annotations

import json
import random

import pytest

from harness.errors import ConfigError
from harness.training.sweep import SweepConfig


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("sweep-data")

    def write(name, n):
        rows = [{"instruction": f"What is {a} plus {b}?", "response": str(a + b)}
                for a, b in ((rng.randint(2, 60), rng.randint(2, 60)) for _ in range(n))]
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        return folder / name

    return write("train.jsonl", 120), write("heldout.jsonl", 16)


TEXT = ("The river runs past the old mill and into the lake, where the fishermen wait.\n\n"
        "A farmer sells apples, pears and bread at the market on Saturday morning.\n\n"
        "The children read a story about a cat who climbs the tallest tree in the park.\n\n"
        "Rain fell all night, and by morning the streets were full of water.\n")


def _args(model, data_files, out, cache):
    train, heldout = data_files
    text = out.parent / "text.txt"
    text.write_text(TEXT)
    return ["sweep", "--base", str(model), "--data", str(train), "--heldout-data", str(heldout), "--heldout", "16",
            "--ranks", "1,2,3", "--steps", "2,4", "--regularize", "none,both", "--reg-ranks", "2", "--refusal", "--lr", "2e-2", "--warmup", "1",
            "--batch-size", "4", "--target-modules", "q_proj,v_proj", "--limit", "4", "--transforms",
            "identity,leetspeak", "--text", str(text), "--out", str(out), "--cache", str(cache)]


def test_sweep_measures_fits_and_resumes_after_a_kill(soft_tiny, data_files, tmp_path, monkeypatch):
    """Interrupt the sweep at its 5th checkpoint; the re-run keeps the 4 finished ones and the finished
    trainings, measures the rest, and a third run measures nothing. Ranks 1, 2, 3 plain, rank 2 also
    regularised (`both`), refusal measured at rank 2."""
    from harness.cli import main
    from harness.training import sweep_eval

    monkeypatch.setenv("CONJUGATE_CACHE", str(tmp_path / "cc"))
    out, cache = tmp_path / "sw", tmp_path / "g.sqlite"
    real = sweep_eval.Evaluator.point
    calls = []

    def dying(self, spec, name, refusal=False):
        calls.append(name)
        if len(calls) == 5:
            raise KeyboardInterrupt  # what Ctrl-C or a kill leaves behind: no 5th file
        return real(self, spec, name, refusal)

    monkeypatch.setattr(sweep_eval.Evaluator, "point", dying)
    assert main(_args(soft_tiny, data_files, out, cache)) == 130
    done = sorted((out / "points").glob("r*.json"))
    assert len(done) == 4 and not (out / "sweep.json").exists()
    before = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in done}
    trained = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/recipe.json")}
    assert sorted(trained) == ["r1-none-T4", "r2-none-T4", "r3-none-T4"]  # each trained before its checkpoints

    calls.clear()
    monkeypatch.setattr(sweep_eval.Evaluator, "point", lambda self, spec, name, r=False: calls.append(name) or real(self, spec, name, r))
    assert main(_args(soft_tiny, data_files, out, cache)) == 0
    assert calls == ["r3-none-T4-s2", "r3-none-T4-s4", "r2-both-T4-s2", "r2-both-T4-s4"]  # only the unfinished ones
    for p in done:
        assert (p.stat().st_mtime_ns, p.read_text()) == before[p.name]
    for name, mtime in trained.items():
        assert (out / "runs" / name / "recipe.json").stat().st_mtime_ns == mtime  # not trained again

    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["points"]) == 8
    for p in doc["points"]:
        assert p["heldout"]["loss"]["mean"] > 0 and p["heldout"]["n_examples"] == 16
        assert p["forgetting"]["ce"]["mean"] >= p["forgetting"]["entropy"]["mean"] - 1e-6
        assert p["icl"]["rates"]["identity"]["finetuned"]["n"] == 4
        assert "leetspeak" in p["icl"]["recovery"] and p["icl"]["probe"]["identity"]["finetuned"]["n"] == 4
        assert (tmp_path / "sw" / "runs" / p["run"] / f"step-{p['steps']}" / "adapter_model.safetensors").exists()
    ranks = {p["rank"]: p["trainable_parameters"] for p in doc["points"]}
    assert ranks[2] == 2 * ranks[1] and ranks[3] == 3 * ranks[1]
    refusal = {p["point"]: p["refusal"] for p in doc["points"]}
    assert [k for k, v in refusal.items() if v] == ["r2-none-T4-s2", "r2-none-T4-s4", "r2-both-T4-s2", "r2-both-T4-s4"]
    assert refusal["r2-both-T4-s4"]["rates"]["finetuned"]["n"] == 60
    an = doc["analysis"]
    pl = an["power_law"]["none"]
    assert pl["n_points"] == 6 and set(pl["ci"]) == {"A", "a", "b", "c"} and pl["ci"]["b"][0] <= pl["b"] <= pl["ci"]["b"][1]
    assert "r2" in an["linear"]["none"] and an["linear"]["none"]["slope_ci"] and "note" in an["power_law"]["both"]
    assert an["power_law_kl"]["none"]["n_points"] == 6 and an["power_law_kl"]["none"]["c"] < 1e-8
    assert [(r["rank"], r["reg_steps"]) for r in an["comparison"]] == [(2, 2), (2, 4)]
    assert all("refusal" in r for r in an["comparison"]) and "diff" in an["matched"]["both"]
    md = (out / "sweep.md").read_text()
    assert "power law (none" in md and "anchored at the base entropy" in md and "matched held-out loss" in md
    for name in ("sweep-steps.png", "sweep-loss.png", "sweep-icl.png"):
        assert (out / name).stat().st_size > 0

    calls.clear()
    assert main(_args(soft_tiny, data_files, out, cache)) == 0 and calls == []  # everything done: nothing measured


def test_fit_recovers_known_exponents():
    import numpy as np

    from harness.training.sweep_fit import fit_joint

    P = np.array([1, 1, 1, 4, 4, 4, 16, 16, 16], float)
    t = np.array([1, 2, 4] * 3, float)
    y = 2.0 + 0.5 * P ** 0.3 * t ** 0.6
    f = fit_joint(P, t, y)
    assert abs(f["a"] - 0.3) < 1e-3 and abs(f["b"] - 0.6) < 1e-3 and abs(f["c"] - 2.0) < 1e-3 and f["r2"] > 0.9999
    # without a shift (the KL part: CE - H): the exponents of y - 2, and c stays at 0
    k = fit_joint(P, t, y - 2.0, shift=False)
    assert abs(k["a"] - 0.3) < 1e-3 and abs(k["b"] - 0.6) < 1e-3 and k["c"] < 1e-8 and k["r2"] > 0.9999


def test_the_anchored_fit_is_of_the_kl_part_of_each_point():
    from harness.training.sweep_fit import power_law

    def point(rank, steps, kl):  # CE = H + KL per chunk, H = 2.5 on every chunk
        ch = {"n": [10] * 4, "kl": [10 * kl * f for f in (1.1, 0.9, 1.05, 0.95)]}
        ch["ce"] = [25 + x for x in ch["kl"]]
        return {"point": f"r{rank}-s{steps}", "rank": rank, "steps": steps, "trainable_parameters": 1000 * rank,
                "forgetting": {"chunks": ch}, "heldout": {"sums": [1.0] * 4, "tokens": [1] * 4}}

    pts = [point(r, t, 0.2 * r ** 0.25 * t ** 0.5) for r in (1, 4, 16) for t in (2, 4, 8)]
    f = power_law(pts, n_boot=50, measure="kl")
    assert f["formula"].startswith("KL") and abs(f["a"] - 0.25) < 1e-3 and abs(f["b"] - 0.5) < 1e-3
    assert f["ci"]["a"][0] <= f["a"] <= f["ci"]["a"][1] and f["points"][0]["ce"] == pytest.approx(0.2 * 2 ** 0.5)


def _synthetic(rank, steps, ce, loss, reg="none"):
    """A point with per-chunk and per-example sums giving exactly ``ce`` and ``loss`` (plus fixed noise)."""
    noise = [0.1, -0.1, 0.05, -0.05]
    return {"point": f"r{rank}-{reg}-s{steps}", "run": f"r{rank}-{reg}", "rank": rank, "regularize": reg,
            "steps": steps, "trainable_parameters": 1000 * rank,
            "forgetting": {"chunks": {"n": [10] * 4, "ce": [10 * (ce + e) for e in noise]}},
            "heldout": {"sums": [5 * (loss + e) for e in noise], "tokens": [5] * 4}}


def test_linear_and_matched_forgetting_on_known_data():
    from harness.training.sweep_fit import linear, matched_ce

    plain = [_synthetic(4, s, ce=3.0 - 1.0 * l, loss=l) for s, l in ((1, 1.0), (2, 0.8), (4, 0.6))]
    reg = [_synthetic(4, s, ce=2.5 - 1.0 * l, loss=l, reg="both") for s, l in ((1, 1.1), (2, 0.9), (4, 0.7))]
    lin = linear(plain)
    assert abs(lin["slope"] + 1.0) < 1e-9 and lin["r2"] > 0.999999 and lin["slope_ci"][0] <= -1.0 <= lin["slope_ci"][1]
    m = matched_ce(plain + reg, "both")
    assert abs(m["diff"] + 0.5) < 1e-9 and m["ci"][0] <= -0.5 <= m["ci"][1]
    assert m["loss_star"] == pytest.approx(0.85) and m["range"] == pytest.approx([0.7, 1.0])  # both arms reach 0.7-1.0
    assert "note" in matched_ce(plain, "both")


def test_matched_forgetting_interpolates_inside_the_shared_range_and_never_extrapolates():
    """A long plain run (CE curving up as the loss falls) against a regularised run that stops at a high loss: a
    line through all plain points, extrapolated, would put plain below regularised; the shared range says otherwise."""
    from harness.training.sweep_fit import matched_ce

    plain = [_synthetic(4, s, ce=ce, loss=l) for s, l, ce in
             ((25, 1.2, 3.3), (50, 0.9, 3.45), (100, 0.65, 3.5), (200, 0.4, 4.3), (400, 0.2, 5.1))]
    reg = [_synthetic(4, s, ce=ce, loss=l, reg="both") for s, l, ce in ((25, 1.35, 2.97), (200, 1.1, 2.92))]
    m = matched_ce(plain + reg, "both")
    assert m["range"] == pytest.approx([1.1, 1.2]) and m["loss_star"] == pytest.approx(1.15)
    plain_at = 3.45 + (3.3 - 3.45) * (1.15 - 0.9) / (1.2 - 0.9)
    reg_at = 2.92 + (2.97 - 2.92) * (1.15 - 1.1) / (1.35 - 1.1)
    assert m["diff"] == pytest.approx(reg_at - plain_at) and m["ci"][1] < 0
    apart = [_synthetic(4, 25, ce=2.9, loss=1.5, reg="both"), _synthetic(4, 50, ce=2.9, loss=1.4, reg="both")]
    assert "do not overlap" in matched_ce(plain + apart, "both")["note"]


@pytest.mark.parametrize("kw, field", [({"ranks": [0]}, "--ranks"), ({"steps": []}, "--steps"),
                                       ({"regularize": ["l1"]}, "--regularize"), ({"reg_lambda": -2.0}, "--reg-lambda"),
                                       ({"limit": 0}, "--limit")])
def test_bad_sweep_options(kw, field):
    with pytest.raises(ConfigError, match=field.replace("-", r"\-")):
        SweepConfig(**kw)


def test_cli_bad_sweep_options(tmp_path):
    from .conftest import run_cli

    r = run_cli("sweep", "--regularize", "none,l2", "--out", str(tmp_path))
    assert r.returncode == 2 and "--regularize" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("sweep", "--transforms", "identity,leetspeek", "--heldout-data", str(tmp_path / "none.jsonl"),
                "--out", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
