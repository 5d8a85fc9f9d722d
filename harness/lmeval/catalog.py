"""lm-eval's task catalog for a run: its TaskManager with the ``--lmeval-include`` folders.

* Names: a task, a group or a tag; groups and tags expand to their leaf tasks
  (each becomes its own harness task, ``lmeval:<leaf>``). An unknown name is
  an :class:`~harness.errors.UnknownNameError` with "did you mean".
* Indexing lm-eval's ~15,000 built-in entries takes about 10 s, so the
  include folders are indexed alone first; the built-ins only when a name is
  not found there (or a folder's YAML ``include:`` needs them).
* Native renderings: ``metadata: {conjugate: {renderings: {fr: TASK_fr, ...}}}``
  in a task's YAML, or the task option ``renderings``. lm-eval's parallel
  multilingual families come declared (:data:`PARALLEL`: ``xnli_en`` renders
  ``fr`` as ``xnli_fr``, ...): their documents are translations of the same
  items in the same order, so doc ids pair up across languages.
"""
from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any, Sequence

from harness.errors import ConfigError, ConjugateError, UnknownNameError


#: lm-eval's parallel multilingual families: English task -> (name pattern, the languages of the original dataset)
PARALLEL = {
    "xnli_en": ("xnli_{}", "ar bg de el es fr hi ru sw th tr ur vi zh"),  # XNLI (Conneau et al. 2018)
    "paws_en": ("paws_{}", "de es fr ja ko zh"),  # PAWS-X
    "xstorycloze_en": ("xstorycloze_{}", "ar es eu hi id my ru sw te zh"),  # XStoryCloze
    "mgsm_direct_en": ("mgsm_direct_{}", "bn de es fr ja ru sw te th zh"),  # MGSM
}


def quiet_lm_eval() -> None:
    """lm-eval logs every step at INFO/WARNING; the harness reports what matters itself."""
    for name in ("lm_eval", "lm-eval", "lm_eval.evaluator", "lm_eval.api.task"):
        logging.getLogger(name).setLevel(logging.ERROR)


class Catalog:
    """The TaskManager(s) of one run, built on first use."""

    def __init__(self, include: Sequence[str] = ()) -> None:
        self.include = [str(Path(p).expanduser()) for p in include]
        for p in self.include:
            if not Path(p).is_dir():
                raise ConfigError(f"--lmeval-include {p}: no such folder; give a folder of lm-eval task YAML files")
        self._local = None
        self._full = None

    def manager(self, names: Sequence[str] = ()):
        """A TaskManager that knows every name in ``names`` (the include folders alone when they suffice)."""
        quiet_lm_eval()
        from lm_eval.tasks import TaskManager

        if self.include and self._full is None:
            if self._local is None:
                self._local = TaskManager(include_path=self.include, include_defaults=False)
            if all(n in self._local.all_tasks for n in names):
                return self._local
        if self._full is None:
            self._full = TaskManager(include_path=self.include or None)
        return self._full

    def entry(self, name: str):
        tm = self.manager([name])
        if name not in tm.task_index:
            close = difflib.get_close_matches(name, tm.all_tasks, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join('lmeval:' + c for c in close)}?" if close else ""
            where = f" or in --lmeval-include {', '.join(self.include)}" if self.include else \
                " (your own YAML tasks: --lmeval-include DIR)"
            raise UnknownNameError(f"unknown lm-eval task {name!r}: not among lm-eval's tasks, groups and tags"
                                   f"{where}.{hint}")
        return tm.task_index[name]

    def leaves(self, name: str) -> list[str]:
        """The leaf task names of ``name`` (itself, for a task)."""
        e = self.entry(name)
        if e.kind.name in ("TASK", "PY_TASK"):
            return [name]
        tm = self.manager([name])
        try:
            loaded = tm.load([name])
        except Exception as exc:
            raise ConjugateError(f"lm-eval could not load {name!r}: {type(exc).__name__}: {exc}") from None
        return list(loaded["tasks"])

    def config(self, name: str) -> dict[str, Any]:
        return dict(self.entry(name).cfg or {})

    def declared_renderings(self, name: str) -> dict[str, str]:
        """{rendering key: lm-eval task}: a parallel family's (:data:`PARALLEL`), then the task YAML's
        ``metadata.conjugate.renderings`` on top."""
        out = {}
        if name in PARALLEL:
            pattern, langs = PARALLEL[name]
            known = set(self.manager([name]).all_subtasks)
            out = {lang: pattern.format(lang) for lang in langs.split() if pattern.format(lang) in known}
        meta = self.config(name).get("metadata") or {}
        conj = meta.get("conjugate") if isinstance(meta, dict) else None
        r = conj.get("renderings") if isinstance(conj, dict) else None
        if r is not None:
            out.update(parse_renderings(r, f"lm-eval task {name}: metadata.conjugate.renderings"))
        return out

    def load(self, names: Sequence[str]) -> dict[str, Any]:
        """lm-eval's TaskManager.load of leaf tasks; a failure names the task and lm-eval's reason."""
        tm = self.manager(names)
        try:
            return tm.load(list(names))
        except Exception as exc:
            raise ConjugateError(f"lm-eval could not load {', '.join(names)}: {type(exc).__name__}: {exc}") from None


def parse_renderings(value: Any, where: str) -> dict[str, str]:
    """``{fr: task_fr}`` or ``"fr:task_fr,es:task_es"`` as a dict; a bad item is a ConfigError naming ``where``."""
    if isinstance(value, str):
        out = {}
        for item in filter(None, (x.strip() for x in value.split(","))):
            key, sep, task = item.partition(":")
            if not sep or not key.strip() or not task.strip():
                raise ConfigError(f"{where}: {item!r} is not KEY:TASK; write e.g. fr:xnli_fr,es:xnli_es")
            out[key.strip()] = task.strip()
        return out
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    raise ConfigError(f"{where}: expected a mapping {{fr: TASK_fr}} or 'fr:TASK_fr,es:TASK_es', got {value!r}")
