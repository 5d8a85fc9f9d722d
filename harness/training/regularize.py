"""Regularised fine-tuning: keep the weights that matter for general text close to their pretrained values.

After Song et al. (2025), "How to Alleviate Catastrophic Forgetting in LLMs Finetuning? Hierarchical
Layer-Wise and Element-Wise Regularization" (arXiv:2501.13669): a dual objective, the cross-entropy of
the new task plus a penalty on changes to weights that are important for general knowledge, with
element-wise importance and layer-wise coefficients that balance the two terms during training.

For every regularised weight matrix l (a LoRA target module, or every parameter under full fine-tuning)
with change ``D_l`` from its pretrained value (LoRA: the effective change ``B @ A * alpha / r``; full
fine-tuning: ``W - W0``) the penalty is::

    R_l = sum_i w_i * D_l,i ** 2

``w`` is the element-wise importance (:mod:`harness.training.importance`, normalised to mean 1 over all
regularised elements) for ``elementwise`` and ``both``, and 1 for ``layerwise``. The modes
(``--regularize``):

* ``none``: the task cross-entropy alone (the unregularised recipe, bit for bit);
* ``elementwise``: ``CE + lambda * sum_l R_l`` with a fixed ``lambda`` (``--reg-lambda``, default 0.01);
* ``layerwise``, ``both``: each layer gets its own coefficient ``c_l``, set at every step so that the
  penalty's gradient in that layer has ``lambda`` times the norm of the cross-entropy's gradient there::

      c_l = lambda * ||grad_l CE|| / ||grad_l R_l||        (0 while R_l has no gradient, e.g. at step 0 of LoRA)

  (``--reg-lambda``, default 0.5). The paper's exact rule for its layer-wise coefficients is not
  reproduced here (we could not read it beyond the abstract); this rule is this project's choice: it
  balances the two terms per layer and per step as the abstract describes, needs no tuning of the
  penalty's scale (which differs by orders of magnitude between models, ranks and modes), and is
  bounded: a layer's penalty gradient is never larger than ``lambda`` times its task gradient.

training.jsonl records per step ``loss`` (the task cross-entropy), ``reg`` (the weighted penalty
``sum_l c_l R_l`` as added to the objective) and ``drift`` (``sum_l R_l``, unweighted).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from harness.errors import ConfigError

MODES = ("none", "elementwise", "layerwise", "both")
DEFAULT_LAMBDA = {"elementwise": 0.01, "layerwise": 0.5, "both": 0.5}
METHODS = ("lora", "full")


def check_options(mode: str, lam: float | None, method: str) -> None:
    """One-line errors for bad ``--regularize`` / ``--reg-lambda`` / ``--method`` values."""
    if mode not in MODES:
        raise ConfigError(f"--regularize {mode!r}: give one of {', '.join(MODES)}")
    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: give lora (LoRA adapters) or full (every weight, small models)")
    if lam is not None:
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise ConfigError(f"--reg-lambda: must be a finite number >= 0, got {lam!r}")
        if mode == "none":
            raise ConfigError("--reg-lambda needs --regularize elementwise, layerwise or both")


def lambda_of(mode: str, lam: float | None) -> float:
    return 0.0 if mode == "none" else float(DEFAULT_LAMBDA[mode] if lam is None else lam)


@dataclass
class Target:
    """One regularised weight matrix: its name, the trainable tensors its change depends on, and the change."""

    name: str  # the pretrained weight's parameter name, e.g. model.layers.0.self_attn.q_proj.weight
    params: list
    delta: Callable[[], Any]
    weight: Any = None  # normalised importance (same shape as the weight); None: uniform

    def penalty(self):
        d = self.delta()
        return (d * d).sum() if self.weight is None else (self.weight * d * d).sum()


def lora_targets(causal_lm) -> tuple[list[Target], dict[str, Any]]:
    """(targets, {weight name: frozen base weight}) for every LoRA-wrapped module of a peft model's base."""
    targets, base = [], {}
    for name, module in causal_lm.named_modules():
        if not (hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {})):
            continue
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        scale = module.scaling["default"]
        transpose = bool(getattr(module, "fan_in_fan_out", False))

        def delta(a=a, b=b, scale=scale, transpose=transpose):
            d = (b @ a) * scale
            return d.T if transpose else d

        key = f"{name}.weight"
        targets.append(Target(key, [a, b], delta))
        base[key] = module.base_layer.weight
    return targets, base


