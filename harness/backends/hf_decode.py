"""Greedy decoding for the hf backend: packed prefills, one large decode batch, no cache copies.

``transformers``' ``generate`` on a left-padded batch costs this harness
three ways on a CPU (measured by ``bench/suite.py``):

* the prefill computes every pad position: with 32 prompts of mixed lengths a
  fifth of the prefill is padding;
* the decode batch is the executor's batch, and the 262k-row LM head of
  Gemma runs at well under half the machine's matmul rate for 32 rows;
* the key/value cache grows by ``torch.cat`` at every step, copying all of it.

Here instead:

1. **Prefill** in length-sorted chunks of at most :data:`PREFILL_TOKENS`
   padded tokens, right-padded (causal attention never lets a real token see a
   pad after it), keeping each prompt's keys and values for all tokens but the
   last. Those are the :class:`~harness.backends.prefix.Prefill` objects the
   task-inference probe continues from, so they go to the prefix store as well.
2. **Decode** every sequence of the call together (up to :data:`DECODE_KV_MB`
   of keys and values per group), starting from each prompt's last token, in
   preallocated key/value buffers written in place; rows leave the batch once
   they are finished (end of sequence, a stop string, their token budget).

It is the same arithmetic in another batch layout, so outputs equal
``generate``'s up to float rounding (``bench/suite.py`` counts identical
responses on the default run; tests compare on the tiny model). It handles
greedy decoding with the model's plain generation config; anything else
(sampling, repetition penalties, prompts past a sliding window) goes through
``generate``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from harness.backends.prefix import InPlace, Prefill, PrefixStore, assemble_cache, continue_batch

PREFILL_TOKENS = 4096  # padded tokens per prefill forward pass
MIN_STEM = 8  # a prefix shared by several prompts is computed once from this many tokens on
DECODE_KV_MB = 1024  # keys and values of one decode group
COMPACT_SHARE = 0.25  # finished rows leave the decode batch once they are this share of it

# generation-config fields whose non-default values change greedy decoding beyond argmax
_PROCESSING = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
               "suppress_tokens": (None,), "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,),
               "forced_eos_token_id": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0),
               "sequence_bias": (None,), "encoder_repetition_penalty": (None, 1.0)}


def plain_greedy_config(model: Any) -> bool:
    """Whether greedy ``generate`` on this model is argmax and nothing else (no logits processors)."""
    cfg = getattr(model, "generation_config", None)
    return cfg is not None and all(getattr(cfg, k, None) in ok for k, ok in _PROCESSING.items())


def window_limit(model: Any) -> int | None:
    """The longest sequence (prompt + new tokens) the buffered cache handles like ``generate`` (None: any)."""
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", cfg)
    window = getattr(cfg, "sliding_window", None)
    return int(window) - 1 if window else None


def kv_bytes_per_token(model: Any) -> int:
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", cfg)
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * heads * head_dim * next(model.parameters()).element_size()


def prefill(model: Any, seqs: Sequence[Sequence[int]], store: PrefixStore, pad_id: int,
            stats: dict[str, int] | None = None) -> list[Prefill]:
    """Each prompt's keys and values for all its tokens but the last (from ``store`` when it has them).

    ``stats``: adds ``prompt_tokens`` (tokens prefilled) and ``computed_tokens`` (of those, computed here).
    """
    stats = {} if stats is None else stats
    unique = list(dict.fromkeys(tuple(s) for s in seqs))
    kept = {s: store.items.get(s) for s in unique}
    todo = [s for s in unique if kept[s] is None]
    stats["prompt_tokens"] = stats.get("prompt_tokens", 0) + sum(len(s) - 1 for s in todo)
    for s, kv in zip(todo, keys_values(model, [s[:-1] for s in todo], pad_id, stats)):
        kept[s] = kv
        if kv.length:
            store.put(s, kv)
    return [kept[tuple(s)] for s in seqs]  # type: ignore[misc]


def shared_lengths(lists: Sequence[tuple[int, ...]]) -> list[int]:
    """For each token list, the longest prefix it shares with another list of ``lists``.

    The longest common prefix with any other list is the one with a neighbour in sorted order.
    """
    order = sorted(range(len(lists)), key=lambda i: lists[i])
    share = [0] * len(lists)
    for a, b in zip(order, order[1:]):
        x, y = lists[a], lists[b]
        n, m = 0, min(len(x), len(y))
        while n < m and x[n] == y[n]:
            n += 1
        share[a], share[b] = max(share[a], n), max(share[b], n)
    return share


def keys_values(model: Any, lists: Sequence[tuple[int, ...]], pad_id: int,
                stats: dict[str, int] | None = None) -> list[Prefill]:
    """Keys and values of every token list; a prefix shared by several lists (:data:`MIN_STEM` tokens or more) is
    computed once (recursively) and each list continues from it. Few-shot prompts of one task share their
    instruction and often their first demonstration: 20-30% of the prefill of the paper's suite."""
    stem = [n if n >= MIN_STEM else 0 for n in shared_lengths(lists)]
    stems = sorted({lists[i][: stem[i]] for i in range(len(lists)) if stem[i]})
    stats = {} if stats is None else stats
    stem_kv = dict(zip(stems, keys_values(model, stems, pad_id, stats))) if stems else {}
    out: list[Prefill | None] = [None] * len(lists)
    plain = [i for i in range(len(lists)) if not stem[i]]
    rest = [i for i in range(len(lists)) if stem[i] and len(lists[i]) > stem[i]]
    stats["computed_tokens"] = (stats.get("computed_tokens", 0) + sum(len(lists[i]) for i in plain)
                                + sum(len(lists[i]) - stem[i] for i in rest))
    for i, kv in zip(plain, _forward(model, [lists[i] for i in plain], pad_id)):
        out[i] = kv
    for i in range(len(lists)):
        if stem[i] and len(lists[i]) == stem[i]:
            out[i] = stem_kv[lists[i]]
    done = _continue(model, [stem_kv[lists[i][: stem[i]]] for i in rest], [lists[i][stem[i]:] for i in rest], pad_id)
    for i, kv in zip(rest, done):
        out[i] = kv
    return out  # type: ignore[return-value]


