"""summary.json, built from samples by registered sections.

:func:`summarize` runs every section registered in :data:`harness.registry.SECTIONS` in declared order and
puts the keys each returns into summary.json, in that order. The built-ins, and the keys they write:

========  =====  ======================================  ===========================================
section   order  keys                                    module
========  =====  ======================================  ===========================================
rows      10     ``rows``                                :mod:`.rates` (Wilson rates per cell/group)
recovery  20     ``recovery``                            :mod:`.rates` (with a bootstrap interval)
agreement 30     ``agreement``                           :mod:`.paired`
tests     40     ``tests``                               :mod:`.paired` (McNemar / permutation, Holm)
probe     50     ``probe``, ``probe_correlation``        :mod:`.probe` (optional: a failure is a note)
========  =====  ======================================  ===========================================

The statistics themselves are in :mod:`harness.analysis.stats`.

Adding a section
----------------
Write a function that takes the :class:`SummaryContext` (samples, task labels, primary labels, transforms,
baseline, n_boot, seed, paired-test kind, ``outcomes`` per example, and ``summary``: the keys of the sections
that ran before it) and returns a dict with exactly the keys it declares, then mark and register it::

    from harness.analysis.summary import SummaryContext, section

    @section(keys=("per_config_agreement",), order=35, optional=True)
    def per_config_agreement(ctx: SummaryContext) -> dict:
        ...
        return {"per_config_agreement": rows}

* in this package: add ``"name": ("harness.analysis.summary.<module>:<function>", None)`` to ``SECTIONS`` in
  :mod:`harness.registry` (built-ins are imported lazily, like tasks and transforms);
* in another package: an entry point in the group ``conjugate.sections``, e.g. in pyproject.toml
  ``[project.entry-points."conjugate.sections"] my_section = "my_pkg.sections:my_section"``;
* in a notebook or test: ``harness.registry.SECTIONS.register("name", fn)``.

``order`` places the section (and its keys) among the others; ties go by name, and sections that give none
come after the built-ins. A new key at the end leaves every existing key of summary.json byte for byte as it
was. Make a section ``optional=True`` unless the run is worthless without it: an optional section that raises
writes empty lists under its keys and a note "<name> summary failed: ..." to manifest.json. Views (report.md,
report.html) read the keys they know and ignore the rest.
"""
from __future__ import annotations

from harness.analysis.summary.sections import SummaryContext, run_section, section, summarize

__all__ = ["SummaryContext", "run_section", "section", "summarize"]
