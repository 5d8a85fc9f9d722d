"""The icl_vs_if task: examples, native renderings, sentence pools and scoring."""
from __future__ import annotations

import pytest

from harness.errors import ConjugateError
from harness.registry import TASKS
from harness.tasks.icl_vs_if import IclVsIf, split_first_word

GROUPS = ["capslock-math", "capslock-startblank", "repeat-math", "repeat-startblank"]
RENDERINGS = ["en", "fr", "es", "nl", "hu", "leetspeak", "piglatin"]
OUTPUT_LABEL = {  # the paper's labels
    "en": "Output:", "fr": "Sortir:", "es": "Salida:", "nl": "Uitgang:", "hu": "Kimenet:",
    "leetspeak": "0u7pu7:", "piglatin": "Outputyay:",
}
INPUT_LABEL = {
    "en": "Input:", "fr": "Saisir:", "es": "Entrada:", "nl": "Invoer:", "hu": "Bemenet:",
    "leetspeak": "1npu7:", "piglatin": "Inputyay:",
}


@pytest.fixture(scope="module")
def task() -> IclVsIf:
    return IclVsIf()


@pytest.fixture(scope="module")
def examples(task):
    return task.examples(0)


# -- examples -------------------------------------------------------------------------

def test_registered_under_its_name():
    assert isinstance(TASKS.create("icl_vs_if"), IclVsIf)


def test_examples_are_deterministic_per_seed(task, examples):
    assert IclVsIf().examples(0) == examples
    assert task.examples(0) == examples


def test_examples_differ_across_seeds(examples, task):
    other = task.examples(1)
    assert [e.id for e in other] == [e.id for e in examples]  # ids are stable ...
    assert [e.data for e in other] != [e.data for e in examples]  # ... the content is not
    differing = sum(a.data != b.data for a, b in zip(examples, other))
    assert differing > 350


def test_400_examples_100_per_group(examples):
    assert len(examples) == 400
    assert len({e.id for e in examples}) == 400
    for g in GROUPS:
        assert sum(e.group == g for e in examples) == 100
        assert [e.id for e in examples if e.group == g][:2] == [f"{g}-000", f"{g}-001"]


def test_groups_are_interleaved(examples):
    assert [e.group for e in examples[:8]] == GROUPS * 2
    for start in range(0, 400, 4):  # every block of four is one of each
        assert sorted(e.group for e in examples[start : start + 4]) == GROUPS


def test_example_data(task, examples):
    n_sent = len(task.pools["en"])
    math = [e for e in examples if e.data["query_type"] == "math"]
    assert len(math) == 200
    for e in examples:
        icl, query = e.group.split("-")
        assert (e.data["icl_task"], e.data["query_type"]) == (icl, query)
        picked = list(e.data["demos"]) + ([e.data["sentence"]] if query == "startblank" else [])
        assert len(e.data["demos"]) == 2
        assert len(set(picked)) == len(picked)  # query sentence is not one of the demos
        assert all(0 <= i < n_sent for i in picked)
    for e in math:
        assert 4 <= e.data["a"] <= 20 and 4 <= e.data["b"] <= 20
        assert e.data["op"] in {"plus", "minus", "times"}
    values = {e.data["a"] for e in math} | {e.data["b"] for e in math}
    assert min(values) == 4 and max(values) == 20


# -- rendering ------------------------------------------------------------------------

@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_rendering_renders_every_example(task, examples, rendering):
    for e in examples:
        r = task.render(e, rendering)
        assert r.rendering == rendering
        assert r.prompt.endswith("\n" + OUTPUT_LABEL[rendering]), r.prompt
        lines = r.prompt.split("\n")
        assert len(lines) == 10  # instruction, 2 x (input, output), query input, final label; 3 blank lines
        assert [i for i, line in enumerate(lines) if not line] == [1, 4, 7]
        assert sum(line.startswith(INPUT_LABEL[rendering] + " ") for line in lines) == 3
        assert lines[-2] == f"{INPUT_LABEL[rendering]} {r.reference['query']}"
        assert r.reference["query_type"] == e.data["query_type"]
        assert r.reference["icl_answer"] and r.reference["if_answer"]


def test_task_renderings(task):
    assert task.renderings == frozenset(RENDERINGS)


