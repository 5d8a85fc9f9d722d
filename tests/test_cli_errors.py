"""The `conjugate` command line: user errors exit 2 with one line on stderr, never a traceback.

Every case runs the real CLI in a subprocess (``python -m harness.cli``). None
of them loads a model: each fails (or finishes) before generation.
"""
from __future__ import annotations

import re

import pytest

try:
    from tests.conftest import run_cli
except ImportError:  # bare `pytest`, where the repository root is not on sys.path
    from conftest import run_cli


@pytest.fixture
def cli(tmp_path):
    """run_cli with the user cache, results and generation cache all under tmp_path."""
    base = {"CONJUGATE_CACHE": str(tmp_path / "user-cache")}

    def go(*args: str, cwd=None, env: dict | None = None):
        return run_cli(*args, env={**base, **(env or {})}, cwd=cwd)

    return go


@pytest.fixture(params=["alone", "with plugins"])
def plugins(request, tmp_path) -> dict[str, str]:
    """Extra environment for the CLI: nothing, or a folder (on PYTHONPATH) holding an installed distribution's
    metadata with a task, a transform and a summary section whose names sort before every built-in one, as any
    plugin a user installs may: the listing tests must pass either way."""
    if request.param == "alone":
        return {}
    info = tmp_path / "plugins" / "aaa_conjugate_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aaa-conjugate-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[conjugate.tasks]\naaa_task = harness.tasks.toy_choice:ToyChoice\n\n"
        "[conjugate.transforms]\naaa_transform = harness.translators.rot13:Rot13\n\n"
        "[conjugate.sections]\naaa_section = harness.analysis.summary.rates:rows\n")
    return {"PYTHONPATH": str(info.parent)}


def listed(proc) -> dict[str, str]:
    """`conjugate list KIND`'s lines by their first word, after checking they are sorted by it."""
    names = [re.split(r"[:\[]", line.split()[0])[0] for line in proc.stdout.splitlines() if line.strip()]
    assert names == sorted(names), names  # by registry name (`lang` of `lang:<language code>`)
    return {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}


@pytest.fixture
def isolated(tmp_path):
    """--out and --cache flags that keep a `run` inside tmp_path."""
    return ["--out", str(tmp_path / "results"), "--cache", str(tmp_path / "generations.sqlite")]


