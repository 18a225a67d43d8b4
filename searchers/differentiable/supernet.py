"""The DARTS supernet, built from the same op table and cells as every derived net.

Each conv slot of each cell is a :class:`~searchers.differentiable.mixed.MixedOp` over the
candidate conv ops, each attention slot a mixed op over the attention choices, and optionally
each cell's activation and each position's cell type are mixed choices too. Architecture
weights are registered ``nn.Parameter`` s named ``alpha`` (so they are saved in
``state_dict()`` and resume works), reachable through :meth:`SuperNet.arch_parameters` and kept
apart from :meth:`SuperNet.weight_parameters`.

How they mix (``softmax`` or ``sigmoid``, all candidates or ``sample_k`` of them per step) is
the supernet's one :class:`~searchers.differentiable.mixed.ArchState`.

**Elastic width** (``SupernetSpec.widths``, FBNetV2's channel masking): with two or more widths
the trunk width is a searched choice too, one for the whole net (the head, every cell's output,
the fusion and the LR conv share it, as a derived net's trunk does). The supernet is built at
the largest width; the :class:`WidthGate`'s weights mix the widths' channel masks into one mask
``sum_j p_j [c < w_j]`` that multiplies each of those outputs, so the loss sees a narrower
trunk as channels switched off. A cell's inner widths (RFDB's distilled channels, ESA's
reduction) stay those of the largest width in the supernet; a derived net at width ``w`` has
its own. The expected cost is ``sum_j p_j cost_j``, each width's costs measured at that width
(:meth:`SuperNet.cost_net`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from search_space.cells import CELLS, DEFAULT_BUILDER, SlotBuilder
from search_space.checks import check_names
from search_space.choices import (
    ACTIVATIONS,
    ATTENTIONS,
    CELL_SLOTS,
    CELL_TYPES,
    CONV_OPS,
    DEFAULT_ATTENTIONS,
    DEFAULT_CONV_CANDIDATES,
)
from search_space.genes import Attention, CellGene
from search_space.genotype import Genotype
from search_space.network import SRSkeleton
from search_space.ops import ACTIVATION_OPS
from searchers.differentiable.mixed import ArchState, MixedOp, SlotCost


class _Skeleton(nn.Module):
    """A (nearly) free stand-in for a slot, used to time a cell's fixed part."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c_out = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] >= self.c_out:
            return x[:, : self.c_out]
        return F.pad(x, (0, 0, 0, 0, 0, self.c_out - x.shape[1]))


class SkeletonBuilder(SlotBuilder):
    """Builds a cell whose slots cost nothing: what remains is the cell's fixed part.

    Args:
        free_acts: make the activations free too (when they are searched slots themselves).
    """

    def __init__(self, free_acts: bool = False) -> None:
        self.free_acts = free_acts

    def act(self, slot: str, name: str, channels: int) -> nn.Module:
        return nn.Identity() if self.free_acts else super().act(slot, name, channels)

    def stateless_act(self, slot: str, name: str, channels: int) -> nn.Module:
        return nn.Identity() if self.free_acts else super().stateless_act(slot, name, channels)

    def conv(self, slot: str, op: str, c_in: int, c_out: int, bias: bool = True) -> nn.Module:
        return _Skeleton(c_in, c_out)

    def attention(self, slot: str, spec: Attention, channels: int, act: str) -> nn.Module:
        return nn.Identity()


