"""The cipher and encoding transforms (caesar, rot13, atbash, morse, base64, reverse_words) and chain:a+b."""
from __future__ import annotations

import base64
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ConjugateError, UnknownNameError
from harness.registry import TRANSFORMS, Entry
from harness.transform import Transform
from harness.translators.atbash import Atbash
from harness.translators.b64 import Base64, from_base64, to_base64
from harness.translators.caesar import Caesar, caesar_shift
from harness.translators.chain import Chain
from harness.translators.morse import MORSE, from_morse, to_morse
from harness.translators.reverse_words import reverse_words
from harness.translators.rot13 import Rot13

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# arbitrary Unicode text, and text weighted towards what prompts contain
ANY_TEXT = st.text() | st.text(st.characters(max_codepoint=0x7F)) | st.text(st.sampled_from("aZ 7?\n\t#^/.-é"))
CIPHERS = ["caesar", "caesar:3", "caesar:13", "caesar:-5", "caesar:100", "rot13", "atbash", "morse", "base64",
           "reverse_words"]
CHAINS = ["chain:caesar:3+reverse_words", "chain:rot13+base64", "chain:morse+base64", "chain:atbash+morse+rot13",
          "chain:base64+morse", "chain:reverse_words+caesar:7+base64", "chain:identity+atbash"]


# -- known answers -----------------------------------------------------------------

@pytest.mark.parametrize(
    "spec, text, out",
    [
        ("rot13", "Hello", "Uryyb"),
        ("rot13", "Why did the chicken cross the road?", "Jul qvq gur puvpxra pebff gur ebnq?"),
        ("caesar", "Hello, World!", "Khoor, Zruog!"),  # default shift 3
        ("caesar:3", "xyz XYZ abc", "abc ABC def"),  # wraps around, keeps case
        ("caesar:1", "HAL", "IBM"),
        ("caesar:-1", "IBM", "HAL"),
        ("caesar:29", "abc", "def"),  # modulo 26
        ("caesar:0", "abc", "abc"),
        ("atbash", "abc", "zyx"),
        ("atbash", "Hello", "Svool"),
        ("morse", "sos", "... --- ..."),
        ("morse", "SOS", "^... ^--- ^..."),  # upper case is marked with ^
        ("morse", "hello world", ".... . .-.. .-.. --- / .-- --- .-. .-.. -.."),
        ("morse", "what is 7 plus 5?", ".-- .... .- - / .. ... / --... / .--. .-.. ..- ... / ..... ..--.."),
        ("morse", "a\nb", ".-\n-..."),  # lines are kept
        ("morse", "a\tb#", ".- #9 -... #23"),  # other characters are escaped as #hex
        ("morse", "é😀", "#e9 #1f600"),
        ("base64", "Hello", "SGVsbG8="),
        ("base64", "What is 7 plus 5?", "V2hhdCBpcyA3IHBsdXMgNT8="),
        ("base64", "héllo", "aMOpbGxv"),  # UTF-8
        ("reverse_words", "What is 7 plus 5?", "tahW si 7 sulp 5?"),
        ("reverse_words", "Hello,  world!\n  don't", "olleH,  dlrow!\n  nod't"),
        ("reverse_words", "12 apples_and 3.5", "12 selppa_dna 3.5"),  # digits and underscores stay
        ("chain:caesar:1+reverse_words", "abc d", "dcb e"),
        ("chain:leetspeak+base64", "the", base64.b64encode(b"7h3").decode()),
    ],
)
def test_known_answers(spec, text, out):
    t = TRANSFORMS.create(spec)
    assert t.forward(text) == out
    assert t.inverse(out) == text


def test_each_module_function_matches_its_class():
    text = "The Quick brown fox, 12 times!"
    assert Caesar(5).forward(text) == caesar_shift(text, 5)
    assert Rot13().forward(text) == caesar_shift(text, 13) == Rot13().inverse(text)
    assert Atbash().forward(Atbash().forward(text)) == text
    assert to_morse(text) == TRANSFORMS.create("morse").forward(text)
    assert to_base64(text) == Base64().forward(text) == base64.b64encode(text.encode()).decode()
    assert reverse_words(text) == TRANSFORMS.create("reverse_words").forward(text)


def test_lower_case_morse_needs_no_escapes():
    text = "what is 7 plus 5? it's 12, (i think): a+b=c; x-y_z \"q\" $3 @me & you!/"
    out = to_morse(text)
    assert "^" not in out and "#" not in out
    assert set(out) <= set(".-/ ")
    assert from_morse(out) == text


