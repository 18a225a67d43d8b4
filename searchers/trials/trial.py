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
from typing import TYPE_CHECKING, Any

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
from searchers.trials.trial_config import (  # noqa: F401  (re-exported: the trials' settings)
    DEFAULT_PROXY_PATCH,
    DIRECTIONS,
    OBJECTIVE_NAMES,
    BudgetConfig,
    ConstraintConfig,
    ProxyConfig,
    TrialResult,
    constraint_values,
    zoo_genotype,
)

if TYPE_CHECKING:
    from proxies.measure.settings import MeasureSettings

logger = logging.getLogger(__name__)

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


_REFERENCE_MEMORY: dict[tuple[str, int, int, str, str], float] = {}


def reference_ratios(model: torch.nn.Module, memory_mib: float, budget: BudgetConfig,
                     settings: MeasureSettings, scale: int) -> tuple[float, float]:
    """(latency ratio, memory ratio) of ``model`` to ``budget.reference``, measured as
    ``settings`` say (the trial's): latency timed interleaved with the reference over
    ``budget.rounds`` rounds of half the trial's runs each; the reference's peak memory
    measured once per process and input."""
    from proxies.measure.memory import measure_peak_memory_or_torch
    from search_space import build_model

    assert budget.reference is not None
    ratio = reference_latency_ratio(model, budget, settings, scale)
    key = (budget.reference, scale, settings.lr_size[0], settings.device, settings.backend)
    if key not in _REFERENCE_MEMORY:
        torch.manual_seed(0)
        ref = build_model(zoo_genotype(budget.reference, scale))
        _REFERENCE_MEMORY[key] = measure_peak_memory_or_torch(ref, settings).peak_memory_mib
    return ratio, memory_mib / _REFERENCE_MEMORY[key]


def reference_latency_ratio(model: torch.nn.Module, budget: BudgetConfig,
                            settings: MeasureSettings, scale: int) -> float:
    """The median latency ratio of ``model`` (its deployed form) to ``budget.reference``, timed
    interleaved over ``budget.rounds`` rounds of half ``settings.runs`` each: how a trial
    measures a candidate against the budget."""
    from proxies.measure.latency import measure_latency_ratio
    from search_space import build_model

    assert budget.reference is not None
    torch.manual_seed(0)
    ref = build_model(zoo_genotype(budget.reference, scale))
    interleaved = replace(settings, rounds=budget.rounds,
                          runs_per_round=max(1, settings.runs // 2))
    return measure_latency_ratio(model, ref, interleaved).ratio_median


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


DEFAULT_ZOO = list(YARDSTICK)