class MixedBuilder(SlotBuilder):
    """Builds mixed ops for every searchable slot of a cell (see :class:`SupernetSpec`)."""

    def __init__(self, spec: SupernetSpec, state: ArchState) -> None:
        self.spec, self.state = spec, state
        self.shared_act: dict[str, nn.Parameter] = {}

    def conv(self, slot: str, op: str, c_in: int, c_out: int, bias: bool = True) -> nn.Module:
        cands = self.spec.conv_candidates
        mods = [DEFAULT_BUILDER.conv(slot, c, c_in, c_out, bias) for c in cands]
        costs = [SlotCost("conv", c, c_in, c_out) for c in cands]
        return MixedOp(slot, cands, mods, self.state, costs)

    def attention(self, slot: str, spec: Attention, channels: int, act: str) -> nn.Module:
        cands = self.spec.attention_candidates
        mods = [DEFAULT_BUILDER.attention(slot, Attention(c), channels, act) for c in cands]
        costs = [SlotCost("attention", c, channels, channels) for c in cands]
        return MixedOp(slot, cands, mods, self.state, costs)

    def _mixed_act(self, slot: str, channels: int, make: Callable[[str], nn.Module]) -> nn.Module:
        cands = self.spec.act_candidates
        if len(cands) == 1:
            return make(cands[0])
        costs = [SlotCost("act", c, channels, channels) for c in cands]
        op = MixedOp(slot, cands, [make(c) for c in cands], self.state, costs)
        # Every activation of one cell shares the cell's one activation choice.
        if slot in self.shared_act:
            op.alpha = self.shared_act[slot]
        else:
            self.shared_act[slot] = op.alpha
        return op

    def act(self, slot: str, name: str, channels: int) -> nn.Module:
        return self._mixed_act(slot, channels, lambda c: ACTIVATION_OPS[c](channels))

    def stateless_act(self, slot: str, name: str, channels: int) -> nn.Module:
        return self._mixed_act(slot, channels,
                               lambda c: DEFAULT_BUILDER.stateless_act(slot, c, channels))


@dataclass(frozen=True)
class SupernetSpec:
    """The searched space: fixed skeleton plus the candidates of every mixed slot.

    Args:
        scale: upscaling factor.
        width: trunk channels.
        cell_types: the cell type candidates at every position (one = fixed type).
        num_cells: positions.
        conv_candidates: candidates of every conv slot (default: every op of the table but
            those added after the benchmarks, :data:`DEFAULT_CONV_CANDIDATES`; any of
            :data:`CONV_OPS` may be listed).
        attention_candidates: candidates of every attention slot (default: those benchmarked
            before MAFFSRN's ``esa_mab`` and ``cea``, :data:`DEFAULT_ATTENTIONS`; any of
            :data:`ATTENTIONS` may be listed).
        act_candidates: activation candidates (one = fixed activation).
        fusion: RFDN-style multi-cell fusion.
        data_range: value range the derived nets work in.
        shallow_residual: RFDB's shallow residual in derived genotypes.
        block_residual: per cell type, the block residual in derived genotypes.
        widths: the trunk widths a derived net may have (elastic width, see the module
            docstring); the largest must be ``width``. Empty or one width: the width is fixed.
    """

    scale: int = 4
    width: int = 32
    num_cells: int = 4
    cell_types: tuple[str, ...] = ("rfdb", "erb")
    conv_candidates: tuple[str, ...] = DEFAULT_CONV_CANDIDATES
    attention_candidates: tuple[str, ...] = DEFAULT_ATTENTIONS
    act_candidates: tuple[str, ...] = ("lrelu0.05",)
    fusion: bool = True
    data_range: float = 1.0
    shallow_residual: bool = True
    block_residual: tuple[tuple[str, bool], ...] = (
        ("rfdb", False), ("rlfb", True), ("erb", True), ("imdb", True), ("spab", True),
        ("mab", True),
    )
    widths: tuple[int, ...] = ()
    _checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, values, allowed in (
            ("cell_types", self.cell_types, CELL_TYPES),
            ("conv_candidates", self.conv_candidates, CONV_OPS),
            ("attention_candidates", self.attention_candidates, ATTENTIONS),
            ("act_candidates", self.act_candidates, ACTIVATIONS),
        ):
            check_names(name, values, allowed)
        if self.widths and (list(self.widths) != sorted(set(self.widths))
                            or self.widths[-1] != self.width or self.widths[0] < 4):
            raise ValueError(
                f"space.widths: got {list(self.widths)}; give distinct widths in increasing "
                f"order, each at least 4, the largest equal to space.width ({self.width}), "
                f"e.g. [16, 20, {self.width}]")
        # A genotype with the first candidates everywhere validates the rest of the fields.
        self.template_genotype()

    @property
    def elastic(self) -> bool:
        """The width is a searched choice (two or more :attr:`widths`)."""
        return len(self.widths) > 1

    def slot_prefix(self, position: int, cell_type: str) -> str:
        """``cells.2.`` with one cell type, ``cells.2.rfdb.`` when the type is searched."""
        if len(self.cell_types) == 1:
            return f"cells.{position}."
        return f"cells.{position}.{cell_type}."

    def template_gene(self, cell_type: str) -> CellGene:
        slots = CELL_SLOTS[cell_type][0]
        return CellGene(
            cell_type, (self.conv_candidates[0],) * slots, Attention(self.attention_candidates[0]),
            self.act_candidates[0],
            shallow_residual=self.shallow_residual and cell_type == "rfdb",
            block_residual=dict(self.block_residual).get(cell_type, False),
        )

    def genotype_from_choice(self, choice: dict[str, str]) -> Genotype:
        """The genotype of one choice per slot; slots left out take their first candidate
        (the ``width`` slot: :attr:`width`)."""
        cells = []
        for i in range(self.num_cells):
            cell_type = choice.get(f"cells.{i}.type", self.cell_types[0])
            p = self.slot_prefix(i, cell_type)
            base = self.template_gene(cell_type)
            ops = tuple(choice.get(f"{p}conv{j}", self.conv_candidates[0])
                        for j in range(len(base.ops)))
            cells.append(CellGene(
                cell_type, ops, Attention(choice.get(f"{p}attention",
                                                     self.attention_candidates[0])),
                choice.get(f"{p}act", self.act_candidates[0]),
                shallow_residual=base.shallow_residual, block_residual=base.block_residual,
            ))
        return Genotype(scale=self.scale, width=int(choice.get(WIDTH_SLOT, self.width)),
                        cells=tuple(cells), fusion=self.fusion, data_range=self.data_range)

    def template_genotype(self) -> Genotype:
        cells = tuple(self.template_gene(self.cell_types[0]) for _ in range(self.num_cells))
        return Genotype(scale=self.scale, width=self.width, cells=cells, fusion=self.fusion,
                        data_range=self.data_range)


