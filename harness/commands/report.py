"""`conjugate report`: re-render summary.json and the reports of a run folder without generating."""
from __future__ import annotations

import argparse

NAME = "report"


def add_parser(subparsers) -> argparse.ArgumentParser:
    rep = subparsers.add_parser(NAME, help="re-render report.md and summary.json of a run without generating",
                                description="Rebuild summary.json and report.md from samples.jsonl. Nothing is generated.")
    rep.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `conjugate run`")
    rep.add_argument("--rescore", action="store_true", help="re-score the stored responses with the current task code")
    rep.add_argument("--task-option", action="append", default=[], metavar="TASK.KEY=VALUE",
                     help="with --rescore: a task option on top of the run's, e.g. icl_vs_if.scoring=strict "
                     "(the stricter capslock rule of task version 2) or icl_vs_if.scoring=paper")
    return rep


def run(a: argparse.Namespace) -> int:
    from harness.outputs.write import rerender

    from harness.commands.args import task_options

    run_dir = rerender(a.run_dir, rescore=a.rescore, task_options=task_options(a.task_option))
    if a.rescore:
        _say_rescore(run_dir)
    print(run_dir / "report.md")
    return 0


def _say_rescore(run_dir) -> None:
    """The re-score's versions and options on stderr, as manifest.json and report.md now record them."""
    import sys

    from harness.outputs.rescore import rescore_fact
    from harness.outputs.rundir import RunDir

    fact = rescore_fact(RunDir(run_dir).read_manifest().data)
    if fact:
        print(f"[conjugate] re-scored {fact}", file=sys.stderr)
