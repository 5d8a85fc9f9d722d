"""`conjugate finetune`: LoRA fine-tuning (harness.training.finetune) from the command line."""
from __future__ import annotations

import argparse

from harness.commands.args import csv, log

NAME = "finetune"

#: FinetuneConfig fields that have a flag of the same name
FIELDS = ("base", "data", "n_examples", "rank", "alpha", "target_modules", "steps", "lr", "batch_size", "max_len",
          "seed", "threads", "out", "save_every", "method", "regularize", "reg_lambda", "importance_data")


def add_parser(subparsers) -> argparse.ArgumentParser:
    ft = subparsers.add_parser(
        NAME, help="LoRA fine-tune a model (loss on response tokens only)",
        description="LoRA fine-tuning with peft. Writes the adapter (safetensors), training.jsonl, "
        "recipe.json and loss.png to --out. Evaluate the result with "
        "`conjugate run --pretrained BASE --finetuned BASE+OUT`.",
        epilog="example:\n  conjugate finetune --base pkg:gemma3-270m --data assistant-en --steps 400 "
        "--out adapters/gemma3-270m-assistant-en",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from harness.training.finetune import FinetuneConfig  # the defaults shown in --help (no torch at import)

    d = FinetuneConfig.__dataclass_fields__
    ft.add_argument("--base", metavar="MODEL", help=f"hub ID, folder, .gguf or pkg:NAME (default {d['base'].default})")
    ft.add_argument("--data", metavar="FILE|NAME", help="JSONL with instruction/response fields, or a built-in "
                    f"generator (default {d['data'].default})")
    ft.add_argument("--n-examples", type=int, metavar="N", help="examples drawn from a built-in generator (default 4000)")
    ft.add_argument("--rank", type=int, help="LoRA rank (default 8)")
    ft.add_argument("--alpha", type=int, help="LoRA alpha (default 16)")
    ft.add_argument("--target-modules", type=csv, metavar="A,B", help="modules to adapt (default q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)")
    ft.add_argument("--steps", type=int, help="optimizer steps (default 400)")
    ft.add_argument("--lr", type=float, help="peak learning rate, cosine decay (default 3e-4)")
    ft.add_argument("--batch-size", type=int, metavar="N", help="examples per step (default 16)")
    ft.add_argument("--max-len", type=int, metavar="N", help="tokens per example, prompt included (default 128)")
    ft.add_argument("--seed", type=int, help="seed for data, order and init (default 0)")
    ft.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    ft.add_argument("--out", metavar="DIR", help="output folder (default results/finetune); re-running into the same "
                    "folder resumes from its last checkpoint")
    ft.add_argument("--save-every", type=int, metavar="N", help="steps between resumable checkpoints (default 25)")
    ft.add_argument("--method", choices=("lora", "full"), help="lora (default) or full: every weight (small models)")
    ft.add_argument("--regularize", choices=("none", "elementwise", "layerwise", "both"),
                    help="keep weights important for general text near their pretrained values (Song et al. 2025): "
                    "elementwise importance x squared change, fixed lambda; layerwise: per-layer coefficients "
                    "balancing the penalty's gradient against the task's; both (default none)")
    ft.add_argument("--reg-lambda", type=float, metavar="X", help="penalty strength: elementwise the fixed "
                    "coefficient (default 0.01), layerwise/both the penalty/task gradient-norm ratio per layer "
                    "(default 0.5)")
    ft.add_argument("--importance-data", metavar="FILE", help="UTF-8 general text for the element-wise importance "
                    "(default: the shipped reference text); computed once per model and text, then cached")
    ft.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ft


def run(a: argparse.Namespace) -> int:
    from harness.training.finetune import FinetuneConfig, train

    kw = {k: getattr(a, k) for k in FIELDS if getattr(a, k) is not None}
    print(train(FinetuneConfig(**kw), progress=not a.no_progress, log=log))
    return 0