WIDTH_SLOT = "width"
"""The slot name of the elastic width's choice (its candidates are the widths as strings)."""


class WidthGate(MixedOp):
    """The elastic width's mixed choice: one channel mask for the whole trunk per forward pass.

    Its candidates are the widths; :meth:`mask` mixes their masks ``[c < w]`` with the
    active weights (all widths, ``sample_k`` of them, the one decided, or all but the one
    left out: :class:`MixedOp`'s rules), computed once per forward pass so that every place
    it multiplies sees the same widths. It costs nothing itself: each width's costs are those
    of every other slot measured at that width.
    """

    def __init__(self, widths: tuple[int, ...], state: ArchState) -> None:
        names = [str(w) for w in widths]
        super().__init__(WIDTH_SLOT, names, [nn.Identity() for _ in names], state,
                         [SlotCost("width", n, w, w) for n, w in zip(names, widths, strict=True)])
        self.widths = tuple(widths)

    def mask(self, device: torch.device) -> torch.Tensor:
        """The ``(1, width, 1, 1)`` mask of this forward pass."""
        idx, w = self._active()
        channels = torch.arange(self.widths[-1], device=device)
        sizes = torch.tensor([self.widths[i] for i in idx.tolist()], device=device)
        on = (channels[None, :] < sizes[:, None]).to(w.dtype)
        return (w.to(device)[:, None] * on).sum(dim=0).view(1, -1, 1, 1)


