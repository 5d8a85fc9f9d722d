"""morse: International Morse code, with a small escape scheme that makes it exact.

Forward writes one *token* per character and separates tokens with one space;
a space in the text becomes the token ``/``, so words are separated by
`` / `` as in written Morse::

    sos             -> ... --- ...
    what is 7?      -> .-- .... .- - / .. ... / --... ..--..

Plain Morse covers lower-case ``a``-``z``, digits ``0``-``9``, the space and
the punctuation ``. , ? ' ! / ( ) & : ; = + - _ " $ @``. Everything else is
escaped, so that the inverse is **exact** (``inverse(forward(x)) == x`` for
every string):

* an upper-case ASCII letter is its Morse code after ``^``: ``SOS`` -> ``^... ^--- ^...``
  (Morse itself has no case);
* a newline stays a newline, with no spaces around it, so a multi-line prompt
  keeps its lines: ``a\\nb`` -> ``.-\\n-...``;
* any other character (tab, ``#``, ``^``, ``*``, ``é``, emoji, ...) is ``#``
  followed by its Unicode code point in lower-case hex: tab -> ``#9``,
  ``é`` -> ``#e9``, ``#`` -> ``#23``.

Lower-case text of letters, digits and that punctuation, on one or more lines,
is therefore plain Morse with no escapes.

Inverse reads tokens between whitespace. On model responses it is lenient: a
token that is not Morse, ``/``, ``^``+letter code or ``#``+hex is kept as
written together with the whitespace around it (``the answer is .---- ..---``
-> ``the answer is 12``); a run of two or more spaces between Morse tokens
reads as a word break; other whitespace (newlines, tabs) is kept. A plain
English word that happens to be Morse (``-`` is ``t``) cannot be told apart.
"""
from __future__ import annotations

import re
import string

from harness.transform import Transform

MORSE = {
    "a": ".-", "b": "-...", "c": "-.-.", "d": "-..", "e": ".", "f": "..-.", "g": "--.", "h": "....",
    "i": "..", "j": ".---", "k": "-.-", "l": ".-..", "m": "--", "n": "-.", "o": "---", "p": ".--.",
    "q": "--.-", "r": ".-.", "s": "...", "t": "-", "u": "..-", "v": "...-", "w": ".--", "x": "-..-",
    "y": "-.--", "z": "--..",
    "0": "-----", "1": ".----", "2": "..---", "3": "...--", "4": "....-", "5": ".....", "6": "-....",
    "7": "--...", "8": "---..", "9": "----.",
    ".": ".-.-.-", ",": "--..--", "?": "..--..", "'": ".----.", "!": "-.-.--", "/": "-..-.", "(": "-.--.",
    ")": "-.--.-", "&": ".-...", ":": "---...", ";": "-.-.-.", "=": "-...-", "+": ".-.-.", "-": "-....-",
    "_": "..--.-", '"': ".-..-.", "$": "...-..-", "@": ".--.-.",
}
DECODE = {code: ch for ch, code in MORSE.items()}
assert len(DECODE) == len(MORSE), "Morse codes must be unique"

WORD_SEP = "/"  # the token for a space
UPPER = "^"  # prefix of an upper-case ASCII letter
ESCAPE = "#"  # prefix of a hex code point
_HEX = re.compile(r"#([0-9a-fA-F]{1,6})")
_SPLIT = re.compile(r"(\s+)")


def _token(c: str) -> str:
    code = MORSE.get(c)
    if code is not None:
        return code
    if c == " ":
        return WORD_SEP
    if c in string.ascii_uppercase:
        return UPPER + MORSE[c.lower()]
    return f"{ESCAPE}{ord(c):x}"


def to_morse(text: str) -> str:
    out: list[str] = []
    after_token = False
    for c in text:
        if c == "\n":
            out.append("\n")
            after_token = False
        else:
            if after_token:
                out.append(" ")
            out.append(_token(c))
            after_token = True
    return "".join(out)


def _decode_token(tok: str) -> str | None:
    """The character a token stands for, or None when it is not one of ours."""
    if tok == WORD_SEP:
        return " "
    ch = DECODE.get(tok)
    if ch is not None:
        return ch
    if tok.startswith(UPPER):
        ch = DECODE.get(tok[1:])
        return ch.upper() if ch is not None and ch in string.ascii_lowercase else None
    m = _HEX.fullmatch(tok)
    if m:
        cp = int(m.group(1), 16)
        return chr(cp) if cp <= 0x10FFFF else None
    return None


def from_morse(text: str) -> str:
    parts = _SPLIT.split(text)  # token, whitespace, token, ..., token (end tokens may be "")
    decoded = [_decode_token(p) if p else "" for p in parts[::2]]
    out: list[str] = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            d = decoded[i // 2]
            out.append(part if d is None else d)
        elif decoded[i // 2] is None or decoded[i // 2 + 1] is None:
            out.append(part)  # whitespace next to a literal token is kept as written
        elif part.strip(" "):
            out.append(part.replace(" ", ""))  # newlines (and tabs) are kept, spaces are separators
        elif len(part) > 1:
            out.append(" ")  # a wide gap between Morse tokens is a word break
    return "".join(out)


class Morse(Transform):
    """Morse code (sos -> ... --- ...), escapes for case and other characters; exact."""

    name = "morse"
    version = "1"
    exact = True

    def forward(self, text: str) -> str:
        return to_morse(text)

    def inverse(self, text: str) -> str:
        return from_morse(text)
