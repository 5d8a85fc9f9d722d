"""The runner: task -> transform -> backend -> inverse -> score -> report.

1. ``plan``: expand task x transform x example into samples; render each
   prompt (natively where the task has the conjugate, localised where a
   translating transform meets a task that can translate its own data) and
   apply ``forward`` in batches (translations are cached as they complete).
2. ``generate``: per model, look every final prompt up in the generation
   cache; load the backend only if something is missing; generate the rest in
   batches, committing each batch to the cache as it completes.
   Right after a model generates (its backend still open), the task-inference
   probe (:mod:`harness.pipeline.probe`) scores the two competing continuations of
   tasks that define them, from the cache where it can.
3. ``finish``: apply ``inverse``, score, aggregate, and write
   ``manifest.json``, ``samples.jsonl``, ``summary.json`` and ``report.md``
   atomically into ``results/<run-id>/``.

Failures (a transform that raises, a backend error) become samples with
outcome ``error`` and the reason; they are never scored as a behaviour and
never cached, so a re-run retries them.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness import __version__
from harness.pipeline import probe as probing
from harness.outputs.write import write_outputs
from harness.pipeline.cache import GenerationCache, cache_key
from harness.errors import ConjugateError
from harness.io import package_versions
from harness.pipeline.models import DEFAULT_FINETUNED, DEFAULT_PRETRAINED, ModelSpec, cache_root, model_identity
from harness.registry import BACKENDS, TASKS, TRANSFORMS
from harness.backend import Failed
from harness.pipeline.spec import RunSpec
from harness.pipeline.context import RunContext
from harness.task import RenderFailed, Task
from harness.transform import Transform
from harness.types import ERROR, Sample, Sampling

ROLES = ("pretrained", "finetuned")
from harness.outputs.write import AFTER_GENERATION  # noqa: F401 (re-exported)


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
    import inspect

    from harness.errors import ConfigError

    options = options or {}
    if options:
        factory = TASKS.entry(name).load()
        params = {k for k, p in inspect.signature(factory).parameters.items() if k != "self"
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unknown = sorted(set(options) - params)
        if unknown:
            raise ConfigError(f"task_options.{name}.{unknown[0]}: {name} has no such option; "
                              f"it accepts: {', '.join(sorted(params)) or 'none'}")
    return TASKS.create(name, **options)


def make_context(spec: RunSpec, progress: bool = False) -> RunContext:
    return RunContext(mt=dict(spec.mt), translations=spec.translations, progress=progress)


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
    notes = []
    skip: set[tuple[str, str]] = set()
    for tid, tr in transforms.items():
        if not getattr(tr, "requires_native", False):
            continue
        lacking = [n for n, t in tasks.items() if tr.native not in t.renderings]
        if len(lacking) == len(tasks):
            have = "; ".join(f"{n}: {', '.join(sorted(t.renderings))}" for n, t in tasks.items())
            raise ConjugateError(
                f"no native rendering for {tid!r} in any task (renderings: {have}); "
                f"drop {tid!r} from --transforms, or use a translating transform"
            )
        for n in lacking:
            skip.add((n, tid))
            notes.append(f"{tid} skipped for task {n}: it has no native rendering for {tr.native!r}.")
    samples: list[Sample] = []
    for tname, task in tasks.items():
        examples = task.examples(spec.seed)
        if spec.limit is not None:
            examples = examples[: spec.limit]
        for tid, tr in transforms.items():
            if (tname, tid) in skip:
                continue
            native = tr.native is not None and tr.native in task.renderings
            rendering, mode = (tr.native, "native") if native else ("en", "transform")
            if not native and tr.language and task.localize(tid, tr.language, tr.translate_texts):
                rendering, mode = tid, "localized"
                notes.append(f"{tid} for task {tname}: rendered from machine translations of the task's English "
                             f"strings and sentences, scored in {tr.language} (nothing back-translated).")
            rows = []
            for ex in examples:
                try:
                    rendered, error = task.render(ex, rendering), None
                except RenderFailed as exc:
                    rendered, error = task.render(ex, "en"), f"rendering failed: {exc}"
                rows.append((ex, rendered, error))
            finals = [r.prompt for _, r, e in rows]
            if mode == "transform":
                ok = [i for i, (_, _, e) in enumerate(rows) if e is None]
                for i, out in zip(ok, tr.forward_batch([finals[i] for i in ok])):
                    if isinstance(out, Failed):
                        ex, r, _ = rows[i]
                        rows[i] = (ex, r, out.reason if out.reason.startswith(("transform forward failed", "translation failed"))
                                   else f"transform forward failed: {out.reason}")
                        finals[i] = ""
                    else:
                        finals[i] = out
            for (ex, rendered, error), final in zip(rows, finals):
                base = dict(task=tname, transform=tid, example_id=ex.id, group=ex.group, mode=mode,
                            prompt=rendered.prompt, reference=rendered.reference)
                for role in ROLES:
                    samples.append(Sample(model=role, transformed_prompt="" if error else final, error=error, **base))
    sampling = {name: build_sampling(task, spec.sampling, spec.seed) for name, task in tasks.items()}
    if spec.pretrained == DEFAULT_PRETRAINED and spec.finetuned == DEFAULT_FINETUNED:
        notes.append(
            "Embedded default pair: pretrained Gemma-3-270M and the same model with the project's English-only "
            "instruction- and refusal-tuned LoRA adapter (conjugate finetune, default recipe)."
        )
    if {spec.pretrained.model, spec.finetuned.model} == {"pkg:gemma3-270m", "pkg:smollm2-135m-instruct"}:
        notes.append("Gemma-3-270M and SmolLM2-135M-Instruct are NOT one model family: differences mix "
                     "fine-tuning with architecture and pretraining data.")
    return Plan(spec, tasks, transforms, samples, sampling, notes, ctx)


def model_key(ms: ModelSpec) -> dict[str, Any]:
    """What a generation is cached under: the model's identity and everything that changes its outputs.

    Options a backend lists as ``runtime_options`` (server address, engine
    memory, concurrency) are left out, so a restarted server or a different
    GPU share reuses the cache.
    """
    cls = BACKENDS.entry(ms.backend).load()
    if hasattr(cls, "validate"):
        cls.validate(ms)
    runtime = getattr(cls, "runtime_options", frozenset())
    identity = getattr(cls, "identity", lambda _ms: None)(ms) or model_identity(ms)
    return {
        "identity": identity, "backend": ms.backend, "dtype": ms.dtype, "bos": ms.bos,
        "chat_template": ms.chat_template, "options": {k: v for k, v in ms.options.items() if k not in runtime},
    }


class BackendPool:
    """Opens each role's backend when it is first needed and closes it when done.

    When both models need generating with the same backend, the backend's
    ``open_pair`` may serve both from one engine (vLLM: base + LoRA request;
    ``vllm serve``: one server with the adapter as a LoRA module). Either way
    everything is closed in :meth:`close_all`, also on errors and Ctrl-C.
    """

    def __init__(self, spec: RunSpec, factory: Callable[[ModelSpec], Any] | None = None,
                 needed: set[str] | None = None) -> None:
        self.spec, self.factory = spec, factory
        self.needed = set(ROLES) if needed is None else set(needed)
        self.open: dict[str, Any] = {}
        self.described: dict[str, dict[str, Any]] = {}
        self._pair_tried = False

    def get(self, role: str):
        if role in self.open:
            return self.open[role]
        ms: ModelSpec = getattr(self.spec, role)
        if self.factory is not None:
            backend = self.factory(ms)
        else:
            pre, ft = self.spec.pretrained, self.spec.finetuned
            if not self._pair_tried and pre.backend == ft.backend and self.needed >= set(ROLES):
                self._pair_tried = True
                cls = BACKENDS.entry(ms.backend).load()
                pair = cls.open_pair(pre, ft, threads=self.spec.threads) if hasattr(cls, "open_pair") else None
                if pair is not None:
                    self.open.update(zip(ROLES, pair))
                    for r in ROLES:
                        self._describe(r)
                    return self.open[role]
            backend = BACKENDS.create(ms.backend, ms, threads=self.spec.threads)
        self.open[role] = backend
        self._describe(role)
        return backend

    def _describe(self, role: str) -> None:
        d = getattr(self.open[role], "describe", None)
        self.described[role] = d() if callable(d) else {"backend": getattr(self.open[role], "name", "?")}

    def release(self, role: str) -> None:
        backend = self.open.pop(role, None)
        if backend is not None:
            backend.close()

    def close_all(self) -> None:
        for role in list(self.open):
            self.release(role)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="prompt", disable=not enabled or total == 0, dynamic_ncols=True,
                file=sys.stderr, smoothing=0.1)


@dataclass
class Lookup:
    """One model's samples looked up in the generation cache."""

    todo: list[Sample]
    sample_keys: list[str]
    uniq: dict[str, tuple[Sampling, str]]  # unique (sampling, prompt) pairs by cache key
    hits: dict[str, str]

    @property
    def missing(self) -> list[str]:
        return [k for k in self.uniq if k not in self.hits]