def test_unknown_rendering_is_a_clear_error(task, examples):
    with pytest.raises(ConjugateError, match="no native rendering 'de'"):
        task.render(examples[0], "de")


def test_english_prompt_has_three_input_lines(task, examples):
    for e in examples:
        prompt = task.render(e).prompt
        assert [line.split(":")[0] for line in prompt.split("\n")[1:] if line] == ["Input", "Output"] * 3


def test_english_capslock_math_prompt(task, examples):
    e = examples[0]
    assert e.group == "capslock-math"
    r = task.render(e)
    d = e.data
    pool = task.pools["en"]
    a, b = d["a"], d["b"]
    answer = {"plus": a + b, "minus": a - b, "times": a * b}[d["op"]]
    assert r.prompt == (
        "Capitalize every character.\n\n"
        f"Input: {pool[d['demos'][0]]}\nOutput: {pool[d['demos'][0]].upper()}\n\n"
        f"Input: {pool[d['demos'][1]]}\nOutput: {pool[d['demos'][1]].upper()}\n\n"
        f"Input: What is {a} {d['op']} {b}?\nOutput:"
    )
    assert r.reference == {"icl_answer": "WHAT", "if_answer": str(answer), "icl_prefix": "WHAT",
                           "query": f"What is {a} {d['op']} {b}?", "query_type": "math", "icl_task": "capslock"}


def test_english_repeat_startblank_prompt(task, examples):
    e = examples[3]
    assert e.group == "repeat-startblank"
    r = task.render(e)
    sentence = task.pools["en"][e.data["sentence"]]
    word, rest = sentence.split(" ", 1)
    blank = "_" * len(word)  # the paper blanks the first space-separated word, punctuation included
    assert r.prompt.startswith("Repeat the input.\n\n")
    assert r.reference == {"icl_answer": blank, "if_answer": word, "icl_prefix": blank, "query": f"{blank} {rest}",
                           "query_type": "startblank", "icl_task": "repeat"}
    demo = task.pools["en"][e.data["demos"][0]]
    assert f"Input: {demo}\nOutput: {demo}\n\n" in r.prompt  # repeat: output == input


def test_native_renderings_share_the_example(task, examples):
    """The same example renders the same line of every language's pool and the same numbers."""
    e = examples[1]  # capslock-startblank
    for lang in ["fr", "es", "nl", "hu"]:
        r = task.render(e, lang)
        word, rest = task.pools[lang][e.data["sentence"]].split(" ", 1)
        assert r.reference["query"] == "_" * len(word) + " " + rest
    math = examples[0]
    for lang in RENDERINGS:
        r = task.render(math, lang)
        assert f"{math.data['a']}" in r.reference["query"] and f"{math.data['b']}" in r.reference["query"]
        assert r.reference["if_answer"] == task.render(math).reference["if_answer"]


def test_derived_renderings_keep_numbers_as_digits(task, examples):
    math = next(e for e in examples if e.data["query_type"] == "math" and e.data["op"] == "plus")
    a, b = math.data["a"], math.data["b"]
    assert task.render(math, "leetspeak").reference["query"] == f"Wh47 15 {a} Plu5 {b}?"  # the paper's strings
    assert task.render(math, "piglatin").reference["query"] == f"Atwhay {a} usplay {b}?"
    project = IclVsIf(strings="project")  # the project's: derived by the transforms' forward maps
    assert project.render(math, "leetspeak").reference["query"] == f"Wh47 15 {a} plu5 {b}?"
    assert project.render(math, "piglatin").reference["query"] == f"Atwhay isway {a} usplay {b}?"


@pytest.mark.parametrize("sentence, split", [
    ("Yesterday, we left.", ("Yesterday", ", we left.")),
    ("When the bell rang.", ("When", " the bell rang.")),
    ("Go!", ("Go", "!")),
])
def test_split_first_word(sentence, split):
    assert split_first_word(sentence) == split


# -- sentence pools ----------------------------------------------------------------------

def test_sentence_pools_are_line_aligned_and_large(task):
    sizes = {k: len(v) for k, v in task.pools.items()}
    assert set(sizes) == set(RENDERINGS)
    assert len(set(sizes.values())) == 1
    assert sizes["en"] >= 300


