"""icl_vs_if's data: prompt strings (the paper's or the project's), sentence pools, the two prompt formats.

* ``strings=paper`` (default): the paper's instruction, labels and math question per rendering
  (``data/icl_vs_if/strings.yaml``), leetspeak and pig latin as the paper wrote them.
  ``strings=project``: the project's own (``strings_project.yaml``), leetspeak and pig latin derived
  from English by the transforms' forward maps.
* ``format=paper`` (default): parts joined by blank lines, as the paper's generator does
  (``prompt.j2``); ``format=compact``: single newlines (``prompt_compact.j2``, task versions 1-2).
* Pools: the project's line-aligned ``sentences_<lang>.txt`` (leetspeak and pig latin derived from
  English), or ``pools=DIR``: a folder of line-aligned files named as the paper's
  (``random_sentences_{en,fr,es,nl,hu,ls,pl}.txt``) or as the project's (``sentences_<lang>.txt``);
  a rendering without a file is derived (leetspeak, pig latin) or unavailable.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Callable

import yaml

from harness.errors import ConjugateError
from harness.translators.leetspeak import to_leet
from harness.translators.piglatin import to_piglatin

LANGUAGES = ("en", "fr", "es", "nl", "hu")
DERIVED: dict[str, Callable[[str], str]] = {"leetspeak": to_leet, "piglatin": to_piglatin}
PAPER_CODES = {"leetspeak": "ls", "piglatin": "pl"}  # the paper's file codes for the derived renderings
FORMATS = {"paper": "prompt.j2", "compact": "prompt_compact.j2"}
STRINGS = {"paper": "strings.yaml", "project": "strings_project.yaml"}


def root():
    return files("harness.tasks").joinpath("data/icl_vs_if")


def choose(option: str, value: str, known: dict) -> str:
    if value not in known:
        raise ConjugateError(f"icl_vs_if {option}={value}: not one of {', '.join(known)}")
    return value


def template(fmt: str) -> str:
    return root().joinpath(FORMATS[choose("format", fmt, FORMATS)]).read_text(encoding="utf-8")


def load_strings(which: str, outside_slots: Callable) -> dict[str, dict]:
    data = yaml.safe_load(root().joinpath(STRINGS[choose("strings", which, STRINGS)]).read_text(encoding="utf-8"))
    for key, fn in DERIVED.items():
        if key in data:
            continue
        en = data["en"]
        data[key] = {"instruction": {k: fn(v) for k, v in en["instruction"].items()}, "input": fn(en["input"]),
                     "output": fn(en["output"]), "math": outside_slots(en["math"], fn),
                     "ops": {k: fn(v) for k, v in en["ops"].items()}}
    return data


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def project_pools() -> dict[str, list[str | None]]:
    pools: dict[str, list[str | None]] = {lang: _lines(Path(str(root().joinpath(f"sentences_{lang}.txt"))))
                                          for lang in LANGUAGES}
    return _derive_and_check(pools, "the project's pools")


def folder_pools(folder: str) -> dict[str, list[str | None]]:
    """``pools=DIR``: the paper's ``random_sentences_<code>.txt`` or ``sentences_<lang>.txt``, line-aligned."""
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise ConjugateError(f"icl_vs_if pools={folder}: no such folder; give a folder with random_sentences_en.txt "
                             f"(the paper's layout) or sentences_en.txt, plus other languages line-aligned")
    pools: dict[str, list[str | None]] = {}
    for lang in (*LANGUAGES, *DERIVED):
        code = PAPER_CODES.get(lang, lang)
        for name in (f"random_sentences_{code}.txt", f"sentences_{lang}.txt"):
            if (d / name).is_file():
                pools[lang] = _lines(d / name)
                break
    if "en" not in pools:
        raise ConjugateError(f"icl_vs_if pools={folder}: needs random_sentences_en.txt or sentences_en.txt")
    return _derive_and_check(pools, f"pools={folder}")


def _derive_and_check(pools: dict[str, list[str | None]], what: str) -> dict[str, list[str | None]]:
    for key, fn in DERIVED.items():
        pools.setdefault(key, [fn(s) for s in pools["en"]])
    sizes = {k: len(v) for k, v in pools.items()}
    if len(set(sizes.values())) != 1:
        raise ConjugateError(f"icl_vs_if {what}: the sentence files are not line-aligned: {sizes}")
    return pools
