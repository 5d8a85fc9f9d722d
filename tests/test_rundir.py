"""harness.outputs.rundir: reading and writing run folders, including one written by conjugate 0.1.0.

tests/fixtures/run-0.1.0/ is real `conjugate run` output (tiny random Llama against itself, icl_vs_if,
identity + leetspeak, --limit 2, with the probe), so a change that breaks loading old run folders fails here.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest

from harness.errors import ConjugateError
from harness.io import finite_json, json_text
from harness.outputs.rundir import Manifest, RunDir, Summary, spec_hash
from harness.types import Sample

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"
FILES = ("manifest.json", "summary.json", "samples.jsonl")


@pytest.fixture
def run_copy(tmp_path) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    for name in FILES:
        shutil.copy(FIXTURE / name, d / name)
    return d


def test_fixture_loads_with_typed_records():
    run = RunDir(FIXTURE).read()
    assert run.run_id == "run-0.1.0"
    assert run.manifest.tasks == ["icl_vs_if"] and run.manifest.transforms == ["identity", "leetspeak"]
    assert run.manifest.model_name("pretrained") == "tiny" and run.manifest.model_name("nobody") == "nobody"
    assert run.manifest.transform_info("leetspeak")["native"] == "leetspeak"
    assert len(run.samples) == len(run.sample_records) == 8 and all(isinstance(s, Sample) for s in run.samples)
    assert {s.transform for s in run.samples} == {"identity", "leetspeak"}
    assert run.task_labels() == {"icl_vs_if": ["icl", "if", "other"]}
    assert run.primary_label("icl_vs_if") == "icl"
    assert set(run.summary.rows_all()) == {("icl_vs_if", t, m) for t in ("identity", "leetspeak")
                                           for m in ("pretrained", "finetuned")}
    assert list(run.summary.data) == ["rows", "recovery", "agreement", "tests", "probe", "probe_correlation"]


def test_round_trip_is_byte_identical(run_copy, tmp_path):
    run = RunDir(run_copy).read()
    out = RunDir(tmp_path / "again")
    out.write(run.manifest, run.summary, run.samples)
    for name in FILES[1:]:  # summary.json is strict JSON now: the fixture's NaN (undefined recovery) reads as null
        assert (out.path / name).read_bytes() == (FIXTURE / name).read_bytes().replace(b": NaN", b": null"), name
    # manifest.json: the same, then the checksums that commit the folder's files
    manifest = json.loads((out.path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest.pop("checksums") == {n: "sha256:" + hashlib.sha256((out.path / n).read_bytes()).hexdigest()
                                         for n in ("samples.jsonl", "summary.json")}
    assert json_text(manifest).encode() == (FIXTURE / "manifest.json").read_bytes()
    # the JSON as read (unknown keys kept) writes back the same bytes too
    extra = [dict(d, added_by_a_plugin="é") for d in run.sample_records]
    RunDir(run_copy).write_samples(extra)
    again = RunDir(run_copy).read()
    assert again.sample_records == extra and "\\u00e9" not in (run_copy / "samples.jsonl").read_text(encoding="utf-8")


def test_manifest_is_written_last(tmp_path, monkeypatch):
    import harness.outputs.rundir as rundir

    order: list[str] = []
    real = rundir.atomic_write_text
    monkeypatch.setattr(rundir, "atomic_write_text", lambda p, t: (order.append(Path(p).name), real(p, t)))
    RunDir(tmp_path).write({"run_id": "x"}, {"rows": []}, [], files={"report.md": "# x\n", "a.png": b"\x89PNG"})
    assert order == ["samples.jsonl", "summary.json", "report.md", "manifest.json"]
    assert (tmp_path / "a.png").read_bytes() == b"\x89PNG" and not list(tmp_path.glob(".*"))


def test_fixture_rerenders_to_the_same_summary(run_copy):
    from harness.outputs.write import rerender

    rerender(run_copy)
    old = json.loads((FIXTURE / "summary.json").read_text(encoding="utf-8"))
    new = json.loads((run_copy / "summary.json").read_text(encoding="utf-8"))
    # sections newer than the fixture, added at the end (the metrics section is empty: no task with metrics)
    assert list(new)[-4:] == ["config_agreement", "metrics", "metric_recovery", "judge"]
    assert new["metrics"] == new["metric_recovery"] == new["judge"] == []
    for key in ("config_agreement", "metrics", "metric_recovery", "judge"):
        del new[key]
    # the run's keys come first and unchanged (numbers equal to the last ulp or so); sections added since go after
    assert list(new)[:len(old)] == list(old)
    # strict JSON: the fixture's NaN (recovery undefined: equal English rates) is null, with the reason beside it
    assert [r["recovery_note"] for r in new["recovery"] if "recovery_note" in r] == [
        "pretrained and fine-tuned English rates are equal: recovery undefined"] * 6
    assert_same_json({k: new[k] for k in old}, finite_json(old), drop=("recovery_note",))
    assert (run_copy / "samples.jsonl").read_bytes() == (FIXTURE / "samples.jsonl").read_bytes()
    assert (run_copy / "report.md").exists() and (run_copy / "report.html").exists()


def assert_same_json(a, b, where="$", drop=()):
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, f"{where}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        a = {k: v for k, v in a.items() if k not in drop}
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_same_json(a[k], b[k], f"{where}.{k}", drop)
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_json(x, y, f"{where}[{i}]", drop)
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def test_spec_hash_is_the_run_id_hash():
    from harness.pipeline.spec import RunSpec

    spec = RunSpec(tasks=["icl_vs_if"], transforms=["identity", "leetspeak"], limit=2, out="elsewhere", threads=3)
    assert spec_hash(spec.to_dict()) == spec.content_hash() == spec.resolved_run_id().rsplit("-", 1)[1]
    # a manifest's spec gives the same hash as the RunSpec it came from; where results went does not count
    manifest = Manifest(json.loads((FIXTURE / "manifest.json").read_text(encoding="utf-8")))
    moved = dict(manifest.spec, out="/somewhere/else", cache=None, run_id=None)
    assert manifest.spec_hash() == spec_hash(moved) == RunSpec.from_dict(
        {k: v for k, v in manifest.spec.items()}).content_hash()
    assert len(manifest.spec_hash()) == 10 and Manifest({}).spec_hash() is None


def test_hash_values_unchanged():
    """Pinned (computed with the code before the shared function): run ids and check baselines' spec hashes."""
    from harness.pipeline.spec import RunSpec

    assert spec_hash({"tasks": ["icl_vs_if"], "transforms": ["identity"], "mt": {"timeout": 5}}) == "6956765228"
    assert Manifest(json.loads((FIXTURE / "manifest.json").read_text(encoding="utf-8"))).spec_hash() == "f410a9b56f"
    assert RunSpec().content_hash() == "99eb9f2388"
    assert RunSpec(mt={"provider": "google", "timeout": 3}).content_hash() == "61fa9e82b8"
    assert RunSpec(tasks=["icl_vs_if"], task_options={"icl_vs_if": {"a": 1}}).content_hash() == "3fd4675b75"


