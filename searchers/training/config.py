"""Retraining's settings: one dataclass per section of a retrain config (``data``, ``optim``,
``run``, ``kd``) and the learning-rate schedule the ``optim`` section describes.

Kept apart from the training (:mod:`searchers.training.retrain`) so that what only reads or
builds a retrain config (the pipeline's ``retrain`` section, the tools) does not import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from searchers.common.sections import RunSection

DEFAULT_PATCH = 64
"""The HR patch when ``data.patch_size`` is unset, raised to what the net's attention needs."""


@dataclass
class RetrainData:
    train: str = "default:train"
    val: str = "default:val"
    scale: int | None = None  # default: the genotype's; a different value is refused
    # HR patch side; null: 64, or the smallest patch on which the net's attention works
    # (ESA: 108 at x4). A smaller explicit patch is refused for nets with ESA.
    patch_size: int | None = None
    batch_size: int = 16
    val_max_side: int | None = 256  # validation images centre-cropped to this HR side

    def __post_init__(self) -> None:
        if (self.patch_size is not None and self.patch_size < 1) or self.batch_size < 1:
            raise ValueError(f"patch_size and batch_size must be >= 1; got {self.patch_size}, "
                             f"{self.batch_size}")


@dataclass
class RetrainOptim:
    iterations: int = 1000
    lr: float = 5e-4
    schedule: Literal["cosine", "step"] = "cosine"
    warmup_iterations: int = 50
    step_size: int = 400
    gamma: float = 0.5
    loss: Literal["l1", "l2", "charbonnier"] = "l1"
    charbonnier_eps: float = 1e-3
    # EMA of the weights: off by default. With decay d the average needs ~1/(1-d) iterations to
    # forget the initialisation (1000 for 0.999), so enable it for long runs only.
    ema: float | None = None
    amp: bool = True
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.lr <= 0 or self.warmup_iterations < 0:
            raise ValueError(f"iterations >= 1, lr > 0 and warmup_iterations >= 0 needed; got "
                             f"{self.iterations}, {self.lr}, {self.warmup_iterations}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema: got {self.ema}; a decay in (0, 1), or null to switch it off")


@dataclass
class RetrainRun(RunSection):
    """The retraining's run folder (:class:`searchers.common.sections.RunSection`; a null name
    is the net's), seed, device and schedule of checkpoints, validation and logs."""

    dir: str = "runs/retrain"
    name: str | None = None
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 200
    val_every: int = 200
    log_every: int = 20
    # Recorded, not read: the processes the run was (last) launched with (torchrun's
    # WORLD_SIZE; 1 for a plain run). data.batch_size is the global batch, split among them.
    world_size: int = 1


DEFAULT_KD_WEIGHT = 1.0
"""``kd.weight`` when a teacher is given and the weight is left unset."""


@dataclass
class RetrainKD:
    # Knowledge distillation (also --teacher): a retrain run folder or a checkpoint file of the
    # teacher net; null: off.
    teacher: str | None = None
    # Weight of the L1 term between the net's and the teacher's outputs; null: 1.0 with a
    # teacher (recorded as such in config.yaml). 0 logs the term without training on it.
    weight: float | None = None
    # The student's initialisation: build_model's standard one (none: PyTorch's default, and
    # for a plain chain the identity-centred search_space.plain_init.init_plain_chain), PyTorch's
    # default for every net (torch: how plain chains were initialised before issue 27), or
    # MemSR's (memsr: a plain student fitted to the SVD of the teacher's plain-form features;
    # needs a teacher and a plain student).
    init: Literal["none", "torch", "memsr"] = "none"
    init_patches: int = 16  # training patches the MemSR init fits on (its own random stream)

    def __post_init__(self) -> None:
        if self.init == "memsr" and self.teacher is None:
            raise ValueError("init is 'memsr' but there is no teacher; pass --teacher "
                             "RUN_OR_CHECKPOINT (a trained residual net such as edsr_baseline), "
                             "or set kd.init=none")
        if self.init_patches < 1:
            raise ValueError(f"init_patches: got {self.init_patches}; at least 1")
        if self.teacher is not None and not self.teacher.strip():
            raise ValueError("teacher: got an empty path; pass a retrain run folder or a "
                             "checkpoint file, or null for no distillation")
        if self.weight is not None and not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"weight: got {self.weight}; a finite weight >= 0 (0 logs the KD "
                             "term without training on it)")
        if self.teacher is None and self.weight is not None:
            raise ValueError(f"weight is {self.weight} but there is no teacher; pass --teacher "
                             "RUN_OR_CHECKPOINT (or kd.teacher=...), or drop kd.weight")
        if self.teacher is not None and self.weight is None:
            self.weight = DEFAULT_KD_WEIGHT


@dataclass
class RetrainConfig:
    """One retraining: ``python searchers/retrain.py``'s config, and the pipeline's ``retrain``
    section (the one recipe every net of a pipeline is retrained with)."""

    data: RetrainData = field(default_factory=RetrainData)
    optim: RetrainOptim = field(default_factory=RetrainOptim)
    run: RetrainRun = field(default_factory=RetrainRun)
    kd: RetrainKD = field(default_factory=RetrainKD)


def lr_lambda(cfg: RetrainOptim) -> Callable[[int], float]:
    """Linear warm-up, then cosine to 1 % or step decay."""

    def factor(it: int) -> float:
        if it < cfg.warmup_iterations:
            return (it + 1) / cfg.warmup_iterations
        if cfg.schedule == "step":
            return cfg.gamma ** ((it - cfg.warmup_iterations) // cfg.step_size)
        t = (it - cfg.warmup_iterations) / max(cfg.iterations - cfg.warmup_iterations, 1)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor
