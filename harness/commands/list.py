"""`conjugate list`: the registered tasks, transforms, backends, translation providers or summary sections."""
from __future__ import annotations

import argparse

from harness.errors import ConjugateError

NAME = "list"


def add_parser(subparsers) -> argparse.ArgumentParser:
    ls = subparsers.add_parser(NAME, help="list registered tasks, transforms, backends, translation providers or summary sections")
    ls.add_argument("kind", choices=["tasks", "transforms", "backends", "providers", "sections"])
    return ls


def label(entry) -> str:
    """The name with its argument, e.g. ``lang:<language>`` or ``translate[:<code>]`` for an optional one.

    A plugin that fails to import is still listed (by name): ``list`` is where one looks for it.
    """
    try:
        param = entry.param or getattr(entry.load(), "param", None)
    except ConjugateError:
        param = None
    if not param:
        return entry.name
    try:
        optional = getattr(entry.load(), "param_optional", False)
    except ConjugateError:
        optional = False
    return entry.name + (f"[:<{param}>]" if optional else f":<{param}>")


def run(a: argparse.Namespace) -> int:
    from harness.registry import REGISTRIES

    entries = REGISTRIES[a.kind].entries()
    width = max(len(label(e)) for e in entries)
    for e in entries:
        origin = "" if e.origin == "builtin" else f"  [{e.origin}]"
        print(f"{label(e):<{width + 2}} {e.summary()}{origin}")
    return 0
