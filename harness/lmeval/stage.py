"""The runner's step for ``lmeval:<task>`` tasks: per model and conjugate, lm-eval evaluates through ConjugateLM.

For each conjugate, the run's lm-eval tasks are evaluated by
``lm_eval.simple_evaluate`` (so seeds, few-shot sampling, filters and metrics
are exactly lm-eval's) with a :class:`~harness.lmeval.lm.ConjugateLM` that
serves the model's requests through the run's cached executor and backend
pool. A conjugate the task renders natively (``lang:fr`` with a declared
French rendering) evaluates that lm-eval task with no transform; a
native-only conjugate without one is skipped (with a note, as for any task);
any other conjugate wraps the task's own requests in forward/inverse.
"""
from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict
from typing import Any, Callable, Sequence

from harness.errors import ConjugateError
from harness.lmeval.lm import ConjugateLM
from harness.lmeval.service import ModelService
from harness.lmeval.samples import Cell, to_samples
from harness.pipeline.execute import Executor


def lmeval_tasks(tasks: dict[str, Any]) -> dict[str, Any]:
    from harness.tasks.lmeval import LMEVAL

    return {n: t for n, t in tasks.items() if t.output_type == LMEVAL}


def cells(tasks: dict[str, Any], transforms: dict[str, Any]) -> list[Cell]:
    """Every (lm-eval task, conjugate) cell the run evaluates, in spec order."""
    out = []
    for tid, tr in transforms.items():
        for name, task in lmeval_tasks(tasks).items():
            if tr.native is not None and tr.native in task.renderings:
                out.append(Cell(name, task.lm_task, task.lm_task_for(tr.native), tid, "native"))
            elif not tr.requires_native:
                out.append(Cell(name, task.lm_task, task.lm_task, tid, "transform"))
    return out


def run_lmeval(p, role: str, executor: Executor, opener: Callable[[], Any], label: str) -> dict[str, Any]:
    """Evaluate the plan's lm-eval cells for ``role``; append their samples to ``p.samples``; return counts."""
    tasks = lmeval_tasks(p.tasks)
    service = ModelService(executor, opener, label=label)
    started = time.time()
    groups: dict[tuple[str, str, Any], list[Cell]] = defaultdict(list)
    for c in cells(p.tasks, p.transforms):
        groups[(c.transform, c.mode, tasks[c.task].num_fewshot)].append(c)
    catalog = next(iter(tasks.values())).catalog
    for (tid, mode, num_fewshot), group in groups.items():
        transform = p.transforms[tid] if mode == "transform" else "identity"
        lm = ConjugateLM(service=service, transform=transform)
        results = evaluate(lm, catalog, [c.lm_task for c in group], p.spec.limit, num_fewshot, executor.progress)
        for c in group:
            output_type = results["configs"][c.lm_task].get("output_type", "")
            p.samples.extend(to_samples(results["samples"][c.lm_task], lm.records, role, c, output_type))
    for name, task in tasks.items():
        task.set_labels([s for s in p.samples if s.task == name])
    return {**service.counts, "seconds": round(time.time() - started, 2),
            **({"skipped": service.skipped[0]} if service.skipped else {})}


def evaluate(lm: ConjugateLM, catalog, names: Sequence[str], limit: int | None, num_fewshot: int | None,
             progress: bool = True) -> dict:
    """``lm_eval.simple_evaluate`` on ``names`` with lm-eval's own defaults (seeds, few-shot), per-sample logs on."""
    import lm_eval

    names = list(dict.fromkeys(names))
    try:
        with _lm_eval_bars(progress):
            return lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=catalog.manager(names), limit=limit,
                                           num_fewshot=num_fewshot, bootstrap_iters=0, log_samples=True)
    except (KeyboardInterrupt, SystemExit, ConjugateError):
        raise
    except Exception as exc:
        hint = ""
        if "connect" in str(exc).lower() or "offline" in str(exc).lower() or "hub" in str(exc).lower():
            hint = ("; its dataset may need the Hugging Face Hub, which is unreachable here: bring the data as "
                    "local files (dataset_path: json + data_files) in a YAML under --lmeval-include DIR")
        raise ConjugateError(f"lm-eval failed on {', '.join(names)}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}{hint}") from None


@contextlib.contextmanager
def _lm_eval_bars(enabled: bool):
    """lm-eval's own progress bars (building requests) and datasets' (preparing a split) follow --no-progress."""
    import datasets
    import lm_eval.api.task as lm_task

    bar, shown = lm_task.tqdm, datasets.is_progress_bar_enabled()
    if not enabled:
        lm_task.tqdm = functools.partial(bar, disable=True)
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        lm_task.tqdm = bar
        if shown and not enabled:
            datasets.enable_progress_bars()
