"""The DARTS search's settings: one dataclass per section of ``configs/darts*.yaml``.

Kept apart from the search itself (:mod:`searchers.differentiable.search`) so that what reads a
DARTS run's
``config.yaml`` (the trials' supernet proxy, the NNI peer, the pipeline) does not import the
search. :meth:`SpaceConfig.supernet_spec` is the one place a :class:`SupernetSpec` is built from
a config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from search_space.checks import check_names
from search_space.choices import (
    ACTIVATIONS,
    ATTENTIONS,
    CELL_TYPES,
    CONV_OPS,
    DEFAULT_ATTENTIONS,
    DEFAULT_CONV_CANDIDATES,
    MAX_CELLS,
    MAX_WIDTH,
)
from search_space.zoo import YARDSTICK
from searchers.common.sections import MeasureSection, RunSection

if TYPE_CHECKING:
    from proxies.measure.settings import MeasureSettings
    from searchers.differentiable.supernet import SupernetSpec

DEFAULT_PATCH = 48
"""The HR patch when ``data.patch_size`` is unset, raised to what the attention candidates need
(ESA: 108 at x4)."""


@dataclass
class DataConfig:
    """Where the patches come from. ``default:train``/``default:val``, HR folders, or the two
    sides of a folder's fixed hold-out split (``FOLDER::train``, ``FOLDER::holdout``). ``val``
    is the selection set: never a set the final report is computed on."""

    train: str = "default:train"
    val: str = "default:val"
    patch_size: int | None = None  # null: 48, or the smallest patch the attention needs
    batch_size: int = 2
    downsampler: Literal["torch", "matlab"] = "torch"

    def __post_init__(self) -> None:
        if self.patch_size is not None and self.patch_size < 1:
            raise ValueError(f"patch_size: got {self.patch_size}; must be >= 1, or null")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: got {self.batch_size}; must be >= 1")


@dataclass
class SpaceConfig:
    """The searched space (see :class:`searchers.differentiable.supernet.SupernetSpec`)."""

    scale: Literal[2, 3, 4] = 4
    width: int = 24
    num_cells: int = 4
    cell_types: list[str] = field(default_factory=lambda: ["rfdb", "erb"])
    conv_candidates: list[str] = field(default_factory=lambda: list(DEFAULT_CONV_CANDIDATES))
    attention_candidates: list[str] = field(default_factory=lambda: list(DEFAULT_ATTENTIONS))
    act_candidates: list[str] = field(default_factory=lambda: ["lrelu0.05"])
    fusion: bool = True
    # the trunk widths a derived net may have (elastic width, searched like every other
    # slot; the largest must be `width`, the supernet's); [] or one width: `width` only
    widths: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, allowed in (("cell_types", CELL_TYPES), ("conv_candidates", CONV_OPS),
                              ("attention_candidates", ATTENTIONS),
                              ("act_candidates", ACTIVATIONS)):
            check_names(name, getattr(self, name), allowed)
        if not (4 <= self.width <= MAX_WIDTH and 1 <= self.num_cells <= MAX_CELLS):
            raise ValueError(f"space.width and space.num_cells: got {self.width}, "
                             f"{self.num_cells}; allowed: width >= 4 and <= {MAX_WIDTH}, "
                             f"num_cells >= 1 and <= {MAX_CELLS} (the default space: 24, 4)")

    def supernet_spec(self) -> SupernetSpec:
        """The supernet of this space (every place that builds one from a config calls this)."""
        from searchers.differentiable.supernet import SupernetSpec

        return SupernetSpec(
            scale=self.scale, width=self.width, num_cells=self.num_cells,
            cell_types=tuple(self.cell_types), conv_candidates=tuple(self.conv_candidates),
            attention_candidates=tuple(self.attention_candidates),
            act_candidates=tuple(self.act_candidates), fusion=self.fusion,
            widths=self.gate_widths(),
        )

    def gate_widths(self) -> tuple[int, ...]:
        """The widths of the supernet's width gate (DARTS's elastic width)."""
        return tuple(self.widths)


@dataclass
class SearchConfig:
    """The bilevel optimisation."""

    # 300 steps with every candidate (memory_mode=full). 1200 steps in the sampled mode cost
    # about as much; on T91 their nets ranked 2 and 6 of 9 in two searches against random nets
    # at matched latency (this default's: 5 of 9), with most selection decisions inside the
    # noise (BENCHMARKS.md, "Nets worth keeping, second part"): not a better default.
    steps: int = 300
    warmup_steps: int = 50
    # a budget in CPU-seconds (wall seconds on a CUDA device) of everything the search spends,
    # the selection included (null: search.steps). After the warm-up and three architecture
    # steps the search's length is fixed to what the budget still buys; search.steps is the
    # provisional length until then.
    cpu_seconds: float | None = None
    lr: float = 1e-3
    lr_min: float = 1e-5
    arch_lr: float = 3e-3
    arch_weight_decay: float = 1e-3
    order: Literal["first", "second"] = "first"
    guard: Literal["none", "anneal", "fair"] = "anneal"
    temperature_start: float = 2.0
    temperature_end: float = 0.2
    zero_one_weight: float = 1.0
    memory_mode: Literal["full", "sample"] = "full"
    sample_k: int = 2
    # With an elastic width (space.widths): each weight step trains one width drawn
    # uniformly, through its hard mask (uniform: every channel trained alike, as weight-
    # sharing supernets train their widths), or the width gate's mixed mask (mixture:
    # FBNetV2's; the channels of a width the gate weighs little are trained little). The
    # architecture steps always see the mixed mask.
    width_training: Literal["uniform", "mixture"] = "uniform"
    grad_clip: float = 5.0
    # How the net is derived (searchers.differentiable.select): perturbation scores each of a
    # slot's select_top_m most weighted candidates by the selection loss lost without it, on
    # select_batches fixed batches; alpha takes the largest weight (the DARTS paper's rule).
    select: Literal["perturbation", "alpha"] = "perturbation"
    select_top_m: int = 4
    select_batches: int = 4

    def __post_init__(self) -> None:
        if self.select_top_m < 1 or self.select_batches < 1:
            raise ValueError(f"search.select_top_m and search.select_batches: got "
                             f"{self.select_top_m}, {self.select_batches}; each must be >= 1")
        if self.cpu_seconds is not None and not (0 < self.cpu_seconds < math.inf):
            raise ValueError(f"search.cpu_seconds: got {self.cpu_seconds}; give a budget > 0 "
                             "in CPU-seconds, or null to run search.steps")
        if self.steps < 1 or self.warmup_steps < 0:
            raise ValueError(f"steps >= 1 and warmup_steps >= 0 needed; got {self.steps}, "
                             f"{self.warmup_steps}")
        for name in ("lr", "arch_lr", "temperature_start", "temperature_end"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: got {getattr(self, name)}; must be > 0")
        if self.zero_one_weight < 0:
            raise ValueError(f"zero_one_weight: got {self.zero_one_weight}; a loss weight "
                             "must be >= 0")
        if self.sample_k < 1:
            raise ValueError(f"sample_k: got {self.sample_k}; must be >= 1")

    def temperature_at(self, step: int, steps: int | None = None) -> float:
        """Exponential annealing from ``temperature_start`` to ``temperature_end`` (guard
        anneal) over ``steps`` (default ``self.steps``; a budgeted search's calibrated
        length)."""
        if self.guard != "anneal":
            return 1.0
        t = min(step / max((self.steps if steps is None else steps) - 1, 1), 1.0)
        return self.temperature_start * (self.temperature_end / self.temperature_start) ** t


@dataclass
class LossConfig:
    """The hardware terms of the architecture loss (see ``HardwarePenalty``)."""

    latency_weight: float = 0.02
    memory_weight: float = 0.01
    params_weight: float = 0.0
    # budget (default): only what lies above a target is penalised, and the derived net is
    # fitted under the latency target; weighted: every unit of cost is penalised, which with
    # a short search walks every slot to its cheapest op (issue 26: all conv1x1).
    mode: Literal["weighted", "budget"] = "budget"
    latency_target_ms: float | None = None
    memory_target_mib: float | None = None
    params_target: float | None = None
    # Budget-mode targets relative to a zoo net: at the start of a search the reference is
    # measured whole in its deployed form (hardware.* settings, cached with the hardware
    # table) and latency_x / memory_x times its figures become latency_target_ms /
    # memory_target_mib (saved in budget.json, reused on --resume).
    # Default: at most 0.8x SPAN's latency and SPAN's peak memory.
    reference: str | None = "span_ntire2024"
    latency_x: float | None = 0.8
    memory_x: float | None = 1.0

    def __post_init__(self) -> None:
        for name in ("latency_weight", "memory_weight", "params_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: got {getattr(self, name)}; a loss weight must be "
                                 ">= 0 (0 switches the term off)")
        relative = [n for n in ("latency_x", "memory_x") if getattr(self, n) is not None]
        for name in relative:
            if not getattr(self, name) > 0:
                raise ValueError(f"loss.{name}: got {getattr(self, name)}; give a multiple > 0 "
                                 "of the reference's figure, e.g. 0.8")
        if relative and (self.reference is None or self.mode != "budget"):
            raise ValueError(f"loss.{relative[0]} needs loss.reference (a zoo net, e.g. "
                             f"span_ntire2024) and loss.mode=budget; got reference="
                             f"{self.reference!r}, mode={self.mode!r}; for a weighted penalty "
                             "or absolute targets set loss.latency_x=null loss.memory_x=null")
        if self.reference is not None:
            from search_space.zoo import ZOO

            if self.reference not in ZOO:
                raise ValueError(f"loss.reference: got {self.reference!r}; valid names: "
                                 f"{', '.join(ZOO)}")
        for name, target in (("latency_x", "latency_target_ms"),
                             ("memory_x", "memory_target_mib")):
            if getattr(self, name) is not None and getattr(self, target) is not None:
                raise ValueError(f"loss.{name} and loss.{target} both set; give the budget "
                                 "relative to the reference or absolute, not both")


@dataclass
class HardwareConfig(MeasureSection):
    """How the latency/memory lookup table is measured
    (:class:`searchers.common.sections.MeasureSection`,
    one round of ``runs`` runs per entry), where it is cached, and the backend of the table,
    the budget and the final profile."""

    warmup: int = 3
    cache_dir: str = "runs/hardware_cache"


@dataclass
class ProfileConfig:
    """The final comparison of the derived net with the zoo, measured in the same run."""

    enabled: bool = True
    lr_size: int = 128
    rounds: int = 3
    runs_per_round: int = 2
    warmup: int = 1
    threads: int | None = 1
    yardstick: list[str] = field(default_factory=lambda: list(YARDSTICK))
    # The quality estimate beside the costs: the derived net with the supernet's weights,
    # fine-tuned this many steps on data.train, Y-PSNR on data.val (null: no estimate).
    estimate_steps: int | None = 100

    def __post_init__(self) -> None:
        self.settings("auto", "torch")  # the values are checked where MeasureSettings is built
        if self.estimate_steps is not None and self.estimate_steps < 0:
            raise ValueError(f"profile.estimate_steps: got {self.estimate_steps}; give 0 (the "
                             "inherited weights as they are), more steps, or null for none")

    def settings(self, device: str, backend: str) -> MeasureSettings:
        """The profile's measurement settings on ``device`` with ``backend`` (the table's)."""
        from proxies.measure.settings import MeasureSettings

        return MeasureSettings(device=device, lr_size=(self.lr_size, self.lr_size),
                               rounds=self.rounds, runs_per_round=self.runs_per_round,
                               warmup=self.warmup, threads=self.threads, backend=backend)


@dataclass
class DartsRun(RunSection):
    """The search's run folder (:class:`searchers.common.sections.RunSection`), seed and device."""

    dir: str = "runs/darts"
    name: str | None = "default"
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 50
    log_every: int = 10
    top_k: int = 5
    plots: bool = True


@dataclass
class DartsConfig:
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    run: DartsRun = field(default_factory=DartsRun)