def assert_user_error(proc, *fragments: str) -> str:
    """Exit code 2, no traceback, and exactly one line on stderr that contains ``fragments``."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr.strip()
    assert err, "no message on stderr"
    assert "\n" not in err, f"stderr should be one line, got:\n{proc.stderr}"
    assert err.startswith("conjugate: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


# -- commands that succeed ----------------------------------------------------------------

def test_list_tasks(cli, plugins):
    proc = cli("list", "tasks", env=plugins)
    assert proc.returncode == 0, proc.stderr
    lines = listed(proc)
    assert {"icl_vs_if", "refusal[:<prompt", "toy_choice", "xnli", "lmeval:<lm-eval"} <= set(lines)
    assert "In-context learning vs instruction following" in lines["icl_vs_if"]
    assert "[entry point" not in lines["icl_vs_if"]
    assert ("aaa_task" in lines) == bool(plugins)
    assert proc.stderr == ""


def test_list_transforms_shows_arguments(cli, plugins):
    proc = cli("list", "transforms", env=plugins)
    assert proc.returncode == 0, proc.stderr
    assert {"identity", "lang:<language", "leetspeak", "piglatin"} <= set(listed(proc))


def test_list_sections_names_and_describes_each(cli, plugins):
    proc = cli("list", "sections", env=plugins)
    assert proc.returncode == 0, proc.stderr
    lines = listed(proc)
    builtin = ["agreement", "config_agreement", "judge", "metrics", "probe", "recovery", "rows", "tests"]
    assert [n for n in lines if "[entry point" not in lines[n]] == builtin
    assert all(len(line.split()) > 1 for line in lines.values())  # every section says what it is


def test_run_help(cli):
    proc = cli("run", "--help")
    assert proc.returncode == 0
    assert "--limit" in proc.stdout
    assert "--transforms" in proc.stdout and "conjugate run --limit 20" in proc.stdout


def test_version(cli):
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("conjugate ")


# -- user errors -------------------------------------------------------------------------------

def test_misspelt_transform(cli, isolated):
    assert_user_error(cli("run", "--transforms", "identiti", "--limit", "1", *isolated), "Did you mean 'identity'")


def test_misspelt_task(cli, isolated):
    assert_user_error(cli("run", "--tasks", "icl_vs_iff", "--limit", "1", *isolated), "Did you mean 'icl_vs_if'")


def test_pretrained_without_finetuned(cli, isolated):
    assert_user_error(cli("run", "--pretrained", "X", *isolated), "--finetuned is missing")


def test_finetuned_without_pretrained(cli, isolated):
    assert_user_error(cli("run", "--finetuned", "X", *isolated), "--pretrained is missing")


def test_limit_zero(cli, isolated):
    assert_user_error(cli("run", "--limit", "0", *isolated), "limit: must be a positive integer, got 0")


def test_limit_not_a_number(cli, isolated):
    assert_user_error(cli("run", "--limit", "ten", *isolated), "--limit", "'ten'")


def test_missing_config(cli, tmp_path):
    assert_user_error(cli("run", "--config", "missing.yaml", cwd=tmp_path), "missing.yaml does not exist")


def test_malformed_yaml_config(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nlimit: [1\ntransforms: identity\n")
    assert_user_error(cli("run", "--config", str(bad)), "bad.yaml", "is not valid YAML", "line 3")


def test_config_with_unknown_field(cli, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("limt: 5\n")
    assert_user_error(cli("run", "--config", str(cfg)), "unknown field 'limt'", "Did you mean 'limit'")


def test_language_without_native_rendering(cli, isolated):
    err = assert_user_error(cli("run", "--transforms", "lang:de", "--limit", "1", *isolated), "no native rendering")
    assert "lang:de" in err


def test_transform_argument_errors(cli, isolated):
    assert_user_error(cli("run", "--transforms", "lang", "--limit", "1", *isolated), "needs an argument")


def test_report_of_a_missing_folder(cli):
    assert_user_error(cli("report", "/nonexistent"), "/nonexistent: no such folder")


def test_models_that_do_not_exist(cli, tmp_path, isolated):
    proc = cli("run", "--pretrained", "/no/such/dir", "--finetuned", "/no/such/dir", "--limit", "1", *isolated)
    assert_user_error(proc, "/no/such/dir does not exist")


def test_unknown_list_kind(cli):
    assert_user_error(cli("list", "models"), "invalid choice: 'models'")


def test_unknown_flag(cli):
    assert_user_error(cli("run", "--limitt", "3"), "unrecognized arguments: --limitt")


def test_no_command_prints_help_and_exits_2(cli):
    proc = cli()
    assert proc.returncode == 2
    assert "usage: conjugate" in proc.stdout
    assert "Traceback" not in proc.stderr


# -- the command modules --------------------------------------------------------------------------

COMMANDS = ["run", "report", "finetune", "list", "translate", "compare", "check", "forgetting", "sweep", "setup"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_help(command, capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: conjugate {command}")


def test_top_level_help_lists_every_command(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    listed = [line.split()[0] for line in proc.stdout.split("COMMAND\n", 1)[1].splitlines()
              if line.startswith("    ") and not line.startswith("     ")]
    assert listed == COMMANDS


def test_unknown_command(cli):
    assert_user_error(cli("evaluate"), "invalid choice: 'evaluate'")


def test_ctrl_c_exits_130(monkeypatch, capsys):
    import harness.commands.list as list_command
    from harness.cli import main

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(list_command, "run", interrupted)
    assert main(["list", "tasks"]) == 130
    assert "interrupted" in capsys.readouterr().err
