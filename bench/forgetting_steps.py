"""Forgetting vs fine-tuning steps on the tiny random Llama: `conjugate finetune` at several step counts,
`conjugate forgetting` on each, and the shifted power-law fit CE(t) = c + A * (t + t0) ** alpha.

Usage: ``python bench/forgetting_steps.py [--steps 5,10,20,40,80,160] [--lr 2e-3] [--out DIR] [--threads 1]``

The tiny Llama of the tests (:mod:`harness.training.tiny`) with its embeddings scaled by
0.25, so that its next-token entropy on English is about 4 nats (the original
is nearly deterministic, entropy ~0, which makes CE and KL the same thing).
Each step count is its own `conjugate finetune` run on a small arithmetic
data set (LoRA r=8 on q/v, lr ``--lr``, 2 warm-up steps, cosine decay to the
run's end), i.e. exactly what ``conjugate finetune --steps N`` writes; the
steps are read back from each run's ``recipe.json``. The forgetting CE is
measured on the shipped English reference text. Writes everything under
``--out`` (default a temporary folder) and prints the table and both fits
(free shift c, and c anchored at the pretrained entropy H).

Measured with ``--threads 1`` on the 2-core CI machine (busy): 6 fine-tunes
(315 steps) in 11 s, forgetting on 6 checkpoints in 23 s. The tiny model's
KL grows from 0.0002 (5 steps) to 0.93 nats/token (160 steps); the curve is
S-shaped in log t (warm-up, then saturation as each run's cosine schedule
decays), so the power law fits only roughly (R^2 0.95 free, 0.92 anchored).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="5,10,20,40,80,160", help="fine-tuning step counts (default 5,10,20,40,80,160)")
    ap.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of every run (default 2e-3)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    a = ap.parse_args()
    steps = [int(s) for s in a.steps.split(",")]
    root = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="forgetting-steps-"))
    root.mkdir(parents=True, exist_ok=True)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if a.threads:
        torch.set_num_threads(a.threads)

    from harness.cli import main as cli
    from harness.training.finetune import FinetuneConfig, train
    from harness.training.tiny import build_tiny_llama

    base = root / "tiny-soft"
    if not (base / "config.json").exists():
        tiny = build_tiny_llama(root / "tiny")
        model = AutoModelForCausalLM.from_pretrained(str(tiny))
        with torch.no_grad():
            model.model.embed_tokens.weight.mul_(0.25)
        model.save_pretrained(base, safe_serialization=True)
        AutoTokenizer.from_pretrained(str(tiny)).save_pretrained(base)
    rng = random.Random(0)
    data = root / "sums.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"What is {x} plus {y}?", "response": str(x + y)}) + "\n"
                            for x, y in ((rng.randint(2, 30), rng.randint(2, 30)) for _ in range(200))))
    t0 = time.perf_counter()
    outs = []
    for n in steps:
        out = root / f"ft-lr{a.lr:g}-{n}"
        if not (out / "recipe.json").exists():
            train(FinetuneConfig(base=str(base), data=str(data), steps=n, lr=a.lr, warmup=2, rank=8,
                                 target_modules=["q_proj", "v_proj"], batch_size=8, out=str(out)), progress=False)
        outs.append(out)
    print(f"[bench] fine-tuned {len(steps)} adapters ({sum(steps)} steps) in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    args = ["forgetting", "--pretrained", str(base), "--out", str(root / "forgetting"), "--no-progress"]
    args += ["--threads", str(a.threads)] if a.threads else []
    for out in outs:
        args += ["--finetuned", f"{base}+{out}"]
    t0 = time.perf_counter()
    rc = cli(args)
    print(f"[bench] forgetting on {len(steps)} checkpoints in {time.perf_counter() - t0:.1f} s; outputs in "
          f"{root / 'forgetting'}", file=sys.stderr)
    doc = json.loads((root / "forgetting" / "forgetting.json").read_text())
    fit = (doc.get("fit") or {}).get("identity")
    if fit:
        an = fit["anchored"]
        print(f"fit: CE(t) = {fit['c']:.4f} + {fit['A']:.4g} * t^{fit['alpha']:.3f}  R^2 {fit['r2']:.4f}")
        print(f"anchored at the pretrained entropy H = {an['c']:.4f}: CE(t) = H + {an['A']:.4g} * t^{an['alpha']:.3f}  "
              f"R^2 {an['r2']:.4f}")
        for p, q in zip(fit["points"], an["points"]):
            print(f"  t={p['steps']:>5.0f}  CE {p['value']:.4f}  fitted {p['fitted']:.4f}  anchored {q['fitted']:.4f}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
