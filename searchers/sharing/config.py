"""Supernet training's settings: one dataclass per section of ``configs/supernet.yaml``.

The data section is the DARTS search's (:class:`~searchers.differentiable.config.DataConfig`),
the space the DARTS space (:class:`~searchers.differentiable.config.SpaceConfig`, whose
``width`` and ``num_cells`` are the maxima here) plus the widths and fewest cells sampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from searchers.common.sections import RunSection
from searchers.differentiable.config import DataConfig, SpaceConfig
from searchers.differentiable.elastic import ElasticSpace, check_widths


@dataclass
class SharingSpace(SpaceConfig):
    """The supernet's space (``width``, ``num_cells``: the maxima), the ``widths`` training
    samples (each <= ``width``) and the fewest cells ``cells_min``."""

    widths: list[int] = field(default_factory=lambda: [16, 20, 24])
    cells_min: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        check_widths(self.widths, self.width)
        if not 1 <= self.cells_min <= self.num_cells:
            raise ValueError(f"space.cells_min: got {self.cells_min}; give 1 to space.num_cells "
                             f"({self.num_cells})")

    def gate_widths(self) -> tuple[int, ...]:
        """None: here the widths are slices of the largest width's weights that training
        samples (:class:`ElasticSpace`), not DARTS's width gate."""
        return ()

    def elastic(self) -> ElasticSpace:
        """What training samples (and ``supernet.json`` records)."""
        return ElasticSpace(self.supernet_spec(), tuple(self.widths), self.cells_min)


@dataclass
class SharingTrain:
    """The weight training: Adam on the shared weights (cosine from ``lr`` to ``lr_min``), one
    step per batch along the paths of ``rule``: ``uniform`` (one random subnet) or
    ``sandwich`` (the largest, the smallest and ``sandwich_random`` random subnets, their
    gradients summed). ``distill`` > 0 (sandwich only) adds that weight times the L1 distance of
    every other path's output to the largest path's (detached): in-place distillation."""

    steps: int = 200
    lr: float = 1e-3
    lr_min: float = 1e-5
    grad_clip: float = 5.0
    rule: Literal["uniform", "sandwich"] = "sandwich"
    sandwich_random: int = 2
    distill: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"train.steps: got {self.steps}; must be >= 1")
        if not self.lr > 0 or self.lr_min < 0:
            raise ValueError(f"train.lr / train.lr_min: got {self.lr} / {self.lr_min}; need lr > "
                             "0 and lr_min >= 0")
        if self.grad_clip < 0:
            raise ValueError(f"train.grad_clip: got {self.grad_clip}; give >= 0 (0: no clipping)")
        if self.sandwich_random < 0:
            raise ValueError(f"train.sandwich_random: got {self.sandwich_random}; give >= 0 "
                             "random paths besides the largest and the smallest")
        if not (math.isfinite(self.distill) and self.distill >= 0):
            raise ValueError(f"train.distill: got {self.distill}; give a weight >= 0")
        if self.distill > 0 and self.rule != "sandwich":
            raise ValueError(f"train.distill: got {self.distill} with train.rule={self.rule}; "
                             "distillation needs the largest path: set train.rule=sandwich or "
                             "train.distill=0")


@dataclass
class SharingRun(RunSection):
    """The run folder (:class:`searchers.common.sections.RunSection`), seed and device."""

    dir: str = "runs/supernet"
    name: str | None = "default"
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 50
    log_every: int = 10
    plots: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError(f"run.checkpoint_every / run.log_every: got "
                             f"{self.checkpoint_every} / {self.log_every}; must be >= 1")


@dataclass
class SupernetConfig:
    """``python searchers/train_supernet.py``'s config."""

    data: DataConfig = field(default_factory=DataConfig)
    space: SharingSpace = field(default_factory=SharingSpace)
    train: SharingTrain = field(default_factory=SharingTrain)
    run: SharingRun = field(default_factory=SharingRun)
