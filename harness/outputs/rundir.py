"""The run folder: the one place that reads and writes manifest.json, summary.json and samples.jsonl.

A run folder written by ``conjugate run`` holds::

    samples.jsonl   one Sample per line (harness.types.Sample)
    summary.json    the numbers (harness.analysis.summary.summarize); strict JSON (undefined numbers are null)
    manifest.json   what ran, with which versions; written LAST, so its presence marks a complete run
    report.md, report.html, *.png   views, rebuilt by `conjugate report`

The folder is committed as a whole by manifest.json: its ``checksums`` hold the SHA-256 of samples.jsonl and
summary.json as this write made them, and every reader compares them, so a folder whose files come from two
writes (a run re-using a ``--run-id`` killed between samples.jsonl and manifest.json) is refused instead of
being read as one run. ``output_errors`` lists what could not be written (the samples and the manifest always
are); `conjugate report` finishes such a folder. Manifests written before checksums existed are read as before.

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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from harness.errors import ConjugateError
from harness.io import (atomic_write_bytes, atomic_write_text, finite_json, is_safe_name, json_lines, json_text,
                        safe_name, sha256_hex)
from harness.types import ERROR, Sample

MANIFEST, SUMMARY, SAMPLES = "manifest.json", "summary.json", "samples.jsonl"
ROW_KEYS = ("model", "task", "transform", "group", "n", "rates")
#: the fields a samples.jsonl line cannot do without (the rest have defaults in Sample)
SAMPLE_KEYS = ("model", "task", "transform", "example_id", "group", "mode", "prompt", "transformed_prompt",
               "reference")
SamplesWanted = Literal["need", "optional", "skip"]
GIVE_RUN = "give a folder written by `conjugate run`, e.g. results/<run-id>"
#: manifest.json keys: the checksums that commit the folder, and what could not be written
CHECKSUMS, OUTPUT_ERRORS = "checksums", "output_errors"
RERUN = "re-run the same `conjugate run` command (it resumes from the cache and rewrites the folder)"
MODELS = ("pretrained", "finetuned")


def run_folder(out: str | Path, run_id: str) -> Path:
    """``out/run_id``, refused unless ``run_id`` is a plain name and the folder stays under ``out`` once resolved."""
    if not is_safe_name(run_id):
        raise ConjugateError(f"run_id: {run_id!r} is not a plain folder name; use e.g. {safe_name(run_id)!r}")
    folder = Path(out) / run_id
    if not folder.resolve().is_relative_to(Path(out).resolve()):
        raise ConjugateError(f"{folder}: leads outside --out {out} (a link?); remove it or choose another --run-id")
    return folder


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

def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise ConjugateError(f"{path}: is a folder, not a file; {GIVE_RUN}") from None
    except OSError as exc:
        raise ConjugateError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from None


def _read_text(path: Path, raw: bytes | None = None) -> str:
    try:
        return (_read_bytes(path) if raw is None else raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConjugateError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from None


def _read_object(path: Path, fix: str, raw: bytes | None = None) -> dict[str, Any]:
    try:
        obj = json.loads(_read_text(path, raw))
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


#: samples.jsonl fields: (the types a value may have, how an error message says it)
_TEXT, _TEXT_OR_NULL = ((str,), "a string"), ((str, type(None)), "a string or null")
_FIELD_TYPES = {**{k: _TEXT for k in ("model", "task", "transform", "example_id", "group", "mode", "prompt",
                                      "transformed_prompt", "outcome", "detail")},
                "response": _TEXT_OR_NULL, "inverted": _TEXT_OR_NULL, "error": _TEXT_OR_NULL,
                "reference": ((dict,), "an object"), "cached": ((bool,), "true or false")}
_NUMBERS = ("probe", "choice_logprobs", "metrics")  # objects of numbers (or null), or null


def _field_problem(d: dict[str, Any], labels: Mapping[str, list[str]]) -> str | None:
    """What is wrong with one samples.jsonl object (a field and why), or None."""
    missing = [k for k in SAMPLE_KEYS if k not in d]
    if missing:
        return f"{', '.join(missing)}: missing"
    for k, (types, kind) in _FIELD_TYPES.items():
        if k in d and not isinstance(d[k], types):
            return f"{k}: expected {kind}, got {json.dumps(d[k])[:40]}"
    for k in _NUMBERS:
        v = d.get(k)
        if v is not None and not (isinstance(v, dict) and all(
                x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in v.values())):
            return f"{k}: expected an object of numbers or null, got {json.dumps(v)[:40]}"
    if d["model"] not in MODELS:
        return f"model: expected {' or '.join(MODELS)}, got {d['model']!r}"
    known = labels.get(d["task"])
    outcome = d.get("outcome", ERROR)
    if known and outcome != ERROR and outcome not in known:
        return f"outcome: {outcome!r} is not an outcome of task {d['task']} ({', '.join(known)} or {ERROR})"
    return None


def read_samples(path: Path, labels: Mapping[str, list[str]] | None = None, text: str | None = None
                 ) -> tuple[list[Sample], list[dict[str, Any]]]:
    """(samples, the JSON objects as read) of a samples.jsonl (``text``: its content, when already read).

    Every line is checked: a missing field, a field of the wrong type, an outcome that is not one of the task's
    ``labels`` (task -> labels, from the manifest), the same (model, task, transform, example) twice, and a file
    without samples are each one ConjugateError naming the file and line.
    """
    samples, records = [], []
    seen: dict[tuple, int] = {}
    fix = RERUN
    text = _read_text(path) if text is None else text
    for i, d in json_lines(text.splitlines(), str(path), ConjugateError, f"; {fix}", objects=True):
        problem = _field_problem(d, labels or {})
        if problem:
            raise ConjugateError(f"{path} line {i}: {problem}; {fix}")
        key = (d["model"], d["task"], d["transform"], d["example_id"])
        if key in seen:
            raise ConjugateError(f"{path} line {i}: the same sample as line {seen[key]} ({'/'.join(key)}): a line "
                                 f"written twice; {fix}")
        seen[key] = i
        samples.append(Sample.from_dict(d))
        records.append(d)
    if not samples:
        raise ConjugateError(f"{path}: no samples (the file is empty); {fix}")
    return samples, records


def duplicate_samples(samples: Iterable[Sample]) -> list[tuple[str, str, str, str]]:
    """The (model, task, transform, example id) keys that occur more than once (a task that repeats an example id)."""
    counts = Counter((s.model, s.task, s.transform, s.example_id) for s in samples)
    return [k for k, c in counts.items() if c > 1]


def _sample_line(s: Sample | Mapping[str, Any]) -> str:
    """One samples.jsonl line: a Sample as Sample.to_json writes it, a dict with its keys as given; strict JSON."""
    line = s.to_json() if isinstance(s, Sample) else json.dumps(s, ensure_ascii=False)
    if "NaN" in line or "Infinity" in line:  # rare (a text that says NaN): rewrite only when a number is not finite
        line = json.dumps(finite_json(json.loads(line)), ensure_ascii=False, allow_nan=False)
    return line


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

    def read_summary(self, raw: bytes | None = None) -> Summary:
        rerender = f"rebuild it with `conjugate report {self.path}`"
        data = _read_object(self.path / SUMMARY, rerender, raw)
        check_rows(data, self.path / SUMMARY, rerender)
        return Summary(data)

    def _committed(self, manifest: Manifest, name: str, fix: str) -> bytes:
        """The bytes of ``name``, checked against the checksum manifest.json records for it (when it records one)."""
        raw = _read_bytes(self.path / name)
        sums = manifest.data.get(CHECKSUMS)
        want = sums.get(name) if isinstance(sums, dict) else None
        if want is not None and want != f"sha256:{sha256_hex(raw)}":
            raise ConjugateError(
                f"{self.path}: {name} is not the one manifest.json was written with (the folder was left "
                f"half-written, e.g. a run was stopped while rewriting it); {fix}")
        return raw

    def read(self, samples: SamplesWanted = "need", summary: bool = True) -> Run:
        """The run's manifest, summary and samples, each file checked against the manifest's checksums.

        ``samples``: ``"need"`` (samples.jsonl must exist), ``"optional"`` (read when present) or ``"skip"``
        (not parsed, only checked: gating rates needs only the summary). ``summary=False`` skips summary.json (an
        empty Summary): `conjugate report` rebuilds it from the samples, so a missing or damaged one must not stop it.
        """
        if samples not in ("need", "optional", "skip"):
            raise ValueError(f"samples={samples!r}: expected 'need', 'optional' or 'skip'")
        self.check_folder([MANIFEST] + ([SAMPLES] if samples == "need" else []))
        manifest = self.read_manifest()
        if summary and not (self.path / SUMMARY).exists() and manifest.data.get(OUTPUT_ERRORS):
            raise ConjugateError(f"{self.path}: the run's samples are saved but writing its outputs failed "
                                 f"({manifest.data[OUTPUT_ERRORS][0]}); finish it with `conjugate report {self.path}`")
        self.check_folder([SUMMARY] if summary else [])
        raw = self._committed(manifest, SAMPLES, RERUN) if self.has_samples() else None
        run = Run(manifest, Summary({}), self.path)
        if summary:
            run.summary = self.read_summary(self._committed(
                manifest, SUMMARY, f"rebuild it with `conjugate report {self.path}`, or {RERUN}"))
        if raw is not None and samples != "skip":
            labels = {t: run.labels(t) for t in run.tasks()}
            text = _read_text(self.path / SAMPLES, raw)
            run.samples, run.sample_records = read_samples(self.path / SAMPLES, labels, text)
        return run

    def has_samples(self) -> bool:
        return (self.path / SAMPLES).is_file()

    # -- writing (each file atomic; manifest.json last, with the checksums of what this write made)
    def _put(self, name: str, text: str) -> str:
        atomic_write_text(self.path / name, text)
        return f"sha256:{sha256_hex(text.encode('utf-8'))}"

    def write_samples(self, samples: Iterable[Sample | Mapping[str, Any]]) -> str:
        """One JSON object per line (a Sample as Sample.to_json writes it, a dict with its keys as given); returns
        the checksum manifest.json records."""
        return self._put(SAMPLES, "".join(_sample_line(s) + "\n" for s in samples))

    def write_summary(self, summary: Summary | Mapping[str, Any]) -> str:
        """summary.json as strict JSON; returns its checksum."""
        return self._put(SUMMARY, json_text(summary.data if isinstance(summary, Summary) else summary))

    def write_file(self, name: str, content: str | bytes) -> None:
        """Any other file of the folder (report.md, a plot), atomically; ``name`` must be a plain file name."""
        if not is_safe_name(name, 255) or name in (MANIFEST, SUMMARY, SAMPLES):
            raise ConjugateError(f"{name!r}: not a file name a run folder may hold (use harness.io.safe_name)")
        if isinstance(content, bytes):
            atomic_write_bytes(self.path / name, content)
        else:
            atomic_write_text(self.path / name, content)

    def write_manifest(self, manifest: Manifest | Mapping[str, Any]) -> None:
        """Last: its presence marks a complete run, and its checksums commit the files written before it."""
        self._put(MANIFEST, json_text(manifest.data if isinstance(manifest, Manifest) else manifest))

    def write(self, manifest: Manifest | Mapping[str, Any], summary: Summary | Mapping[str, Any] | None,
              samples: Iterable[Sample | Mapping[str, Any]],
              files: Mapping[str, str | bytes] | None = None) -> list[str]:
        """samples.jsonl, summary.json, the other ``files``, then manifest.json with the checksums of the first two.

        ``summary`` None (it could not be computed): an old summary.json is removed. A file of ``files`` that cannot
        be written is left out and named in the manifest's ``output_errors``; returns those failures.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        data = manifest.data if isinstance(manifest, Manifest) else manifest
        sums = {SAMPLES: self.write_samples(samples)}
        if summary is None:
            (self.path / SUMMARY).unlink(missing_ok=True)
        else:
            sums[SUMMARY] = self.write_summary(summary)
        failed = []
        for name, content in (files or {}).items():
            try:
                self.write_file(name, content)
            except (OSError, ConjugateError) as exc:
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        if failed:
            data[OUTPUT_ERRORS] = [*(data.get(OUTPUT_ERRORS) or []), *failed]
        data[CHECKSUMS] = sums
        self.write_manifest(data)
        return failed


def read_run(path: str | Path, samples: SamplesWanted = "need") -> Run:
    """Shorthand for ``RunDir(path).read(samples)``."""
    return RunDir(path).read(samples)


__all__ = ["CHECKSUMS", "MANIFEST", "OUTPUT_ERRORS", "SAMPLES", "SUMMARY", "Manifest", "Run", "RunDir", "RunInfo",
           "Summary", "check_rows", "duplicate_samples", "read_run", "read_samples", "run_folder", "spec_hash"]
