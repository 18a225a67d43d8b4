"""One multi-objective trial, shared by the Optuna and Ray Tune searchers.

A trial samples one discrete architecture define-by-run (:func:`sample_genotype`), or takes a
zoo net, then :func:`evaluate_genotype` builds it, measures its latency and peak memory with
the proxies on the trial's device, and trains it briefly from scratch (fixed steps, schedule
and seed) to get a proxy PSNR on the validation images, unless a DARTS supernet checkpoint is
given, whose weights it then inherits. Objectives: ``psnr_db`` (max), ``latency_ms`` (min),
``memory_mib`` (min); params, FLOPs and activations are recorded beside them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from search_space.genotype import Genotype
from search_space.patch import training_patch_size
from search_space.zoo import YARDSTICK
from searchers.common.sections import MeasureSection
from searchers.training.loop import ShortTraining
from searchers.trials.sampled_space import (  # noqa: F401  (re-exported: the trials' space)
    NotInSpace,
    SampleSpace,
    Suggester,
    genotype_params,
    normalise_interface,
    sample_genotype,
)

if TYPE_CHECKING:
    from proxies.measure.settings import MeasureSettings

logger = logging.getLogger(__name__)

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


_DATA_CACHE: dict[tuple[str, int, int], Any] = {}


def _dataset(spec: str, scale: int, patch: int | None) -> Any:
    from proxies.data.specs import dataset_from_spec

    key = (spec, scale, patch or 0)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = dataset_from_spec(spec, scale, patch_size=patch)
    return _DATA_CACHE[key]


def proxy_patch_size(proxy: ProxyConfig, attentions: list[str], scale: int) -> int:
    """The proxy's HR training patch for a space with these attention candidates (checked)."""
    return training_patch_size(proxy.patch_size, attentions, scale,
                               default=DEFAULT_PROXY_PATCH, where="proxy.patch_size")


def study_patch_size(space: SampleSpace, proxy: ProxyConfig, zoo: list[str]) -> int:
    """The one training patch of every trial of a study: large enough for every attention the
    space samples and every enqueued zoo net uses (checked; see :func:`proxy_patch_size`)."""
    from search_space.memory import require_batch

    attentions = list(space.attention_candidates)
    for name in zoo:
        attentions += zoo_genotype(name, space.scale).attentions
    patch = proxy_patch_size(proxy, attentions, space.scale)
    lr = patch // space.scale
    require_batch(proxy.batch_size, (lr, lr), scale=space.scale, what=f"a batch of "
                  f"proxy.batch_size={proxy.batch_size} patches of {patch} px",
                  fix="lower proxy.batch_size or proxy.patch_size")  # drawn on the host
    return patch


def proxy_psnr(model: torch.nn.Module, genotype: Genotype, proxy: ProxyConfig,
               device: torch.device, patch_size: int | None = None) -> float:
    """Train ``model`` for ``proxy.steps`` (cosine schedule, seed ``proxy.seed``) with the
    shared training step, then the mean Y-PSNR on the validation images (each centre-cropped
    to ``proxy.val_max_side`` HR px). ``patch_size`` defaults to what the genotype's own
    attention needs (:func:`proxy_patch_size`); a study passes the space's."""
    run = ProxyTraining(model, genotype, proxy, device, patch_size)
    run.advance(proxy.steps)
    return run.psnr()


class ProxyTraining(ShortTraining):
    """The proxy's short training of one net (:class:`ShortTraining` with the proxy's
    settings: seed ``proxy.seed``, ``proxy.lr``, ``proxy.batch_size``, the study's patch, a
    cosine schedule over ``total_steps``, default ``proxy.steps``), advanced in chunks by
    successive halving; :meth:`psnr` validates on ``proxy.val``."""

    def __init__(self, model: torch.nn.Module, genotype: Genotype, proxy: ProxyConfig,
                 device: torch.device, patch_size: int | None = None,
                 total_steps: int | None = None) -> None:
        self.genotype, self.proxy = genotype, proxy
        total = proxy.steps if total_steps is None else total_steps
        scale = genotype.scale
        patch, train = 0, None
        if total > 0:
            patch = patch_size or proxy_patch_size(proxy, list(genotype.attentions), scale)
            train = _dataset(proxy.train, scale, patch)
        super().__init__(model, train, total_steps=total, lr=proxy.lr,
                         batch_size=proxy.batch_size, patch_size=patch, seed=proxy.seed,
                         device=device)

    def psnr(self, val: Any = None, *, scale: int | None = None,
             side: int | None = None) -> float:
        """The mean Y-PSNR on ``proxy.val`` now (each image centre-cropped to
        ``proxy.val_max_side``); NaN once the training diverged."""
        scale = self.genotype.scale
        return super().psnr(_dataset(self.proxy.val, scale, None), scale=scale,
                            side=self.proxy.val_max_side)


