"""The trial searches' settings: one dataclass per section of ``configs/optuna*.yaml`` (the Ray
Tune run extends :class:`OptunaConfig`, :class:`searchers.trials.tune.RayConfig`).

Kept apart from the study (:mod:`searchers.trials.study`) so that its storage and samplers
(:mod:`searchers.trials.storage`, :mod:`searchers.trials.samplers`) and what reads a config
without running a study import the settings alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from searchers.common.sections import MeasureSection, RunSection
from searchers.trials.trial import (
    DEFAULT_ZOO,
    BudgetConfig,
    ConstraintConfig,
    ProxyConfig,
    SampleSpace,
)


@dataclass
class StudyConfig:
    """The study: its name, length, sampler and seed, storage (with the heartbeat, grace period
    and retries of a trial whose worker died) and the zoo nets enqueued as its first trials."""

    name: str = "srnas"
    n_trials: int = 24
    # a budget in CPU-seconds (wall seconds on a CUDA device) of everything the study's
    # workers spend on its searched trials (user attribute spent_s; the zoo trials, the
    # yardstick, are not counted): no trial starts once it is spent, n_trials stays the cap
    # (null: n_trials alone)
    cpu_seconds: float | None = None
    # nsga2 | tpe (multivariate MO-TPE) | gp (Optuna's GPSampler: logCEHVI) | random (the
    # baseline); each reads the budget from the trials' constraints (feasible when <= 0)
    sampler: Literal["nsga2", "tpe", "gp", "random"] = "nsga2"
    population_size: int = 8
    startup_trials: int = 10  # tpe and gp: random trials before the model is fit
    seed: int = 0
    storage: str | None = None  # default: sqlite:///<run folder>/study.db
    heartbeat_s: int = 60
    grace_s: int = 180
    retries: int = 1
    enqueue_zoo: bool = True
    zoo: list[str] = field(default_factory=lambda: list(DEFAULT_ZOO))
    # a zoo net the space cannot express: skip (not enqueued; the log and the study's user
    # attribute zoo_outside_space name it) or reference (enqueued without parameters: measured
    # as a yardstick, but no point of the space, and it empties the parameters every trial
    # shares, so a model-based sampler (gp, multivariate tpe) falls back to random draws)
    zoo_outside: Literal["skip", "reference"] = "skip"

    def __post_init__(self) -> None:
        if self.startup_trials < 1:
            raise ValueError(f"study.startup_trials: got {self.startup_trials}; give >= 1 (the "
                             "random trials tpe and gp draw before fitting their model)")
        if self.cpu_seconds is not None and not (0 < self.cpu_seconds < math.inf):
            raise ValueError(f"study.cpu_seconds: got {self.cpu_seconds}; give a budget > 0 in "
                             "CPU-seconds, or null to stop at study.n_trials only")
        if self.n_trials < 1 or self.population_size < 2:
            raise ValueError(f"n_trials >= 1 and population_size >= 2 needed; got "
                             f"{self.n_trials}, {self.population_size}")


@dataclass
class TrialsRun(RunSection):
    """The trial search's run folder (:class:`searchers.common.sections.RunSection`) and its worker
    processes (Optuna; Ray Tune's trials run as the cluster schedules them)."""

    dir: str = "runs/optuna"
    name: str | None = "default"
    workers: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.workers < 1:
            raise ValueError(f"workers: got {self.workers}; must be >= 1")


@dataclass
class OptunaConfig:
    """One trial search: ``python searchers/optuna_search.py``'s config, and the pipeline's
    ``trials`` section."""

    space: SampleSpace = field(default_factory=SampleSpace)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    measure: MeasureSection = field(default_factory=MeasureSection)
    constraints: ConstraintConfig = field(default_factory=ConstraintConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    run: TrialsRun = field(default_factory=TrialsRun)

    def __post_init__(self) -> None:
        if self.proxy.kind == "params" and self.constraints.psnr_floor_db is not None:
            raise ValueError(f"constraints.psnr_floor_db={self.constraints.psnr_floor_db} with "
                             "proxy.kind=params: that proxy trains nothing and scores the "
                             "parameter count, so there is no PSNR to floor; set "
                             "constraints.psnr_floor_db=null or use proxy.kind=train")
        if self.study.cpu_seconds is not None and self.proxy.kind == "halving":
            raise ValueError(f"study.cpu_seconds={self.study.cpu_seconds} with proxy.kind="
                             "halving: a bracket's rungs are sized by study.n_trials; give "
                             "halving a trial count (study.cpu_seconds=null) or use "
                             "proxy.kind=train or supernet")
