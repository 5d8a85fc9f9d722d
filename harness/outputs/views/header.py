"""The run's header: one card per model, the run's facts, the sample counts, and the run's notes."""
from __future__ import annotations

import json

from harness.outputs.format import display_name, task_display_name
from harness.outputs.rescore import generated_with_fact, rescore_fact
from harness.outputs.views.common import MODELS, Cell, href, model_name


def _model_card(role: str, manifest: dict, rows: list[dict]) -> dict:
    spec = (manifest.get("spec") or {}).get(role) or {}
    backend = (manifest.get("backends") or {}).get(role)
    detail = (json.dumps(backend, ensure_ascii=False, default=str) if isinstance(backend, (dict, list))
              else (str(backend) if backend else None))
    n = sum(r.get("n", 0) + r.get("errors", 0) for r in rows if r.get("model") == role)
    return {
        "role": model_name(role), "name": spec.get("name", "?"), "model": spec.get("model", "?"),
        "adapter": spec.get("adapter"), "backend": spec.get("backend", "?"), "backend_detail": detail,
        "dtype": spec.get("dtype"), "identity": ((manifest.get("models") or {}).get(role) or {}).get("identity"),
        "n": Cell(str(n), href(model=role)),
    }


def _named(key: str, name: str) -> str:
    return f"{name} ({key})" if name != key else key


def _facts(manifest: dict) -> list[tuple[str, str]]:
    """(name, value) lines about the run; empty values are left out."""
    spec = manifest.get("spec") or {}
    sampling = manifest.get("sampling") or {}
    facts = [("tasks", ", ".join(_named(t, task_display_name(t)) for t in spec.get("tasks") or [])),
             ("conjugates", ", ".join(_named(t, display_name(t)) for t in spec.get("transforms") or [])),
             ("limit", str(spec.get("limit") or "none")), ("seed", str(spec.get("seed", "—"))),
             ("sampling", "; ".join(f"{t}: " + ", ".join(f"{k}={v}" for k, v in s.items()) for t, s in sampling.items())),
             ("started", str(manifest.get("started", "—"))), ("seconds", str(manifest.get("seconds", "—"))),
             ("git", str(manifest.get("git") or "—")),
             ("versions", ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items()))]
    for task, how in (manifest.get("scoring") or {}).items():
        facts.append(("scoring", how))
    facts.append(("rescored", rescore_fact(manifest) or ""))
    facts.append(("generated with", generated_with_fact(manifest) or ""))
    tr = manifest.get("translation") or {}
    if tr.get("providers"):
        facts.append(("translation", ", ".join(p.get("version") or n for n, p in tr["providers"].items()
                                               if isinstance(p, dict))))
    return [f for f in facts if f[1]]


def header_view(manifest: dict, summary: dict, n_browser: int | None = None) -> dict:
    """Run id, model cards, facts, and sample/error counts (from the summary's rows; without rows, the
    number of samples in the browser)."""
    rows = [r for r in summary.get("rows") or [] if r.get("group") == "all"]
    counted = sum(r.get("n", 0) + r.get("errors", 0) for r in rows) if rows else (n_browser or 0)
    gen = manifest.get("generation") or {}
    total = ({k: sum(m.get(k, 0) for m in gen.values() if isinstance(m, dict)) for k in ("generated", "cached", "failed")}
             if gen else None)
    return {
        "run_id": manifest.get("run_id", "?"), "models": [_model_card(role, manifest, rows) for role in MODELS],
        "facts": _facts(manifest), "samples": Cell(str(counted), href()),
        "errors": Cell(str(sum(r.get("errors", 0) for r in rows)), href(outcome="error")), "generation": total,
    }


def notes_view(manifest: dict) -> list[str]:
    """The run's notes (skipped cells, failed providers, probe skips): shown above every table."""
    return [str(n) for n in manifest.get("notes") or []]
