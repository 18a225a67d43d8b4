"""The sampled space of the Optuna and Ray Tune trials: one genotype per trial, define-by-run.

:class:`SampleSpace` lists the choices of every field a :class:`~search_space.Genotype` has;
:func:`sample_genotype` draws one architecture from it, and :func:`genotype_params` is its
inverse: the parameters under which :func:`sample_genotype` rebuilds a given genotype (a zoo
net), each checked to lie inside the space's distributions. The studies enqueue the zoo nets
with those parameters, so NSGA-II's population holds them and mutates around them.

The interface conventions of a zoo net (value range, input scale, input mean, output mean)
change no architecture; the presets do not sample them, and a zoo net is enqueued as its
normalised form (:func:`normalise_interface`).

A field whose list has a single entry is not a parameter (nothing is suggested), so the small
default space samples what it sampled before the frame switches existed. Two presets ship in
``configs/spaces/``: ``cpu.yaml`` (widths 16-64, up to 8 cells; holds every net of the
yardstick) and ``full.yaml`` (holds every zoo net, up to MAFFSRN-L's 32 cells).

Parameters, in the order they are drawn (a parameter in brackets only where it applies):

* net: ``width``, ``num_cells``, ``act``, [``group_size``], [``fusion``, [``fusion_taps``],
  [``fusion_act``]], ``long_skip``, ``data_range``, ``input_norm``, [``input_scale``],
  [``output_mean``], ``head_op``, ``lr_conv_op``, [``weight_norm``], ``tail``,
  [``tail_scales``], ``input_skip``;
* per cell ``i`` of type ``t`` (prefix ``cells.{i}.{t}.``): ``cells.{i}.type``, [``slots``],
  ``conv{j}``, ``attention``, [``attention.channels``], [``attention.blocks``,
  ``attention.op``, ``attention.bn``] (HFAB), [``inner``], ``residual``;
* last, [``bias``] (only where no op needs a bias).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from search_space.checks import GenotypeError, check_names
from search_space.choices import (
    ACTIVATIONS,
    ATTENTIONS,
    CELL_SLOTS,
    CELL_TYPES,
    CONV_OPS,
    DATA_RANGES,
    DEFAULT_ATTENTIONS,
    DEFAULT_CELL_TYPES,
    DEFAULT_CONV_CANDIDATES,
    FRAME_OPS,
    FUSION_ACTS,
    INPUT_SCALES,
    INPUT_SKIPS,
    LR_CONV_OPS,
    MAX_BLOCKS,
    MAX_CELLS,
    MAX_WIDTH,
    NEEDS_BIAS,
    TAILS,
)
from search_space.genes import Attention, CellGene, GroupGene
from search_space.genotype import Genotype
from search_space.zoo import SPAN_MEAN

RESIDUALS: tuple[str, ...] = ("auto", "none", "block", "shallow", "both")
"""A cell's residuals: ``auto`` (by type, as the first sampled space: RFDB's shallow residual,
every other type's block residual), ``none``, ``block``, ``shallow`` (RFDB only, else none),
``both`` (RFDB only, else block)."""

FUSION_TAPS: tuple[str, ...] = ("all", "span")
"""What a fusion concatenates: every cell output (RFDN), or SPAN's four taps (head, LR conv
before the fusion, the first cell, the last cell's first activation; needs an LR conv and a
``spab`` last cell, else ``all``)."""

INPUT_NORMS: tuple[str, ...] = ("none", "div2k")
"""The input normalisation: none, or the DIV2K mean subtracted (SPAN, EDSR)."""


class Suggester(Protocol):
    """What sampling needs of a trial (an ``optuna.Trial`` fits)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...


def _one_of(where: str, values: Sequence[Any], allowed: Sequence[Any]) -> None:
    if not values:
        raise ValueError(f"{where}: got an empty list; give at least one of {list(allowed)}")
    bad = [v for v in values if v not in allowed or isinstance(v, bool) != isinstance(
        allowed[0], bool)]
    if bad:
        raise ValueError(f"{where}: got {bad}; allowed: {list(allowed)}")
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"{where}: got duplicates in {list(values)}; list each value once")


