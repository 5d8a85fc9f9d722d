"""What a run leaves behind: the run folder (samples.jsonl, summary.json, manifest.json: rundir), report.md,
report.html and plots. Nothing here generates.

write (entry points) -> plots (PNG bytes) + views (plain data per section) -> markdown / html (templates/).
"""
