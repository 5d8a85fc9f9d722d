"""Forgetting scaling on the real default pair: `conjugate sweep` over LoRA rank x steps (x regularisation),
then the timings, the fitted exponents and the regularised-vs-plain comparison.

Usage::

    python bench/forgetting_sweep.py                 # the grid that fits about an hour of 2 CPU cores (below)
    python bench/forgetting_sweep.py --full          # the issue's grid: ranks 1,4,16 x steps 25..400, batch 16
    python bench/forgetting_sweep.py --out DIR -- --limit 60   # anything after -- goes to `conjugate sweep`

Default grid (measured on the project's shared 2-core VM, see README "Forgetting sweep"): ranks 1,4,16 x
checkpoints at steps 10,25,50 of one 50-step run per rank (batch 8, lr 1e-3, warm-up 5), plain, plus the
regularised mode ``both`` at rank 4; every checkpoint measured for held-out loss, forgetting CE, icl_vs_if
(limit 40: English, leetspeak, Portuguese MT; probe on) and, at rank 4, the held-out refusal rate.
``--full`` is the issue's grid: ranks 1,4,16 x steps 25,50,100,200,400 with the default recipe's batch
16 and lr 3e-4 (about 3 s per step on 2 idle cores: 1,200 steps of training, plus 15+ checkpoints).

The sweep is resumable: re-running the same command continues from the finished trainings and checkpoints.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUICK = ["--ranks", "1,4,16", "--steps", "10,25,50", "--regularize", "none,both", "--reg-ranks", "4",
         "--batch-size", "8", "--lr", "1e-3", "--warmup", "5", "--limit", "40", "--refusal"]
FULL = ["--ranks", "1,4,16", "--steps", "25,50,100,200,400", "--regularize", "none,both", "--reg-ranks", "4",
        "--limit", "40", "--refusal"]


def _ci(pair) -> str:
    return f"[{pair[0]:.3f}, {pair[1]:.3f}]" if pair else "[-]"


def summary(doc: dict) -> str:
    """Timings per run and per checkpoint, and the fitted exponents."""
    out = ["run               s/step   checkpoint  eval s (heldout / forgetting / icl / refusal)"]
    for p in sorted(doc["points"], key=lambda p: (p["regularize"], p["rank"], p["steps"])):
        s = p["seconds"]
        out.append(f"{p['run']:<17} {p['train_seconds_per_step']:>6.2f}   {p['steps']:>10}  {s['total']:>6.0f} "
                   f"({s.get('heldout', 0):.0f} / {s.get('forgetting', 0):.0f} / {s.get('icl', 0):.0f} / "
                   f"{s.get('refusal', 0):.0f})")
    for mode, f in doc["analysis"]["power_law"].items():
        if "a" in f:
            out.append(f"{mode}: exponent of parameters a = {f['a']:.3f} {_ci(f['ci']['a'])}, of steps b = {f['b']:.3f} "
                       f"{_ci(f['ci']['b'])}, R^2 {f['r2']:.3f}")
    for mode, f in doc["analysis"].get("power_law_kl", {}).items():
        if "a" in f:
            out.append(f"{mode}: KL part (shift at H): exponent of parameters a = {f['a']:.3f} {_ci(f['ci']['a'])}, of steps "
                       f"b = {f['b']:.3f} {_ci(f['ci']['b'])}, R^2 {f['r2']:.3f}")
    for mode, f in doc["analysis"]["linear"].items():
        if "slope" in f:
            out.append(f"{mode}: CE = {f['slope']:.3f} {_ci(f['slope_ci'])} x loss + {f['intercept']:.3f}, R^2 {f['r2']:.3f}")
    for mode, m in doc["analysis"].get("matched", {}).items():
        if "diff" in m:
            out.append(f"{mode} - plain at held-out loss {m['loss_star']:.3f}: forgetting CE {m['diff']:+.3f} {_ci(m['ci'])}")
    return "\n".join(out)


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the issue's full grid (hours on 2 CPU cores)")
    ap.add_argument("--out", default=None, help="sweep folder (default results/sweep-gemma[-full])")
    a = ap.parse_args(argv)
    out = a.out or ("results/sweep-gemma-full" if a.full else "results/sweep-gemma")
    from harness.cli import main as cli

    rc = cli(["sweep", *(FULL if a.full else QUICK), "--out", out, *extra])
    if rc == 0:
        print(summary(json.loads((Path(out) / "sweep.json").read_text())))
    return rc


if __name__ == "__main__":
    sys.exit(main())
