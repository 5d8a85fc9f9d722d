"""Prompt text -> token IDs, the same way for every local backend.

``hf`` and ``vllm`` both tokenise through :class:`PromptEncoder`, so the two
backends see identical token IDs (BOS policy, chat template) and their greedy
outputs can be compared token for token.
"""
from __future__ import annotations

from typing import Any

from harness.errors import ModelLoadError
from harness.pipeline.models import ModelSpec


def decide_bos(tok, policy: str, meta: dict) -> bool:
    """Whether to prepend BOS: forced by ``policy``, else the GGUF header, else what the tokenizer does itself."""
    if tok.bos_token_id is None or policy == "never":
        return False
    if policy == "always":
        return True
    if "add_bos_token" in meta:  # from the GGUF header
        return bool(meta["add_bos_token"])
    probe = tok("a").input_ids
    return bool(probe) and probe[0] == tok.bos_token_id


class PromptEncoder:
    """Applies a model's chat template (if asked) and BOS policy to prompts."""

    def __init__(self, tok: Any, spec: ModelSpec, add_bos: bool) -> None:
        self.tok, self.spec, self.add_bos = tok, spec, add_bos
        self.bos_id = tok.bos_token_id

    def final_text(self, prompt: str) -> str:
        if not self.spec.chat_template:
            return prompt
        if not self.tok.chat_template:
            raise ModelLoadError(f"model {self.spec.name!r} has no chat template; set chat_template: false")
        return self.tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)

    def encode(self, prompt: str) -> list[int]:
        ids = self.tok(self.final_text(prompt), add_special_tokens=False).input_ids
        if self.add_bos and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id] + ids
        elif not self.add_bos and self.spec.bos == "never" and ids and ids[0] == self.bos_id:
            ids = ids[1:]
        return ids

    def split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token IDs of ``context`` and of ``continuation`` after it (for log-likelihoods)."""
        ctx = self.encode(context)
        whole = self.encode(context + continuation)
        if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
            return ctx, whole[len(ctx):]
        # tokenisation merged across the boundary: encode the continuation alone
        return ctx, self.tok(continuation, add_special_tokens=False).input_ids


def truncate_at_stop(text: str, stops) -> str:
    cut = min((text.find(s) for s in stops if s in text), default=-1)
    return text if cut < 0 else text[:cut]
