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

    print(rerender(a.run_dir, rescore=a.rescore, task_options=task_options(a.task_option)) / "report.md")
    return 0
