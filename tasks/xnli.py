"""xnli: natural-language inference in four languages (Kotha et al. 2024 §4.2), correct / incorrect.

The paper asks whether code fine-tuning (Llama-2-7b -> CodeLlama-7b) loses
natural-language reasoning, and whether prompting in another language brings
it back. Its zero-shot prompt, with native renderings in en, fr, es and de
(XNLI is parallel: example ``i`` of every language is the same item, so the
example ids ``xnli-<i>`` pair up across ``lang:<code>`` transforms)::

    {premise}
    Question: {hypothesis} True, False or Neither?
    Answer:

Greedy, 10 new tokens. A response is correct when it, or the response after
its first character (usually the space after ``Answer:``), starts with the gold
label word: en True/Neither/False, fr Vrai/Ni/Faux, es Verdadero/Ni/Falso,
de Wahr/Weder/Falsch (entailment/neutral/contradiction). The match is
case-sensitive and needs no word boundary, exactly as the paper's rule reads
(``" true"`` is incorrect, ``" Trueish"`` correct).

Data: the first ``n`` (2,490, the paper's count: all of XNLI's validation
split) examples of ``datasets.load_dataset("xnli", lang, split="validation")``,
loaded lazily, or local files with ``data=DIR`` (one per language):

* ``<lang>.jsonl`` or ``xnli.<lang>.jsonl``: objects with ``premise``,
  ``hypothesis`` and ``label`` (0/1/2 or entailment/neutral/contradiction);
* XNLI-1.0's ``xnli.dev.tsv`` (or ``xnli.test.tsv``): columns ``language``,
  ``gold_label``, ``sentence1``, ``sentence2``; used for languages without a JSONL.

The order is the data's own (the seed reorders nothing); examples are grouped
by gold label and interleaved, so ``--limit`` takes a balanced prefix.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, ConjugateError
from harness.io import iter_jsonl
from harness.task import Task, interleave
from harness.types import Example, Rendered, Sampling, Score

LANGS = ("en", "fr", "es", "de")
GOLD = ("entailment", "neutral", "contradiction")  # XNLI label ids 0, 1, 2
PROMPTS = {
    "en": "{{ premise }}\nQuestion: {{ hypothesis }} True, False or Neither?\nAnswer:",
    "fr": "{{ premise }}\nQuestion: {{ hypothesis }} Vrai, Faux ou Ni?\nRéponse:",
    "es": "{{ premise }}\nPregunta: {{ hypothesis }} Verdadero, Falso o Ni?\nRespuesta:",
    "de": "{{ premise }}\nFrage: {{ hypothesis }} Wahr, Falsch oder Weder?\nAntwort:",
}
WORDS = {
    "en": {"entailment": "True", "neutral": "Neither", "contradiction": "False"},
    "fr": {"entailment": "Vrai", "neutral": "Ni", "contradiction": "Faux"},
    "es": {"entailment": "Verdadero", "neutral": "Ni", "contradiction": "Falso"},
    "de": {"entailment": "Wahr", "neutral": "Weder", "contradiction": "Falsch"},
}
TSV_FILES = ("xnli.dev.tsv", "xnli.test.tsv")  # dev first: the paper evaluates on validation
TSV_COLUMNS = ("language", "gold_label", "sentence1", "sentence2")
PAPER_N = 2490
FIX = ("give local files with --task-option xnli.data=DIR (DIR holding en.jsonl, fr.jsonl, es.jsonl, de.jsonl "
       "with premise/hypothesis/label, or XNLI-1.0's xnli.dev.tsv)")


@dataclass(frozen=True)
class Row:
    premise: str
    hypothesis: str
    label: int  # index into GOLD
    where: str  # "fr.jsonl line 3": for error messages


def label_id(value: object, where: str) -> int:
    """XNLI's label as 0/1/2: accepts the ids (also as digits) and the names."""
    if isinstance(value, str) and value.strip() in GOLD:
        return GOLD.index(value.strip())
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(GOLD):
        return value
    raise ConfigError(f"{where}: label {value!r} is not 0/1/2 or {'/'.join(GOLD)}")


