"""The runner: plan -> per model, execute its requests -> score -> write the run folder.

1. :func:`~harness.pipeline.plan.plan`: task x transform x example -> samples
   with their final prompts (rendered natively, localised, or forwarded).
2. Per model, every request goes through the cached executor
   (:mod:`harness.pipeline.execute`): generations of ``generate`` tasks, the
   log-likelihoods of multiple-choice tasks' choices
   (:mod:`harness.pipeline.choice`) and of the task-inference probe
   (:mod:`harness.pipeline.probe`; with the local executor, each generation
   batch's prompts are probed right after that batch, while the backend keeps
   their prefills). Everything is looked up in the cache
   first; a model's backend is opened only if something is missing, and
   closed once that model is done.
3. :func:`~harness.pipeline.score.score_samples`: invert and score; tasks that
   declare a judge model have their responses judged too
   (:mod:`harness.pipeline.judge`; the sample's outcome stays the task's); then
   :func:`harness.outputs.write.write_outputs` writes ``manifest.json``,
   ``samples.jsonl``, ``summary.json`` and the reports atomically into
   ``results/<run-id>/``.

Failures (a transform that raises, a backend error) become samples with
outcome ``error`` and the reason; they are never scored as a behaviour and
never cached, so a re-run retries them.
"""
from __future__ import annotations

import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.version import __version__
from harness.io import package_versions
from harness.outputs.rundir import run_folder
from harness.outputs.write import AFTER_GENERATION, write_outputs  # noqa: F401 (AFTER_GENERATION re-exported)
from harness.pipeline import choice, judge as judging, probe as probing
from harness.pipeline.cache import GenerationCache
from harness.pipeline.execute import GENERATE, KINDS, LOGLIKELIHOOD, Executor, Generate, Job, Outcome
from harness.pipeline.models import ModelSpec, cache_root
from harness.pipeline.plan import Plan, create_task, make_context, plan  # noqa: F401 (create_task re-exported)
from harness.pipeline.pool import ROLES, BackendPool, backend_class, model_key
from harness.pipeline.score import score_samples
from harness.pipeline.spec import RunSpec
from harness.task import EVALUATED_ELSEWHERE
from harness.types import Sample

Log = Callable[[str], None]
__all__ = ["run", "execute_plan", "AFTER_GENERATION", "create_task", "plan", "score_samples", "model_key"]


@dataclass
class ModelWork:
    """One model's requests, looked up in the cache before any backend is opened."""

    role: str
    spec: ModelSpec
    executor: Executor
    generated: list[Sample]  # samples of generation tasks, one request each
    generate: Job
    chosen: list[Sample]  # samples of multiple-choice tasks, one request per choice
    choices: Job
    probe: Job | None  # before generation; redone after it, without the samples whose generation failed

    def needs_backend(self, pool: BackendPool) -> bool:
        scored = any(j is not None and j.missing for j in (self.choices, self.probe))
        return bool(self.generate.missing) or (scored and pool.lacks(self.role, "loglikelihood") is None)


@dataclass
class Requests:
    """What the run asks of the models, and what the manifest records about it."""

    choice_conts: dict[int, dict[str, str]]
    probe_conts: dict[int, dict[str, str]]
    info: dict[str, Any] = field(default_factory=dict)


