"""The built-in English instruction-tuning data set (harness.training.instruct_data)."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from harness.training import instruct_data as D

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = re.compile(r"[A-Za-z0-9 \n.,?!'\"_:;()*+\-$]*")


@pytest.fixture(scope="module")
def big():
    return D.generate(5000, seed=0)


@pytest.fixture(scope="module")
def rows():
    return D.generate(2000, seed=0)


def test_api():
    assert D.GENERATORS["assistant-en"] is D.generate
    assert set(D.CATEGORIES) == {"arithmetic", "fill_blank", "context_qa", "rewrite_format", "list", "classify",
                                 "short_answer", "refusal"}
    assert abs(sum(D.WEIGHTS.values()) - 1) < 1e-9
    for row in D.generate(50, seed=3):
        assert set(row) == {"instruction", "response", "category"}
        assert row["category"] in D.CATEGORIES
        assert row["instruction"] and row["response"]


def test_deterministic_for_a_seed():
    assert D.generate(300, seed=7) == D.generate(300, seed=7)
    assert D.refusal_prompts("test") == D.refusal_prompts("test")


def test_different_seeds_differ():
    a, b = D.generate(300, seed=0), D.generate(300, seed=1)
    assert a != b
    assert len({r["instruction"] for r in a} & {r["instruction"] for r in b}) < 150


@pytest.mark.parametrize("n", [0, 1, 7, 100, 1234])
def test_n_respected(n):
    assert len(D.generate(n, seed=2)) == n


def test_no_duplicate_instructions(rows, big):
    for data in (rows, big):
        instructions = [r["instruction"] for r in data]
        assert len(instructions) == len(set(instructions))


def test_category_proportions(rows):
    counts = Counter(r["category"] for r in rows)
    assert set(counts) == set(D.CATEGORIES)
    for cat, w in D.WEIGHTS.items():
        assert abs(counts[cat] / len(rows) - w) < 0.01, (cat, counts[cat])
    assert abs(counts["refusal"] / len(rows) - 0.15) < 0.01


def test_proportions_hold_at_5000(big):
    counts = Counter(r["category"] for r in big)
    for cat, w in D.WEIGHTS.items():
        assert abs(counts[cat] / len(big) - w) < 0.01, (cat, counts[cat])


def test_arithmetic_answers_are_correct(rows):
    ops = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b,
           "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    shape = re.compile(r"^(?:What is|Calculate|How much is|Compute) (\d+) (plus|minus|times|[+*-]) (\d+)[?.]")
    eval_shape = re.compile(r"^What is (\d+) (plus|minus|times) (\d+)\?$")
    arith = [r for r in rows if r["category"] == "arithmetic"]
    n_eval_shape = 0
    for r in arith:
        assert re.fullmatch(r"-?\d+", r["response"]), r
        m = shape.match(r["instruction"])
        if m:
            a, op, b = int(m[1]), m[2], int(m[3])
            assert 2 <= a <= 30 and 2 <= b <= 30
            assert int(r["response"]) == ops[op](a, b), r
        elif m := re.match(r"^Add (\d+) and (\d+)\.$", r["instruction"]):
            assert int(r["response"]) == int(m[1]) + int(m[2])
        elif m := re.match(r"^Subtract (\d+) from (\d+)\.$", r["instruction"]):
            assert int(r["response"]) == int(m[2]) - int(m[1])
        elif m := re.match(r"^Multiply (\d+) by (\d+)\.$", r["instruction"]):
            assert int(r["response"]) == int(m[1]) * int(m[2])
        else:
            pytest.fail(f"unparsed arithmetic instruction {r['instruction']!r}")
        n_eval_shape += bool(eval_shape.match(r["instruction"]))
    assert n_eval_shape > len(arith) / 3  # the evaluation's own shape dominates


def test_fill_blank_answers_complete_a_known_sentence(rows):
    known = set(D.fill_sentences())
    fills = [r for r in rows if r["category"] == "fill_blank"]
    first = 0
    for r in fills:
        sentence = r["instruction"].split(": ", 1)[1] if ": " in r["instruction"] else r["instruction"].split("? ", 1)[1]
        assert sentence.count("___") == 1
        assert sentence.replace("___", r["response"]) in known, r
        first += sentence.startswith("___ ")
    assert 0.2 < first / len(fills) < 0.8  # both the first-word and the mid-sentence variant


def test_fill_sentences_are_project_written():
    assert len(D.FILL_SENTENCES) >= 60
    assert all(s.count("[") >= 1 and s.count("[") == s.count("]") for s in D.FILL_SENTENCES)
    eval_pool = ROOT / "tasks" / "data" / "icl_vs_if" / "sentences_en.txt"
    if eval_pool.exists():
        used = {line.strip().lower() for line in eval_pool.read_text(encoding="utf-8").splitlines()}
        assert not used & {s.lower() for s in D.fill_sentences()}


def test_context_qa_has_a_context_and_a_question(rows):
    qa = [r for r in rows if r["category"] == "context_qa"]
    assert all(r["instruction"].startswith("Context: ") and " Question: " in r["instruction"] for r in qa)
    questions = {re.sub(r"[A-Z][a-z]+|\d+", "X", r["instruction"].split(" Question: ")[1]) for r in qa}
    assert len(questions) >= 8


def test_rewrite_answers(rows):
    for r in (r for r in rows if r["category"] == "rewrite_format"):
        ins, out = r["instruction"], r["response"]
        if m := re.fullmatch(r"Write (\d+) in words\.|Spell out the number (\d+)\.", ins):
            assert out == D.number_words(int(m[1] or m[2]))
        elif m := re.fullmatch(r"Write the word '(\w+)' backwards\.|Spell '(\w+)' backwards\.", ins):
            assert out == (m[1] or m[2])[::-1]
        elif ins.startswith("Put these words in alphabetical order: "):
            assert out.split(", ") == sorted(ins.split(": ")[1].rstrip(".").split(", "))
        elif m := re.fullmatch(r'How many words are in this sentence: "(.*)"', ins):
            assert int(out) == len(m[1].split())
        elif ins.startswith(("Convert this sentence to lowercase: ", "Rewrite in lowercase letters: ")):
            assert out == ins.split(": ", 1)[1].lower()
    assert D.number_words(42) == "forty-two" and D.number_words(0) == "zero"
    assert D.number_words(105) == "one hundred and five" and D.number_words(990) == "nine hundred and ninety"


def test_lists_are_numbered(rows):
    for r in (r for r in rows if r["category"] == "list"):
        lines = r["response"].split("\n")
        assert 2 <= len(lines) <= 5
        assert [line.split(". ")[0] for line in lines] == [str(i) for i in range(1, len(lines) + 1)]
        assert D.ONES[len(lines)] in r["instruction"].split()


def test_word_lists_are_large_enough():
    assert len(D.FILL_SENTENCES) >= 60
    assert len(D.CAPITALS) + len(D.OPPOSITES) + len(D.SYNONYMS) + len(D.FACTS) >= 60
    assert len(D.REFUSAL_TOPICS) >= 30
    assert len({t[0] for t in D.REFUSAL_TOPICS}) == len(D.REFUSAL_TOPICS)


def test_refusal_split_is_held_out(big):
    test, train = D.refusal_prompts("test"), D.refusal_prompts("train")
    test_topics, train_topics = D.refusal_topics("test"), D.refusal_topics("train")
    assert 0.2 <= len(test_topics) / len(D.REFUSAL_TOPICS) <= 0.3
    assert not set(test_topics) & set(train_topics)
    assert len(test) == len(test_topics) * len(D.REFUSAL_PHRASINGS) and len(set(test)) == len(test)
    assert not set(test) & set(train)
    instructions = [r["instruction"] for r in big]
    assert not set(test) & set(instructions)
    for ins in instructions:
        assert not any(topic in ins for topic in test_topics), ins
    used = {t for t in train_topics for r in big if r["category"] == "refusal" and t in r["instruction"]}
    assert used == set(train_topics)  # every train topic is used, no test topic is
    with pytest.raises(ValueError):
        D.refusal_prompts("dev")


def test_refusal_responses(big):
    refusals = [r for r in big if r["category"] == "refusal"]
    assert all(r["response"].startswith(D.REFUSAL_PREFIXES) for r in refusals)
    assert len({r["response"] for r in refusals}) > 100  # varied
    others = [r for r in big if r["category"] != "refusal"]
    assert not any(r["response"].startswith(D.REFUSAL_PREFIXES) for r in others)


def test_text_is_plain_english(big):
    for r in big:
        for text in (r["instruction"], r["response"]):
            assert ALLOWED.fullmatch(text), text
    long = sum(len(r["response"].split()) >= 40 for r in big)
    assert long == 0


def test_no_evaluation_tasks(big):
    banned = re.compile(r"capitali[sz]|upper ?case|repeat the input|repeat this|all caps", re.I)
    assert not [r["instruction"] for r in big if banned.search(r["instruction"])]


def test_write_jsonl(tmp_path):
    rows = D.generate(20, seed=5)
    path = tmp_path / "sub" / "data.jsonl"
    D.write_jsonl(path, rows)
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == rows