def _chunks(lengths: Sequence[int]) -> list[list[int]]:
    """Indices, longest first, in chunks of at most :data:`PREFILL_TOKENS` padded tokens."""
    todo = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out = []
    while todo:
        n = max(1, PREFILL_TOKENS // max(lengths[todo[0]], 1))
        out.append(todo[:n])
        todo = todo[n:]
    return out


def _forward(model: Any, lists: Sequence[Sequence[int]], pad_id: int) -> list[Prefill]:
    """Keys and values of each token list from right-padded forward passes (a pad never precedes a real token)."""
    import torch
    from transformers import DynamicCache

    body, device = getattr(model, "model", model), next(model.parameters()).device
    out: list[Prefill | None] = [None] * len(lists)
    for chunk in _chunks([len(x) for x in lists]):
        width = max(len(lists[chunk[0]]), 1)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, i in enumerate(chunk):
            ids[r, : len(lists[i])] = torch.tensor(lists[i], dtype=torch.long)
            mask[r, : len(lists[i])] = 1
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            body(input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=cache, use_cache=True)
        for r, i in enumerate(chunk):
            n = len(lists[i])
            out[i] = Prefill([(layer.keys[r, :, :n].clone(), layer.values[r, :, :n].clone()) for layer in cache.layers])
    return out  # type: ignore[return-value]


def _continue(model: Any, stems: list[Prefill], suffixes: list[tuple[int, ...]], pad_id: int) -> list[Prefill]:
    """Keys and values of ``stems[i]`` followed by ``suffixes[i]``: the suffixes run after the stems' caches."""
    import torch

    out: list[Prefill | None] = [None] * len(stems)
    for chunk in _chunks([len(x) for x in suffixes]):
        pre, caches = [stems[i] for i in chunk], []
        with torch.inference_mode():
            continue_batch(model, pre, [suffixes[i] for i in chunk], pad_id, cache_out=caches)
        longest = max(p.length for p in pre)
        for r, (p, i) in enumerate(zip(pre, chunk)):
            a, b = longest - p.length, longest + len(suffixes[i])
            out[i] = Prefill([(layer.keys[r, :, a:b].clone(), layer.values[r, :, a:b].clone())
                              for layer in caches[0].layers])
    return out  # type: ignore[return-value]


def groups(lengths: Sequence[int], max_new: int, per_token: int) -> list[list[int]]:
    """Indices in decode groups, longest first, each within :data:`DECODE_KV_MB` of keys and values."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    budget, out = DECODE_KV_MB * 2**20, []
    while order:
        span = (lengths[order[0]] + max_new) * per_token
        n = max(1, budget // span)
        out.append(order[:n])
        order = order[n:]
    return out


def decode_group(model: Any, prefills: list[Prefill], last: list[int], max_new: int, eos: set[int],
                 stopped: Callable[[list[int]], bool], head: Callable[[Any], Any] | None = None) -> list[list[int]]:
    """Greedy continuations of the prompts ``prefills[i]`` + ``last[i]``: token IDs, ending at EOS if reached.

    ``stopped(tokens)``: whether a row's generated tokens contain a stop string (it then leaves the batch).
    ``head(h)``: next token IDs from final hidden states (default ``argmax`` of the LM head; see
    :class:`harness.backends.hf_head.GreedyHead`). A finished row stays in the batch, computed and ignored,
    until finished rows are :data:`COMPACT_SHARE` of it: removing rows copies every key/value buffer.
    """
    import torch

    device = next(model.parameters()).device
    n, longest = len(prefills), max(p.length for p in prefills)
    cache = assemble_cache(model, prefills, longest, extra=max_new)
    buffered = InPlace(cache)
    mask = torch.zeros((n, longest + max_new), dtype=torch.long)
    for i, p in enumerate(prefills):
        mask[i, longest - p.length: longest] = 1
    start = torch.tensor([p.length for p in prefills], dtype=torch.long)
    rows = list(range(n))  # original index of each batch row
    live = [True] * n
    out: list[list[int]] = [[] for _ in range(n)]
    cur = torch.tensor(last, dtype=torch.long)[:, None]
    body, lm_head = getattr(model, "model", model), model.get_output_embeddings()
    pick = head or (lambda h: lm_head(h).argmax(-1))  # softcapping (tanh) keeps the argmax
    for step in range(max_new):
        mask[:, longest + step] = 1
        with torch.inference_mode():
            h = body(input_ids=cur.to(device), attention_mask=mask[:, : longest + step + 1].to(device),
                     position_ids=(start + step)[:, None].to(device), past_key_values=cache,
                     use_cache=True).last_hidden_state[:, -1]
            nxt = pick(h).cpu()
        for r, t in enumerate(nxt.tolist()):
            if live[r]:
                seq = out[rows[r]]
                seq.append(t)
                live[r] = not (t in eos or len(seq) >= max_new or stopped(seq))
        alive = sum(live)
        if not alive:
            break
        if len(rows) - alive >= COMPACT_SHARE * len(rows):
            keep = [r for r in range(len(rows)) if live[r]]
            sel = torch.tensor(keep, dtype=torch.long)
            buffered.select(sel.to(device))
            mask, start, rows, live = mask[sel], start[sel], [rows[r] for r in keep], [True] * len(keep)
            nxt = nxt[sel]
        cur = nxt[:, None]
    return out


def greedy(model: Any, seqs: list[list[int]], max_new: int, store: PrefixStore, pad_id: int,
           stopped: Callable[[list[int]], bool], stats: dict[str, int] | None = None,
           head: Callable[[Any], Any] | None = None) -> list[list[int]]:
    """Greedy continuations (token IDs) of every prompt in ``seqs`` (each at least one token); ``head``: see
    :func:`decode_group`."""
    cfg_eos = getattr(model.generation_config, "eos_token_id", None)
    eos = set(cfg_eos if isinstance(cfg_eos, (list, tuple)) else [] if cfg_eos is None else [cfg_eos])
    pre = prefill(model, seqs, store, pad_id, stats)
    out: list[list[int]] = [[] for _ in seqs]
    for group in groups([p.length for p in pre], max_new, kv_bytes_per_token(model)):
        tokens = decode_group(model, [pre[i] for i in group], [seqs[i][-1] for i in group], max_new, eos, stopped,
                              head)
        for i, t in zip(group, tokens):
            out[i] = t
    return out