def full_targets(model) -> tuple[list[Target], dict[str, Any]]:
    """(targets, {name: parameter}) for every trainable parameter: the change is W - W0 (W0 copied now)."""
    targets, params = [], {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        w0 = p.detach().clone()
        targets.append(Target(name, [p], lambda p=p, w0=w0: p - w0))
        params[name] = p
    return targets, params


def attach_importance(targets: list[Target], omega: dict[str, Any]) -> None:
    """Normalise the importance to mean 1 over all targets' elements and attach it to each target."""
    import torch

    n = sum(omega[t.name].numel() for t in targets)
    total = sum(float(omega[t.name].double().sum()) for t in targets)
    if not total > 0:
        raise ConfigError("--importance-data: every weight has zero importance on this text (is it empty of "
                          "tokens the model predicts?); give a longer general text")
    scale = n / total
    for t in targets:
        device = t.params[0].device
        t.weight = (omega[t.name].to(device=device, dtype=torch.float32) * scale).contiguous()


class Regularizer:
    """Backpropagates ``CE + sum_l c_l R_l`` with the coefficients of its mode; see the module docstring."""

    def __init__(self, mode: str, lam: float, targets: list[Target]) -> None:
        if mode not in MODES[1:]:
            raise ValueError(mode)
        self.mode, self.lam, self.targets = mode, lam, targets

    def backward(self, ce) -> dict[str, float]:
        """Gradients of the regularised objective into ``.grad``; the penalty's value for the log."""
        import torch

        if self.mode == "elementwise":
            penalties = [t.penalty() for t in self.targets]
            drift = torch.stack(penalties).sum()
            (ce + self.lam * drift).backward()
            return {"reg": self.lam * float(drift.detach()), "drift": float(drift.detach())}
        ce.backward()
        reg = drift = 0.0
        for t in self.targets:
            r = t.penalty()
            drift += float(r.detach())
            g_r = torch.autograd.grad(r, t.params, allow_unused=True)
            n_r = math.sqrt(sum(float((g * g).sum()) for g in g_r if g is not None))
            if n_r == 0.0:
                continue
            n_ce = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in t.params if p.grad is not None))
            coef = self.lam * n_ce / n_r
            for p, g in zip(t.params, g_r):
                if g is not None:
                    p.grad = coef * g if p.grad is None else p.grad.add_(g, alpha=coef)
            reg += coef * float(r.detach())
        return {"reg": reg, "drift": drift}


def build(cfg, causal_lm, tok, add_bos: bool, identity: str, progress: bool = False,
          log: Callable[[str], None] | None = None) -> tuple[Regularizer | None, dict[str, Any] | None]:
    """The regulariser of ``cfg`` for the model being trained (LoRA-wrapped or full), and its recipe entry.

    Must be called before the first optimizer step: under full fine-tuning the current weights are W0.
    """
    from harness.training.importance import load_or_compute

    if cfg.regularize == "none":
        return None, None
    lam = lambda_of(cfg.regularize, cfg.reg_lambda)
    targets, weights = lora_targets(causal_lm) if cfg.method == "lora" else full_targets(causal_lm)
    info: dict[str, Any] = {"mode": cfg.regularize, "lambda": lam, "targets": len(targets),
                            "penalised_elements": sum(w.numel() for w in weights.values()),
                            "change": "B @ A * alpha / r per LoRA module" if cfg.method == "lora" else "W - W0",
                            "layer_rule": None if cfg.regularize == "elementwise" else
                            "c_l = lambda * ||grad_l CE|| / ||grad_l R_l|| per layer and step"}
    if cfg.regularize in ("elementwise", "both"):
        omega, imp = load_or_compute(causal_lm, tok, add_bos, identity, weights, cfg.importance_data,
                                     progress=progress, log=log)
        attach_importance(targets, omega)
        info["importance"] = imp
    return Regularizer(cfg.regularize, lam, targets), info
