"""The xnli task: the paper's four prompts byte for byte, its scoring rule, local data files, the offline error,
and a run of the tiny model on the project-written fixture (tests/fixtures/xnli: NOT XNLI data)."""
from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.io import read_jsonl
from harness.pipeline.runner import run
from harness.pipeline.spec import RunSpec
from harness.registry import TASKS
from harness.tasks.xnli import WORDS, Xnli

from .conftest import ROOT, run_cli

FIXTURE = ROOT / "tests" / "fixtures" / "xnli"  # project-written, in XNLI's schema; not XNLI data
LANGS = ("en", "fr", "es", "de")

# the text: "{premise}\nQuestion: {hypothesis} True, False or Neither?\nAnswer:" and its fr/es/de renderings
PAPER_PROMPTS = {
    "en": "{premise}\nQuestion: {hypothesis} True, False or Neither?\nAnswer:",
    "fr": "{premise}\nQuestion: {hypothesis} Vrai, Faux ou Ni?\nRéponse:",
    "es": "{premise}\nPregunta: {hypothesis} Verdadero, Falso o Ni?\nRespuesta:",
    "de": "{premise}\nFrage: {hypothesis} Wahr, Falsch oder Weder?\nAntwort:",
}
# the label words, in the order entailment / neutral / contradiction
PAPER_WORDS = {"en": ("True", "Neither", "False"), "fr": ("Vrai", "Ni", "Faux"),
               "es": ("Verdadero", "Ni", "Falso"), "de": ("Wahr", "Weder", "Falsch")}
GOLD = ("entailment", "neutral", "contradiction")


@pytest.fixture(scope="module")
def task() -> Xnli:
    return TASKS.create("xnli", data=str(FIXTURE))


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def fixture_rows(lang: str) -> list[dict]:
    return read_jsonl(FIXTURE / f"{lang}.jsonl")


# -- prompts and scoring ------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_the_papers_prompts_byte_for_byte(task, lang):
    rows = fixture_rows(lang)
    for ex in task.examples(0):
        row = rows[ex.data["index"]]
        rendered = task.render(ex, lang)
        expected = PAPER_PROMPTS[lang].format(premise=row["premise"], hypothesis=row["hypothesis"])
        assert rendered.prompt.encode("utf-8") == expected.encode("utf-8")
        gold = GOLD[row["label"]]
        assert rendered.reference == {"gold": gold, "answer": PAPER_WORDS[lang][row["label"]], "language": lang}
        assert rendered.rendering == lang


def test_label_words_are_the_papers():
    assert {lang: tuple(WORDS[lang][g] for g in GOLD) for lang in LANGS} == PAPER_WORDS
    assert Xnli.sampling.max_new_tokens == 10 and Xnli.sampling.greedy
    assert Xnli.renderings == frozenset(LANGS)


@pytest.mark.parametrize("lang,gold,response,label", [
    ("en", 0, " True", "correct"),
    ("en", 0, "True", "correct"),  # no leading character
    ("en", 0, "\nTrue, because", "correct"),  # one leading character of any kind
    ("en", 0, "xTrue", "correct"),
    ("en", 0, "  True", "incorrect"),  # two leading characters: the rule allows one
    ("en", 0, " true", "incorrect"),  # case-sensitive, as the paper's words
    ("en", 0, " TRUE", "incorrect"),
    ("en", 0, " False", "incorrect"),
    ("en", 0, "", "incorrect"),
    ("en", 0, " Vrai", "incorrect"),  # another language's word is not the English answer
    ("en", 1, " Neither", "correct"),
    ("en", 2, " False.", "correct"),
    ("fr", 0, " Vrai", "correct"),
    ("fr", 1, " Ni", "correct"),
    ("fr", 2, " Faux", "correct"),
    ("fr", 0, " True", "incorrect"),
    ("es", 0, " Verdadero", "correct"),
    ("es", 1, " Ni", "correct"),
    ("es", 2, " Falso", "correct"),
    ("es", 2, " Falsch", "incorrect"),
    ("de", 0, " Wahr", "correct"),
    ("de", 1, " Weder", "correct"),
    ("de", 2, " Falsch", "correct"),
    ("de", 1, " Ni", "incorrect"),
])
def test_scoring_rule(task, lang, gold, response, label):
    reference = {"gold": GOLD[gold], "answer": PAPER_WORDS[lang][gold], "language": lang}
    assert task.score(response, reference).label == label


