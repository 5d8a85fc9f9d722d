"""RunSpec / ModelSpec validation and the sandboxed Jinja2 templating."""
from __future__ import annotations

import re

import pytest

from harness.errors import ConfigError, TemplateError
from harness.pipeline.models import DEFAULT_FINETUNED, DEFAULT_PRETRAINED, ModelSpec
from harness.pipeline.spec import DEFAULT_TRANSFORMS, RunSpec
from harness.templating import render

PAIR = {"pretrained": "org/base", "finetuned": "org/base-it"}


# -- RunSpec ---------------------------------------------------------------------------

def test_defaults():
    spec = RunSpec()
    assert spec.pretrained == DEFAULT_PRETRAINED and spec.finetuned == DEFAULT_FINETUNED
    assert spec.tasks == ["icl_vs_if", "refusal"]
    assert spec.transforms == DEFAULT_TRANSFORMS and spec.transforms[0] == "identity"
    assert RunSpec.from_dict({}).to_dict() == spec.to_dict()


def test_unknown_field_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown field 'limt'. Did you mean 'limit'") as info:
        RunSpec.from_dict({"limt": 5})
    assert "Known fields:" in str(info.value)


def test_unknown_sampling_field_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"sampling.max_new_token: unknown field. Did you mean 'max_new_tokens'"):
        RunSpec.from_dict({"sampling": {"max_new_token": 5}})


@pytest.mark.parametrize("given, missing", [({"pretrained": "org/base"}, "finetuned"),
                                            ({"finetuned": {"model": "org/base-it"}}, "pretrained")])
def test_one_model_alone_is_an_error(given, missing):
    with pytest.raises(ConfigError, match=f"'{missing}' is missing"):
        RunSpec.from_dict(given)


@pytest.mark.parametrize("field, value", [
    ("limit", "ten"), ("limit", 2.5), ("limit", True), ("seed", "0"), ("batch_size", [16]), ("threads", 1.0),
])
def test_bad_integer_types_name_the_field(field, value):
    with pytest.raises(ConfigError, match=re.escape(f"run.yaml: {field} must be an integer, got {value!r}")):
        RunSpec.from_dict({field: value}, where="run.yaml")