def test_morse_table_is_international_morse():
    assert MORSE["e"] == "." and MORSE["t"] == "-" and MORSE["0"] == "-----" and MORSE["?"] == "..--.."
    assert len(set(MORSE.values())) == len(MORSE)


# -- lenient inverses on model responses ----------------------------------------------

@pytest.mark.parametrize(
    "response, text",
    [
        ("the answer is .---- ..---", "the answer is 12"),  # plain words are kept with their spaces
        (".- -...   -.-. -..", "ab cd"),  # a wide gap reads as a word break
        ("Hello world", "Hello world"),
        ("... ---\n... ", "so\ns"),
        ("^-- #41", "MA"),
        ("", ""),
    ],
)
def test_morse_inverse_is_lenient_on_responses(response, text):
    assert from_morse(response) == text


@pytest.mark.parametrize(
    "response, text",
    [
        ("SGVsbG8=", "Hello"),
        ("  SGVs\nbG8=\n", "Hello"),  # whitespace and line wrapping are ignored
        ("SGVsbG8", "Hello"),  # missing padding is added
        ("the answer is 12", "the answer is 12"),  # not base64: kept as written
        ("12", "12"),  # base64 of invalid UTF-8: kept as written
        ("", ""),
    ],
)
def test_base64_inverse_is_lenient_on_responses(response, text):
    assert from_base64(response) == text


# -- exactness: inverse(forward(x)) == x --------------------------------------------------

@pytest.mark.parametrize("spec", CIPHERS + CHAINS)
def test_declared_exact(spec):
    assert TRANSFORMS.create(spec).exact is True


@pytest.mark.parametrize("spec", CIPHERS + CHAINS)
@PROPERTY
@given(text=ANY_TEXT)
def test_exact_round_trip(spec, text):
    t = TRANSFORMS.create(spec)
    assert t.inverse(t.forward(text)) == text


@PROPERTY
@given(text=st.text(), shift=st.integers(-1000, 1000))
def test_caesar_round_trip_any_shift(text, shift):
    t = TRANSFORMS.create(f"caesar:{shift}")
    assert t.inverse(t.forward(text)) == text


@PROPERTY
@given(text=st.text(), parts=st.lists(st.sampled_from(CIPHERS), min_size=1, max_size=4))
def test_any_chain_of_exact_transforms_is_exact(text, parts):
    t = TRANSFORMS.create("chain:" + "+".join(parts))
    assert t.exact is True
    assert t.inverse(t.forward(text)) == text


@PROPERTY
@given(text=st.text(st.characters(codec="utf-8")))
def test_base64_matches_the_standard_library(text):
    assert to_base64(text) == base64.b64encode(text.encode("utf-8")).decode("ascii")


@PROPERTY
@given(text=st.text(st.characters(blacklist_categories=["Cs"]) | st.sampled_from("\ud800\udfff")))
def test_base64_round_trips_lone_surrogates(text):
    assert from_base64(to_base64(text)) == text


@lru_cache(maxsize=1)
def registered_exact_transforms() -> tuple[str, ...]:
    """Every registered transform that says exact=True and can be built from its bare name.

    Skipped explicitly: transforms that need an argument (lang:<code>, chain:<a+b>; covered by
    CIPHERS/CHAINS above) and those that only select a native rendering (no forward/inverse).
    """
    names = []
    for entry in TRANSFORMS.entries():
        factory = entry.load()
        param = entry.param or getattr(factory, "param", None)
        if param and not getattr(factory, "param_optional", False):
            continue
        t = TRANSFORMS.create(entry.name)
        if t.exact and not getattr(t, "requires_native", False):
            names.append(entry.name)
    return tuple(names)


def test_the_registry_lists_the_new_exact_transforms():
    assert {"identity", "caesar", "rot13", "atbash", "morse", "base64", "reverse_words"} <= set(
        registered_exact_transforms())
    assert "leetspeak" not in registered_exact_transforms()  # best-effort, not claimed exact


@PROPERTY
@given(text=ANY_TEXT, data=st.data())
def test_every_registered_exact_transform_round_trips(text, data):
    spec = data.draw(st.sampled_from(registered_exact_transforms()), label="transform")
    t = TRANSFORMS.create(spec)
    assert t.inverse(t.forward(text)) == text


# -- chain ----------------------------------------------------------------------------

class _Append(Transform):
    """Appends a letter; does not commute with another _Append."""

    name = "append"
    exact = True

    def __init__(self, letter: str):
        self.letter = letter

    @property
    def id(self):
        return f"append:{self.letter}"

    def forward(self, text):
        return text + self.letter

    def inverse(self, text):
        assert text.endswith(self.letter), (text, self.letter)
        return text[:-1]


