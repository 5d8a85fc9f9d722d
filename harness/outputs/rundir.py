"""The run folder: the one place that reads and writes manifest.json, summary.json and samples.jsonl.

A run folder written by ``conjugate run`` holds::

    samples.jsonl   one Sample per line (harness.types.Sample)
    summary.json    the numbers (harness.analysis.summary.summarize)
    manifest.json   what ran, with which versions; written LAST, so its presence marks a complete run
    report.md, report.html, *.png   views, rebuilt by `conjugate report`

Reading is strict where a wrong file would give wrong numbers and lenient elsewhere: every problem is one
:class:`~harness.errors.ConjugateError` naming the file (and line or field) and a fix. The records keep the
JSON exactly as read (unknown keys and key order included), so writing back what was read gives the same
bytes; the typed accessors only interpret it.

Old manifests lack ``task_labels`` / ``primary_labels``; :meth:`Run.labels` and :meth:`Run.primary_label`
fall back to ``manifest.tasks.<task>.labels``, then to the labels seen in summary rows (and, for the primary
label, to the label that summary.recovery was computed on).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from harness.errors import ConjugateError
from harness.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, atomic_write_text, json_lines
from harness.types import Sample

MANIFEST, SUMMARY, SAMPLES = "manifest.json", "summary.json", "samples.jsonl"
ROW_KEYS = ("model", "task", "transform", "group", "n", "rates")
#: the fields a samples.jsonl line cannot do without (the rest have defaults in Sample)
SAMPLE_KEYS = ("model", "task", "transform", "example_id", "group", "mode", "prompt", "transformed_prompt",
               "reference")
SamplesWanted = Literal["need", "optional", "skip"]
GIVE_RUN = "give a folder written by `conjugate run`, e.g. results/<run-id>"


def spec_hash(spec: Mapping[str, Any]) -> str:
    """The hash in a default run id (``<tasks>-<hash>``) from a spec dict (RunSpec.to_dict or a manifest's spec)."""
    from harness.pipeline.spec import spec_hash as _hash  # one definition, shared with RunSpec.content_hash

    return _hash(spec)


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


# -- records ----------------------------------------------------------------------------------------

@dataclass
class Manifest:
    """manifest.json: what ran. ``data`` is the JSON object as read or to be written (key order kept)."""

    data: dict[str, Any]

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.data.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def run_id(self) -> str | None:
        return self.data.get("run_id") or None

    @property
    def tasks(self) -> list[str]:
        return list(self.spec.get("tasks") or [])

    @property
    def transforms(self) -> list[str]:
        return list(self.spec.get("transforms") or [])

    @property
    def notes(self) -> list[str]:
        return list(self.data.get("notes") or [])

    def model_name(self, role: str) -> str:
        """The display name of ``pretrained`` / ``finetuned``; the role itself when the spec has none."""
        m = self.spec.get(role)
        return str(m.get("name")) if isinstance(m, dict) and m.get("name") else role

    def transform_info(self, transform: str) -> dict[str, Any]:
        info = (self.data.get("transforms") or {}).get(transform)
        return info if isinstance(info, dict) else {}

    def spec_hash(self) -> str | None:
        """The spec's content hash (as in a default run id); None when the manifest has no spec."""
        return spec_hash(self.spec) if self.spec else None

    def recorded_labels(self, task: str) -> list[str] | None:
        """The task's labels as the manifest records them (``task_labels``, else ``tasks.<task>.labels``)."""
        labels = (self.data.get("task_labels") or {}).get(task)
        if not labels:
            labels = ((self.data.get("tasks") or {}).get(task) or {}).get("labels")
        return list(labels) if labels else None


@dataclass
class Summary:
    """summary.json: the numbers. ``data`` keeps every section as read (rows, recovery, ..., added sections)."""

    data: dict[str, Any]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.data.get("rows") or []

    @property
    def recovery(self) -> list[dict[str, Any]]:
        return self.data.get("recovery") or []

    def rows_all(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """(task, transform, model) -> the row of group ``all``."""
        return {(r["task"], r["transform"], r["model"]): r for r in self.rows if r.get("group") == "all"}

    def tasks(self) -> list[str]:
        """Tasks in the order their rows appear."""
        return list(dict.fromkeys(r["task"] for r in self.rows))

    def transforms(self) -> list[str]:
        return list(dict.fromkeys(r["transform"] for r in self.rows))

    def row_labels(self, task: str) -> list[str]:
        """Labels of the task's rates, in row order (the fallback for manifests without labels)."""
        out: list[str] = []
        for r in self.rows:
            if r["task"] == task:
                out += [label for label in r["rates"] if label not in out]
        return out


@dataclass
class RunInfo:
    """A run's manifest and summary, and the label fallbacks that need both (old manifests lack labels)."""

    manifest: Manifest
    summary: Summary

    @classmethod
    def of(cls, manifest: Mapping[str, Any], summary: Mapping[str, Any]) -> "RunInfo":
        """From the two JSON objects (views that get dicts)."""
        return cls(Manifest(dict(manifest)), Summary(dict(summary)))

    def tasks(self) -> list[str]:
        """Tasks with labels: those the manifest names (labels, then spec), then any only the rows know."""
        named = [*(self.manifest.data.get("task_labels") or {}), *(self.manifest.data.get("tasks") or {}),
                 *self.manifest.tasks]
        have_rows = set(self.summary.tasks())
        return list(dict.fromkeys([t for t in named if self.manifest.recorded_labels(t) or t in have_rows]
                                  + self.summary.tasks()))

    def labels(self, task: str) -> list[str]:
        """The task's outcome labels: from the manifest, else those its summary rows have."""
        return self.manifest.recorded_labels(task) or self.summary.row_labels(task)

    def task_labels(self) -> dict[str, list[str]]:
        return {t: self.labels(t) for t in self.tasks()}

    def primary_label(self, task: str) -> str | None:
        """The label recovery is about: manifest.primary_labels, else summary.recovery's label, else the first."""
        label = (self.manifest.data.get("primary_labels") or {}).get(task)
        if label:
            return label
        rec = next((r for r in self.summary.recovery if r.get("task") == task and r.get("label")), None)
        if rec:
            return rec["label"]
        labels = self.labels(task)
        return labels[0] if labels else None


@dataclass
class Run(RunInfo):
    """A run folder as read: typed samples plus the JSON as it was (``sample_records``) for byte-exact rewrites."""

    path: Path = Path(".")
    samples: list[Sample] = field(default_factory=list)
    sample_records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.manifest.run_id or self.path.name)


# -- reading ------------------------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConjugateError(f"{path}: is a folder, not a file; {GIVE_RUN}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConjugateError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from None


def _read_object(path: Path, fix: str) -> dict[str, Any]:
    try:
        obj = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise ConjugateError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {fix}") from None
    if not isinstance(obj, dict):
        raise ConjugateError(f"{path}: expected a JSON object, got {type(obj).__name__}; {fix}")
    return obj


def check_rows(summary: dict[str, Any], where: Path, rerender: str) -> None:
    """Every summary row has its keys, an integer ``n`` and rates whose ``k`` lie in 0..n."""
    rows = summary.get("rows")
    if not isinstance(rows, list):
        raise ConjugateError(f"{where}: rows: missing or not a list; {rerender}")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ConjugateError(f"{where}: rows[{i}]: expected an object; {rerender}")
        for key in ROW_KEYS:
            if key not in r:
                raise ConjugateError(f"{where}: rows[{i}].{key}: missing; {rerender}")
        if not _is_count(r["n"]):
            raise ConjugateError(f"{where}: rows[{i}].n: expected a non-negative integer, got {r['n']!r}; {rerender}")
        if not isinstance(r["rates"], dict):
            raise ConjugateError(f"{where}: rows[{i}].rates: expected an object of label -> {{k, rate, lo, hi}}; {rerender}")
        for label, v in r["rates"].items():
            if not isinstance(v, dict) or not _is_count(v.get("k")) or v["k"] > r["n"]:
                raise ConjugateError(f"{where}: rows[{i}].rates.{label}.k: expected an integer from 0 to n={r['n']}; {rerender}")


def read_samples(path: Path) -> tuple[list[Sample], list[dict[str, Any]]]:
    """(samples, the JSON objects as read) of a samples.jsonl; a bad line is named with its number."""
    samples, records = [], []
    fix = "re-run the same `conjugate run` command to regenerate it"
    for i, d in json_lines(_read_text(path).splitlines(), str(path), ConjugateError, f"; {fix}", objects=True):
        missing = [k for k in SAMPLE_KEYS if k not in d]
        if missing:
            raise ConjugateError(f"{path} line {i}: {', '.join(missing)}: missing; {fix}")
        samples.append(Sample.from_dict(d))
        records.append(d)
    return samples, records


class RunDir:
    """A run folder on disk: ``RunDir(path).read()`` and ``RunDir(path).write(...)``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- reading
    def check_folder(self, names: Iterable[str] = (MANIFEST, SUMMARY, SAMPLES)) -> None:
        """ConjugateError unless the folder exists and holds the files ``names``."""
        p = self.path
        if not p.exists():
            raise ConjugateError(f"{p}: no such folder; {GIVE_RUN}")
        if not p.is_dir():
            raise ConjugateError(f"{p}: not a folder; {GIVE_RUN}")
        missing = [n for n in names if not (p / n).exists()]
        if missing:
            raise ConjugateError(
                f"{p}: not a finished run folder (no {', '.join(missing)}); {GIVE_RUN} (a run writes manifest.json "
                f"last; an interrupted run resumes with the same `conjugate run` command)")

    def read_manifest(self) -> Manifest:
        return Manifest(_read_object(self.path / MANIFEST, "restore it, or re-run the same `conjugate run` command"))

    def read_summary(self) -> Summary:
        rerender = f"rebuild it with `conjugate report {self.path}`"
        data = _read_object(self.path / SUMMARY, rerender)
        check_rows(data, self.path / SUMMARY, rerender)
        return Summary(data)

    def read(self, samples: SamplesWanted = "need", summary: bool = True) -> Run:
        """The run's manifest, summary and samples.

        ``samples``: ``"need"`` (samples.jsonl must exist), ``"optional"`` (read when present) or ``"skip"``
        (not read: gating rates needs only the summary). ``summary=False`` skips summary.json (an empty Summary):
        `conjugate report` rebuilds it from the samples, so a missing or damaged one must not stop it.
        """
        if samples not in ("need", "optional", "skip"):
            raise ValueError(f"samples={samples!r}: expected 'need', 'optional' or 'skip'")
        self.check_folder([MANIFEST] + ([SUMMARY] if summary else []) + ([SAMPLES] if samples == "need" else []))
        run = Run(self.read_manifest(), self.read_summary() if summary else Summary({}), self.path)
        if samples == "need" or (samples == "optional" and self.has_samples()):
            run.samples, run.sample_records = read_samples(self.path / SAMPLES)
        return run

    def has_samples(self) -> bool:
        return (self.path / SAMPLES).is_file()

    # -- writing (each file atomic; manifest.json last)
    def write_samples(self, samples: Iterable[Sample | Mapping[str, Any]]) -> None:
        """One JSON object per line; a Sample as Sample.to_json writes it, a dict with its keys as given."""
        atomic_write_jsonl(self.path / SAMPLES, (
            s.to_json() if isinstance(s, Sample) else json.dumps(s, ensure_ascii=False) for s in samples))

    def write_summary(self, summary: Summary | Mapping[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, summary.data if isinstance(summary, Summary) else summary)

    def write_file(self, name: str, content: str | bytes) -> None:
        """Any other file of the folder (report.md, a plot), atomically."""
        if isinstance(content, bytes):
            atomic_write_bytes(self.path / name, content)
        else:
            atomic_write_text(self.path / name, content)

    def write_manifest(self, manifest: Manifest | Mapping[str, Any]) -> None:
        """Last: its presence marks a complete run."""
        atomic_write_json(self.path / MANIFEST, manifest.data if isinstance(manifest, Manifest) else manifest)

    def write(self, manifest: Manifest | Mapping[str, Any], summary: Summary | Mapping[str, Any],
              samples: Iterable[Sample | Mapping[str, Any]], files: Mapping[str, str | bytes] | None = None) -> None:
        """samples.jsonl, summary.json, the other ``files``, then manifest.json."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_samples(samples)
        self.write_summary(summary)
        for name, content in (files or {}).items():
            self.write_file(name, content)
        self.write_manifest(manifest)


def read_run(path: str | Path, samples: SamplesWanted = "need") -> Run:
    """Shorthand for ``RunDir(path).read(samples)``."""
    return RunDir(path).read(samples)


__all__ = ["MANIFEST", "SAMPLES", "SUMMARY", "Manifest", "Run", "RunDir", "RunInfo", "Summary", "check_rows", "read_run",
           "read_samples", "spec_hash"]
