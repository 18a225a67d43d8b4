"""The pipeline's config (:class:`PipelineConfig`: its own section and each stage's) and how a
budget shared by the methods becomes each searcher's own (:func:`equal_budgets`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from searchers.common.sections import RunSection
from searchers.differentiable.config import DartsConfig
from searchers.sharing.config import SupernetConfig
from searchers.training.config import RetrainConfig
from searchers.trials.config import OptunaConfig

METHODS = ("random", "nsga2", "tpe", "gp", "darts", "oneshot", "params")
"""The search methods; ``random``, ``nsga2``, ``tpe`` and ``gp`` are studies of the same sampled
space with that ``study.sampler`` (``tpe``: Optuna's multi-objective TPE, constraint-aware;
``gp``: its GP sampler with the constraints in its acquisition)."""

Method = Literal["random", "nsga2", "tpe", "gp", "darts", "oneshot", "params"]


@dataclass
class PipelineSection(RunSection):
    """The pipeline's run folder (:class:`searchers.common.sections.RunSection`) and its stages."""

    dir: str = "runs/pipeline"
    name: str | None = "default"
    methods: list[Method] = field(
        default_factory=lambda: ["random", "nsga2", "darts"])
    patches: int | None = None  # equal total search budget in trained HR patches (null: as set)
    # equal search budget in CPU-seconds (GPU: wall seconds) of everything a method spends:
    # trials, supernet training, architecture steps, measuring, selecting (null: as set)
    cpu_seconds: float | None = None
    # every method searched once per search seed (its study's, DARTS's and the supernet's
    # seed); null: once, with each section's own seed
    search_seeds: list[int] | None = None
    converged: str = "../shared/reference/converged_psnr.md"  # the recipe-fidelity yardstick
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    zoo: list[str] = field(default_factory=lambda: ["rlfn_ntire", "span_ntire2024"])
    sets: list[str] = field(default_factory=lambda: ["Set5", "Set14", "B100"])
    datasets_root: str | None = "../shared/datasets"
    report_size: int = 64  # LR side of the report's timing input
    report_rounds: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"pipeline.methods: got {self.methods}; list one or more of "
                             f"{', '.join(METHODS)}, each once")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"pipeline.seeds: got {self.seeds}; list one or more distinct "
                             "seeds, e.g. [0, 1, 2]")
        if self.patches is not None and self.patches < 1:
            raise ValueError(f"pipeline.patches: got {self.patches}; give a budget >= 1 in "
                             "trained HR patches, or null to keep each method's own")
        if self.cpu_seconds is not None and not (0 < self.cpu_seconds < math.inf):
            raise ValueError(f"pipeline.cpu_seconds: got {self.cpu_seconds}; give a budget > 0 "
                             "in CPU-seconds per method and search seed, or null")
        if self.cpu_seconds is not None and self.patches is not None:
            raise ValueError(f"pipeline.cpu_seconds={self.cpu_seconds} and pipeline.patches="
                             f"{self.patches}: equalise the methods one way; set the other to "
                             "null")
        if self.search_seeds is not None and (
                not self.search_seeds or len(set(self.search_seeds)) != len(self.search_seeds)):
            raise ValueError(f"pipeline.search_seeds: got {self.search_seeds}; list one or more "
                             "distinct seeds, e.g. [0, 1, 2], or null for one search per method")
        from search_space.zoo import ZOO

        bad = [z for z in self.zoo if z not in ZOO]
        if bad:
            raise ValueError(f"pipeline.zoo: got unknown {bad}; valid names: {', '.join(ZOO)}")


@dataclass
class MatchedSection:
    """The matched-latency check (:mod:`searchers.stages.matched`: each
    search's net against random nets of its space at its latency); ``n: 0`` turns it off."""

    n: int = 0  # random nets per searched net (8: each searched net ranked among 9)
    tolerance: float = 0.10  # |latency ratio to the searched net - 1| at most this
    max_draws: int = 300  # uniform draws per space at most
    seed: int = 0  # the draws' seed
    # check only the searches of these pipeline.search_seeds (null: every search); the
    # random nets' retraining is most of the check's cost
    search_seeds: list[int] | None = None

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"matched.n: got {self.n}; give the random nets per searched net "
                             "(8 for the check, 0 to turn it off)")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"matched.tolerance: got {self.tolerance}; give a fraction in "
                             "(0, 1), e.g. 0.1 for +-10 %")
        if self.n and self.max_draws < self.n:
            raise ValueError(f"matched.max_draws: got {self.max_draws}; give at least "
                             f"matched.n={self.n} draws per space")


@dataclass
class PipelineConfig:
    """The pipeline's config: its own section and the config of each stage (``trials`` for the
    random and NSGA-II studies, ``darts``, ``supernet`` for the ``oneshot`` method's supernet
    training, and the one ``retrain`` recipe)."""

    pipeline: PipelineSection = field(default_factory=PipelineSection)
    trials: OptunaConfig = field(default_factory=OptunaConfig)
    darts: DartsConfig = field(default_factory=DartsConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    matched: MatchedSection = field(default_factory=MatchedSection)


TRIALS_CAP = 100_000
"""``study.n_trials`` of a study under ``pipeline.cpu_seconds``: the budget ends it first."""


def equal_budgets(cfg: PipelineConfig) -> PipelineConfig:
    """The config with ``pipeline.patches`` turned into each method's trials or steps, or
    ``pipeline.cpu_seconds`` into each searcher's own budget (``study.cpu_seconds``,
    ``search.cpu_seconds``; the ``oneshot`` study gets what its supernet training left,
    :meth:`Pipeline.trials`)."""
    seconds = cfg.pipeline.cpu_seconds
    if seconds is not None:
        study = replace(cfg.trials.study, cpu_seconds=seconds, n_trials=TRIALS_CAP)
        return replace(cfg, trials=replace(cfg.trials, study=study),
                       darts=replace(cfg.darts, search=replace(cfg.darts.search,
                                                               cpu_seconds=seconds)))
    patches = cfg.pipeline.patches
    if patches is None:
        return cfg
    p = cfg.trials.proxy
    per_trial = p.steps * p.seeds * p.batch_size
    n_trials = max(1, patches // max(1, per_trial))
    steps = max(1, patches // (2 * cfg.darts.data.batch_size))
    search = replace(cfg.darts.search, steps=steps,
                     warmup_steps=min(cfg.darts.search.warmup_steps, steps // 5))
    st = cfg.supernet.train
    paths = 1 if st.rule == "uniform" else 2 + st.sandwich_random
    supernet = replace(cfg.supernet, train=replace(
        st, steps=max(1, patches // (paths * cfg.supernet.data.batch_size))))
    return replace(cfg, trials=replace(cfg.trials, study=replace(cfg.trials.study,
                                                                 n_trials=n_trials)),
                   darts=replace(cfg.darts, search=search), supernet=supernet)
