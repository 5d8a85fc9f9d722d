"""ConjugateLM: lm-eval's ``LM`` interface over a conjugate transform and the harness's cached executor.

lm-eval builds the requests (its TaskManager, few-shot construction, prompt
templates) and scores the answers (filters, ``process_results``,
aggregation); this class sits in between, on lm-eval's side of the model
boundary:

* ``generate_until``: the context goes through the transform's ``forward``
  (so do the stop sequences, next to the original ones), the response comes
  back through its ``inverse``, and lm-eval's filters and metrics see the
  inverted text;
* ``loglikelihood`` (also what ``multiple_choice`` tasks send): context and
  continuation both go through ``forward`` (the continuation keeps its
  leading whitespace), so the choices are in the same conjugate as the
  question; nothing is inverted. Trailing whitespace of the context moves to
  the continuation first, as lm-eval's own models do;
* ``loglikelihood_rolling``: the text goes through ``forward`` only.

Every request is served by :class:`~harness.pipeline.execute.Executor`: looked
up in the on-disk cache under the model's identity and the final request,
computed by a harness backend (hf, vllm, openai) only when missing,
committed batch by batch. A killed evaluation therefore resumes without
recomputing finished requests, and a repeated one opens no backend at all.

A request that fails (a translation, the backend) is answered with a
placeholder (``""``, ``-inf``) so lm-eval can go on, and recorded in
:attr:`ConjugateLM.records` with its reason; the harness turns the document
into an ``error`` sample, never into a score.

Use it directly with lm-eval::

    import lm_eval
    from harness.lmeval import ConjugateLM

    lm = ConjugateLM("pkg:gemma3-270m", transform="leetspeak")
    out = lm_eval.simple_evaluate(model=lm, tasks=["conj_opposites_en"], limit=20,
                                  task_manager=lm_eval.tasks.TaskManager(include_path="tasks/data/lmeval"))
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from lm_eval.api.model import LM
from lm_eval.models.utils import normalize_gen_kwargs

from harness.lmeval.service import ModelService
from harness.pipeline.plan import forward_error
from harness.pipeline.execute import GENERATE, LOGLIKELIHOOD, Generate, Loglikelihood
from harness.transform import Transform
from harness.types import Failed, Sampling

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default for its models
_LEAD = re.compile(r"^\s*")


@dataclass
class RequestRecord:
    """What happened to one lm-eval request (one Instance): for per-document samples."""

    kind: str  # generate_until, loglikelihood, loglikelihood_rolling
    transformed: tuple  # the request as sent: (context, ...) after forward
    raw: Any = None  # the backend's answer before the inverse (text, (logp, greedy), logp)
    error: str | None = None
    cached: bool = False


class ConjugateLM(LM):
    """lm-eval's LM over a conjugate transform, served by the harness's cached executor and backends."""

    def __init__(self, model: str | None = None, transform: str | Transform = "identity", backend: str = "hf",
                 adapter: str | None = None, dtype: str = "float32", bos: str = "auto", chat_template: bool = False,
                 cache: str | None = None, batch_size: int | None = None, progress: bool = True,
                 mt_provider: str | None = None, service: ModelService | None = None, **backend_options: Any) -> None:
        """``model`` and the next five as in a run's model spec; ``cache``: the generation cache file (default the
        harness's); ``backend_options``: as ``--backend-option``. ``service``: the runner's (else one is made)."""
        super().__init__()
        if service is None:
            if model is None:
                raise TypeError("ConjugateLM needs model=... (hub ID, folder, .gguf or pkg:NAME) or service=...")
            from harness.lmeval.standalone import standalone_service

            service = standalone_service(
                {"model": model, "backend": backend, "adapter": adapter, "dtype": dtype, "bos": bos,
                 "chat_template": chat_template, "options": backend_options},
                cache=cache, batch_size=batch_size, progress=progress)
        self.service = service
        self.transform = transform if isinstance(transform, Transform) else _make_transform(transform, mt_provider)
        self.identity = self.transform.id == "identity"
        #: (task name, doc id, request index) -> what happened to that request
        self.records: dict[tuple[str, int, int], RequestRecord] = {}
        self._samplings: dict[str, Sampling] = {}

    # -- lm-eval's request types ----------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        contexts = self._forward([r.args[0] for r in requests])
        sent: dict[int, Generate] = {}
        for r, ctx in zip(requests, contexts):
            if isinstance(ctx, Failed):
                self._record(r, "generate_until", (r.args[0],), error=ctx.reason)
            else:
                sent[id(r)] = Generate(ctx, self._sampling(r.args[1] if len(r.args) > 1 else {}))
        results = self.service.serve(GENERATE, list(sent.values())) if sent else []
        raw = dict(zip(sent, results))
        answers = [res[0] for res in results if res[1] is None]
        inverted = dict(zip(answers, self._inverse(answers)))
        out = []
        for r in requests:
            res = raw.get(id(r))
            if res is None:  # forward failed, recorded above
                out.append("")
                continue
            value, error, cached = res
            inv = inverted.get(value) if error is None else None
            if isinstance(inv, Failed):
                error = inv.reason
            rec = self._record(r, "generate_until", (sent[id(r)].prompt,), raw=value, error=error, cached=cached)
            out.append(inv if rec.error is None else "")
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [_move_space(*r.args[:2]) for r in requests]
        ctxs = self._forward([c for c, _ in pairs])
        conts = self._forward_keeping_space([c for _, c in pairs])
        return self._score(requests, "loglikelihood", list(zip(ctxs, conts)), lambda v: (v[0], v[1]),
                           (-math.inf, False))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        texts = self._forward([r.args[0] for r in requests])
        return self._score(requests, "loglikelihood_rolling", [("", t) for t in texts], lambda v: v[0], -math.inf)

    # -- helpers ---------------------------------------------------------------------------------------------
    def _score(self, requests, kind: str, pairs: list[tuple[Any, Any]], value: Callable, failed: Any) -> list:
        todo = [(r, Loglikelihood(c, t)) for r, (c, t) in zip(requests, pairs)
                if not isinstance(c, Failed) and not isinstance(t, Failed)]
        results = dict(zip((id(r) for r, _ in todo), self.service.serve(LOGLIKELIHOOD, [q for _, q in todo])))
        sent = {id(r): q for r, q in todo}
        out = []
        for r, (c, t) in zip(requests, pairs):
            if id(r) not in results:
                bad = c if isinstance(c, Failed) else t
                self._record(r, kind, tuple(r.args), error=bad.reason)
                out.append(failed)
                continue
            v, error, cached = results[id(r)]
            q = sent[id(r)]
            rec = self._record(r, kind, (q.context, q.continuation), raw=v, error=error, cached=cached)
            out.append(value(v) if rec.error is None else failed)
        return out

    def _sampling(self, gen_kwargs: dict) -> Sampling:
        key = repr(sorted((gen_kwargs or {}).items()))
        if key not in self._samplings:
            self._samplings[key] = self._make_sampling(gen_kwargs)
        return self._samplings[key]

    def _make_sampling(self, gen_kwargs: dict) -> Sampling:
        kw = normalize_gen_kwargs(dict(gen_kwargs or {}), DEFAULT_MAX_GEN_TOKS)
        until = kw.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        stops = list(dict.fromkeys(until + self._forward_stops(until)))
        temperature = float(kw.get("temperature") or 0.0) if kw.get("do_sample") else 0.0
        return Sampling(max_new_tokens=int(kw["max_gen_toks"]), temperature=temperature,
                        top_p=float(kw.get("top_p") or 1.0), stop=tuple(s for s in stops if s))

    def _forward_stops(self, stops: list[str]) -> list[str]:
        """Stop sequences in the conjugate too (whitespace-only ones are left as they are)."""
        words = [s for s in stops if s.strip()]
        if self.identity or not words:
            return []
        return [f for f in self._forward_keeping_space(words) if not isinstance(f, Failed)]

    def _forward(self, texts: list[str]) -> list[str | Failed]:
        if self.identity:
            return list(texts)
        uniq = list(dict.fromkeys(texts))
        try:
            mapped = dict(zip(uniq, self.transform.forward_batch(uniq)))
        except Exception as exc:
            mapped = {t: Failed(f"transform forward failed: {type(exc).__name__}: {exc}") for t in uniq}
        return [_forward_failed(mapped[t]) for t in texts]

    def _forward_keeping_space(self, texts: list[str]) -> list[str | Failed]:
        """``forward`` of texts that start with whitespace (continuations): the whitespace is kept as is."""
        leads = [_LEAD.match(t).group(0) for t in texts]
        mapped = self._forward([t[len(lead):] for t, lead in zip(texts, leads)])
        return [m if isinstance(m, Failed) else lead + m for lead, m in zip(leads, mapped)]

    def _inverse(self, texts: list[str]) -> list[str | Failed]:
        if self.identity or not texts:
            return list(texts)
        try:
            return [_inverse_failed(x) for x in self.transform.inverse_batch(texts)]
        except Exception as exc:
            return [Failed(f"transform inverse failed: {type(exc).__name__}: {exc}")] * len(texts)

    def _record(self, r, kind: str, transformed: tuple, raw: Any = None, error: str | None = None,
                cached: bool = False) -> RequestRecord:
        rec = RequestRecord(kind, transformed, raw, _backend_error(error), cached)
        self.records[(r.task_name, r.doc_id, r.idx)] = rec
        return rec

    # -- what lm-eval asks of a model besides requests ---------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return f"conjugate:{self.service.executor.mjson}"

    def get_model_info(self) -> dict[str, Any]:
        return {"model_identity": self.service.executor.mkey.get("identity"), "transform": self.transform.id}


def _move_space(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's convention: trailing whitespace of the context belongs to the continuation."""
    n = len(context) - len(context.rstrip())
    return (context[:-n], context[-n:] + continuation) if n and context.strip() else (context, continuation)


def _forward_failed(x: str | Failed) -> str | Failed:
    return Failed(forward_error(x.reason)) if isinstance(x, Failed) else x


def _inverse_failed(x: str | Failed) -> str | Failed:
    if isinstance(x, Failed) and not x.reason.startswith(("transform inverse failed", "translation failed")):
        return Failed(f"transform inverse failed: {x.reason}")
    return x


def _backend_error(error: str | None) -> str | None:
    if error is None or error.startswith(("transform ", "translation failed")):
        return error
    return f"backend error: {error}"


def _make_transform(name: str, mt_provider: str | None) -> Transform:
    from harness.pipeline.context import RunContext
    from harness.registry import TRANSFORMS

    tr = TRANSFORMS.create(name)
    tr.bind(RunContext(mt={"provider": mt_provider} if mt_provider else {}))
    return tr