def proxy_score(genotype: Genotype, proxy: ProxyConfig, device: torch.device,
                patch_size: int | None = None, model: torch.nn.Module | None = None
                ) -> tuple[float, float]:
    """The proxy PSNR of ``genotype``: the mean (and population std) over ``proxy.seeds``
    short trainings, each from a fresh initialisation seeded ``proxy.seed + k`` and drawing
    its own patches. ``model`` (built with seed ``proxy.seed``) serves as the first; a net
    inheriting a DARTS supernet's weights is scored once (nothing random to average). NaN if
    any training diverged."""
    from search_space import build_model

    seeds = 1 if proxy.supernet else proxy.seeds
    scores = []
    for k in range(seeds):
        one = replace(proxy, seed=proxy.seed + k)
        if model is None or k > 0:
            torch.manual_seed(one.seed)
            model = build_model(genotype)
        scores.append(proxy_psnr(model, genotype, one, device, patch_size))
    return float(np.mean(scores)), float(np.std(scores))


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


_REFERENCE_MEMORY: dict[tuple[str, int, int, str, str], float] = {}


def reference_ratios(model: torch.nn.Module, memory_mib: float, budget: BudgetConfig,
                     settings: MeasureSettings, scale: int) -> tuple[float, float]:
    """(latency ratio, memory ratio) of ``model`` to ``budget.reference``, measured as
    ``settings`` say (the trial's): latency timed interleaved with the reference over
    ``budget.rounds`` rounds of half the trial's runs each; the reference's peak memory
    measured once per process and input."""
    from proxies.measure.latency import measure_latency_ratio
    from proxies.measure.memory import measure_peak_memory_or_torch
    from search_space import build_model

    assert budget.reference is not None
    torch.manual_seed(0)
    ref = build_model(zoo_genotype(budget.reference, scale))
    interleaved = replace(settings, rounds=budget.rounds,
                          runs_per_round=max(1, settings.runs // 2))
    ratio = measure_latency_ratio(model, ref, interleaved)
    key = (budget.reference, scale, settings.lr_size[0], settings.device, settings.backend)
    if key not in _REFERENCE_MEMORY:
        _REFERENCE_MEMORY[key] = measure_peak_memory_or_torch(ref, settings).peak_memory_mib
    return ratio.ratio_median, memory_mib / _REFERENCE_MEMORY[key]


def evaluate_genotype(genotype: Genotype, proxy: ProxyConfig, measure: MeasureSection,
                      constraints: ConstraintConfig, patch_size: int | None = None,
                      budget: BudgetConfig | None = None, reference: bool = False
                      ) -> TrialResult:
    """Build, measure (in its deployed form) and briefly train one net. NaN PSNR means the
    training diverged. ``patch_size``: the study's training patch (see :func:`proxy_psnr`);
    ``budget``: constraints relative to a reference net (:class:`BudgetConfig`);
    ``reference``: a zoo net, trained whatever its costs (``proxy.train_over_budget``)."""
    m = measure_genotype(genotype, proxy, measure, budget)
    if not (proxy.train_over_budget or reference):
        cost = m.cost_constraints(constraints, budget)
        over = {k: v for k, v in cost.items() if v > 0}
        if over:  # infeasible whatever it learns: told untrained, as halving does
            logger.info("over budget (%s): not trained",
                        ", ".join(f"{k} +{v:.3g}" for k, v in sorted(over.items())))
            return replace(m.result(-math.inf, constraints, budget, proxy_steps=0),
                           constraints=cost)
    if proxy.kind == "params":  # the zero-cost baseline: the score is the size, nothing trains
        return m.result(m.complexity.params_m, constraints, budget, psnr_std_db=0.0,
                        proxy_steps=0, proxy_seeds=0)
    steps = proxy.finetune_steps if proxy.kind == "supernet" else 0 if proxy.supernet else (
        proxy.steps)
    psnr, psnr_std = proxy_score(genotype, _with_steps(proxy, steps), m.device, patch_size,
                                 m.model)
    return m.result(psnr, constraints, budget, psnr_std_db=psnr_std, proxy_steps=steps,
                    proxy_seeds=1 if proxy.supernet else proxy.seeds)


@dataclass
class Measured:
    """A built net and its costs, measured before any training (:func:`measure_genotype`):
    the first half of :func:`evaluate_genotype`, which successive halving
    (:mod:`searchers.trials.halving`) uses to drop candidates over budget untrained."""

    genotype: Genotype
    model: torch.nn.Module
    device: torch.device
    complexity: Any
    latency_ms: float
    memory_mib: float
    latency_ratio: float
    memory_ratio: float
    start: float  # time.perf_counter() when the build began

    def cost_constraints(self, constraints: ConstraintConfig, budget: BudgetConfig | None
                         ) -> dict[str, float]:
        """The constraint values known before training: every one but ``psnr_floor``."""
        out = constraint_values(self._like(math.nan), constraints, budget)
        out.pop("psnr_floor", None)
        return out

    def _like(self, psnr: float) -> dict[str, float]:
        return {"psnr_db": psnr, "params_m": self.complexity.params_m,
                "latency_ms": self.latency_ms, "memory_mib": self.memory_mib,
                "latency_ratio": self.latency_ratio, "memory_ratio": self.memory_ratio}

    def result(self, psnr: float, constraints: ConstraintConfig, budget: BudgetConfig | None,
               **extra: Any) -> TrialResult:
        """The trial's record with proxy PSNR ``psnr`` (NaN: diverged, no constraints)."""
        cplx = self.complexity
        return TrialResult(
            psnr_db=psnr, latency_ms=self.latency_ms, memory_mib=self.memory_mib,
            params_m=cplx.params_m, flops_g=cplx.ntire_flops_g, macs_g=cplx.macs_g,
            activations_m=cplx.ntire_activations_m, num_conv=cplx.ntire_num_conv,
            device=str(self.device), duration_s=time.perf_counter() - self.start,
            genotype=self.genotype.to_json(indent=None),
            constraints=constraint_values(self._like(psnr), constraints, budget)
            if not math.isnan(psnr) else {},
            latency_ratio=self.latency_ratio, memory_ratio=self.memory_ratio, **extra)


def measure_genotype(genotype: Genotype, proxy: ProxyConfig, measure: MeasureSection,
                     budget: BudgetConfig | None = None) -> Measured:
    """Build one net (seeded ``proxy.seed``; a supernet's weights where ``proxy.supernet``)
    and measure it in its deployed form: complexity, latency, peak memory and the ratios to
    ``budget.reference``. Nothing is trained."""
    from proxies.measure.complexity import measure_complexity
    from proxies.measure.latency import measure_latency
    from proxies.measure.memory import measure_peak_memory_or_torch
    from proxies.measure.settings import resolve_device
    from search_space import build_model
    from search_space.memory import require_forward

    start = time.perf_counter()
    ms = measure.settings()  # built once; the measurements take it whole
    device = resolve_device(ms.device)
    h, w = ms.lr_size
    require_forward(lambda: build_model(genotype.deployed()), ms.lr_size, device,
                    scale=genotype.scale, what=f"the measurement at measure.lr_size={h}x{w}",
                    fix="lower measure.lr_size")
    torch.manual_seed(proxy.seed)
    from searchers.trials.inherit import inherit_supernet_weights, shared_subnet

    if proxy.kind == "supernet":  # the subnet's slices of a weight-sharing supernet
        model = shared_subnet(genotype, Path(proxy.supernet or ""))
    else:
        model = build_model(genotype)
        if proxy.supernet:
            inherit_supernet_weights(model, Path(proxy.supernet))
    cplx = measure_complexity(model)
    lat = measure_latency(model, ms)
    mem = measure_peak_memory_or_torch(model, ms)
    lat_x = mem_x = math.nan
    if budget is not None and budget.reference:
        lat_x, mem_x = reference_ratios(model, mem.peak_memory_mib, budget, ms, genotype.scale)
    return Measured(genotype=genotype, model=model, device=device, complexity=cplx,
                    latency_ms=lat.median_ms, memory_mib=mem.peak_memory_mib,
                    latency_ratio=lat_x, memory_ratio=mem_x, start=start)


def _with_steps(proxy: ProxyConfig, steps: int) -> ProxyConfig:
    return replace(proxy, steps=steps)


def zoo_genotype(name: str, scale: int) -> Genotype:
    from search_space.zoo import ZOO, at_scale

    if name not in ZOO:
        raise ValueError(f"zoo net: got {name!r}; valid names: {', '.join(ZOO)}")
    return at_scale(ZOO[name], scale)


DEFAULT_ZOO = list(YARDSTICK)