def run(spec: RunSpec, progress: bool = True, backend_factory: Callable[[ModelSpec], Any] | None = None,
        log: Log | None = None, probe: bool = True) -> Path:
    """Run ``spec`` end to end; return the run folder. Bad input raises before anything is written.

    ``probe``: also run the task-inference probe (log-likelihoods of the two
    competing continuations of tasks that define them; :mod:`harness.pipeline.probe`).
    ``backend_factory`` (tests, benchmarks): builds a model's backend instead of the registry.
    """
    started = time.time()
    probe = probe and spec.probe  # `probe: false` in a config, as --no-probe
    run_dir = run_folder(spec.out, spec.resolved_run_id())  # a plain name under --out, whatever the tasks are called
    # checks the models exist before translating; an injected backend caches apart from the registry's
    keys = {role: model_key(getattr(spec, role), backend_factory) for role in ROLES}
    if spec.executor == "ray":
        ray_exec().check_installed()  # a one-line error naming the fix before anything is planned
    p = plan(spec, make_context(spec, progress))
    judges = judging.prepare(p)  # a task's judge model (refusal.judge) is checked before anything is generated
    if log:
        extra = " + lm-eval's documents" if has_lmeval(p) else ""
        log(f"run {spec.resolved_run_id()}: {spec.pretrained.name} vs {spec.finetuned.name}; "
            f"{len(p.samples)} samples{extra} ({', '.join(p.tasks)} x {', '.join(spec.transforms)})")
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        info = execute_plan(p, keys, backend_factory, progress, log, probe)
        score_samples(p.samples, p.tasks, p.transforms)
        judging.judge_run(p, judges, progress, log)
    finally:
        translation = p.ctx.describe()
        p.ctx.close()
    write_outputs(run_dir, manifest(p, keys, info, translation, started), p.samples, p.tasks)
    return run_dir


def execute_plan(p: Plan, keys: dict[str, dict], factory: Callable[[ModelSpec], Any] | None, progress: bool,
            log: Log | None, probe: bool) -> dict[str, Any]:
    """Every model's requests through the cache and, for what is missing, its backend; returns the manifest's counts."""
    cache = GenerationCache(p.spec.cache or cache_root() / "generations.sqlite", [k.table for k in KINDS.values()])
    pool = BackendPool(p.spec, factory) if p.spec.executor == "local" else ray_exec().RayPool(p.spec, factory)
    try:
        req = requests(p, probe)
        work = [model_work(role, p, keys[role], cache, req, progress) for role in ROLES]
        pool.needed = {w.role for w in work if w.needs_backend(pool)} | (set(ROLES) if has_lmeval(p) else set())
        for w in work:
            try:
                run_model(w, p, pool, req, log)
                if has_lmeval(p):
                    req.info["lmeval"][w.role] = run_lmeval(w, p, pool, log)
            finally:
                pool.release(w.role)
    finally:
        pool.close_all()
        cache.close()
    return {**req.info, "backends": pool.described}


def requests(p: Plan, probe: bool) -> Requests:
    """The continuations of multiple-choice samples and of the probe, forwarded where the prompt was."""
    req = Requests(choice.continuations(p.samples, p.tasks, p.transforms), {},
                   {"generation": {}, "choices": {}, "probe": {"enabled": probe}, "lmeval": {}})
    if probe:
        try:
            req.probe_conts, notes = probing.continuations(p.samples, p.tasks, p.transforms)
            p.notes.extend(notes)
        except Exception as exc:  # the probe is an extra: never lose a run over it
            p.notes.append(f"probe skipped: {type(exc).__name__}: {exc}")
    return req


def model_work(role: str, p: Plan, mkey: dict, cache: GenerationCache, req: Requests, progress: bool) -> ModelWork:
    ms: ModelSpec = getattr(p.spec, role)
    cls = Executor if p.spec.executor == "local" else ray_exec().RayExecutor
    ex = cls(cache, mkey, p.spec.batch_size or backend_class(ms).default_batch_size, progress)
    ex.order = backend_class(ms).batch_order(ms)
    mine = [s for s in p.samples if s.model == role]
    gen = [s for s in mine if s.error is None and p.tasks[s.task].output_type == "generate"]
    chosen, choice_reqs = choice.requests(mine, req.choice_conts)
    return ModelWork(role, ms, ex, gen, ex.lookup(GENERATE, [Generate(s.transformed_prompt, p.sampling[s.task])
                                                            for s in gen]),
                     chosen, ex.lookup(LOGLIKELIHOOD, choice_reqs),
                     probing.lookup(ex, mine, req.probe_conts) if req.probe_conts else None)


