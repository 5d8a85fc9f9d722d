"""The run pipeline: task -> transform -> backend -> inverse -> score.

``spec`` (what to run) -> ``runner.plan`` (tasks x transforms x examples, rendered and forwarded)
-> generation per model through the on-disk ``cache`` -> ``probe`` (log-likelihood requests)
-> scoring -> :mod:`harness.outputs` writes the run folder.
"""