def lookup(mkey: dict[str, Any], samples: list[Sample], sampling: dict[str, Sampling], cache: GenerationCache) -> Lookup:
    todo = [s for s in samples if s.error is None]
    sample_keys = [cache_key(mkey, sampling[s.task].key(), s.transformed_prompt) for s in todo]
    uniq: dict[str, tuple[Sampling, str]] = {}
    for s, k in zip(todo, sample_keys):
        uniq.setdefault(k, (sampling[s.task], s.transformed_prompt))
    return Lookup(todo, sample_keys, uniq, cache.get_many(uniq))


def generate_for_model(role: str, ms: ModelSpec, mkey: dict[str, Any], found: Lookup, spec: RunSpec,
                       cache: GenerationCache, progress: bool, pool: BackendPool, release: bool = True) -> dict[str, int]:
    """Fill ``response`` of one model's samples (cache key ``mkey``) from cache or the backend.

    ``release``: close the backend when done (False: the caller releases it, after the probe).
    """
    if found.missing:  # the other model may have just generated them (same weights and options)
        found.hits.update(cache.get_many({k: found.uniq[k] for k in found.missing}))
    todo, sample_keys, uniq, hits = found.todo, found.sample_keys, found.uniq, found.hits
    results: dict[str, str] = dict(hits)
    errors: dict[str, str] = {}
    missing = found.missing
    counts = {"prompts": len(todo), "unique_prompts": len(uniq), "cached": len(hits), "generated": 0, "failed": 0}
    if missing:
        backend = pool.get(role)
        try:
            by_sampling: dict[str, list[str]] = {}
            for k in uniq:  # batches are formed over *all* prompts so a resumed run batches identically
                by_sampling.setdefault(json.dumps(uniq[k][0].key(), sort_keys=True), []).append(k)
            bar = _progress(len(missing), f"{role}: {ms.name}", progress)
            size = spec.batch_size or getattr(BACKENDS.entry(ms.backend).load(), "default_batch_size", 32)
            for keys in by_sampling.values():
                keys.sort(key=lambda k: (-len(uniq[k][1]), k))
                for i in range(0, len(keys), size):
                    batch = [k for k in keys[i : i + size] if k not in results]
                    if not batch:
                        continue
                    samp = uniq[batch[0]][0]
                    prompts = [uniq[k][1] for k in batch]
                    out = _generate_batch(backend, prompts, samp)
                    rows = []
                    for k, prompt, (text, err) in zip(batch, prompts, out):
                        if err is None:
                            results[k] = text
                            rows.append((k, json.dumps(mkey, sort_keys=True), json.dumps(samp.key(), sort_keys=True), prompt, text))
                        else:
                            errors[k] = err
                    cache.put_many(rows)
                    counts["generated"] += len(rows)
                    counts["failed"] += len(batch) - len(rows)
                    bar.update(len(batch))
            bar.close()
        finally:
            if release:
                pool.release(role)
    for s, k in zip(todo, sample_keys):
        if k in results:
            s.response = results[k]
            s.cached = k in hits
        else:
            s.error = errors.get(k, "no response")
    return counts