def _positive_or_null(where: str, values: Sequence[Any]) -> None:
    if not values:
        raise ValueError(f"{where}: got an empty list; give e.g. [null]")
    bad = [v for v in values if v is not None and (isinstance(v, bool) or not isinstance(
        v, int) or not 1 <= v <= MAX_WIDTH)]
    if bad:
        raise ValueError(f"{where}: got {bad}; allowed: null or integers >= 1 and <= "
                         f"{MAX_WIDTH}")


@dataclass
class SampleSpace:
    """The choices of every genotype field (see the module docstring for the parameters).

    ``attention_candidates`` may also list gate sequences joined by ``+`` (MAFFSRN's
    ``esa_mab+cea``). ``inners`` and ``attention_channels`` are absolute widths (``null``: the
    cell's or attention's default); one that does not fit a cell (an IMDB inner of at least the
    width) is taken as ``null``. The defaults are the space benchmarked before the frame
    switches existed (:data:`DEFAULT_CELL_TYPES`, :data:`DEFAULT_CONV_CANDIDATES`,
    :data:`DEFAULT_ATTENTIONS`, one value of every switch).
    """

    scale: Literal[2, 3, 4] = 4
    widths: list[int] = field(default_factory=lambda: [16, 24, 32])
    cells_min: int = 2
    cells_max: int = 4
    cell_types: list[str] = field(default_factory=lambda: list(DEFAULT_CELL_TYPES))
    conv_candidates: list[str] = field(default_factory=lambda: list(DEFAULT_CONV_CANDIDATES))
    attention_candidates: list[str] = field(default_factory=lambda: list(DEFAULT_ATTENTIONS))
    act_candidates: list[str] = field(default_factory=lambda: ["lrelu0.05", "relu", "gelu"])
    fusion: list[bool] = field(default_factory=lambda: [False, True])
    fusion_taps: list[str] = field(default_factory=lambda: ["all"])
    fusion_acts: list[str] = field(default_factory=lambda: ["lrelu0.05"])
    erb_slots: list[int] = field(default_factory=lambda: [2])
    inners: list[int | None] = field(default_factory=lambda: [None])
    attention_channels: list[int | None] = field(default_factory=lambda: [None])
    hfab_blocks: list[int] = field(default_factory=lambda: [1])
    hfab_ops: list[str] = field(default_factory=lambda: ["conv3x3"])
    hfab_bn: list[bool] = field(default_factory=lambda: [False])
    residuals: list[str] = field(default_factory=lambda: ["auto"])
    group_sizes: list[int] = field(default_factory=lambda: [0])
    long_skip: list[bool] = field(default_factory=lambda: [True])
    data_ranges: list[float] = field(default_factory=lambda: [1.0])
    input_norms: list[str] = field(default_factory=lambda: ["none"])
    input_scales: list[float] = field(default_factory=lambda: [1.0])
    output_mean: list[bool] = field(default_factory=lambda: [False])
    head_ops: list[str] = field(default_factory=lambda: ["conv3x3"])
    lr_conv_ops: list[str] = field(default_factory=lambda: ["conv3x3"])
    weight_norm: list[bool] = field(default_factory=lambda: [False])
    tails: list[str] = field(default_factory=lambda: ["conv3x3"])
    tail_scales: list[bool] = field(default_factory=lambda: [False])
    input_skips: list[str] = field(default_factory=lambda: ["none"])
    bias: list[bool] = field(default_factory=lambda: [True])

    def __post_init__(self) -> None:
        for name, allowed in (("cell_types", CELL_TYPES), ("conv_candidates", CONV_OPS),
                              ("act_candidates", ACTIVATIONS)):
            check_names(name, getattr(self, name), allowed)
        gates = [g for a in self.attention_candidates for g in a.split("+")]
        check_names("attention_candidates", list(dict.fromkeys(gates)), ATTENTIONS)
        if len(set(self.attention_candidates)) != len(self.attention_candidates):
            raise ValueError(f"attention_candidates: got duplicates in "
                             f"{self.attention_candidates}; list each once")
        if not self.widths or min(self.widths) < 4 or max(self.widths) > MAX_WIDTH:
            raise ValueError(f"widths: got {self.widths}; give widths >= 4 and <= {MAX_WIDTH}, "
                             "e.g. [16, 24, 32]")
        if not 1 <= self.cells_min <= self.cells_max <= MAX_CELLS:
            raise ValueError(f"cells_min/cells_max: got {self.cells_min}/{self.cells_max}; "
                             f"need 1 <= cells_min <= cells_max <= {MAX_CELLS}")
        if not self.fusion:
            raise ValueError("fusion: got an empty list; use [false], [true] or [false, true]")
        bools = (False, True)
        checks: tuple[tuple[str, Sequence[Any]], ...] = (
            ("fusion_taps", FUSION_TAPS), ("fusion_acts", FUSION_ACTS),
            ("erb_slots", CELL_SLOTS["erb"]), ("hfab_ops", CONV_OPS), ("hfab_bn", bools),
            ("residuals", RESIDUALS), ("long_skip", bools), ("data_ranges", DATA_RANGES),
            ("input_norms", INPUT_NORMS), ("input_scales", INPUT_SCALES),
            ("output_mean", bools), ("head_ops", FRAME_OPS), ("lr_conv_ops", LR_CONV_OPS),
            ("weight_norm", bools), ("tails", TAILS), ("tail_scales", bools),
            ("input_skips", INPUT_SKIPS), ("bias", bools), ("fusion", bools))
        for name, choices in checks:
            _one_of(name, getattr(self, name), choices)
        _positive_or_null("inners", self.inners)
        _positive_or_null("attention_channels", self.attention_channels)
        if not self.hfab_blocks or min(self.hfab_blocks) < 1 or max(
                self.hfab_blocks) > MAX_BLOCKS:
            raise ValueError(f"hfab_blocks: got {self.hfab_blocks}; give integers >= 1 and <= "
                             f"{MAX_BLOCKS}")
        if not self.group_sizes or any(s == 1 or s < 0 for s in self.group_sizes):
            raise ValueError(f"group_sizes: got {self.group_sizes}; allowed: 0 (no groups) or "
                             "sizes >= 2")


