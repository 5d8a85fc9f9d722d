"""toy_choice: a small project-written multiple-choice task, scored by log-likelihood (nothing is generated).

Each prompt is a sentence to complete ("The opposite of hot is"); the three
answer options are one-word continuations (" cold", " tall", " green"), of
which one is right. The model's answer is the option it finds most likely;
it exists to exercise the ``multiple_choice`` output type end to end (and as
a template for a real multiple-choice benchmark), not to measure anything.

Two configs of 12 items each: ``opposites`` and ``categories``. The options'
order (and so the gold choice's name, ``a``/``b``/``c``) is shuffled per
example from the seed.
"""
from __future__ import annotations

import random

from harness.task import Task, interleave
from harness.types import Example, Rendered, Score

# (sentence to complete, right word, two wrong words)
ITEMS: dict[str, list[tuple[str, str, str, str]]] = {
    "opposites": [
        ("The opposite of hot is", "cold", "tall", "green"),
        ("The opposite of up is", "down", "blue", "loud"),
        ("The opposite of big is", "small", "happy", "wet"),
        ("The opposite of fast is", "slow", "round", "sweet"),
        ("The opposite of day is", "night", "chair", "seven"),
        ("The opposite of open is", "closed", "yellow", "heavy"),
        ("The opposite of happy is", "sad", "wooden", "early"),
        ("The opposite of early is", "late", "salty", "soft"),
        ("The opposite of light is", "dark", "north", "fresh"),
        ("The opposite of full is", "empty", "proud", "tiny"),
        ("The opposite of old is", "young", "metal", "quiet"),
        ("The opposite of rich is", "poor", "square", "cold"),
    ],
    "categories": [
        ("A dog is a kind of", "animal", "fruit", "tool"),
        ("An apple is a kind of", "fruit", "animal", "city"),
        ("Red is a kind of", "color", "bird", "number"),
        ("A hammer is a kind of", "tool", "flower", "planet"),
        ("Paris is a kind of", "city", "metal", "song"),
        ("A rose is a kind of", "flower", "tool", "river"),
        ("Seven is a kind of", "number", "animal", "color"),
        ("Iron is a kind of", "metal", "fruit", "city"),
        ("A sparrow is a kind of", "bird", "number", "tool"),
        ("Mars is a kind of", "planet", "flower", "metal"),
        ("The Nile is a kind of", "river", "color", "bird"),
        ("A violin is a kind of", "instrument", "planet", "fruit"),
    ],
}
NAMES = ("a", "b", "c")


class ToyChoice(Task):
    """Toy multiple choice (complete a sentence with one of three words), scored by log-likelihood."""

    name = "toy_choice"
    version = "1"
    labels = ("correct", "incorrect")
    primary_label = "correct"
    output_type = "multiple_choice"

    def examples(self, seed: int) -> list[Example]:
        groups: dict[str, list[Example]] = {}
        for group, items in ITEMS.items():
            rng = random.Random(f"{seed}-{group}")
            exs = []
            for i, (stem, right, *wrong) in enumerate(items):
                words = [right, *wrong]
                rng.shuffle(words)
                exs.append(Example(f"{group}-{i:03d}", group, {"stem": stem, "options": dict(zip(NAMES, words)),
                                                               "gold": NAMES[words.index(right)]}))
            groups[group] = exs
        return interleave(groups)

    def render(self, example: Example, rendering: str = "en") -> Rendered:
        d = example.data
        prompt = f"Complete the sentence with one word.\n{d['stem']}"
        return Rendered(prompt, {"options": dict(d["options"]), "gold": d["gold"]}, rendering)

    def choices(self, reference: dict) -> dict[str, str]:
        return {name: " " + word for name, word in reference["options"].items()}

    def score(self, response: str, reference: dict) -> Score:
        """A response naming a choice (``"b"``) or giving its word: correct when it is the gold one."""
        text = response.strip().lower()
        gold = reference["gold"]
        ok = text == gold or text.startswith(reference["options"][gold].lower())
        return Score("correct" if ok else "incorrect")