def _generate_batch(backend, prompts: list[str], sampling: Sampling) -> list[tuple[str | None, str | None]]:
    """Generate a batch; on failure retry prompt by prompt so one bad prompt fails alone."""
    try:
        texts = backend.generate(prompts, sampling)
        if len(texts) != len(prompts):
            raise RuntimeError(f"backend returned {len(texts)} responses for {len(prompts)} prompts")
        return [(None, f"backend error: {t.reason}") if isinstance(t, Failed) else (t, None) for t in texts]
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as batch_exc:
        if len(prompts) == 1:
            return [(None, f"backend error: {type(batch_exc).__name__}: {batch_exc}")]
        out = []
        for p in prompts:
            try:
                t = backend.generate([p], sampling)[0]
                out.append((None, f"backend error: {t.reason}") if isinstance(t, Failed) else (t, None))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                out.append((None, f"backend error: {type(exc).__name__}: {exc}"))
        return out


def score_samples(samples: list[Sample], tasks: dict[str, Task], transforms: dict[str, Transform]) -> None:
    """Invert responses (one batch per transform: back-translation is batched and cached) and score them."""
    inverted: dict[int, str | Failed] = {}
    by_transform: dict[str, list[Sample]] = {}
    for s in samples:
        if s.error is None and s.mode == "transform" and s.transform in transforms:
            by_transform.setdefault(s.transform, []).append(s)
    for tid, group in by_transform.items():
        uniq = list(dict.fromkeys(s.response for s in group))
        outs = dict(zip(uniq, transforms[tid].inverse_batch(uniq)))
        for s in group:
            inverted[id(s)] = outs[s.response]
    for s in samples:
        if s.error is not None:
            s.outcome, s.detail = ERROR, ""
            continue
        inv = inverted.get(id(s), s.response)
        if isinstance(inv, Failed):
            s.error, s.outcome = inv.reason, ERROR
            continue
        s.inverted = inv
        try:
            sc = tasks[s.task].score(inv, s.reference)
        except Exception as exc:
            s.error, s.outcome = f"scoring failed: {type(exc).__name__}: {exc}", ERROR
            continue
        s.outcome, s.detail = sc.label, sc.detail