def _pick(trial: Suggester, name: str, choices: Sequence[Any]) -> Any:
    """One categorical choice; a single-entry list is no parameter."""
    if len(choices) == 1:
        return choices[0]
    return trial.suggest_categorical(name, list(choices))


def span_taps(num_cells: int) -> tuple[str, ...]:
    """SPAN's fusion taps for a net of ``num_cells`` cells."""
    return ("head", "lr_conv", "cells.0", f"cells.{num_cells - 1}.act0")


def _attention(trial: Suggester, p: str, name: str, space: SampleSpace
               ) -> Attention | tuple[Attention, ...]:
    gates = []
    has_width = [g for g in name.split("+") if g not in ("none", "pa", "cea")]
    channels = (_pick(trial, f"{p}attention.channels", space.attention_channels)
                if has_width else None)
    for gate in name.split("+"):
        kwargs: dict[str, Any] = {}
        if gate in has_width:
            kwargs["channels"] = channels
        if gate == "hfab":
            kwargs.update(blocks=int(_pick(trial, f"{p}attention.blocks", space.hfab_blocks)),
                          op=str(_pick(trial, f"{p}attention.op", space.hfab_ops)),
                          bn=bool(_pick(trial, f"{p}attention.bn", space.hfab_bn)))
        gates.append(Attention(gate, **kwargs))
    return gates[0] if len(gates) == 1 else tuple(gates)


def _residuals(kind: str, cell_type: str) -> tuple[bool, bool]:
    """(shallow_residual, block_residual) of a residual choice for a cell type."""
    rfdb = cell_type == "rfdb"
    if kind == "auto":
        return rfdb, not rfdb
    return kind in ("shallow", "both") and rfdb, kind in ("block", "both")


def _cell(trial: Suggester, i: int, space: SampleSpace, width: int, act: str) -> CellGene:
    t = str(_pick(trial, f"cells.{i}.type", space.cell_types))
    p = f"cells.{i}.{t}."
    slots = int(_pick(trial, f"{p}slots", space.erb_slots)) if t == "erb" else CELL_SLOTS[t][0]
    ops = tuple(str(_pick(trial, f"{p}conv{j}", space.conv_candidates)) for j in range(slots))
    att = _attention(trial, p, str(_pick(trial, f"{p}attention", space.attention_candidates)),
                     space)
    inner = None
    if t not in ("erb", "mab"):
        inner = _pick(trial, f"{p}inner", space.inners)
        if inner is not None and t == "imdb" and inner >= width:
            inner = None
    shallow, block = _residuals(str(_pick(trial, f"{p}residual", space.residuals)), t)
    return CellGene(t, ops, att, act, inner=inner, shallow_residual=shallow,
                    block_residual=block)


