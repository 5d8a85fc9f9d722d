"""Numbers from samples: statistics (``stats``), the run summary, and the tools that read run folders
(``compare``: two runs; ``check``: a run against a baseline, for CI)."""
