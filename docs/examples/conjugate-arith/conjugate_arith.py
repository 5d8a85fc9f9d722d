"""conjugate_arith: arithmetic questions as a conjugate task plugin (docs/writing-a-task.md)."""
from __future__ import annotations

import random
import re

from harness.errors import ConfigError
from harness.task import Task, interleave
from harness.types import Example, Rendered, Sampling, Score

OPS = {"plus": lambda a, b: a + b, "times": lambda a, b: a * b}
PROMPTS = {  # rendering -> a sandboxed Jinja2 template (Task.render_template)
    "en": "Answer with a number only.\nWhat is {{ a }} {{ op }} {{ b }}?\nAnswer:",
    "fr": "Répondez uniquement par un nombre.\nCombien font {{ a }} {{ op }} {{ b }} ?\nRéponse :",
}
OP_WORDS = {"en": {"plus": "plus", "times": "times"}, "fr": {"plus": "plus", "times": "fois"}}
NUMBER = re.compile(r"-?\d+")


def positive_int(value, option: str) -> int:
    """An option as a whole number >= 1: 5 from the command line or YAML, "5" from a quoted YAML value."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or value < 1:
        raise ConfigError(f"task_options.arith.{option}: expected a whole number >= 1, got {value!r}; "
                          f"e.g. --task-option arith.{option}=10")
    return value


def boolean(value, option: str) -> bool:
    """An option as True/False: true/false from the command line or YAML, or the strings "true"/"false"."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(f"task_options.arith.{option}: expected true or false, got {value!r}")
    return value


class Arith(Task):
    """Arithmetic questions (What is 7 plus 5?) answered with a number; English and French prompts."""

    name = "arith"
    display_name = "Arithmetic"
    version = "1"  # bump when examples, prompts or scoring change; manifest.json records it
    labels = ("correct", "wrong", "no_number")
    primary_label = "correct"  # the rate recovery is computed on
    renderings = frozenset({"en", "fr"})  # lang:fr uses the French prompt below, no translation
    sampling = Sampling(max_new_tokens=8, stop=("\n",))
    probe_wording = {"target": "right", "other": "off by one",
                     "description": 'the right result (" 12") and the result plus one (" 13")'}

    def __init__(self, n: int = 10, strict: bool = False) -> None:  # --task-option arith.n=20, arith.strict=true
        self.n = positive_int(n, "n")
        self.strict = boolean(strict, "strict")

    def examples(self, seed: int) -> list[Example]:
        groups = {}
        for op in OPS:
            rng = random.Random(f"{seed}-{op}")  # one stream per group: deterministic, independent of n elsewhere
            groups[op] = [Example(f"{op}-{i:03d}", op, {"a": rng.randint(2, 12), "b": rng.randint(2, 12), "op": op})
                          for i in range(self.n)]
        return interleave(groups)  # plus, times, plus, ...: every --limit prefix has both groups

    def render(self, example: Example, rendering: str = "en") -> Rendered:
        d = example.data
        words = {"a": d["a"], "b": d["b"], "op": OP_WORDS[rendering][d["op"]]}
        prompt = self.render_template(PROMPTS[rendering], words, f"arith/{rendering}")
        return Rendered(prompt, {"answer": OPS[d["op"]](d["a"], d["b"])}, rendering)

    def score(self, response: str, reference: dict) -> Score:
        text = response.strip()
        found = NUMBER.match(text) if self.strict else NUMBER.search(text)  # strict: the number comes first
        if found is None:
            return Score("no_number")
        got = int(found.group())
        return Score("correct" if got == reference["answer"] else "wrong", f"answered {got}")

    def probe_continuations(self, reference: dict) -> dict[str, str]:
        return {"correct": f" {reference['answer']}", "wrong": f" {reference['answer'] + 1}"}
