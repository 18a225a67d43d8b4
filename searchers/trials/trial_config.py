"""What a trial is told to do and what it records: the proxy (:class:`ProxyConfig`), the
constraints (:class:`ConstraintConfig`, :class:`BudgetConfig`, :func:`constraint_values`) and a
trial's record (:class:`TrialResult`), shared by the Optuna and Ray Tune searchers; the trial
itself is :mod:`searchers.trials.trial` (which re-exports these)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from search_space.genotype import Genotype

if TYPE_CHECKING:
    pass

OBJECTIVE_NAMES = ("psnr_db", "latency_ms", "memory_mib")
DIRECTIONS = ("maximize", "minimize", "minimize")


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


DEFAULT_PROXY_PATCH = 48
"""The HR patch when ``proxy.patch_size`` is unset, raised to what the sampled attention
candidates need (ESA: 108 at x4), so every trial trains on the same patch."""


@dataclass
class ProxyConfig:
    """The short training that gives the proxy PSNR (fixed steps, schedule and seed).

    ``val`` is the selection set: a split of the training images (``FOLDER::holdout``) or the
    embedded ``default:val``, never a set the final report is computed on.
    """

    train: str = "default:train"
    val: str = "default:val"
    steps: int = 100
    batch_size: int = 2
    patch_size: int | None = None  # null: 48 raised to what the space's attention needs
    lr: float = 1e-3
    seed: int = 0
    seeds: int = 1  # the proxy PSNR is the mean of this many trainings (seed, seed + 1, ...)
    val_max_side: int = 192
    supernet: str | None = None  # a DARTS run folder: inherit weights instead of training
    # train: each candidate trained from scratch for `steps`; supernet: inherits the weights of
    # the supernet in `supernet` and fine-tunes `finetune_steps`; halving: successive halving
    # over training steps among candidates that meet the budget (measured before training);
    # params: nothing trained, the score is the deployed net's parameter count in millions
    # (the zero-cost baseline: on T91 it ranks nets as well as any trained proxy, BENCHMARKS.md;
    # a study of it hands over the largest net it drew under the budget).
    kind: Literal["train", "supernet", "halving", "params"] = "train"
    finetune_steps: int = 0
    # train / supernet: a searched candidate over budget (any latency, memory or parameter
    # constraint > 0, measured first) is told untrained, PSNR -inf, as halving does (a
    # constrained sampler ranks it by its violation alone); true trains it anyway (the old way)
    train_over_budget: bool = True
    # halving (searchers/trials/halving.py): rung r trains halving_min_steps * halving_eta**r
    # steps in all; a bracket of halving_batch candidates keeps the best 1/eta at each rung.
    halving_min_steps: int = 25
    halving_eta: int = 3
    halving_batch: int = 9

    def __post_init__(self) -> None:
        if self.kind == "halving":
            self._check_halving()
        if self.finetune_steps < 0:
            raise ValueError(f"proxy.finetune_steps: got {self.finetune_steps}; give 0 (the "
                             "inherited weights as they are) or more fine-tuning steps")
        if self.kind == "supernet" and not self.supernet:
            raise ValueError("proxy.kind: got 'supernet' with proxy.supernet unset; name the run "
                             "folder of searchers/train_supernet.py (or of a DARTS search), e.g. "
                             "proxy.supernet=runs/supernet/default")
        patch_bad = self.patch_size is not None and self.patch_size < 1
        if self.steps < 0 or self.batch_size < 1 or patch_bad or self.lr <= 0:
            raise ValueError(f"steps >= 0, batch_size >= 1, patch_size >= 1 and lr > 0 needed; "
                             f"got {self.steps}, {self.batch_size}, {self.patch_size}, {self.lr}")
        if self.seeds < 1:
            raise ValueError(f"proxy.seeds: got {self.seeds}; give 1 or more (the proxy PSNR "
                             "is the mean over that many short trainings)")

    def _check_halving(self) -> None:
        """The settings of ``kind: halving`` (searchers/trials/halving.py), each checked."""
        if self.halving_min_steps < 1:
            raise ValueError(f"proxy.halving_min_steps: got {self.halving_min_steps}; the "
                             "first rung trains >= 1 step, e.g. proxy.halving_min_steps=25")
        if self.halving_eta < 2:
            raise ValueError(f"proxy.halving_eta: got {self.halving_eta}; give an integer >= 2 "
                             "(keep 1/eta of the candidates, train eta times longer)")
        if self.halving_batch < 1:
            raise ValueError(f"proxy.halving_batch: got {self.halving_batch}; give the "
                             "candidates per bracket, >= 1 (e.g. 9 with eta 3)")
        if self.seeds != 1:
            raise ValueError(f"proxy.seeds: got {self.seeds} with proxy.kind=halving; halving "
                             "trains one seed per candidate: set proxy.seeds=1")
        if self.supernet:
            raise ValueError(f"proxy.supernet: got {self.supernet!r} with proxy.kind=halving; "
                             "halving trains from scratch: drop proxy.supernet or use "
                             "proxy.kind=supernet")


@dataclass
class ConstraintConfig:
    """Feasibility constraints (``trial.set_constraint``); null switches one off."""

    psnr_floor_db: float | None = None
    max_params_m: float | None = None
    max_latency_ms: float | None = None
    max_memory_mib: float | None = None


@dataclass
class BudgetConfig:
    """A budget relative to a reference net, measured in the trial's own process.

    ``latency_x``: the most latency a trial may have, as a multiple of ``reference``'s, timed
    interleaved with it round by round (the ratio survives the machine's drift);
    ``memory_x``: the most peak memory, as a multiple of the reference's on the same input.
    Each is a constraint (``latency_x``, ``memory_x``; feasible when <= 0) beside the absolute
    ones of ``constraints`` (ms, MiB), which stay available for a fixed input size.
    """

    reference: str | None = None  # a zoo net, e.g. span_ntire2024
    latency_x: float | None = None
    memory_x: float | None = None
    rounds: int = 6

    def __post_init__(self) -> None:
        for name in ("latency_x", "memory_x"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"budget.{name}: got {value}; give a multiple > 0 of the "
                                 "reference's figure, e.g. 0.8, or null for none")
        if (self.latency_x is not None or self.memory_x is not None) and not self.reference:
            raise ValueError(f"budget.reference: got {self.reference!r} with latency_x="
                             f"{self.latency_x}, memory_x={self.memory_x}; name the reference "
                             "net, e.g. budget.reference=span_ntire2024")
        if self.reference is not None:
            zoo_genotype(self.reference, 4)  # validates the name
        if self.rounds < 1:
            raise ValueError(f"budget.rounds: got {self.rounds}; must be >= 1")


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class TrialResult:
    """Everything a trial records (objectives + attributes)."""

    psnr_db: float
    latency_ms: float
    memory_mib: float
    params_m: float
    flops_g: float
    macs_g: float
    activations_m: float
    num_conv: int
    device: str
    duration_s: float
    genotype: str
    constraints: dict[str, float]
    psnr_std_db: float = 0.0  # the spread of the proxy PSNR over its seeds
    proxy_seeds: int = 1
    latency_ratio: float = math.nan  # to budget.reference, timed interleaved (NaN: none)
    memory_ratio: float = math.nan
    proxy_steps: int = 0  # the training steps behind psnr_db (halving: the rung's)

    @property
    def values(self) -> tuple[float, float, float]:
        return self.psnr_db, self.latency_ms, self.memory_mib

    def attrs(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in OBJECTIVE_NAMES}


def constraint_values(result_like: dict[str, float], cfg: ConstraintConfig,
                      budget: BudgetConfig | None = None) -> dict[str, float]:
    """Constraint values (feasible when <= 0) of a measured trial: the absolute ones and
    those of the relative budget (``latency_x``, ``memory_x``)."""
    out = {}
    if budget is not None and budget.latency_x is not None:
        out["latency_x"] = result_like["latency_ratio"] - budget.latency_x
    if budget is not None and budget.memory_x is not None:
        out["memory_x"] = result_like["memory_ratio"] - budget.memory_x
    if cfg.psnr_floor_db is not None:
        out["psnr_floor"] = cfg.psnr_floor_db - result_like["psnr_db"]
    if cfg.max_params_m is not None:
        out["params"] = result_like["params_m"] - cfg.max_params_m
    if cfg.max_latency_ms is not None:
        out["latency"] = result_like["latency_ms"] - cfg.max_latency_ms
    if cfg.max_memory_mib is not None:
        out["memory"] = result_like["memory_mib"] - cfg.max_memory_mib
    return out


def zoo_genotype(name: str, scale: int) -> Genotype:
    from search_space.zoo import ZOO, at_scale

    if name not in ZOO:
        raise ValueError(f"zoo net: got {name!r}; valid names: {', '.join(ZOO)}")
    return at_scale(ZOO[name], scale)