def sample_genotype(trial: Suggester, space: SampleSpace) -> Genotype:
    """Sample one valid genotype define-by-run (the order of the module docstring). A choice
    that cannot go with those drawn before it falls back to the frame's default (no groups when
    the size does not divide the cells, RFDN's taps without a ``spab`` last cell or an LR conv,
    no weight norm on a re-parameterisable head, biases where an op needs them)."""
    width = int(_pick(trial, "width", space.widths))
    n = trial.suggest_int("num_cells", space.cells_min, space.cells_max)
    act = str(_pick(trial, "act", space.act_candidates))
    group = int(_pick(trial, "group_size", space.group_sizes)) if n >= 2 else 0
    groups = (GroupGene(group),) * (n // group) if group and n % group == 0 else None
    fusion = False if groups else bool(_pick(trial, "fusion", space.fusion))
    taps = str(_pick(trial, "fusion_taps", space.fusion_taps)) if fusion else "all"
    fusion_act = str(_pick(trial, "fusion_act", space.fusion_acts)) if fusion else "lrelu0.05"
    long_skip = bool(_pick(trial, "long_skip", space.long_skip))
    data_range = float(_pick(trial, "data_range", space.data_ranges))
    norm = str(_pick(trial, "input_norm", space.input_norms))
    input_scale, output_mean = 1.0, False
    if norm == "div2k":
        input_scale = float(_pick(trial, "input_scale", space.input_scales))
        output_mean = bool(_pick(trial, "output_mean", space.output_mean))
    head_op = str(_pick(trial, "head_op", space.head_ops))
    lr_conv_op = str(_pick(trial, "lr_conv_op", space.lr_conv_ops))
    weight_norm = False
    if head_op == "conv3x3" and lr_conv_op in ("conv3x3", "none"):
        weight_norm = bool(_pick(trial, "weight_norm", space.weight_norm))
    tail = str(_pick(trial, "tail", space.tails))
    tail_scales = bool(_pick(trial, "tail_scales", space.tail_scales)) if tail == "dual" else False
    input_skip = str(_pick(trial, "input_skip", space.input_skips))
    cells = tuple(_cell(trial, i, space, width, act) for i in range(n))
    span = taps == "span" and lr_conv_op != "none" and cells[-1].type == "spab"
    ops = {head_op, lr_conv_op, *(op for c in cells for op in c.ops)}
    bias = True if ops & NEEDS_BIAS else bool(_pick(trial, "bias", space.bias))
    return Genotype(
        scale=space.scale, width=width, cells=cells, fusion=fusion, fusion_act=fusion_act,
        data_range=data_range, fusion_taps=span_taps(n) if span else None,
        lr_conv_before_fusion=span, long_skip=long_skip,
        input_mean=SPAN_MEAN if norm == "div2k" else None, input_scale=input_scale, bias=bias,
        head_op=head_op, lr_conv_op=lr_conv_op, groups=groups, weight_norm=weight_norm,
        tail=tail, tail_scales=tail_scales, input_skip=input_skip, output_mean=output_mean)


# --------------------------------------------------------------------------------------------
# The inverse: the parameters of a given genotype
# --------------------------------------------------------------------------------------------


class NotInSpace(GenotypeError):
    """A genotype the space cannot express; the message names the field, value and choices."""


def _residual_name(cell: CellGene, allowed: Sequence[str]) -> str:
    for kind in allowed:
        if _residuals(kind, cell.type) == (cell.shallow_residual, cell.block_residual):
            return kind
    for kind in RESIDUALS:
        if _residuals(kind, cell.type) == (cell.shallow_residual, cell.block_residual):
            return kind
    return "?"


def _wanted(g: Genotype, space: SampleSpace) -> dict[str, Any]:
    """Every parameter value that would rebuild ``g`` (a superset of those drawn)."""
    out: dict[str, Any] = {
        "width": g.width, "num_cells": g.num_cells, "act": g.cells[0].act,
        "group_size": g.groups[0].size if g.groups else 0, "fusion": g.fusion,
        "fusion_taps": "span" if g.fusion_taps == span_taps(g.num_cells) else "all",
        "fusion_act": g.fusion_act, "long_skip": g.long_skip, "data_range": g.data_range,
        "input_norm": "div2k" if g.input_mean == SPAN_MEAN else "none",
        "input_scale": g.input_scale, "output_mean": g.output_mean, "head_op": g.head_op,
        "lr_conv_op": g.lr_conv_op, "weight_norm": g.weight_norm, "tail": g.tail,
        "tail_scales": g.tail_scales, "input_skip": g.input_skip, "bias": g.bias,
    }
    for i, c in enumerate(g.cells):
        p = f"cells.{i}.{c.type}."
        atts = c.attentions
        out[f"cells.{i}.type"] = c.type
        out[f"{p}slots"] = len(c.ops)
        out.update({f"{p}conv{j}": op for j, op in enumerate(c.ops)})
        out[f"{p}attention"] = "+".join(a.type for a in atts)
        out[f"{p}attention.channels"] = next((a.channels for a in atts
                                              if a.type not in ("none", "pa", "cea")), None)
        out[f"{p}attention.blocks"] = atts[0].blocks
        out[f"{p}attention.op"] = atts[0].op
        out[f"{p}attention.bn"] = atts[0].bn
        out[f"{p}inner"] = c.inner
        out[f"{p}residual"] = _residual_name(c, space.residuals)
    return out


class _Replay:
    """Answers each suggestion from a dict of wanted values, checking it lies in the choices,
    and records what was asked (the parameters of the genotype)."""

    def __init__(self, wanted: Mapping[str, Any], what: str) -> None:
        self.wanted, self.what = wanted, what
        self.params: dict[str, Any] = {}

    def _check(self, name: str, ok: bool, allowed: str) -> Any:
        value = self.wanted[name]
        if not ok:
            raise NotInSpace(f"{self.what} lies outside the sampled space: {name}={value!r}; "
                             f"the space allows {allowed}. Add the value to the space "
                             "(configs/spaces/full.yaml holds every zoo net)")
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        value = self.wanted[name]
        ok = any(value == c and type(value) is type(c) for c in choices) or (
            isinstance(value, float) and value in choices)
        return self._check(name, ok, str(list(choices)))

    def suggest_int(self, name: str, low: int, high: int) -> int:
        value = self.wanted[name]
        return int(self._check(name, low <= value <= high, f"{low}..{high}"))


def genotype_params(genotype: Genotype, space: SampleSpace, what: str = "the genotype"
                    ) -> dict[str, Any]:
    """The trial parameters under which :func:`sample_genotype` rebuilds ``genotype`` exactly,
    each inside the space's distributions (enqueue them to seed a study with the net).

    Raises:
        NotInSpace: a value lies outside the space's choices (named, with the choices), or
            the space cannot express the genotype at all (the first field that differs).
    """
    if genotype.scale != space.scale:
        raise NotInSpace(f"{what} is x{genotype.scale} but the space is x{space.scale}")
    replay = _Replay(_wanted(genotype, space), what)
    rebuilt = sample_genotype(replay, space)
    if rebuilt != genotype:
        diff = _first_difference(genotype.to_dict(), rebuilt.to_dict())
        raise NotInSpace(f"{what} is not expressible in the sampled space: {diff}")
    return replay.params


def normalise_interface(genotype: Genotype) -> Genotype:
    """``genotype`` with its interface conventions reset: ``data_range`` 1.0, ``input_scale``
    1.0, no ``input_mean``, no ``output_mean``; the point of a sampled space that stands for
    a zoo net (the presets sample none of these fields).

    The architecture is the same up to convention: ``data_range`` and ``input_scale`` touch
    only the deployed form (folded exactly into the head and last convs; the training forms
    are identical, weights included); ``output_mean`` adds a constant the last conv's bias can
    hold (exact where the frame has biases); ``input_mean`` subtracts a constant the head
    conv's bias can hold, exactly except on the head's zero-padded 1-pixel border.
    tests/test_space.py checks each.
    """
    return replace(genotype, data_range=1.0, input_scale=1.0, input_mean=None,
                   output_mean=False)


def _first_difference(a: Any, b: Any, where: str = "genotype") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{where}[{k}]")
    return f"{where} is {a!r}, the space gives {b!r}"
