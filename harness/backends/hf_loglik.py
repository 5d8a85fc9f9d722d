"""Log-likelihoods of continuations for the hf backend: the LM head only where a continuation token is predicted.

Two layouts, the same arithmetic:

* :func:`after_prefills`: each context's keys and values are known (kept from
  generation, or prefilled as generation prefills prompts), so only the
  context's last token and the continuation are fed. Requests after the same
  context whose inputs are one a prefix of the other share a row (the probe's
  two answers after one prompt: both are predicted from the same last-token
  state), rows run in buckets of one input length (no padded positions), and
  each distinct state (context, inputs up to a position) goes through the LM head once.
* :func:`full`: one right-padded forward pass over context and continuation, as
  lm-eval's hf model (``decode=generate``, contexts past a sliding window).

Gemma's vocabulary has 262k entries, so the head runs in chunks of
:data:`LOGIT_CHUNK` positions.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from harness.backends import hf_decode
from harness.backends.prefix import Prefill, continue_batch

LOGIT_CHUNK = 512  # continuation positions per LM-head call

Pair = tuple[list[int], list[int]]  # (context token IDs, continuation token IDs)
Logits = Callable[[Any], Any]  # final hidden states -> fp32 logits (softcapped where the model does)


def score(h: Any, index: Sequence[Sequence[int]], conts: Sequence[Sequence[int]], logits: Logits) -> list[tuple[float, bool]]:
    """Per continuation, the sum of log p(token) and whether every token was the argmax.

    ``h``: ``[positions, hidden]``, each distinct predicting position once; ``index[i][j]``: the row of ``h``
    predicting ``conts[i][j]``.
    """
    import torch

    rows = torch.tensor([u for idx in index for u in idx], dtype=torch.long)
    target = torch.tensor([t for c in conts for t in c], dtype=torch.long)
    lp = torch.empty(len(target), dtype=torch.float64)
    top = torch.empty(h.shape[0], dtype=torch.long)
    for a in range(0, h.shape[0], LOGIT_CHUNK):
        logp = torch.log_softmax(logits(h[a : a + LOGIT_CHUNK]), dim=-1)
        top[a : a + LOGIT_CHUNK] = logp.argmax(-1).cpu()
        sel = ((rows >= a) & (rows < a + LOGIT_CHUNK)).nonzero()[:, 0]
        lp[sel] = logp[(rows[sel] - a).to(logp.device), target[sel].to(logp.device)].double().cpu()
    hit = (top[rows] == target).tolist()
    lp_all, out, i = lp.tolist(), [], 0
    for c in conts:
        out.append((float(sum(lp_all[i : i + len(c)])), all(hit[i : i + len(c)])))
        i += len(c)
    return out


def full(model: Any, pairs: Sequence[Pair], pad_id: int, logits: Logits) -> list[tuple[float, bool]]:
    """One right-padded forward pass over each (context + continuation)[:-1]; choices of one token after the same
    context share a row."""
    import torch

    device = next(model.parameters()).device
    inputs = list(dict.fromkeys(tuple(ctx + cont[:-1]) for ctx, cont in pairs))
    row_of = {x: i for i, x in enumerate(inputs)}
    width = max(len(x) for x in inputs)
    ids = torch.full((len(inputs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for i, x in enumerate(inputs):
        ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    at: dict[tuple[int, int], int] = {}  # (row, position) -> row of the gathered states
    index = [[at.setdefault((row_of[tuple(ctx + cont[:-1])], p), len(at))
              for p in range(len(ctx) - 1, len(ctx) + len(cont) - 1)] for ctx, cont in pairs]
    with torch.inference_mode():
        hidden = model.model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        r, p = zip(*at)
        h = hidden[torch.tensor(r, device=device), torch.tensor(p, device=device)]
        return score(h, index, [cont for _, cont in pairs], logits)


def shared_rows(pairs: Sequence[Pair]) -> tuple[list[tuple[int, tuple[int, ...]]], list[int]]:
    """The rows to feed after the prefills, ``(request whose prefill it continues, input tokens)``, and each
    request's row: a request whose input (the context's last token, then the continuation but its last token)
    begins another's after the same context shares that row."""
    inputs = [tuple(ctx[-1:] + cont[:-1]) for ctx, cont in pairs]
    rows: list[tuple[int, tuple[int, ...]]] = []
    row_of = [0] * len(pairs)
    by_context: dict[tuple[int, ...], list[int]] = {}
    for i in sorted(range(len(pairs)), key=lambda i: -len(inputs[i])):
        mine = by_context.setdefault(tuple(pairs[i][0]), [])
        r = next((r for r in mine if rows[r][1][: len(inputs[i])] == inputs[i]), None)
        if r is None:
            r = len(rows)
            rows.append((i, inputs[i]))
            mine.append(r)
        row_of[i] = r
    return rows, row_of


def after_prefills(model: Any, pairs: Sequence[Pair], prefills: Sequence[Prefill], pad_id: int,
                   logits: Logits) -> list[tuple[float, bool]]:
    """Each context's last token and the continuation fed after the context's prefill (``prefills[i]`` for
    ``pairs[i]``); rows in buckets of one input length, each within the decoder's key/value budget."""
    import torch

    rows, _ = shared_rows(pairs)
    at: dict[tuple, int] = {}  # (context, inputs up to a position) -> row of the gathered states
    index = [[at.setdefault((tuple(ctx), tuple(ctx[-1:] + cont[:p])), len(at)) for p in range(len(cont))]
             for ctx, cont in pairs]
    states: list[Any] = [None] * len(at)
    buckets: dict[int, list[int]] = {}
    for r, (_, x) in enumerate(rows):
        buckets.setdefault(len(x), []).append(r)
    per_token = hf_decode.kv_bytes_per_token(model)
    with torch.inference_mode():
        for width, members in sorted(buckets.items()):
            pre = [prefills[rows[r][0]] for r in members]
            for group in hf_decode.groups([p.length for p in pre], width, per_token):
                chosen = [members[g] for g in group]
                hidden = continue_batch(model, [pre[g] for g in group], [rows[r][1] for r in chosen], pad_id)
                for k, r in enumerate(chosen):
                    ctx, x = tuple(pairs[rows[r][0]][0]), rows[r][1]
                    for p in range(width):
                        u = at.get((ctx, x[: p + 1]))
                        if u is not None and states[u] is None:
                            states[u] = hidden[k, p]
        return score(torch.stack(states), index, [cont for _, cont in pairs], logits)