def test_chain_forward_is_left_to_right_and_inverse_right_to_left(monkeypatch):
    monkeypatch.setitem(TRANSFORMS._entries, "append", Entry("append", _Append, "letter", "code"))
    t = TRANSFORMS.create("chain:append:x+append:y")
    assert t.forward("a") == "axy"  # x first, then y
    assert t.inverse("axy") == "a"  # y is removed first (it would fail the other way round)
    assert t.id == "chain:append:x+append:y"


def test_chain_order_with_real_non_commuting_transforms():
    # caesar then base64 is not base64 then caesar
    ab, ba = TRANSFORMS.create("chain:caesar:1+base64"), TRANSFORMS.create("chain:base64+caesar:1")
    assert ab.forward("Hi") == to_base64("Ij") == "SWo="
    assert ba.forward("Hi") == caesar_shift(to_base64("Hi"), 1) == "THl="
    # the inverse undoes the last part first ...
    assert ab.inverse("SWo=") == caesar_shift(from_base64("SWo="), -1) == "Hi"
    assert ba.inverse("THl=") == from_base64(caesar_shift("THl=", -1)) == "Hi"
    # ... and undoing in the other order would not give the text back
    assert from_base64(caesar_shift("SWo=", -1)) != "Hi"


def test_chain_ids_exactness_and_describe():
    t = TRANSFORMS.create("chain: caesar + reverse_words ")
    assert isinstance(t, Chain)
    assert t.id == "chain:caesar:3+reverse_words"
    assert t.exact is True and t.native is None
    d = t.describe()
    assert d["id"] == "chain:caesar:3+reverse_words" and d["exact"] is True and d["native"] is None
    assert [p["id"] for p in d["parts"]] == ["caesar:3", "reverse_words"]
    inexact = TRANSFORMS.create("chain:leetspeak+base64")
    assert inexact.exact is False  # one best-effort part makes the chain best-effort
    assert inexact.native is None  # leetspeak's native rendering is not used inside a chain
    assert inexact.inverse(inexact.forward("the cat")) == "the cat"
    assert TRANSFORMS.create("chain:rot13").forward("Hello") == "Uryyb"  # one part is allowed


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("chain", ConjugateError, r"needs an argument: write chain:<a\+b\[\+\.\.\.\]>"),
        ("chain:", ConjugateError, "needs an argument"),
        ("chain:rot13+", ConjugateError, "empty part"),
        ("chain:rot13++atbash", ConjugateError, "empty part"),
        ("chain:chain:rot13+atbash", ConjugateError, "cannot contain another chain"),
        ("chain:rot13+chain", ConjugateError, "cannot contain another chain"),
        ("chain:leetspeek+base64", UnknownNameError, "part 'leetspeek': unknown transform 'leetspeek'. Did you mean 'leetspeak'"),
        ("chain:rot13+zzzzzz", UnknownNameError, "unknown transform 'zzzzzz'"),
        ("chain:lang:fr+base64", ConjugateError, "'lang:fr' only selects a task's native rendering"),
        ("chain:rot13:2+atbash", ConjugateError, "'rot13' takes no argument"),
        ("chain:caesar:x+atbash", ConjugateError, "the shift must be an integer"),
    ],
)
def test_chain_errors(spec, error, message):
    with pytest.raises(error, match=message):
        TRANSFORMS.create(spec)


def test_chain_of_nothing_is_an_error():
    with pytest.raises(ConjugateError, match="the chain is empty"):
        Chain("  ")


# -- caesar's optional argument ---------------------------------------------------------

def test_caesar_argument_is_optional():
    assert TRANSFORMS.create("caesar").shift == 3
    assert TRANSFORMS.create("caesar").id == "caesar:3"
    assert TRANSFORMS.create("caesar:-2").id == "caesar:-2"
    entry = TRANSFORMS.entry("caesar")
    assert entry.param == "shift" and entry.load().param_optional is True


@pytest.mark.parametrize("spec, message", [("caesar:x", "must be an integer"), ("caesar:1.5", "must be an integer"),
                                           ("caesar:", "give a shift")])
def test_caesar_rejects_bad_shifts(spec, message):
    with pytest.raises(ConjugateError, match=message):
        TRANSFORMS.create(spec)


def test_cli_lists_the_cipher_family():
    try:
        from tests.conftest import run_cli
    except ImportError:
        from conftest import run_cli
    proc = run_cli("list", "transforms")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    for label in ("caesar[:<shift>]", "rot13", "atbash", "morse", "base64", "reverse_words", "chain:<a+b[+...]>"):
        assert label in lines, proc.stdout
    assert "ROT13" in lines["rot13"]