def _git_hash() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
            return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except Exception:
        pass
    return None


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "platform": platform.platform(), "conjugate-harness": __version__,
            **package_versions(("torch", "transformers", "peft", "jinja2", "gguf"))}




def run(spec: RunSpec, progress: bool = True, backend_factory: Callable[[ModelSpec], Any] | None = None,
        log: Callable[[str], None] | None = None, probe: bool = True) -> Path:
    """Run ``spec`` end to end; return the run folder. Bad input raises before anything is written.

    ``probe``: also run the task-inference probe (log-likelihoods of the two
    competing continuations of tasks that define them; :mod:`harness.pipeline.probe`).
    """
    started = time.time()
    keys = {role: model_key(getattr(spec, role)) for role in ROLES}  # checks the models exist before translating
    p = plan(spec, make_context(spec, progress))
    if log:
        log(f"run {spec.resolved_run_id()}: {spec.pretrained.name} vs {spec.finetuned.name}; "
            f"{len(p.samples)} samples ({', '.join(spec.tasks)} x {', '.join(spec.transforms)})")
    run_dir = spec.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = GenerationCache(spec.cache or cache_root() / "generations.sqlite")
    gen_counts = {}
    probe_info: dict[str, Any] = {"enabled": probe}
    pool = None
    try:
        found = {role: lookup(keys[role], [s for s in p.samples if s.model == role], p.sampling, cache) for role in ROLES}
        probe_found, probe_cls = {}, {}
        try:
            conts, probe_notes = probing.continuations(p.samples, p.tasks, p.transforms) if probe else ({}, [])
            p.notes.extend(probe_notes)
            if conts:
                for role in ROLES:
                    probe_found[role] = probing.lookup(keys[role], [s for s in p.samples if s.model == role], conts, cache)
                    probe_cls[role] = None if backend_factory else BACKENDS.entry(getattr(spec, role).backend).load()
        except Exception as exc:  # the probe is an extra: never lose a run over it
            probe_found = {}
            p.notes.append(f"probe skipped: {type(exc).__name__}: {exc}")
        needed = {r for r in ROLES if found[r].missing or (
            r in probe_found and probe_found[r].missing
            and (probe_cls[r] is None or probing.supports_loglikelihood(probe_cls[r])))}
        pool = BackendPool(spec, backend_factory, needed=needed)
        for role in ROLES:
            ms = getattr(spec, role)
            try:
                gen_counts[role] = generate_for_model(role, ms, keys[role], found[role], spec, cache, progress, pool,
                                                      release=False)
                if role in probe_found:
                    size = spec.batch_size or getattr(probe_cls[role], "default_batch_size", None) or 32
                    if log and probe_found[role].missing:
                        log(f"probe {role}: scoring up to {len(probe_found[role].missing)} continuations")
                    try:
                        probe_info[role], notes = probing.probe_for_model(
                            role, ms, keys[role], probe_found[role], cache, pool, size, probe_cls[role], progress)
                    except Exception as exc:
                        probe_info[role] = {"skipped": f"{type(exc).__name__}: {exc}"}
                        notes = [f"probe failed for {role} ({ms.name}): {type(exc).__name__}: {exc}"]
                    p.notes.extend(notes)
                    c = probe_info[role]
                    if log and c.get("computed"):
                        log(f"probe {role}: {c['computed']} log-likelihoods computed, {c['cached']} from cache "
                            f"({c['seconds']} s)")
            finally:
                pool.release(role)
    finally:
        if pool is not None:
            pool.close_all()
        cache.close()
    try:
        score_samples(p.samples, p.tasks, p.transforms)
    finally:
        translation = p.ctx.describe()
        p.ctx.close()
    manifest = {
        "run_id": spec.resolved_run_id(),
        "spec": spec.to_dict(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 2),
        "versions": _versions(),
        "git": _git_hash(),
        "tasks": {n: {"version": t.version, "labels": list(t.labels)} for n, t in p.tasks.items()},
        "transforms": {n: t.describe() for n, t in p.transforms.items()},
        "sampling": {n: s.key() for n, s in p.sampling.items()},
        "models": {role: {"spec": getattr(spec, role).to_dict(), "identity": keys[role]["identity"]} for role in ROLES},
        "generation": gen_counts,
        "probe": probe_info,
        "backends": pool.described,
        "translation": translation,
        "notes": p.notes,
    }
    write_outputs(run_dir, manifest, p.samples, p.tasks)
    return run_dir