def _text(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: needs a non-empty string field {key!r}")
    return value.strip()


def read_jsonl(path: Path) -> list[Row]:
    """Rows of a ``premise``/``hypothesis``/``label`` JSONL file; a bad line is a ConfigError naming it."""
    try:
        lines = list(iter_jsonl(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); give a UTF-8 JSONL file") from None
    rows = []
    for i, obj in lines:
        where = f"{path} line {i}"
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: expected a JSON object with premise, hypothesis and label")
        rows.append(Row(_text(obj, "premise", where), _text(obj, "hypothesis", where),
                        label_id(obj.get("label"), where), where))
    return rows


def read_tsv(path: Path) -> dict[str, list[Row]]:
    """Rows per language of XNLI-1.0's TSV (tab-separated, no quoting, as the original files are written)."""
    out: dict[str, list[Row]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = [c for c in TSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path} line 1: no column {missing[0]!r}; XNLI's TSV has columns "
                                  f"{', '.join(TSV_COLUMNS)}")
            for row in reader:
                where = f"{path} line {reader.line_num}"
                out.setdefault((row["language"] or "").strip(), []).append(
                    Row(_text(row, "sentence1", where), _text(row, "sentence2", where),
                        label_id(row["gold_label"], where), where))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); give XNLI-1.0's TSV") from None
    return out


def hub_rows(lang: str, n: int) -> list[Row]:
    """The first ``n`` rows of XNLI's ``lang`` validation split from the Hugging Face Hub (one-line error if not)."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "datasets")]
    levels = [lg.level for lg in loggers]
    try:
        import datasets

        for lg in loggers:  # offline, the Hub client logs a "Retrying" line per attempt: the error below says it once
            lg.setLevel(logging.ERROR)
        ds = datasets.load_dataset("xnli", lang, split="validation")
        items = [ds[i] for i in range(min(n, len(ds)))]
    except Exception as exc:  # offline, no `datasets`, a Hub error: one line with the fix, never a traceback
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ConfigError(f"xnli: loading XNLI {lang} (validation) from the Hugging Face Hub failed ({why}); "
                          f"{FIX}") from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    wheres = [f"XNLI {lang} validation row {i}" for i in range(len(items))]
    return [Row(_text(r, "premise", w), _text(r, "hypothesis", w), label_id(r.get("label"), w), w)
            for r, w in zip(items, wheres)]


def local_sources(folder: Path) -> dict[str, Path]:
    """Language -> the file that holds it: a JSONL of its own, else the XNLI TSV (which holds every language)."""
    out: dict[str, Path] = {}
    tsv = next((folder / t for t in TSV_FILES if (folder / t).is_file()), None)
    for lang in LANGS:
        found = [folder / name for name in (f"{lang}.jsonl", f"xnli.{lang}.jsonl") if (folder / name).is_file()]
        if len(found) > 1:
            raise ConfigError(f"task_options.xnli.data: {folder} has both {found[0].name} and {found[1].name}; "
                              f"keep one file per language")
        if found or tsv:
            out[lang] = found[0] if found else tsv
    if "en" not in out:
        raise ConfigError(f"task_options.xnli.data: {folder} has no English data (en.jsonl, xnli.en.jsonl or "
                          f"{TSV_FILES[0]}); {FIX}")
    return out


def starts_with_word(response: str, word: str) -> bool:
    """The paper's rule: the response, or the response after one leading character, starts with ``word``."""
    return response.startswith(word) or response[1:].startswith(word)


class Xnli(Task):
    """XNLI natural-language inference, en/fr/es/de prompts (Kotha et al. 2024 §4.2): correct / incorrect."""

    name = "xnli"
    version = "1"
    labels = ("correct", "incorrect")
    primary_label = "correct"
    renderings = frozenset(LANGS)
    sampling = Sampling(max_new_tokens=10)

    def __init__(self, data: str | None = None, n: int = PAPER_N) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"task_options.xnli.n: must be a positive integer, got {n!r}; e.g. "
                              f"--task-option xnli.n={PAPER_N}")
        self.n = n
        self.sources: dict[str, Path] | None = None  # None: the Hugging Face Hub
        if data is not None:
            folder = Path(str(data)).expanduser()
            if not folder.is_dir():
                raise ConfigError(f"task_options.xnli.data: {folder} is not a folder; {FIX}")
            self.sources = local_sources(folder)
            self.renderings = frozenset(self.sources)
        self.source = str(data) if data is not None else "Hugging Face Hub: xnli, validation split"
        self._rows: dict[str, list[Row]] = {}
        self._tsv: dict[Path, dict[str, list[Row]]] = {}

    # -- data -----------------------------------------------------------------
    def _read(self, lang: str) -> tuple[list[Row], str]:
        """All rows of ``lang`` (the Hub's first ``n``) and the name of where they came from."""
        if self.sources is None:
            return hub_rows(lang, self.n), f"XNLI {lang} validation"
        path = self.sources[lang]
        if path.suffix == ".jsonl":
            return read_jsonl(path), str(path)
        if path not in self._tsv:
            self._tsv[path] = read_tsv(path)
        rows = self._tsv[path].get(lang)
        if not rows:
            raise ConfigError(f"{path}: no rows with language {lang!r}; add them or a {lang}.jsonl next to it")
        return rows, f"{path} ({lang})"

    def rows(self, lang: str) -> list[Row]:
        """The first ``n`` rows of ``lang``, checked parallel to English (same count, same gold labels)."""
        if lang not in self._rows:
            rows, where = self._read(lang)
            rows = rows[: self.n]
            if not rows:
                raise ConfigError(f"{where}: no examples; {FIX}")
            if lang != "en":
                en = self.rows("en")
                if len(rows) < len(en):
                    raise ConfigError(f"{where}: {len(rows)} examples but English has {len(en)}; XNLI files "
                                      f"must be parallel (example i of every language the same item)")
                bad = next((i for i, (r, e) in enumerate(zip(rows, en)) if r.label != e.label), None)
                if bad is not None:
                    raise ConfigError(f"{rows[bad].where}: label {GOLD[rows[bad].label]} but English has "
                                      f"{GOLD[en[bad].label]} there; XNLI files must be parallel")
                rows = rows[: len(en)]
            self._rows[lang] = rows
        return self._rows[lang]

    # -- Task interface -------------------------------------------------------
    def examples(self, seed: int) -> list[Example]:
        """The first ``n`` English examples in the data's order, interleaved by gold label (the seed is unused)."""
        groups: dict[str, list[Example]] = {g: [] for g in GOLD}
        for i, row in enumerate(self.rows("en")):
            groups[GOLD[row.label]].append(Example(id=f"xnli-{i:04d}", group=GOLD[row.label], data={"index": i}))
        return interleave({g: v for g, v in groups.items() if v})

    def render(self, example: Example, rendering: str = "en") -> Rendered:
        if rendering not in self.renderings:
            raise ConjugateError(f"xnli has no native rendering {rendering!r}; it has "
                                 f"{', '.join(sorted(self.renderings))}")
        row = self.rows(rendering)[example.data["index"]]
        prompt = self.render_template(PROMPTS[rendering], {"premise": row.premise, "hypothesis": row.hypothesis},
                                      f"xnli/{rendering}")
        gold = GOLD[row.label]
        return Rendered(prompt=prompt, rendering=rendering,
                        reference={"gold": gold, "answer": WORDS[rendering][gold], "language": rendering})

    def score(self, response: str, reference: dict) -> Score:
        answer = reference["answer"]
        if starts_with_word(response, answer):
            return Score("correct", f"starts with {answer!r}")
        said = next((w for w in WORDS.get(reference.get("language", ""), {}).values()
                     if starts_with_word(response, w)), None)
        return Score("incorrect", f"answered {said!r}, gold {answer!r}" if said else f"no {answer!r} at the start")
