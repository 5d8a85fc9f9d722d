"""Planning a run: task x transform x example -> samples with their final prompts.

Each prompt is rendered natively where the task has the conjugate, localised
where a translating transform meets a task that can translate its own data,
and otherwise rendered in English and mapped by the transform's ``forward``
(in batches; translations are cached as they complete). A rendering or
forward failure becomes an ERROR sample with the reason; it is never sent to
a model.
"""
from __future__ import annotations

import inspect
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.errors import ConfigError, ConjugateError
from harness.pipeline.context import RunContext
from harness.pipeline.models import DEFAULT_FINETUNED, DEFAULT_PRETRAINED
from harness.pipeline.pool import ROLES
from harness.pipeline.spec import RunSpec
from harness.registry import TASKS, TRANSFORMS
from harness.task import EVALUATED_ELSEWHERE, OUTPUT_TYPES, RenderFailed, Task
from harness.transform import Transform
from harness.types import Example, Failed, Rendered, Sample, Sampling

_LEAD = re.compile(r"^\s*")


@dataclass
class Plan:
    spec: RunSpec
    tasks: dict[str, Task]
    transforms: dict[str, Transform]
    samples: list[Sample]
    sampling: dict[str, Sampling]  # per task
    notes: list[str] = field(default_factory=list)
    ctx: RunContext = field(default_factory=RunContext)


