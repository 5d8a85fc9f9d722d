"""The run pipeline: task -> transform -> backend -> inverse -> score.

``spec`` (what to run) -> ``plan`` (tasks x transforms x examples, rendered and forwarded)
-> per model, every request through the cached executor (``execute``: generations, the
log-likelihoods of multiple-choice tasks' ``choice``\ s and of the ``probe``), opening the
model's backend (``pool``) only for what the on-disk ``cache`` lacks -> ``score`` ->
:mod:`harness.outputs` writes the run folder. ``runner`` strings these together.
"""
