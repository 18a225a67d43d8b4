"""The architecture genotype: a frozen, plain value that round-trips through JSON.

This module does not import torch, so genotypes can be read, written, validated and sampled
anywhere (Optuna workers, result tables, plotting). A :class:`Genotype` holds the network-level
switches and its genes (:mod:`search_space.genes`); the names its fields take are in
:mod:`search_space.choices`, the op names being the keys of the op table in
:mod:`search_space.ops` (the op-name string is the only link between search, retraining and
export).

A network is::

    [(x - input_mean) * input_scale] -> head conv3x3 -> cell_1 -> ... -> cell_n
        -> [fusion: concat(taps; default every cell output) -> 1x1 -> [act]]
        -> [LR conv3x3] -> [+ head (long skip)] -> tail (conv3x3 -> PixelShuffle(scale))
        [+ bicubic upsampling of x (input skip)]

(SPAN moves the LR conv before the fusion, whose taps then include its output; MAFFSRN
gathers its cells into feature-fusion groups, has no LR conv and a dual 3x3/5x5 tail), and
every cell has a type (``rfdb``, ``rlfb``, ``erb``, ``imdb``, ``spab``, ``mab``), one conv op
per slot, an attention choice (or a short sequence of attention gates) and an activation,
plus the switches in which the published nets differ.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from search_space.checks import (
    GenotypeError,
    check_bool,
    check_int,
    check_name,
    fail,
    unknown_keys,
)
from search_space.choices import (
    DATA_RANGES,
    FRAME_OPS,
    FUSION_ACTS,
    INPUT_SCALES,
    INPUT_SKIPS,
    LR_CONV_OPS,
    MAX_CELLS,
    MAX_WIDTH,
    NEEDS_BIAS,
    REPARAM_OPS,
    SCALES,
    TAILS,
    TAP_CELLS,
)
from search_space.genes import Attention, CellGene, GroupGene

__all__ = ["GENOTYPE_VERSION", "Genotype"]

GENOTYPE_VERSION = 1

_TAP_RE = re.compile(r"^cells\.(\d+)(\.act0)?$")


@dataclass(frozen=True)
class Genotype:
    """A complete SR network: scale, width, cells and the network-level switches.

    Args:
        scale: upscaling factor, 2, 3 or 4.
        width: feature channels of the trunk.
        cells: the cells in order.
        fusion: RFDN-style multi-block fusion (concat of the taps, 1x1, act).
        fusion_act: the activation after the fusion 1x1, or ``none`` (SPAN).
        data_range: the input/output value range the deployed net works in (1.0 or 255.0).
        fusion_taps: what the fusion concatenates, in order; ``None`` (default): every cell
            output. Names: ``head`` (head conv output), ``lr_conv`` (LR conv output; needs
            ``lr_conv_before_fusion``), ``cells.{i}`` (output of cell ``i``, from 0) and
            ``cells.{i}.act0`` (post-activation output of the first slot of cell ``i``; cell
            types in :data:`TAP_CELLS`). SPAN: ``head, lr_conv, cells.0, cells.5.act0``.
        lr_conv_before_fusion: apply the LR conv to the last cell's output before the fusion
            (SPAN's ``conv_2``) instead of to the fusion output; needs ``fusion`` and an
            ``lr_conv`` tap.
        long_skip: add the head output before the upsampler (default); SPAN has none.
        input_mean: a per-channel RGB mean (in [0, 1] units) subtracted from the input before
            the head conv, or ``None`` (default). SPAN: the DIV2K mean (0.4488, 0.4371, 0.4040).
        input_scale: the factor the *deployed* net multiplies the (mean-shifted) input by
            before its head conv (1.0 or 255.0). Like ``data_range`` it is an interface of the
            deployed net, folded out of the head in training; SPAN: 255 (it feeds
            ``(x - mean) * 255`` to its head and returns [0, 1] directly).
        bias: the trunk convs (head, every conv slot, the cells' fixed 1x1s, fusion, LR conv,
            upsampler) have biases (default); attention convs always do. DIPNet: false.
        head_op: the head conv's op (:data:`FRAME_OPS`; SPAN trains it as ``conv3xc``).
        lr_conv_op: the LR conv's op (:data:`LR_CONV_OPS`); ``none``: no LR conv (MAFFSRN).
        groups: ``None`` (default), or the cells' partition into feature-fusion groups
            (:class:`GroupGene`; sizes summing to the number of cells; MAFFSRN: four groups of
            four MABs). Needs ``fusion=false`` (the groups fuse their own cells).
        weight_norm: the frame convs (head, LR conv, fusion 1x1, the groups' fusion 1x1s, the
            tail convs) are weight-normalised, ``w = g * v / ||v||`` per output channel
            (MAFFSRN). Training form: folded into plain convs at deployment; the head and LR
            conv must then be ``conv3x3`` (or the LR conv ``none``).
        tail: the upsampler, one of :data:`TAILS` (MAFFSRN: ``dual``).
        tail_scales: each branch of the ``dual`` tail times a learnable scalar (init 0.5;
            MAFFSRN). Training form: folded into the tail convs at deployment.
        input_skip: :data:`INPUT_SKIPS`; ``bicubic`` adds the bicubic upsampling of the net
            input (before any mean shift) to the output (MAFFSRN).
        output_mean: add ``input_mean`` back to the output (EDSR's ``add_mean``); needs
            ``input_mean``. SPAN subtracts its mean and does not add it back.

    The switches after ``data_range`` default to the frame every net had before they existed;
    at their defaults they are left out of the JSON, so earlier genotypes and their files are
    unchanged. Construction validates every field; errors name the field, the value and what
    is allowed.
    """

    scale: int
    width: int
    cells: tuple[CellGene, ...]
    fusion: bool = False
    fusion_act: str = "lrelu0.05"
    data_range: float = 1.0
    fusion_taps: tuple[str, ...] | None = None
    lr_conv_before_fusion: bool = False
    long_skip: bool = True
    input_mean: tuple[float, ...] | None = None
    input_scale: float = 1.0
    bias: bool = True
    head_op: str = "conv3x3"
    lr_conv_op: str = "conv3x3"
    groups: tuple[GroupGene, ...] | None = None
    weight_norm: bool = False
    tail: str = "conv3x3"
    tail_scales: bool = False
    input_skip: str = "none"
    output_mean: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.cells, list):
            object.__setattr__(self, "cells", tuple(self.cells))
        for name in ("fusion_taps", "input_mean", "groups"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.groups, tuple):
            object.__setattr__(self, "groups", tuple(
                GroupGene.from_dict(g, f"Genotype.groups[{j}]") if isinstance(g, (int, Mapping))
                else g for j, g in enumerate(self.groups)))
        self.validate()

    def validate(self) -> None:
        if self.scale not in SCALES or isinstance(self.scale, bool):
            raise fail("Genotype.scale", self.scale, ", ".join(map(str, SCALES)))
        check_int("Genotype.width", self.width, 2, MAX_WIDTH)
        if not isinstance(self.cells, tuple) or not self.cells:
            raise fail("Genotype.cells", self.cells, "a non-empty tuple of CellGene")
        if len(self.cells) > MAX_CELLS:
            raise fail("Genotype.cells", len(self.cells), f"at most {MAX_CELLS} cells",
                       "Use fewer cells.")
        for i, cell in enumerate(self.cells):
            if not isinstance(cell, CellGene):
                raise fail(f"Genotype.cells[{i}]", cell, "a CellGene")
            cell.validate(self.width, f"Genotype.cells[{i}]")
        check_bool("Genotype.fusion", self.fusion)
        check_name("Genotype.fusion_act", self.fusion_act, FUSION_ACTS)
        if isinstance(self.data_range, bool) or self.data_range not in DATA_RANGES:
            raise fail("Genotype.data_range", self.data_range, "1.0 or 255.0")
        for name in ("lr_conv_before_fusion", "long_skip", "bias"):
            check_bool(f"Genotype.{name}", getattr(self, name))
        if isinstance(self.input_scale, bool) or self.input_scale not in INPUT_SCALES:
            raise fail("Genotype.input_scale", self.input_scale, "1.0 or 255.0")
        self._validate_mean()
        check_name("Genotype.head_op", self.head_op, FRAME_OPS)
        check_name("Genotype.lr_conv_op", self.lr_conv_op, LR_CONV_OPS)
        self._validate_taps()
        self._validate_groups()
        self._validate_maffsrn_switches()
        if not self.bias:
            used = [("head_op", self.head_op), ("lr_conv_op", self.lr_conv_op)] + [
                (f"cells[{i}].ops[{j}]", op) for i, c in enumerate(self.cells)
                for j, op in enumerate(c.ops)]
            for where, op in used:
                if op in NEEDS_BIAS:
                    banned = ", ".join(sorted(NEEDS_BIAS))
                    raise fail(f"Genotype.{where}", op, f"an op other than {banned} when "
                               "bias=false", "Those ops pad with their biases; set bias=true "
                               "or use conv3x3 or conv3xc.")

    def _validate_groups(self) -> None:
        groups = self.groups
        if groups is None:
            return
        if not isinstance(groups, tuple) or not groups:
            raise fail("Genotype.groups", groups, "null or a non-empty list of groups")
        for j, group in enumerate(groups):
            if not isinstance(group, GroupGene):
                raise fail(f"Genotype.groups[{j}]", group, "a GroupGene, a size or a mapping")
            group.validate(f"Genotype.groups[{j}]")
        sizes = [g.size for g in groups]
        if sum(sizes) != len(self.cells):
            raise fail("Genotype.groups", sizes, f"sizes summing to the number of cells, "
                       f"{len(self.cells)}", f"They sum to {sum(sizes)}; add or remove cells "
                       "or change the sizes.")
        if self.fusion:
            raise fail("Genotype.fusion", True, "false with groups",
                       "The groups fuse their own cells; set fusion=false or groups=null.")

    def _validate_maffsrn_switches(self) -> None:
        check_bool("Genotype.weight_norm", self.weight_norm)
        check_name("Genotype.tail", self.tail, TAILS)
        check_bool("Genotype.tail_scales", self.tail_scales)
        check_name("Genotype.input_skip", self.input_skip, INPUT_SKIPS)
        check_bool("Genotype.output_mean", self.output_mean)
        if self.output_mean and self.input_mean is None:
            raise fail("Genotype.output_mean", True, "true only with an input_mean",
                       "It adds input_mean back to the output; set input_mean (EDSR: the DIV2K "
                       "mean) or output_mean=false.")
        if self.tail_scales and self.tail != "dual":
            raise fail("Genotype.tail_scales", True, "true only with tail='dual'",
                       f"tail is {self.tail!r}; set tail='dual' or tail_scales=false.")
        if self.weight_norm:
            for name, allowed in (("head_op", ("conv3x3",)), ("lr_conv_op", ("conv3x3", "none"))):
                if getattr(self, name) not in allowed:
                    raise fail(f"Genotype.{name}", getattr(self, name),
                               f"{' or '.join(allowed)} when weight_norm=true",
                               "Weight norm applies to plain frame convs; set weight_norm=false "
                               f"or {name}='conv3x3'.")
        if self.lr_conv_op == "none" and self.lr_conv_before_fusion:
            raise fail("Genotype.lr_conv_op", "none", "an op when lr_conv_before_fusion=true",
                       "Set lr_conv_before_fusion=false or give the LR conv an op.")

    def _validate_mean(self) -> None:
        m = self.input_mean
        if m is None:
            return
        ok = isinstance(m, tuple) and len(m) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and 0.0 <= v <= 1.0 for v in m)
        if not ok:
            raise fail("Genotype.input_mean", m, "null or three numbers in [0, 1] (an RGB "
                       "mean of [0, 1] images)", "SPAN uses [0.4488, 0.4371, 0.404].")

    def _validate_taps(self) -> None:
        taps = self.fusion_taps
        if taps is not None:
            if not self.fusion:
                raise fail("Genotype.fusion_taps", list(taps), "null when fusion=false",
                           "Set fusion=true or drop fusion_taps.")
            if not isinstance(taps, tuple) or not taps:
                raise fail("Genotype.fusion_taps", taps, "null or a non-empty list of tap names")
            for k, tap in enumerate(taps):
                self._check_tap(f"Genotype.fusion_taps[{k}]", tap)
            if len(set(taps)) != len(taps):
                raise fail("Genotype.fusion_taps", list(taps), "each tap once",
                           "Remove the duplicates.")
        if self.lr_conv_before_fusion and (taps is None or "lr_conv" not in taps):
            raise fail("Genotype.lr_conv_before_fusion", True,
                       "true only with fusion=true and an 'lr_conv' fusion tap",
                       "Without them the LR conv's output would be unused; set it to false, "
                       "or add 'lr_conv' to fusion_taps.")

    def _check_tap(self, where: str, tap: Any) -> None:
        n = len(self.cells)
        allowed = (f"'head', 'lr_conv' (with lr_conv_before_fusion), 'cells.{{i}}' or "
                   f"'cells.{{i}}.act0' (cell types {', '.join(TAP_CELLS)}) with 0 <= i < {n}")
        if tap == "head" or (tap == "lr_conv" and self.lr_conv_before_fusion):
            return
        match = _TAP_RE.match(tap) if isinstance(tap, str) else None
        if match is None or int(match.group(1)) >= n or match.group(1) != str(int(match.group(1))):
            raise fail(where, tap, allowed)
        i = int(match.group(1))
        if match.group(2) and self.cells[i].type not in TAP_CELLS:
            raise fail(where, tap, allowed,
                       f"cell {i} is a '{self.cells[i].type}' cell, which has no act0 tap.")

    def tap_channels(self, tap: str) -> int:
        """The channels of one fusion tap (``cells.{i}.act0`` has the cell's inner width)."""
        match = _TAP_RE.match(tap)
        if match is not None and match.group(2):
            return self.cells[int(match.group(1))].inner_width(self.width)
        return self.width

    @property
    def fusion_inputs(self) -> tuple[str, ...]:
        """The resolved fusion taps (every cell output when ``fusion_taps`` is null)."""
        if self.fusion_taps is not None:
            return self.fusion_taps
        return tuple(f"cells.{i}" for i in range(len(self.cells)))

    # -- derived values ---------------------------------------------------------------------

    @property
    def num_cells(self) -> int:
        return len(self.cells)

    def deployed(self) -> Genotype:
        """The genotype of the re-parameterised net: rep/ECB ops become conv3x3, BN folded,
        weight norm, channel shuffles and the foldable scalar scales folded into convs."""

        def deploy_att(att: Attention) -> Attention:
            return replace(att, op=REPARAM_OPS.get(att.op, att.op), bn=False)

        def deploy_cell(cell: CellGene) -> CellGene:
            atts = tuple(deploy_att(a) for a in cell.attentions)
            ops = tuple(REPARAM_OPS.get(op, op) for op in cell.ops)
            return replace(cell, ops=ops, attention=atts if len(atts) > 1 else atts[0])

        groups = None if self.groups is None else tuple(
            replace(g, shuffle=False, res_scale=False) for g in self.groups)
        return replace(self, cells=tuple(deploy_cell(c) for c in self.cells),
                       head_op=REPARAM_OPS.get(self.head_op, self.head_op),
                       lr_conv_op=REPARAM_OPS.get(self.lr_conv_op, self.lr_conv_op),
                       groups=groups, weight_norm=False, tail_scales=False)

    @property
    def attentions(self) -> tuple[str, ...]:
        """The attention types the cells use (each once, in order; sequences flattened)."""
        return tuple(dict.fromkeys(a.type for c in self.cells for a in c.attentions))

    @property
    def is_deployed(self) -> bool:
        return self.deployed() == self

    # -- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": GENOTYPE_VERSION,
            "scale": self.scale,
            "width": self.width,
            "data_range": self.data_range,
            "fusion": self.fusion,
            "fusion_act": self.fusion_act,
            "cells": [c.to_dict() for c in self.cells],
        } | self._switches_to_dict()

    def _switches_to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _SWITCHES:
            value = getattr(self, name)
            if value != Genotype.__dataclass_fields__[name].default:
                if name == "groups":
                    value = [g.to_dict() for g in value]
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        if not isinstance(data, Mapping):
            raise fail("Genotype", data, "a JSON object")
        fields = ("scale", "width", "cells", "fusion", "fusion_act", "data_range", *_SWITCHES)
        unknown_keys("Genotype", data, (*fields, "version"))
        version = data.get("version", GENOTYPE_VERSION)
        if version != GENOTYPE_VERSION:
            raise fail("Genotype.version", version, str(GENOTYPE_VERSION))
        missing = [k for k in ("scale", "width", "cells") if k not in data]
        if missing:
            raise fail("Genotype", sorted(data), "a mapping with keys scale, width, cells",
                       f"Missing: {', '.join(missing)}.")
        cells = data["cells"]
        if not isinstance(cells, (list, tuple)):
            raise fail("Genotype.cells", cells, "a list of cell mappings")
        kwargs = {k: data[k] for k in fields if k in data}
        kwargs["cells"] = tuple(
            CellGene.from_dict(c, f"Genotype.cells[{i}]") for i, c in enumerate(cells)
        )
        for name in ("data_range", "input_scale"):
            if isinstance(kwargs.get(name), int) and not isinstance(kwargs[name], bool):
                kwargs[name] = float(kwargs[name])
        for name in ("fusion_taps", "input_mean"):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        if isinstance(kwargs.get("groups"), list):
            kwargs["groups"] = tuple(GroupGene.from_dict(g, f"Genotype.groups[{j}]")
                                     for j, g in enumerate(kwargs["groups"]))
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"Genotype JSON does not parse: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        from search_space.files import atomic_write_text

        return atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"genotype file {str(path)!r} does not exist")
        try:
            return cls.from_json(path.read_text())
        except GenotypeError as exc:
            raise GenotypeError(f"{path}: {exc}") from exc


_SWITCHES: tuple[str, ...] = ("fusion_taps", "lr_conv_before_fusion", "long_skip", "input_mean",
                              "input_scale", "bias", "head_op", "lr_conv_op", "groups",
                              "weight_norm", "tail", "tail_scales", "input_skip",
                              "output_mean")
"""The network switches written to JSON only where they differ from their defaults."""
