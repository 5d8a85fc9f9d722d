"""Which of format, strings, scoring and sentence pools move icl_vs_if's ICL rates, side by side in one run.

Usage: ``python bench/icl_paper_gap.py [--limit 80] [--pools ../shared/data/paper-sentences] [--model pkg:gemma3-270m]``

One model (default: the pretrained Gemma-3-270M of the default pair), greedy, 10 tokens, every native
rendering (en, fr, es, nl, hu, leetspeak, pig latin), ``--limit`` prompts per rendering (a quarter per
config). Each column changes one thing from the column before it:

1. ``compact/project/strict``: the project's earlier prompts and task version 2's scoring;
2. ``+ paper format``: blank lines between the parts;
3. ``+ paper strings``: the paper's instructions, labels and math questions (``Saisir:``/``Sortir:`` ...);
4. ``+ paper scoring``: the paper's rule (a re-score of column 3's generations: nothing is generated);
5. ``+ paper pools``: the paper's sentence pools (``--pools``; skipped when absent).

Prints the pretrained model's ICL rate (%) per rendering and column, and each run's wall time.
Generations are cached (``--cache``), so a second run prints the same table at once.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RENDERINGS = ["identity", "lang:fr", "lang:es", "lang:nl", "lang:hu", "leetspeak", "piglatin"]
COLUMNS = [
    ("compact/project/strict", {"format": "compact", "strings": "project", "scoring": "strict"}),
    ("+ paper format", {"format": "paper", "strings": "project", "scoring": "strict"}),
    ("+ paper strings", {"format": "paper", "strings": "paper", "scoring": "strict"}),
    ("+ paper scoring", {"format": "paper", "strings": "paper", "scoring": "paper"}),
    ("+ paper pools", {"format": "paper", "strings": "paper", "scoring": "paper", "pools": None}),
]


def icl_rates(model: str, options: dict, limit: int, out: Path, cache: str | None) -> tuple[dict[str, float], float]:
    import harness

    t = time.perf_counter()
    r = harness.evaluate(model, model, tasks=["icl_vs_if"], transforms=RENDERINGS, limit=limit, probe=False,
                         task_options={"icl_vs_if": options}, out=out, cache=cache, progress=False, log=None)
    rates = {x["transform"]: 100 * x["rate"] for x in r.rates("icl_vs_if")
             if x["model"] == "pretrained" and x["group"] == "all" and x["label"] == "icl"}
    return rates, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pkg:gemma3-270m")
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("--pools", default=str(ROOT.parent / "shared" / "data" / "paper-sentences"))
    ap.add_argument("--out", default="results/icl-paper-gap")
    ap.add_argument("--cache", default=None, help="generation cache file (default: the user cache)")
    a = ap.parse_args()
    table: dict[str, dict[str, float]] = {}
    for name, options in COLUMNS:
        if "pools" in options:
            if not Path(a.pools, "random_sentences_en.txt").exists():
                print(f"{name}: skipped, {a.pools} has no random_sentences_en.txt")
                continue
            options = {**options, "pools": a.pools}
        table[name], seconds = icl_rates(a.model, options, a.limit, Path(a.out), a.cache)
        print(f"{name:24s} {seconds:7.1f} s", flush=True)
    print(f"\nICL rate (%) of {a.model}, {a.limit} prompts per rendering, greedy, 10 tokens\n")
    print("| rendering | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for t in RENDERINGS:
        print(f"| {t} | " + " | ".join(f"{table[c].get(t, float('nan')):.1f}" for c in table) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
