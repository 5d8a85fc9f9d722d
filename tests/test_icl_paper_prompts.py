"""icl_vs_if renders the paper's prompts byte for byte (Kotha et al. 2024 §4.1).

The expected prompts come from an independent implementation of the paper's generator, written here from
the format the paper's prompts have::

    <instruction>\\n\\n<Input>: s1\\n<Output>: S1\\n\\n<Input>: s2\\n<Output>: S2\\n\\n<Input>: <query>\\n<Output>:

with the paper's strings per language, ``random.seed(10)`` per (language, config), per prompt
``random.sample(sentences, 3)`` and, for math, ``randint(4, 20)`` twice and ``randint(0, 2)`` for the
operator. The sentences are a project-written fixture in the paper's pool layout (tests/fixtures/icl_paper_pools).
Where ../shared/data/paper-sentences is present, the paper's own pools are checked too.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness.tasks.icl_vs_if import IclVsIf
from tests.conftest import SHARED

POOLS = Path(__file__).parent / "fixtures" / "icl_paper_pools"
CODES = {"en": "en", "fr": "fr", "es": "es", "nl": "nl", "hu": "hu", "leetspeak": "ls", "piglatin": "pl"}
LABELS = {"en": ("Input", "Output"), "fr": ("Saisir", "Sortir"), "es": ("Entrada", "Salida"),
          "nl": ("Invoer", "Uitgang"), "hu": ("Bemenet", "Kimenet"), "leetspeak": ("1npu7", "0u7pu7"),
          "piglatin": ("Inputyay", "Outputyay")}
INSTRUCTIONS = {
    "repeat": {"en": "Repeat the input.", "fr": "Répétez la saisie.", "nl": "Herhaal de invoer.",
               "es": "Repita la entrada.", "hu": "Ismételje meg a bevitelt.", "leetspeak": "R3p347 7h3 1npu7.",
               "piglatin": "Epeatray ethay inputyay."},
    "capslock": {"en": "Capitalize every character.", "fr": "Mettez chaque caractère en majuscule.",
                 "nl": "Geef elk teken een hoofdletter.", "es": "Capitalizar cada carácter.",
                 "hu": "Minden karaktert nagybetűvel írj.", "leetspeak": "C4p174l1z3 3v3rY Ch4r4c73R.",
                 "piglatin": "Apitalizecay everyay aracterchay."},
}
OPS = {"en": ["plus", "minus", "times"], "fr": ["plus", "moins", "fois"], "nl": ["plus", "min", "keer"],
       "es": ["más", "menos", "veces"], "hu": ["plusz", "mínusz", "alkalommal"],
       "leetspeak": ["Plu5", "M1nu5", "71m35"], "piglatin": ["usplay", "inusmay", "imestay"]}
QUESTION = {"en": "What is {} {} {}?", "fr": "Combien font {} {} {}?", "nl": "Wat is {} {} {}?",
            "es": "¿Cuánto es {} {} {}?", "hu": "Mi az a {} {} {}?", "leetspeak": "Wh47 15 {} {} {}?",
            "piglatin": "Atwhay {} {} {}?"}


def paper_prompts(lang: str, icl: str, query_type: str, sentences: list[str], n: int = 100) -> list[tuple]:
    """(prompt, ICL answer, IF answer) as the paper's generator makes them."""
    rng = random.Random(10)
    f = str.upper if icl == "capslock" else (lambda x: x)
    inp, out = LABELS[lang]
    rows = []
    for _ in range(n):
        picked = rng.sample(sentences, 3)
        parts = [f"{inp}: {s}\n{out}: {f(s)}" for s in picked[:2]]
        if query_type == "math":
            a, b, op = rng.randint(4, 20), rng.randint(4, 20), rng.randint(0, 2)
            query = QUESTION[lang].format(a, OPS[lang][op], b)
            icl_ans, if_ans = f(query.split(" ")[0]), f(str([a + b, a - b, a * b][op]))
        else:
            words = picked[2].split(" ")
            blank = "_" * len(words[0])
            query, icl_ans, if_ans = " ".join([blank] + words[1:]), f(blank), f(words[0])
        prompt = INSTRUCTIONS[icl][lang] + "\n\n" + "\n\n".join(parts + [f"{inp}: {query}\n{out}:"])
        rows.append((prompt, icl_ans, if_ans))
    return rows