def test_label_fallbacks_for_old_manifests(run_copy):
    manifest = json.loads((run_copy / "manifest.json").read_text(encoding="utf-8"))
    del manifest["task_labels"], manifest["primary_labels"]
    (run_copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    run = RunDir(run_copy).read(samples="skip")
    assert run.samples == [] and run.task_labels() == {"icl_vs_if": ["icl", "if", "other"]}  # from manifest.tasks.<task>.labels
    assert run.primary_label("icl_vs_if") == "icl"  # from summary.recovery
    del manifest["tasks"]
    run.manifest = Manifest(manifest)
    run.summary = Summary({"rows": run.summary.rows, "recovery": []})
    assert run.labels("icl_vs_if") == ["icl", "if", "other"]  # from the rows' rates
    assert run.primary_label("icl_vs_if") == "icl" and run.primary_label("nope") is None


@pytest.mark.parametrize("damage, fragment", [
    (lambda d: shutil.rmtree(d), "run: no such folder; give a folder written by `conjugate run`"),
    (lambda d: (shutil.rmtree(d), d.write_text("x")), "run: not a folder"),
    (lambda d: (d / "manifest.json").unlink(), "not a finished run folder (no manifest.json)"),
    (lambda d: (d / "samples.jsonl").unlink(), "not a finished run folder (no samples.jsonl)"),
    (lambda d: (d / "summary.json").write_text("{\"rows\": [", encoding="utf-8"),
     "summary.json: not valid JSON (Expecting value at line 1 column 11); rebuild it with `conjugate report"),
    (lambda d: (d / "manifest.json").write_text("[]", encoding="utf-8"), "manifest.json: expected a JSON object, got list"),
    (lambda d: (d / "summary.json").write_text("{}", encoding="utf-8"), "summary.json: rows: missing or not a list"),
    (lambda d: (d / "summary.json").write_text('{"rows": [{"model": "pretrained"}]}', encoding="utf-8"),
     "summary.json: rows[0].task: missing"),
    (lambda d: (d / "summary.json").write_text(
        '{"rows": [{"model": "m", "task": "t", "transform": "x", "group": "all", "n": 2, "rates": {"a": {"k": 3}}}]}',
        encoding="utf-8"), "rows[0].rates.a.k: expected an integer from 0 to n=2"),
    (lambda d: (d / "samples.jsonl").write_text('{"model": "m"}\n', encoding="utf-8"), "samples.jsonl line 1: task, "),
    (lambda d: (d / "samples.jsonl").write_text('\n[1]\n', encoding="utf-8"), "samples.jsonl line 2: expected a JSON object"),
])
def test_bad_folders_give_one_line_errors(run_copy, damage, fragment):
    damage(run_copy)
    with pytest.raises(ConjugateError) as err:
        RunDir(run_copy).read()
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_samples_are_optional_when_not_needed(run_copy):
    assert len(RunDir(run_copy).read("optional").samples) == 8
    (run_copy / "summary.json").write_text("{", encoding="utf-8")
    assert RunDir(run_copy).read(summary=False).summary.data == {}  # what `conjugate report` rebuilds
    (run_copy / "samples.jsonl").unlink()
    run = RunDir(run_copy).read("optional", summary=False)
    assert run.samples == [] and not RunDir(run_copy).has_samples() and run.manifest.run_id == "run-0.1.0"
    with pytest.raises(ValueError):
        RunDir(run_copy).read("maybe")