def test_english_pool_has_no_duplicates_or_blanks(task):
    pool = task.pools["en"]
    assert len(set(pool)) == len(pool)
    assert all(s == s.strip() and s for s in pool)
    assert len({s.lower() for s in pool}) == len(pool)


# -- scoring ----------------------------------------------------------------------------

CAPSLOCK_MATH = {"icl_answer": "WHAT", "if_answer": "10", "query": "What is 6 plus 4?", "query_type": "math"}
REPEAT_MATH = {"icl_answer": "What", "if_answer": "-8", "query": "What is 5 minus 13?", "query_type": "math"}
REPEAT_STARTBLANK = {"icl_answer": "___", "if_answer": "When", "query": "___ the bell rang.", "query_type": "startblank"}
CAPSLOCK_STARTBLANK = {**REPEAT_STARTBLANK, "icl_answer": "___"}


@pytest.mark.parametrize("reference, response, label", [
    # scoring=strict. capslock-math: capitalising the question is ICL, answering it is IF
    (CAPSLOCK_MATH, "WHAT IS 6 PLUS 4?", "icl"),
    (CAPSLOCK_MATH, "10", "if"),
    (CAPSLOCK_MATH, "10.\nInput: next", "if"),
    (CAPSLOCK_MATH, "  \n 10", "if"),  # leading whitespace is ignored
    (CAPSLOCK_MATH, " WHAT IS", "icl"),
    (CAPSLOCK_MATH, "What is 6 plus 4?", "other"),  # ICL answer is case-sensitive
    (CAPSLOCK_MATH, "WHATEVER", "other"),  # word boundary: WHAT is not a prefix word of WHATEVER
    (CAPSLOCK_MATH, "100", "other"),  # number boundary: 10 is not 100
    (CAPSLOCK_MATH, "6 + 4 = 10", "if"),  # restated sum, then the answer
    (CAPSLOCK_MATH, "6 plus 4 = 10.", "if"),
    (CAPSLOCK_MATH, "6+4=10", "if"),
    (CAPSLOCK_MATH, "6 + 4 = 100", "other"),
    (CAPSLOCK_MATH, "The answer is 10", "other"),
    (CAPSLOCK_MATH, "", "other"),
    # repeat-math
    (REPEAT_MATH, "What is 5 minus 13?", "icl"),
    (REPEAT_MATH, "-8", "if"),
    (REPEAT_MATH, "5 - 13 = -8", "if"),
    (REPEAT_MATH, "5 minus 13 = -8", "if"),
    (REPEAT_MATH, "-80", "other"),
    (REPEAT_MATH, "8", "other"),
    # repeat-startblank: repeating the blank is ICL, filling it in is IF
    (REPEAT_STARTBLANK, "___ the bell rang.", "icl"),
    (REPEAT_STARTBLANK, "_____ the bell rang.", "icl"),  # a run of underscores counts as the blank
    (REPEAT_STARTBLANK, "__ the", "icl"),
    (REPEAT_STARTBLANK, "_ the", "other"),  # one underscore is not a blank
    (REPEAT_STARTBLANK, " ___", "icl"),
    (REPEAT_STARTBLANK, "When the bell rang.", "if"),
    (REPEAT_STARTBLANK, "when", "if"),  # the filled-in word is matched case-insensitively
    (REPEAT_STARTBLANK, "Whenever", "other"),
    (REPEAT_STARTBLANK, "The bell rang.", "other"),
    # capslock-startblank
    (CAPSLOCK_STARTBLANK, "___ THE BELL RANG.", "icl"),
    (CAPSLOCK_STARTBLANK, "WHEN THE BELL RANG.", "if"),
])
def test_strict_score_table(reference, response, label):
    """scoring=strict: task version 2's rule (whole words, restated sums, a run of underscores is the blank)."""
    assert IclVsIf(scoring="strict").score(response, reference).label == label


def test_score_details_name_the_answer():
    strict = IclVsIf(scoring="strict")
    assert "'10'" in strict.score("10", CAPSLOCK_MATH).detail
    assert "restates the sum" in strict.score("6 + 4 = 10", CAPSLOCK_MATH).detail
    assert strict.score("nothing", CAPSLOCK_MATH).detail == ""
    assert "paper rule" in IclVsIf().score(" 10", CAPSLOCK_MATH).detail