def test_incorrect_names_what_was_answered(task):
    ref = {"gold": "entailment", "answer": "True", "language": "en"}
    assert task.score(" False", ref).detail == "answered 'False', gold 'True'"
    assert "no 'True'" in task.score(" Maybe", ref).detail


# -- data ------------------------------------------------------------------------------

def test_examples_are_the_first_n_interleaved_by_gold_label(tmp_path):
    labels = [0, 0, 0, 1, 1, 2, 2, 0]
    write_jsonl(tmp_path / "en.jsonl", [{"premise": f"P{i}.", "hypothesis": f"H{i}.", "label": lab}
                                        for i, lab in enumerate(labels)])
    ex = Xnli(data=str(tmp_path), n=7).examples(seed=0)
    assert [e.id for e in ex] == ["xnli-0000", "xnli-0003", "xnli-0005", "xnli-0001", "xnli-0004", "xnli-0006",
                                  "xnli-0002"]
    assert [e.group for e in ex[:3]] == list(GOLD)
    assert ex == Xnli(data=str(tmp_path), n=7).examples(seed=1)  # the paper's fixed prefix, whatever the seed
    assert Xnli(data=str(tmp_path)).renderings == frozenset({"en"})  # only the languages the folder has


def test_alternative_file_names_and_the_xnli_tsv(tmp_path, task):
    header = ["language", "gold_label", "sentence1_binary_parse", "sentence1", "sentence2", "pairID"]
    lines = ["\t".join(header)]
    for lang in ("en", "fr", "es"):
        for i, r in enumerate(fixture_rows(lang)):
            lines.append("\t".join([lang, GOLD[r["label"]], "( x )", r["premise"], r["hypothesis"], str(i)]))
    (tmp_path / "xnli.dev.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_jsonl(tmp_path / "xnli.de.jsonl", fixture_rows("de"))
    other = Xnli(data=str(tmp_path))
    assert other.sources["en"].name == "xnli.dev.tsv" and other.sources["de"].name == "xnli.de.jsonl"
    for lang in LANGS:
        assert [other.render(e, lang) for e in other.examples(0)] == [task.render(e, lang) for e in task.examples(0)]


@pytest.mark.parametrize("name,content,fragments", [
    ("en.jsonl", '{"premise": "a", "hypothesis": "b", "label": 0}\nnot json\n', ["en.jsonl line 2", "not valid JSON"]),
    ("en.jsonl", '{"premise": "a", "label": 0}\n', ["en.jsonl line 1", "'hypothesis'"]),
    ("en.jsonl", '{"premise": "a", "hypothesis": "b", "label": 5}\n', ["en.jsonl line 1", "label 5"]),
    ("en.jsonl", '["a", "b", 0]\n', ["en.jsonl line 1", "JSON object"]),
    ("xnli.dev.tsv", "language\tsentence1\tsentence2\nen\ta\tb\n", ["xnli.dev.tsv line 1", "'gold_label'"]),
    ("xnli.dev.tsv", "language\tgold_label\tsentence1\tsentence2\nen\tmaybe\ta\tb\n",
     ["xnli.dev.tsv line 2", "label 'maybe'"]),
])
def test_a_bad_file_is_one_line_naming_file_and_line(tmp_path, name, content, fragments):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Xnli(data=str(tmp_path)).examples(0)
    msg = str(info.value)
    assert "\n" not in msg and all(f in msg for f in fragments), msg


def test_languages_must_be_parallel(tmp_path):
    write_jsonl(tmp_path / "en.jsonl", fixture_rows("en"))
    write_jsonl(tmp_path / "fr.jsonl", fixture_rows("fr")[:5])
    t = Xnli(data=str(tmp_path))
    with pytest.raises(ConfigError, match="5 examples but English has 8; XNLI files must be parallel"):
        t.render(t.examples(0)[0], "fr")
    write_jsonl(tmp_path / "fr.jsonl", fixture_rows("fr")[1:] + fixture_rows("fr")[:1])  # shifted by one
    t = Xnli(data=str(tmp_path))
    with pytest.raises(ConfigError, match=r"fr.jsonl line 1: label neutral but English has entailment"):
        t.render(t.examples(0)[0], "fr")


def test_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="task_options.xnli.data: .* is not a folder"):
        Xnli(data=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="has no English data"):
        Xnli(data=str(tmp_path))
    for n in (0, -3, "ten", True):
        with pytest.raises(ConfigError, match="task_options.xnli.n: must be a positive integer"):
            Xnli(data=str(FIXTURE), n=n)
    write_jsonl(tmp_path / "en.jsonl", fixture_rows("en"))
    write_jsonl(tmp_path / "xnli.en.jsonl", fixture_rows("en"))
    with pytest.raises(ConfigError, match="both en.jsonl and xnli.en.jsonl"):
        Xnli(data=str(tmp_path))