def create_task(name: str, options: dict[str, Any] | None = None) -> Task:
    """The task ``name`` with its ``task_options`` (a bad option is a ConfigError naming it and the accepted ones)."""
    options = options or {}
    if options:
        factory = TASKS.entry(name.partition(":")[0]).load()
        params = {k for k, p in inspect.signature(factory).parameters.items() if k != "self"
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unknown = sorted(set(options) - params)
        if unknown:
            raise ConfigError(f"task_options.{name}.{unknown[0]}: {name} has no such option; "
                              f"it accepts: {', '.join(sorted(params)) or 'none'}")
    task = TASKS.create(name, **options)
    if task.output_type not in OUTPUT_TYPES:
        raise ConfigError(f"task {name!r}: output_type {task.output_type!r} is not one of {', '.join(OUTPUT_TYPES)}; "
                          f"fix the task's class attribute")
    return task


def make_context(spec: RunSpec, progress: bool = False) -> RunContext:
    return RunContext(mt=dict(spec.mt), translations=spec.translations, progress=progress,
                      lmeval_include=tuple(spec.lmeval_include))


def build_sampling(task: Task, overrides: dict[str, Any], seed: int) -> Sampling:
    base = task.sampling
    kw = {"seed": seed, **overrides}
    if "stop" in kw:
        kw["stop"] = tuple(kw["stop"])
    return Sampling(**{**base.__dict__, **kw})


def plan(spec: RunSpec, ctx: RunContext | None = None) -> Plan:
    ctx = ctx or make_context(spec)
    tasks = {name: create_task(name, spec.task_options.get(name)) for name in spec.tasks}
    transforms = {t: TRANSFORMS.create(t) for t in spec.transforms}
    for obj in (*tasks.values(), *transforms.values()):
        obj.bind(ctx)
    tasks = expand_tasks(tasks)
    skip, notes = native_skips(tasks, transforms)
    samples: list[Sample] = []
    for tname, task in tasks.items():
        if task.output_type == EVALUATED_ELSEWHERE:
            continue  # lm-eval builds its prompts while the models run (harness.lmeval.stage)
        examples = task.examples(spec.seed)
        if spec.limit is not None:
            examples = examples[: spec.limit]
        for tid, tr in transforms.items():
            if (tname, tid) not in skip:
                samples.extend(task_samples(tname, task, tid, tr, examples, notes))
    sampling = {name: build_sampling(task, spec.sampling, spec.seed) for name, task in tasks.items()
                if task.output_type != EVALUATED_ELSEWHERE}  # lm-eval tasks: their own generation_kwargs
    published = [f"{n}: {t.published}" for n, t in tasks.items() if getattr(t, "published", None)]
    return Plan(spec, tasks, transforms, samples, sampling, notes + pair_notes(spec) + published, ctx)


def expand_tasks(tasks: dict[str, Task]) -> dict[str, Task]:
    """Tasks that stand for several (an lm-eval group: :meth:`Task.expand`) replaced by them, in order."""
    out: dict[str, Task] = {}
    for name, task in tasks.items():
        parts = task.expand()
        out.update(parts if parts else {name: task})
    return out


def native_skips(tasks: dict[str, Task], transforms: dict[str, Transform]) -> tuple[set[tuple[str, str]], list[str]]:
    """(task, transform) cells a native-only transform cannot serve, with notes; an error if it serves none."""
    notes: list[str] = []
    skip: set[tuple[str, str]] = set()
    for tid, tr in transforms.items():
        if not tr.requires_native:
            continue
        lacking = [n for n, t in tasks.items() if tr.native not in t.renderings]
        if len(lacking) == len(tasks):
            have = "; ".join(f"{n}: {', '.join(sorted(t.renderings))}" for n, t in tasks.items())
            hint = next((f", or declare one for an lm-eval task: --task-option {n}.renderings={tr.native}:TASK"
                         for n in tasks if n.startswith("lmeval:")), "")
            raise ConjugateError(
                f"no native rendering for {tid!r} in any task (renderings: {have}); "
                f"drop {tid!r} from --transforms, or use a translating transform{hint}"
            )
        for n in lacking:
            skip.add((n, tid))
            notes.append(f"{tid} skipped for task {n}: it has no native rendering for {tr.native!r}.")
    return skip, notes


def task_samples(tname: str, task: Task, tid: str, tr: Transform, examples: Sequence[Example],
                 notes: list[str]) -> list[Sample]:
    """Both models' samples of one (task, transform) cell, in example order."""
    native = tr.native is not None and tr.native in task.renderings
    rendering, mode = (tr.native, "native") if native else ("en", "transform")
    if not native and tr.language and localize(task, tid, tr, examples):
        rendering, mode = tid, "localized"
        notes.append(f"{tid} for task {tname}: rendered from machine translations of the task's English "
                     f"strings and sentences, scored in {tr.language} (nothing back-translated).")
    rows: list[tuple[Example, Rendered, str | None]] = []
    for ex in examples:
        try:
            rows.append((ex, task.render(ex, rendering), None))
        except RenderFailed as exc:
            rows.append((ex, task.render(ex, "en"), f"rendering failed: {exc}"))
    finals = [r.prompt for _, r, _ in rows]
    if mode == "transform":
        ok = [i for i, (_, _, e) in enumerate(rows) if e is None]
        for i, out in zip(ok, tr.forward_batch([finals[i] for i in ok])):
            if isinstance(out, Failed):
                ex, r, _ = rows[i]
                rows[i] = (ex, r, forward_error(out.reason))
                finals[i] = ""
            else:
                finals[i] = out
    samples = []
    for (ex, rendered, error), final in zip(rows, finals):
        base = dict(task=tname, transform=tid, example_id=ex.id, group=ex.group, mode=mode,
                    prompt=rendered.prompt, reference=rendered.reference)
        for role in ROLES:
            samples.append(Sample(model=role, transformed_prompt="" if error else final, error=error, **base))
    return samples


def localize(task: Task, tid: str, tr: Transform, examples: Sequence[Example]) -> bool:
    """``task.localize`` for the run's selected examples only (a task whose localize takes no ``examples``: all)."""
    takes = "examples" in inspect.signature(task.localize).parameters
    return task.localize(tid, tr.language, tr.translate_texts, **({"examples": examples} if takes else {}))


def forward_error(reason: str) -> str:
    """A sample's error for a failed ``forward`` (translation failures already say what failed)."""
    return reason if reason.startswith(("transform forward failed", "translation failed")) \
        else f"transform forward failed: {reason}"


def pair_notes(spec: RunSpec) -> list[str]:
    notes = []
    if spec.pretrained == DEFAULT_PRETRAINED and spec.finetuned == DEFAULT_FINETUNED:
        notes.append(
            "Embedded default pair: pretrained Gemma-3-270M and the same model with the project's English-only "
            "instruction- and refusal-tuned LoRA adapter (conjugate finetune, default recipe)."
        )
    if {spec.pretrained.model, spec.finetuned.model} == {"pkg:gemma3-270m", "pkg:smollm2-135m-instruct"}:
        notes.append("Gemma-3-270M and SmolLM2-135M-Instruct are NOT one model family: differences mix "
                     "fine-tuning with architecture and pretraining data.")
    return notes


def forward_continuations(items: Sequence[tuple[Sample, dict[str, str]]], transforms: dict[str, Transform],
                          ) -> dict[int, dict[str, str] | Failed]:
    """Per sample (by ``id``): its continuations in its final prompt's form, or why they could not be mapped.

    For samples whose prompt a transform's ``forward`` produced (mode
    ``transform``), the same ``forward`` maps the continuations, their leading
    whitespace kept (one batch per transform). For transforms that do not act
    word by word (base64, machine translation) that is only approximately how
    a response to the transformed prompt would start. Other samples keep them.
    """
    out: dict[int, dict[str, str] | Failed] = {}
    pending: dict[str, list[tuple[Sample, dict[str, str]]]] = defaultdict(list)
    for s, conts in items:
        if s.mode == "transform":
            pending[s.transform].append((s, conts))
        else:
            out[id(s)] = dict(conts)
    for tid, group in pending.items():
        tr = transforms.get(tid)
        if tr is None:
            continue
        lead = {t: _LEAD.match(t).group(0) for _, conts in group for t in conts.values()}
        uniq = list(dict.fromkeys(t[len(lead[t]):] for _, conts in group for t in conts.values()))
        try:
            mapped = dict(zip(uniq, tr.forward_batch(uniq)))
        except Exception as exc:
            mapped = {t: Failed(f"{type(exc).__name__}: {exc}") for t in uniq}
        for s, conts in group:
            fwd = {k: mapped[t[len(lead[t]):]] for k, t in conts.items()}
            bad = next((v for v in fwd.values() if isinstance(v, Failed)), None)
            out[id(s)] = bad if bad is not None else {k: lead[conts[k]] + v for k, v in fwd.items()}
    return out
