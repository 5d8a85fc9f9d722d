"""piglatin: move a word's leading consonants to its end and add "ay" ("way" after a vowel).

Forward is deterministic: ``string`` -> ``ingstray``, ``apple`` -> ``appleway``,
``Queen`` -> ``Eenquay``; capitalisation and punctuation are kept, digits are
untouched. Inverse is **best-effort**: plain pig latin is ambiguous, because the
consonants before ``ay`` mix the word's own ending with the moved onset
(``usplay`` is ``plus``, but could be ``splu``). The inverse strips ``way``
after a vowel-initial stem, and otherwise moves back the longest common
English onset cluster (``str``, ``th``, ``qu``, ...) found before ``ay``,
else one consonant: ``ingstray`` -> ``string`` and ``eethray`` -> ``three``
come back, but ``usplay`` -> ``splu`` and ``athay`` -> ``tha`` do not. Tasks
that need exact text should render pig latin natively.
"""
from __future__ import annotations

import re

from harness.transform import Transform

VOWELS = set("aeiouAEIOU")
_WORD = re.compile(r"[A-Za-z]+")
# onset clusters tried longest first when undoing a move
_CLUSTERS = sorted(
    """str scr spr spl squ thr shr sch chr phr
    th ch sh wh ph qu bl br cl cr dr fl fr gl gr pl pr sc sk sl sm sn sp st sw tr tw wr kn gn""".split(),
    key=len,
    reverse=True,
)


def _match_case(src: str, out: str) -> str:
    if len(src) > 1 and src.isupper():
        return out.upper()
    if src[0].isupper():
        return out[0].upper() + out[1:].lower()
    return out.lower() if src.islower() else out


def _pig_word(word: str) -> str:
    low = word.lower()
    if low[0] in "aeiou":
        out = low + "way"
    else:
        i = 0
        while i < len(low) and (low[i] not in "aeiou" and not (i > 0 and low[i] == "y")):
            i += 1 if not (low[i] == "q" and low[i + 1 : i + 2] == "u") else 2
        out = low[i:] + low[:i] + "ay"
    return _match_case(word, out)


def _unpig_word(word: str) -> str:
    low = word.lower()
    if len(low) > 3 and low.endswith("way") and low[0] in "aeiou":
        out = low[:-3]
    elif len(low) > 2 and low.endswith("ay"):
        stem = low[:-2]
        j = len(stem)
        while j > 0 and stem[j - 1] not in "aeiou":
            j -= 1
        run = stem[j:]
        if stem.endswith("qu"):
            run = "qu" if not stem[:-2] or stem[:-2][-1:] in "aeiou" else stem[len(stem) - 3 :]
        move = next((c for c in _CLUSTERS if run.endswith(c)), run[-1:] if run else "")
        out = move + stem[: len(stem) - len(move)] if move else stem
    else:
        return word
    return _match_case(word, out)


def to_piglatin(text: str) -> str:
    return _WORD.sub(lambda m: _pig_word(m.group(0)), text)


def from_piglatin(text: str) -> str:
    return _WORD.sub(lambda m: _unpig_word(m.group(0)), text)


class PigLatin(Transform):
    """Pig latin (string -> ingstray); inverse best-effort."""

    name = "piglatin"
    display_name = "Pig Latin"
    version = "1"
    exact = False
    native = "piglatin"

    def forward(self, text: str) -> str:
        return to_piglatin(text)

    def inverse(self, text: str) -> str:
        return from_piglatin(text)
