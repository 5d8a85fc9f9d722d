"""`conjugate compare RUN_A RUN_B`: two runs cell by cell; writes compare.md and compare.html.

The comparison is :func:`harness.analysis.compare.compare_runs`; how it is shown, :mod:`harness.outputs.comparison`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.errors import ConjugateError

NAME = "compare"

EPILOG = """\
examples:
  conjugate compare results/run-old results/run-new
      rates of each task's primary label, per task x conjugate x model, with paired McNemar tests
  conjugate compare results/run-old results/run-new --metric if --json
      the `if` rate instead, as JSON on stdout
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    c = subparsers.add_parser(
        NAME, help="compare two runs cell by cell (e.g. before and after a new fine-tune)",
        description="Match the (task, conjugate, model) cells of two runs and show the rate of a label in each, the "
        "difference in points and a test (paired McNemar exact on shared examples, else a two-proportion z-test), "
        "plus recovery per (task, conjugate). Writes compare.md and compare.html.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("run_a", metavar="RUN_A", help="the first run folder (before)")
    c.add_argument("run_b", metavar="RUN_B", help="the second run folder (after)")
    c.add_argument("--metric", metavar="LABEL", help="the outcome label to compare (default: each task's primary label, "
                   "e.g. icl for icl_vs_if, refuse for refusal)")
    c.add_argument("--out", metavar="DIR", help="where to write compare.md and compare.html (default RUN_B/compare-<A run id>/)")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    return c


def run(args: argparse.Namespace) -> int:
    from harness.analysis.compare import compare_runs
    from harness.outputs.comparison import strict_json, text_table, write_outputs

    result = compare_runs(args.run_a, args.run_b, args.metric)
    out_dir = Path(args.out) if args.out else Path(args.run_b) / f"compare-{result['a']['run_id']}"
    try:
        md, html = write_outputs(result, out_dir)
    except OSError as exc:
        raise ConjugateError(f"could not write the comparison to {out_dir}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(strict_json({**result, "files": [str(md), str(html)]}), indent=2, ensure_ascii=False))
        print(f"wrote {md} and {html}", file=sys.stderr)
    else:
        print(text_table(result))
        print(f"\nwrote {md}\n      {html}")
    return 0
