"""Prompt prefills shared between generation and the log-likelihoods that follow it (hf backend).

The task-inference probe scores two short continuations of exactly the
prompt the model has just generated from. Recomputing that prompt costs a
full prefill, as much as the generation's own. So :meth:`HFBackend.generate`
keeps each prompt's key/value cache (all tokens but the last), and
:meth:`HFBackend.loglikelihood` continues from it: it feeds only the prompt's
last token and the continuation, a few decode steps instead of a prefill.

* Keyed by the prompt's token IDs, so a hit is the same tokens by
  construction; anything else takes the ordinary batched forward pass.
* Bounded by bytes (``prefix_cache_mb``), oldest evicted first; prompts longer
  than a sliding-window layer's window are not kept.
* Numerically it is the same computation in another batch layout: log-likelihoods
  agree with the full forward pass to float rounding (tests: 1e-4 nats).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

DEFAULT_PREFIX_CACHE_MB = 2048


@dataclass
class Prefill:
    """One prompt's keys and values for its first ``length`` tokens, per layer ``[kv_heads, length, head_dim]``."""

    kv: list[tuple[Any, Any]]

    @property
    def length(self) -> int:
        return int(self.kv[0][0].shape[-2])

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv)


class PrefixStore:
    """Prefills by prompt token IDs, within a byte budget; counts hits and misses for describe()."""

    def __init__(self, max_mb: float = DEFAULT_PREFIX_CACHE_MB) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self.items: OrderedDict[tuple[int, ...], Prefill] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = self.stored = 0

    def put(self, ids: Sequence[int], prefill: Prefill) -> None:
        key, size = tuple(ids), prefill.nbytes
        if size > self.max_bytes or key in self.items:
            return
        while self.items and self.bytes + size > self.max_bytes:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.nbytes
        self.items[key] = prefill
        self.bytes += size
        self.stored += 1

    def get(self, ids: Sequence[int]) -> Prefill | None:
        found = self.items.get(tuple(ids))
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def clear(self) -> None:
        self.items.clear()
        self.bytes = 0

    def describe(self) -> dict[str, Any]:
        return {"prefix_cache_mb": round(self.max_bytes / 2**20), "prefix_hits": self.hits,
                "prefix_misses": self.misses, "prefixes_stored": self.stored}


def keep_prefills(store: PrefixStore, cache: Any, seqs: list[list[int]], width: int) -> None:
    """Store each prompt's prefill (all tokens but the last) from ``generate``'s left-padded cache.

    ``width``: the padded prompt length. A layer whose cache does not hold every
    position (a sliding window shorter than the prompt) means nothing is kept.
    """
    layers = getattr(cache, "layers", None)
    if not layers or store.max_bytes <= 0:
        return
    total = int(layers[0].keys.shape[-2])
    if any(getattr(layer, "keys", None) is None or int(layer.keys.shape[-2]) != total for layer in layers):
        return
    for i, s in enumerate(seqs):
        if len(s) < 2:
            continue
        a, b = width - len(s), width - 1
        store.put(s, Prefill([(layer.keys[i, :, a:b].clone(), layer.values[i, :, a:b].clone()) for layer in layers]))


def continue_batch(model: Any, prefills: list[Prefill], inputs: Sequence[Sequence[int]], pad_id: int, cache_out: list | None = None):
    """Hidden states of ``inputs[i]`` fed after ``prefills[i]``: ``[batch, max_len, hidden]`` (right-padded).

    The prefills are left-padded to a common length and masked; positions
    continue each prompt's own count, as in the prompt's own forward pass.
    ``cache_out``: a list that receives the cache, whose row ``i`` holds prefill and input at positions
    ``longest - prefills[i].length`` to ``longest + len(inputs[i])``.
    """
    import torch

    device = next(model.parameters()).device
    n, longest, m = len(prefills), max(p.length for p in prefills), max(len(x) for x in inputs)
    mask = torch.zeros((n, longest + m), dtype=torch.long)
    ids = torch.full((n, m), pad_id, dtype=torch.long)
    pos = torch.zeros((n, m), dtype=torch.long)
    for i, (p, x) in enumerate(zip(prefills, inputs)):
        mask[i, longest - p.length: longest + len(x)] = 1
        ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        pos[i] = torch.arange(p.length, p.length + m)
    cache = assemble_cache(model, prefills, longest, extra=m)
    InPlace(cache)  # the inputs' keys and values written into the buffers (no torch.cat of the prefills per layer)
    body = getattr(model, "model", model)
    out = body(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
               past_key_values=cache, use_cache=True)
    if cache_out is not None:
        cache_out.append(cache)
    return out.last_hidden_state


def assemble_cache(model: Any, prefills: list[Prefill], longest: int, extra: int = 0):
    """A transformers cache holding ``prefills`` left-padded to ``longest`` positions (pads are zeros, to be masked).

    With ``extra``, each layer's keys and values are views of buffers ``extra`` positions longer (returned as
    ``cache.buffers``, ``[keys, values]`` per layer), for a decoder to write its new tokens into in place.
    Only the pads are zeroed: a masked position still enters attention with weight 0, and 0 x NaN is NaN.
    """
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    n, buffers = len(prefills), []
    for layer in range(len(prefills[0].kv)):
        k0, v0 = prefills[0].kv[layer]
        keys = k0.new_empty((n, k0.shape[0], longest + extra, k0.shape[-1]))
        values = v0.new_empty((n, v0.shape[0], longest + extra, v0.shape[-1]))
        for i, p in enumerate(prefills):
            k, v = p.kv[layer]
            pad = longest - p.length
            keys[i, :, :pad] = 0
            values[i, :, :pad] = 0
            if p.length:
                keys[i, :, pad:longest] = k
                values[i, :, pad:longest] = v
        buffers.append([keys, values])
        cache.update(keys[:, :, :0], values[:, :, :0], layer)  # the layer's own initialisation, then no copy:
        cache.layers[layer].keys, cache.layers[layer].values = keys[:, :, :longest], values[:, :, :longest]
        if hasattr(cache.layers[layer], "cumulative_length"):  # sliding-window layers count their tokens
            cache.layers[layer].cumulative_length = longest
    cache.buffers = buffers
    return cache


class InPlace:
    """In-place key/value buffers behind a transformers cache's layers (no ``torch.cat`` per step).

    ``cache`` comes from :func:`~harness.backends.prefix.assemble_cache` with ``extra`` positions to spare.
    """

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.buffers = cache.buffers
        for i, layer in enumerate(cache.layers):
            self._bind(layer, i, layer.keys.shape[2])

    def _bind(self, layer: Any, index: int, length: int) -> None:
        owner, state = self, {"len": length}
        layer.keys, layer.values = (b[:, :, :length] for b in self.buffers[index])

        def update(key_states, value_states, *args, **kwargs):
            kb, vb = owner.buffers[index]
            a, b = state["len"], state["len"] + key_states.shape[-2]
            kb[:, :, a:b] = key_states
            vb[:, :, a:b] = value_states
            state["len"] = b
            if hasattr(layer, "cumulative_length"):
                layer.cumulative_length += key_states.shape[-2]
            layer.keys, layer.values = kb[:, :, :b], vb[:, :, :b]
            return layer.keys, layer.values

        layer.update = update

    def select(self, rows: Any) -> None:
        """Keep only batch ``rows`` (a long tensor) of every buffer."""
        for i, layer in enumerate(self.cache.layers):
            n = layer.keys.shape[2]
            self.buffers[i] = [b.index_select(0, rows) for b in self.buffers[i]]
            layer.keys, layer.values = (b[:, :, :n] for b in self.buffers[i])