def check_all(pool_dir: Path) -> int:
    task = IclVsIf(pools=str(pool_dir))
    examples = task.examples(0)
    checked = 0
    for lang, code in CODES.items():
        sentences = [x.strip() for x in (pool_dir / f"random_sentences_{code}.txt").read_text().splitlines() if x.strip()]
        for icl in ("capslock", "repeat"):
            for query_type in ("math", "startblank"):
                mine = [task.render(e, lang) for e in examples if e.group == f"{icl}-{query_type}"]
                want = paper_prompts(lang, icl, query_type, sentences)
                for r, (prompt, icl_ans, if_ans) in zip(mine, want, strict=True):
                    assert r.prompt.encode() == prompt.encode(), (lang, icl, query_type, r.prompt, prompt)
                    assert (r.reference["icl_answer"], r.reference["if_answer"]) == (icl_ans, if_ans)
                    assert task.probe_continuations(r.reference) == {"icl": " " + icl_ans, "if": " " + if_ans}
                    checked += 1
    return checked


def test_every_language_and_config_byte_for_byte():
    assert check_all(POOLS) == 7 * 4 * 100


def test_the_papers_own_pools_byte_for_byte():
    if not (SHARED / "paper-sentences" / "random_sentences_en.txt").exists():
        pytest.skip(f"{SHARED / 'paper-sentences'} is absent (it exists only next to the project's own clone)")
    assert check_all(SHARED / "paper-sentences") == 7 * 4 * 100


def test_a_concrete_french_prompt():
    task = IclVsIf(pools=str(POOLS))
    e = next(e for e in task.examples(0) if e.group == "repeat-startblank")
    p = task.render(e, "fr").prompt
    assert p.startswith("Répétez la saisie.\n\nSaisir: ") and p.endswith("\nSortir:")
    assert "\n\nSaisir: " in p and "\nSortir: " in p and not p.endswith(" ")


def test_preset_paper_and_rescoring_under_the_strict_rule(tiny_model, tmp_path):
    """`--preset paper` runs the paper's suite (here cut to 4 prompts); `report --rescore --task-option` switches
    the rule without generating, and report.md says which rule the labels come from."""
    import json

    from tests.conftest import run_cli

    r = run_cli("run", "--preset", "paper", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model),
                "--limit", "4", "--max-new-tokens", "2", "--out", str(tmp_path), "--run-id", "p", "--no-progress",
                "--no-probe", env={"CONJUGATE_CACHE": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "p"
    m = json.loads((run / "manifest.json").read_text())
    assert m["spec"]["transforms"] == ["identity", "lang:fr", "lang:es", "lang:nl", "lang:hu", "leetspeak", "piglatin"]
    assert "scoring=paper" in m["scoring"]["icl_vs_if"] and "format=paper" in m["scoring"]["icl_vs_if"]
    assert "scoring=paper" in (run / "report.md").read_text()
    assert any("92.0%" in n and "35.25%" in n for n in m["notes"])
    r = run_cli("report", str(run), "--rescore", "--task-option", "icl_vs_if.scoring=strict")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((run / "manifest.json").read_text())
    assert "scoring=strict" in m["scoring"]["icl_vs_if"] and m["rescore_options"] == {"icl_vs_if": {"scoring": "strict"}}
    assert "scoring=strict" in (run / "report.md").read_text()
    r = run_cli("report", str(run), "--task-option", "icl_vs_if.scoring=strict")
    assert r.returncode != 0 and "--rescore" in r.stderr and "Traceback" not in r.stderr
