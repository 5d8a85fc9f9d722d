"""Forgetting: how far fine-tuning moved a model away from its pretrained base (`conjugate forgetting`).

The forgetting metric of Kalajdzievski (2024), "Scaling Laws for Forgetting
When Fine-Tuning Large Language Models" (arXiv:2401.05605): the cross-entropy
of the fine-tuned model against the *pretrained model's next-token
distribution* on reference text. At each token position t (context x<t)::

    CE_t = -sum_v p_pre(v | x<t) * log p_ft(v | x<t)     forgetting cross-entropy (the headline)
    H_t  = -sum_v p_pre(v | x<t) * log p_pre(v | x<t)    entropy of the pretrained model
    KL_t = CE_t - H_t = KL(p_pre || p_ft) >= 0           the part due to fine-tuning

CE of the pretrained model against itself is its entropy H (KL = 0), so CE
starts at H before the first fine-tuning step (a LoRA adapter starts as the
identity) and grows as the fine-tuned model drifts. Each number is a mean
over all token positions of the text, with a 95% percentile-bootstrap
interval that resamples *chunks* (paragraphs), the independent units, with a
fixed seed. ``nll_*`` is the ordinary negative log-likelihood of the text's
own next tokens under each model, for context.

The text is split into chunks of at most ``--max-tokens`` tokens: paragraphs
(blank-line separated; one per line when the file has no blank lines),
split further at sentence ends when too long, BOS first where the model wants
one (:func:`harness.backends.prompting.decide_bos`). ``--transforms`` applies each
transform's ``forward`` to every chunk (leetspeak, pig latin, machine
translation, ...) and measures the same quantities on the transformed text;
``kl_minus_identity`` is the paired difference of KL to the English text over
the same chunks: negative means the fine-tuned model stays closer to its base
on the transformed text.

Several ``--finetuned`` checkpoints with their fine-tuning steps (``--steps``,
or ``recipe.json`` of a ``conjugate finetune`` folder, or a transformers
``trainer_state.json``) fit the shifted power law of the paper in the
number of steps t (:func:`fit_power_law`)::

    CE(t) = c + A * (t + t0) ** alpha

The paper reports that forgetting "increases as a shifted power law in the
number of parameters fine-tuned and the number of update steps"; this package
fits the law in steps alone (checkpoints of one recipe), with a constant
shift; a second, *anchored* fit fixes ``c`` at the measured pretrained entropy H.
Both are in forgetting.json and the plot.

Everything runs in float32, in batches under ``torch.inference_mode``; the LM
head is applied in slices of positions so that a 262k-entry vocabulary
(Gemma) never materialises logits for a whole batch. Results are
deterministic for a given text, models, ``--max-tokens``, ``--batch-size``
and ``--seed``.

The parts: :mod:`.text` (reference text, chunks, windows), :mod:`.scorer` (loading the pair, per-token
scoring), :mod:`.measure` (text versions, :func:`evaluate`), :mod:`.fit` (steps of a checkpoint, the
power law), :mod:`.plot` and :mod:`.report` (table, forgetting.md, :func:`write_outputs`). The command is
:mod:`harness.commands.forgetting`. Nothing heavy (torch, numpy, scipy, matplotlib) is imported before use.
"""
from __future__ import annotations

from harness.training.forgetting.fit import fit_conditions, fit_power_law, shifted_power_law, steps_of
from harness.training.forgetting.measure import Condition, evaluate, transform_texts
from harness.training.forgetting.report import fit_line, markdown, plain_table, table_rows, write_outputs
from harness.training.forgetting.scorer import (DEFAULT_BATCH_SIZE, METRICS, PairScorer, TokenStats,
                                               check_same_tokenizer, check_tokenizers_early, load_model, load_tokenizer)
from harness.training.forgetting.text import (BASELINE, DEFAULT_MAX_TOKENS, paragraphs, read_text, reference_text_path,
                                             split_chunks, windows)

__all__ = [
    "fit_conditions", "fit_power_law", "shifted_power_law", "steps_of", "Condition", "evaluate", "transform_texts",
    "fit_line", "markdown", "plain_table", "table_rows", "write_outputs", "DEFAULT_BATCH_SIZE", "METRICS",
    "PairScorer", "TokenStats", "check_same_tokenizer", "check_tokenizers_early", "load_model", "load_tokenizer",
    "BASELINE", "DEFAULT_MAX_TOKENS", "paragraphs", "read_text", "reference_text_path", "split_chunks", "windows",
]