class MixedCell(nn.Module):
    """One position: a mixed choice over cell types (one type = a fixed choice of weight 1).

    The mixed op's cost buffers hold each type's *fixed part* (everything but its slots).
    """

    def __init__(self, slot: str, cells: dict[str, nn.Module], state: ArchState,
                 width: int) -> None:
        super().__init__()
        costs = [SlotCost("cell", t, width, width) for t in cells]
        self.mixed = MixedOp(slot, list(cells), list(cells.values()), state, costs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixed(x)


class SuperNet(SRSkeleton):
    """The supernet of a :class:`SupernetSpec`: the SRNet skeleton with mixed cells."""

    def __init__(self, spec: SupernetSpec, state: ArchState | None = None) -> None:
        state = state or ArchState()
        builder = MixedBuilder(spec, state)
        cells: list[nn.Module] = []
        for i in range(spec.num_cells):
            per_type = {t: CELLS[t](spec.template_gene(t), spec.width, builder,
                                    spec.slot_prefix(i, t)) for t in spec.cell_types}
            cells.append(MixedCell(f"cells.{i}.type", per_type, state, spec.width))
        super().__init__(spec.scale, spec.width, cells, spec.fusion, "lrelu0.05")
        self.spec = spec
        self.state = state
        self.base_cost = (0.0, 0.0, 0.0)  # (latency_ms, memory_mib, params) of the rest
        self.width_gate: WidthGate | None = None
        # Elastic width: a fixed-width twin per narrower width holds that width's costs
        # (a plain dict: the twins' weights are never trained nor saved).
        self._cost_nets: dict[int, SuperNet] = {}
        self._mask: torch.Tensor | None = None
        if spec.elastic:
            self.width_gate = WidthGate(spec.widths, state)
            for module in (self.head, *self.cells, self.fusion, self.lr_conv):
                if module is not None:
                    module.register_forward_hook(self._apply_mask)
            self._cost_nets = {w: SuperNet(replace(spec, width=w, widths=()))
                               for w in spec.widths[:-1]}

    def _apply_mask(self, module: nn.Module, inputs: object, output: torch.Tensor
                    ) -> torch.Tensor:
        return output if self._mask is None else output * self._mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.width_gate is None:
            return super().forward(x)
        self._mask = self.width_gate.mask(x.device)
        try:
            return super().forward(x)
        finally:
            self._mask = None

    def cost_net(self, width: int) -> SuperNet:
        """The supernet whose cost buffers hold the costs at trunk ``width`` (this one at
        its own width; elastic width: the twin measured at ``width``)."""
        if width == self.spec.width:
            return self
        if width not in self._cost_nets:
            raise ValueError(f"width: got {width}; this supernet's widths are "
                             f"{list(self.spec.widths) or [self.spec.width]}")
        return self._cost_nets[width]

    # -- parameters -------------------------------------------------------------------------

    def mixed_ops(self) -> Iterator[MixedOp]:
        """Every mixed op, outermost first (a shared activation alpha appears once per op)."""
        for m in self.modules():
            if isinstance(m, MixedOp):
                yield m

    def named_arch_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Architecture weights by slot name, each once (shared activation weights included)."""
        seen: dict[int, tuple[str, nn.Parameter]] = {}
        for op in self.mixed_ops():
            if len(op.candidates) > 1:
                seen.setdefault(id(op.alpha), (op.slot, op.alpha))
        return list(seen.values())

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_arch_parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        alphas = {id(op.alpha) for op in self.mixed_ops()}
        return [p for p in self.parameters() if id(p) not in alphas]

    # -- derivation -------------------------------------------------------------------------

    def slot_distributions(self) -> dict[str, dict[str, float]]:
        """Slot name -> {candidate: mixing weight} of every searched slot (fixed ones left out)."""
        out: dict[str, dict[str, float]] = {}
        for op in self.mixed_ops():
            if op.slot not in out and len(op.candidates) > 1:
                w = op.weights().detach().cpu().tolist()
                out[op.slot] = dict(zip(op.candidates, w, strict=True))
        return out

    def derive(self, choice: dict[str, str] | None = None) -> Genotype:
        """The genotype with the given choice per slot (default: the argmax of every slot)."""
        choice = dict(choice or {})
        for slot, dist in self.slot_distributions().items():
            choice.setdefault(slot, max(dist, key=dist.__getitem__))
        return self.spec.genotype_from_choice(choice)

    def top_k(self, k: int) -> list[tuple[Genotype, float]]:
        """The ``k`` most probable genotypes with their log-probabilities.

        Slots are independent, so keeping the ``k`` best partial choices slot by slot is exact.
        Slots of cell types that a choice does not use still count; with a mixed cell type,
        duplicates after derivation are dropped.
        """
        beams: list[tuple[float, dict[str, str]]] = [(0.0, {})]
        for slot, dist in self.slot_distributions().items():
            total = sum(dist.values())
            scored = [(lp + math.log(max(p / total, 1e-12)), {**c, slot: name})
                      for lp, c in beams for name, p in dist.items()]
            scored.sort(key=lambda t: -t[0])
            beams = scored[: max(k * 4, k)]
        out: list[tuple[Genotype, float]] = []
        for lp, c in beams:
            g = self.derive(c)
            if all(g != h for h, _ in out):
                out.append((g, lp))
            if len(out) == k:
                break
        return out

