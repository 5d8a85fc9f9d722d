"""What a run leaves behind: the run folder (samples.jsonl, summary.json, manifest.json), report.md,
report.html and plots. Nothing here generates."""