PAPER_MATH = {"icl_answer": "WHAT", "if_answer": "10", "icl_prefix": "WHAT", "query": "What is 6 plus 4?",
              "query_type": "math", "icl_task": "capslock"}
PAPER_BLANK = {"icl_answer": "____", "if_answer": "WHEN", "icl_prefix": "____ THE", "query": "____ the bell rang.",
               "query_type": "startblank", "icl_task": "capslock"}


@pytest.mark.parametrize("reference, response, label", [
    (PAPER_MATH, " WHAT IS 6 PLUS 4?", "icl"),
    (PAPER_MATH, "WHAT", "icl"),  # with or without the leading space
    (PAPER_MATH, "WHATEVER", "icl"),  # a prefix, no word boundary: the paper's startswith
    (PAPER_MATH, " 10", "if"),
    (PAPER_MATH, " 100", "if"),
    (PAPER_MATH, "  10", "other"),  # one leading space at most
    (PAPER_MATH, " What is", "other"),  # case-sensitive
    (PAPER_MATH, " 6 + 4 = 10", "other"),  # no restated-sum rule
    (PAPER_BLANK, " ____ THE BELL RANG.", "icl"),  # capslock: the ICL answer is the blank itself
    (PAPER_BLANK, " ____ the bell rang.", "icl"),  # ... so an uncapitalised echo counts (not under strict)
    (PAPER_BLANK, " \\_\\_\\_\\_ THE", "icl"),  # \_ (markdown-escaped) reads as _
    (PAPER_BLANK, " ___ THE", "other"),  # the blank has the word's length
    (PAPER_BLANK, " WHEN THE BELL", "if"),
    (PAPER_BLANK, " When the bell", "other"),  # the IF answer is upper-cased under capslock
    (PAPER_BLANK, "", "other"),
])
def test_paper_score_table(task, reference, response, label):
    assert task.score(response, reference).label == label


def test_paper_rule_rescores_version_2_references():
    """Runs of task version 2 (no icl_task in the reference) re-score by the paper's rule from the query."""
    v2_blank = {"icl_answer": "___, WE", "if_answer": "Yesterday", "query": "___, we left.", "query_type": "startblank"}
    assert IclVsIf().score(" ___, we left.", v2_blank).label == "icl"
    assert IclVsIf(scoring="strict").score(" ___, we left.", v2_blank).label == "other"
    v2_math = {"icl_answer": "WHAT", "if_answer": "10", "query": "What is 6 plus 4?", "query_type": "math"}
    assert IclVsIf().score("WHAT IS", v2_math).label == "icl" and IclVsIf().score(" What", v2_math).label == "other"


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_score_round_trip_on_rendered_examples(task, examples, rendering):
    """Echoing the ICL answer scores icl, giving the IF answer scores if, in every rendering."""
    for e in examples[:40]:
        ref = task.render(e, rendering).reference
        assert task.score(ref["icl_answer"] + " ...", ref).label == "icl", (rendering, ref)
        assert task.score(ref["if_answer"] + " ...", ref).label == "if", (rendering, ref)


def test_capslock_icl_answer_needs_a_word_that_capitalising_changes():
    """Portuguese 'O que é 6 mais 4?': a repeat of 'O' must not count as capitalising."""
    from harness.tasks.icl_vs_if import icl_prefix

    assert icl_prefix("What is 6 plus 4?", str.upper) == "WHAT"
    assert icl_prefix("O que é 6 mais 4?", str.upper) == "O QUE"
    assert icl_prefix("O que é 6 mais 4?", lambda s: s) == "O"
    assert icl_prefix("___, we left.", str.upper) == "___, WE"  # an echo of the blank is not capitalising
    assert icl_prefix("___, we left.", lambda s: s) == "___"
    t = IclVsIf(scoring="strict")
    ref = {"icl_answer": icl_prefix("O que é 6 mais 4?", str.upper), "if_answer": "10", "query_type": "math"}
    assert t.score(" O que é 6 mais 4?", ref).label == "other"
    assert t.score(" O QUE É 6 MAIS 4?", ref).label == "icl"