def run_model(w: ModelWork, p: Plan, pool: BackendPool, req: Requests, log: Log | None) -> None:
    """One model: generate (probing each batch's prompts right after it), score the choices, then the rest of the
    probe (its backend, if opened, still open)."""
    role, name = w.role, w.spec.name
    started = time.time()
    alongside = None
    if w.probe is not None and w.probe.missing and p.spec.executor == "local":
        alongside = probing.Alongside(w.executor, w.probe, pool.opener(role, "loglikelihood", quiet=True))
        if log:
            log(f"probe {role}: scoring up to {len(w.probe.missing)} continuations (alongside generation)")
    out = w.executor.run(w.generate, pool.opener(role, "generate"), f"{role}: {name}", after_batch=alongside)
    apply_generations(w.generated, out)
    c = out.counts
    spent = time.time() - started - pool.load_seconds.get(role, 0.0) - (alongside.seconds if alongside else 0.0)
    req.info["generation"][role] = {"prompts": c["requests"], "unique_prompts": c["unique"], "cached": c["cached"],
                                    "generated": c["computed"], "failed": c["failed"], "seconds": round(spent, 2)}
    if w.chosen:
        out = w.executor.run(w.choices, pool.opener(role, "loglikelihood"), f"choices {role}: {name}")
        choice.apply(w.chosen, req.choice_conts, out)
        req.info["choices"][role] = {"samples": len(w.chosen), **out.counts}
    if w.probe is None:
        return
    if log and w.probe.missing and alongside is None:
        log(f"probe {role}: scoring up to {len(w.probe.missing)} continuations")
    mine = [s for s in p.samples if s.model == role]
    counts, notes = probing.probe_model(f"{role} ({name})", w.executor, mine, req.probe_conts,
                                        pool.opener(role, "loglikelihood", quiet=True), f"probe {role}: {name}",
                                        alongside)
    req.info["probe"][role] = counts
    p.notes.extend(notes)
    if log and counts.get("computed"):
        log(f"probe {role}: {counts['computed']} log-likelihoods computed, {counts['cached']} from cache "
            f"({counts['seconds']} s)")


def ray_exec():
    """:mod:`harness.pipeline.ray_exec` (``--executor ray``), imported only when a run uses it."""
    from harness.pipeline import ray_exec as module

    return module


def has_lmeval(p: Plan) -> bool:
    return any(t.output_type == EVALUATED_ELSEWHERE for t in p.tasks.values())


def run_lmeval(w: ModelWork, p: Plan, pool: BackendPool, log: Log | None) -> dict[str, Any]:
    """The model's lm-eval tasks (harness.lmeval.stage), through the same executor and backend pool."""
    from harness.lmeval.stage import run_lmeval as stage

    counts = stage(p, w.role, w.executor, pool.opener(w.role, "generate"), f"lm-eval {w.role}: {w.spec.name}")
    if log:
        log(f"lm-eval {w.role}: {counts['requests']} requests, {counts['computed']} computed, "
            f"{counts['cached']} from cache, {counts['failed']} failed ({counts['seconds']} s)")
    return counts


def apply_generations(samples: list[Sample], out: Outcome) -> None:
    """Each sample's response (and whether it came from the cache), or its error."""
    for s, r in zip(samples, out):
        if r.error is None:
            s.response, s.cached = r.value, r.cached
        else:
            s.error = f"backend error: {r.error}"


def manifest(p: Plan, keys: dict[str, dict], info: dict[str, Any], translation: Any, started: float) -> dict:
    spec = p.spec
    out = {
        "run_id": spec.resolved_run_id(),
        "spec": spec.to_dict(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 2),
        "versions": _versions(),
        "git": _git_hash(),
        "tasks": {n: {"version": t.version, "labels": list(t.labels), "probe_wording": t.probe_wording}
                  for n, t in p.tasks.items()},
        "transforms": {n: t.describe() for n, t in p.transforms.items()},
        "sampling": {n: s.key() for n, s in p.sampling.items()},
        "models": {role: {"spec": getattr(spec, role).to_dict(), "identity": keys[role]["identity"]} for role in ROLES},
        "generation": info["generation"],
        "choices": info["choices"],
        "probe": info["probe"],
        "backends": info["backends"],
        "translation": translation,
        "notes": p.notes,
    }
    if not out["choices"]:  # runs without multiple-choice tasks keep the manifest they had
        del out["choices"]
    if info.get("lmeval"):
        out["lmeval"] = info["lmeval"]
    return out


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
