"""Package discovery for the wheel (everything else is in pyproject.toml).

``harness/`` ships as it is; the top-level folders ``tasks/`` and ``translators/`` ship as
``harness.tasks`` and ``harness.translators`` (we do not claim the import names ``tasks`` or ``translators``;
a PyPI package called ``translators`` exists). pyproject.toml's ``packages.find`` cannot rename folders,
so the packages are found here: every folder whose name is an identifier, data-only folders included
(``harness.adapters``, ``harness.outputs.templates``, ``harness.data``, ``harness.tasks.data.*``) so that
their files ship as package data. A new subpackage needs no edit here.

``build_py`` also drops modules left in ``build/lib`` by an earlier build of a tree that has since deleted
them, so that a wheel never carries a module that is not in the source tree.
"""
from __future__ import annotations

from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

ROOTS = {"harness": "harness", "harness.tasks": "tasks", "harness.translators": "translators"}


def packages_under(name: str, folder: str) -> list[str]:
    """``name`` and ``name.<sub>`` for every sub-folder of ``folder`` whose dotted name is made of identifiers."""
    found = find_namespace_packages(folder, exclude=["*__pycache__*"])
    return [name] + [f"{name}.{p}" for p in found if all(part.isidentifier() for part in p.split("."))
                     and f"{name}.{p}" not in ROOTS]


class BuildPy(build_py):
    """build_py that removes stale .py files of ours from build/lib before building."""

    def run(self) -> None:
        expected = {Path(p).resolve() for p in self.get_outputs(include_bytecode=False)}
        lib = Path(self.build_lib) / "harness"
        if lib.is_dir():
            for path in lib.rglob("*.py"):
                if path.resolve() not in expected:
                    path.unlink()
        super().run()


setup(
    packages=[p for name, folder in ROOTS.items() for p in packages_under(name, folder)],
    package_dir=ROOTS,
    cmdclass={"build_py": BuildPy},
)