@pytest.mark.parametrize("d, fragment", [
    ({"limit": 0}, "limit: must be a positive integer"),
    ({"batch_size": 0}, "batch_size: must be a positive integer"),
    ({"threads": -1}, "threads: must be a positive integer"),
    ({"tasks": []}, "tasks: give at least one task"),
    ({"transforms": []}, "transforms: give at least one transform"),
    ({"transforms": [1, 2]}, "transforms must be a list of names"),
    ({"sampling": [1]}, "sampling must be a mapping"),
    ({"sampling": {"temperature": "hot"}}, "sampling.temperature: expected float"),
    ({"sampling": {"max_new_tokens": True}}, "sampling.max_new_tokens: expected int"),
    ({"run_id": "a/b"}, "run_id: 'a/b' must be a plain folder name"),
    ({"run_id": ".hidden"}, "must be a plain folder name"),
])
def test_invalid_values(d, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        RunSpec.from_dict(d)


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping of fields, got list"):
        RunSpec.from_dict([1, 2])


def test_identity_is_always_added_first():
    assert RunSpec.from_dict({"transforms": ["lang:fr", "leetspeak"]}).transforms == ["identity", "lang:fr", "leetspeak"]
    assert RunSpec(transforms=["piglatin"]).transforms == ["identity", "piglatin"]
    assert RunSpec.from_dict({"transforms": "leetspeak, piglatin"}).transforms == ["identity", "leetspeak", "piglatin"]


def test_transforms_are_stripped_and_deduplicated():
    spec = RunSpec.from_dict({"transforms": " identity ,lang:fr,,lang:fr , identity", "tasks": "icl_vs_if,icl_vs_if"})
    assert spec.transforms == ["identity", "lang:fr"]
    assert spec.tasks == ["icl_vs_if"]


def test_models_from_strings_and_mappings():
    spec = RunSpec.from_dict({"pretrained": "org/base", "finetuned": {"model": "org/it", "dtype": "bfloat16", "bos": "always"}})
    assert spec.pretrained == ModelSpec(name="pretrained", model="org/base")
    assert (spec.finetuned.model, spec.finetuned.dtype, spec.finetuned.bos) == ("org/it", "bfloat16", "always")


def test_to_dict_round_trips():
    spec = RunSpec.from_dict({**PAIR, "limit": 20, "seed": 3, "sampling": {"max_new_tokens": 12}})
    again = RunSpec.from_dict(spec.to_dict())
    assert again == spec
    assert again.content_hash() == spec.content_hash()


def test_content_hash_ignores_where_results_go():
    a = RunSpec.from_dict({**PAIR, "limit": 20})
    b = RunSpec.from_dict({**PAIR, "limit": 20, "out": "/elsewhere", "batch_size": 4, "cache": "/tmp/c.sqlite"})
    c = RunSpec.from_dict({**PAIR, "limit": 21})
    assert a.content_hash() == b.content_hash() != c.content_hash()
    assert a.resolved_run_id() == f"icl_vs_if+refusal-{a.content_hash()}"


# -- YAML -------------------------------------------------------------------------------

def test_from_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("pretrained: org/base\nfinetuned: org/base-it\nlimit: 20\ntransforms: [lang:fr]\n")
    spec = RunSpec.from_yaml(path)
    assert (spec.limit, spec.transforms, spec.pretrained.model) == (20, ["identity", "lang:fr"], "org/base")


def test_from_yaml_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert RunSpec.from_yaml(path) == RunSpec()


def test_from_yaml_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 0\nlimit: [1\ntasks: icl_vs_if\n")
    with pytest.raises(ConfigError, match=r"line \d+ is not valid YAML") as info:
        RunSpec.from_yaml(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "line 3" in msg  # the flow sequence opened on line 2 breaks on line 3
    assert "\n" not in msg


def test_from_yaml_tab_indentation(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_text("sampling:\n\tmax_new_tokens: 5\n")
    with pytest.raises(ConfigError, match="line 2 is not valid YAML"):
        RunSpec.from_yaml(path)


def test_from_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("limt: 5\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: unknown field 'limt'. Did you mean 'limit'")):
        RunSpec.from_yaml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        RunSpec.from_yaml(tmp_path / "missing.yaml")


# -- ModelSpec ----------------------------------------------------------------------------

@pytest.mark.parametrize("kw, fragment", [
    ({"dtype": "fp8"}, "dtype 'fp8' is not one of float32, bfloat16, float16, auto"),
    ({"bos": "sometimes"}, "bos 'sometimes' is not one of auto, always, never"),
    ({"model": ""}, "field 'model' is empty"),
])
def test_model_spec_validation(kw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ModelSpec(**{"name": "m", "model": "org/base", **kw})


def test_model_spec_from_dict_errors():
    with pytest.raises(ConfigError, match="unknown field\\(s\\) modle"):
        ModelSpec.from_dict("pretrained", {"modle": "org/base"})
    with pytest.raises(ConfigError, match="missing field 'model'"):
        ModelSpec.from_dict("pretrained", {"dtype": "float16"})
    with pytest.raises(ConfigError, match="expected a mapping or a string, got int"):
        ModelSpec.from_dict("pretrained", 3)


def test_model_spec_errors_inside_run_spec():
    with pytest.raises(ConfigError, match="model 'pretrained': dtype 'fp8'"):
        RunSpec.from_dict({"pretrained": {"model": "a", "dtype": "fp8"}, "finetuned": "b"})


# -- templating ------------------------------------------------------------------------------

def test_render_basic():
    assert render("{{ a }} + {{ b }} = {{ a + b }}", {"a": 6, "b": 4}) == "6 + 4 = 10"
    assert render("{% for x in xs %}{{ x }},{% endfor %}", {"xs": [1, 2]}) == "1,2,"


def test_undefined_variable_lists_available_names():
    with pytest.raises(TemplateError, match="undefined variable") as info:
        render("Hello {{ nmae }}", {"name": "x", "age": 3}, name="greet.j2")
    msg = str(info.value)
    assert "greet.j2" in msg and "'nmae' is undefined" in msg
    assert "Available: age, name" in msg


def test_undefined_attribute_is_an_error():
    with pytest.raises(TemplateError, match="undefined"):
        render("{{ d.missing }}", {"d": {"present": 1}})


@pytest.mark.parametrize("source, context", [
    ("{{ ''.__class__.__mro__ }}", {}),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", {}),
    ("{{ f.__globals__ }}", {"f": render}),
    ("{{ cycler.__init__.__globals__.os }}", {}),
    ("{{ t.mro() }}", {"t": str}),
])
def test_sandbox_blocks_unsafe_access(source, context):
    with pytest.raises(TemplateError, match="unsafe"):
        render(source, context)


def test_sandbox_blocks_huge_ranges():
    with pytest.raises(TemplateError, match="failed to render"):
        render("{{ range(10**9) | list | length }}", {})


def test_syntax_error_gives_the_line_number():
    with pytest.raises(TemplateError, match=r"template prompt\.j2 line 3: ") as info:
        render("first\nsecond\n{{ x + }}\n", {"x": 1}, name="prompt.j2")
    assert "\n" not in str(info.value)


def test_unclosed_block_is_a_template_error():
    with pytest.raises(TemplateError, match="line"):
        render("{% if x %}\nyes\n", {"x": True})


def test_runtime_error_is_a_template_error():
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render("{{ 1 / 0 }}", {})
