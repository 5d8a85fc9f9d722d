"""reverse_words: write each word's letters backwards, leaving everything else in place.

A *word* is a maximal run of letters (Unicode letters, ``str.isalpha``).
Digits, punctuation, underscores, combining marks and whitespace stay exactly
where they are: ``What is 7 plus 5?`` -> ``tahW si 7 sulp 5?``,
``don't`` -> ``nod't``. Case travels with its letter (``Hello`` -> ``olleH``).

Reversing the same runs twice gives the text back (the runs do not move), so
the inverse is the forward map again and the transform is **exact**:
``inverse(forward(x)) == x`` for every string. Numbers are not reversed, so a
numeric answer survives the inverse.
"""
from __future__ import annotations

from itertools import groupby

from harness.transform import Transform


def reverse_words(text: str) -> str:
    """Reverse every maximal run of ``str.isalpha`` characters in place."""
    return "".join("".join(run)[::-1] if alpha else "".join(run) for alpha, run in groupby(text, str.isalpha))


class ReverseWords(Transform):
    """Each word's letters backwards (What is -> tahW si); exact."""

    name = "reverse_words"
    version = "1"
    exact = True

    def forward(self, text: str) -> str:
        return reverse_words(text)

    def inverse(self, text: str) -> str:
        return reverse_words(text)