def test_without_data_and_offline_the_cli_says_so_in_one_line(tiny_model, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"), "CONJUGATE_CACHE": str(tmp_path / "c")}
    proc = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "xnli",
                   "--transforms", "identity,lang:fr", "--limit", "2", "--out", str(tmp_path / "res"),
                   "--cache", str(tmp_path / "g.sqlite"), "--no-progress", env=env)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith("conjugate: error: xnli: loading XNLI en (validation) from the Hugging Face Hub failed")
    assert "--task-option xnli.data=DIR" in err and "en.jsonl" in err
    assert not (tmp_path / "res").exists()


# -- a run on the fixture ------------------------------------------------------------------

def test_fixture_run_pairs_examples_across_languages(tiny_spec_kwargs):
    """The tiny random model's outcomes mean nothing; the point is the plumbing (and the fixture is not XNLI)."""
    spec = RunSpec(**{**tiny_spec_kwargs, "tasks": ["xnli"]}, task_options={"xnli": {"data": str(FIXTURE)}},
                   transforms=["identity", "lang:fr", "leetspeak"], limit=6)
    samples = read_jsonl(run(spec, progress=False) / "samples.jsonl")
    assert len(samples) == 2 * 3 * 6
    assert all(s["error"] is None and s["outcome"] in Xnli.labels for s in samples)
    by: dict[tuple[str, str], dict[str, dict]] = {}
    for s in samples:
        by.setdefault((s["model"], s["transform"]), {})[s["example_id"]] = s
    assert len(by) == 6 and all(len(cell) == 6 for cell in by.values())
    assert len({frozenset(cell) for cell in by.values()}) == 1  # the same example ids in every (model, transform)
    en, fr, leet = by[("finetuned", "identity")], by[("finetuned", "lang:fr")], by[("finetuned", "leetspeak")]
    for i, s in en.items():
        assert fr[i]["reference"]["gold"] == s["reference"]["gold"] == leet[i]["reference"]["gold"]
        assert fr[i]["mode"] == "native" and fr[i]["transformed_prompt"].endswith("Vrai, Faux ou Ni?\nRéponse:")
        assert fr[i]["reference"]["answer"] in ("Vrai", "Ni", "Faux")
        assert leet[i]["mode"] == "transform" and leet[i]["prompt"] == s["prompt"]
        assert leet[i]["transformed_prompt"] != s["prompt"] and leet[i]["reference"]["answer"] in ("True", "Neither",
                                                                                                     "False")
    assert {s["group"] for s in samples} == set(GOLD)
