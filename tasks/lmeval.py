"""lmeval:<task>: any lm-eval (0.4.13) task, group or tag, under any conjugate; lm-eval builds and scores.

``conjugate run --tasks lmeval:arc_easy,lmeval:xnli_en --transforms identity,leetspeak,translate:fr``

lm-eval's own machinery does the work (its TaskManager, datasets, few-shot
construction, filters, ``process_results``); the harness puts a conjugate
between lm-eval and the model (:class:`harness.lmeval.ConjugateLM`) and serves
every request through its cached executor and backends. A group or tag
expands to its leaf tasks, each a harness task of its own
(``lmeval:xnli`` -> ``lmeval:xnli_en``, ``lmeval:xnli_fr``, ...).

Samples: one per lm-eval document (``example_id`` is lm-eval's doc id), with
every per-document metric of every filter in ``metrics`` (keys as lm-eval
names them: ``acc,none``, ``exact_match,first-word``). The outcome is
``correct``/``incorrect`` from the task's first metric (first filter) when
that metric is 0/1 (acc, exact_match) -- the rate that recovery and the
paired tests use; otherwise ``scored``, and the metric means (with bootstrap
intervals) in the report's metrics table are the result.

Options (``--task-option lmeval:<task>.KEY=VALUE``):

* ``renderings``: native renderings, ``fr:xnli_fr,es:xnli_es`` -- under
  ``lang:fr`` the run evaluates lm-eval's ``xnli_fr`` (native data, same doc
  ids), while ``translate:fr`` machine-translates ``xnli_en``. A task's YAML
  can declare them too: ``metadata: {conjugate: {renderings: {fr: xnli_fr}}}``.
* ``num_fewshot``: as lm-eval's ``--num_fewshot``.

Your own YAML tasks: ``--lmeval-include DIR`` (lm-eval's include_path).
"""
from __future__ import annotations

from typing import Any, ClassVar

from harness.task import EVALUATED_ELSEWHERE as LMEVAL, Task
from harness.types import Example, Rendered, Score


class LmEvalTask(Task):
    """Any lm-eval task, group or tag (lmeval:<name>), run by lm-eval under any conjugate."""

    name: ClassVar[str] = "lmeval"
    param = "lm-eval task, group or tag"
    version = "1"
    labels = ("correct", "incorrect")  # ("scored",) for tasks without a 0/1 first metric (set_labels)
    primary_label = "correct"
    output_type = LMEVAL

    def __init__(self, task: str, renderings: Any = None, num_fewshot: int | None = None) -> None:
        from harness.lmeval.catalog import parse_renderings

        self.lm_task = task.strip()
        self.name = f"{LMEVAL}:{self.lm_task}"  # type: ignore[misc]  (per instance)
        self.option_renderings = parse_renderings(renderings, f"task_options.{self.name}.renderings") \
            if renderings else {}
        if num_fewshot is not None and (not isinstance(num_fewshot, int) or num_fewshot < 0):
            raise ValueError(f"num_fewshot must be a non-negative integer, got {num_fewshot!r}")
        self.num_fewshot = num_fewshot
        self.native: dict[str, str] = {}  # rendering key -> lm-eval task
        self.renderings = frozenset({"en"})  # type: ignore[misc]
        self.catalog = None

    def bind(self, ctx) -> None:
        from harness.lmeval.catalog import Catalog

        catalog = ctx.shared("lmeval-catalog", lambda: Catalog(ctx.lmeval_include))
        catalog.entry(self.lm_task)  # an unknown name fails here, with suggestions
        self._attach(catalog)
        for task in self.native.values():
            catalog.entry(task)

    def _attach(self, catalog) -> None:
        """Use ``catalog``; the native renderings are the YAML's (or a family's) with the task option on top."""
        self.catalog = catalog
        self.native = {**catalog.declared_renderings(self.lm_task), **self.option_renderings}
        self.renderings = frozenset({"en", *self.native})  # type: ignore[misc]

    def expand(self) -> "dict[str, Task] | None":
        """A group or tag: its leaf tasks, each a task of its own (bound to the same catalog)."""
        leaves = self.catalog.leaves(self.lm_task) if self.catalog is not None else [self.lm_task]
        if leaves == [self.lm_task]:
            return None
        out: dict[str, Task] = {}
        for leaf in leaves:
            t = LmEvalTask(leaf, num_fewshot=self.num_fewshot)
            t._attach(self.catalog)
            out[t.name] = t
        return out

    def set_labels(self, samples) -> None:
        """After the run: ``correct``/``incorrect`` when the primary metric is 0/1 (acc, exact_match), else ``scored``."""
        scored = {s.outcome for s in samples if s.error is None}
        if scored and scored <= {"scored"}:
            self.labels, self.primary_label = ("scored",), "scored"  # type: ignore[misc]
        elif scored:
            self.labels, self.primary_label = ("correct", "incorrect"), "correct"  # type: ignore[misc]

    def lm_task_for(self, rendering: str) -> str:
        """The lm-eval task that renders ``rendering`` (``en``: the task itself)."""
        return self.lm_task if rendering == "en" else self.native[rendering]

    # lm-eval builds the documents and prompts and scores them; the Task methods are not used for that
    def examples(self, seed: int) -> list[Example]:
        return []

    def render(self, example: Example, rendering: str = "en") -> Rendered:
        raise NotImplementedError("lm-eval renders lmeval:<task> prompts (see harness.lmeval.stage)")

    def score(self, response: str, reference: dict) -> Score:
        """Re-scoring keeps lm-eval's labels: the outcome from the sample's stored metrics."""
        return outcome_of(reference.get("metrics") or {}, reference.get("primary"))

    def describe(self) -> str:
        return f"lm-eval task {self.lm_task}"


def outcome_of(metrics: dict[str, Any], primary: str | None) -> Score:
    """``correct``/``incorrect`` when the primary metric is 0/1, else ``scored``."""
    detail = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in metrics.items())
    v = metrics.get(primary) if primary else None
    if isinstance(v, bool) or (isinstance(v, (int, float)) and v in (0, 1)):
        return Score("correct" if v else "incorrect", detail)
    return Score("scored", detail)
