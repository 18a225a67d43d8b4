"""The architecture genotype: a frozen, plain value that round-trips through JSON.

This module does not import torch, so genotypes can be read, written, validated and sampled
anywhere (Optuna workers, result tables, plotting). The op names declared here are the keys of
the op table in :mod:`search_space.ops`; the op-name string is the only link between search,
retraining and export.

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
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

GENOTYPE_VERSION = 1

ACTIVATIONS: tuple[str, ...] = ("relu", "lrelu0.05", "lrelu0.1", "prelu", "silu", "gelu")

CONV_OPS: tuple[str, ...] = (
    "conv1x1",
    "conv3x3",
    "conv5x5",
    "conv7x7",
    "sep_conv3x3",
    "sep_conv5x5",
    "sep_conv7x7",
    "dil_conv3x3_d2",
    "dil_conv5x5_d2",
    "bsconv3x3",
    "rep_conv3x3",
    "ecb3x3",
    "conv3xc",
)
"""Conv candidates for every conv slot, in the order the supernet lists them."""

DEFAULT_CONV_CANDIDATES: tuple[str, ...] = tuple(op for op in CONV_OPS if op != "conv3xc")
"""The conv candidates of the searchers' default spaces: every op but those added after the
searches were benchmarked (``conv3xc``), so a default search samples what it sampled before
(and a DARTS checkpoint of a default space still resumes)."""

REPARAM_OPS: Mapping[str, str] = {
    "rep_conv3x3": "conv3x3", "ecb3x3": "conv3x3", "conv3xc": "conv3x3",
}
"""Training-form ops and the op each merges into at deployment."""

NEEDS_BIAS: frozenset[str] = frozenset({"rep_conv3x3", "ecb3x3"})
"""Ops that exist only with biased convs (they pad their 1x1 outputs with the 1x1 bias, so the
merge is exact at the border); a net with ``bias=false`` cannot use them."""

FRAME_OPS: tuple[str, ...] = ("conv3x3", *REPARAM_OPS)
"""Ops allowed for the network's head and LR conv: conv3x3 or a training form that merges
into it (SPAN trains both as Conv3XC)."""

ATTENTIONS: tuple[str, ...] = ("esa", "esa_lite", "cca", "hfab", "pa", "none", "esa_mab",
                                "cea")

DEFAULT_ATTENTIONS: tuple[str, ...] = tuple(a for a in ATTENTIONS if a not in ("esa_mab", "cea"))
"""The attention candidates of the searchers' default spaces: every op but those added after the
searches were benchmarked (MAFFSRN's ``esa_mab`` and ``cea``)."""

MAX_ATTENTIONS = 3
"""The longest sequence of attention gates one cell may carry (MAFFSRN's MAB: two)."""

ATTENTION_MIN_INPUT: Mapping[str, int] = {"esa": 27, "esa_lite": 27, "esa_mab": 25}
"""The smallest LR side (px) on which an attention op works as designed; 1 for those not listed.

ESA and RLFN's ESA-lite pool a stride-2 3x3 conv's output with a 7x7 window of stride 3. On
27 px the pooled map is 3x3; below it the map shrinks to 2x2 or 1x1 and the "spatial" gate
becomes a global, per-channel one: a net trained on such patches learns a channel gate and is
tested as a spatial one. Training patches are checked against this (:func:`min_patch_size`).
MAFFSRN's ESA variant pads its stride-2 conv by 1 (``ceil(n / 2)`` px), so its pooled map is
3x3 from 25 px on (MAFFSRN itself trained on 24 px LR patches at x4, where it is 2x2).
"""

CELL_SLOTS: Mapping[str, tuple[int, ...]] = {
    "rfdb": (4,),  # refine 1-3 (width->width) and c4 (width->distilled)
    "rlfb": (3,),  # width->mid, mid->mid, mid->width
    "erb": (2, 1),  # conv [-> act -> conv]; one slot is FMEN's warm-up conv
    "imdb": (4,),  # c1 (width->width), c2, c3 (rest->width), c4 (rest->distilled)
    "spab": (3,),  # width->mid, mid->mid, mid->width
    "mab": (2,),  # conv -> act -> conv, then the attention gates
}
"""Allowed number of conv slots per cell type (the first is the searchable default)."""

CELL_TYPES: tuple[str, ...] = tuple(CELL_SLOTS)
DEFAULT_CELL_TYPES: tuple[str, ...] = ("rfdb", "rlfb", "erb", "imdb")
"""The cell types of the searchers' default spaces (those benchmarked before ``spab``)."""

TAP_CELLS: tuple[str, ...] = ("spab",)
"""Cell types that expose their first slot's post-activation output as a fusion tap
(``cells.{i}.act0``: SPAN fuses it from its last block)."""

SCALES: tuple[int, ...] = (2, 3, 4)
DATA_RANGES: tuple[float, ...] = (1.0, 255.0)
INPUT_SCALES: tuple[float, ...] = (1.0, 255.0)
FUSION_ACTS: tuple[str, ...] = (*ACTIVATIONS, "none")
"""The fusion's activation: an activation name, or ``none`` (SPAN fuses linearly)."""

LR_CONV_OPS: tuple[str, ...] = (*FRAME_OPS, "none")
"""Ops allowed for the LR conv: those of the head, or ``none`` (MAFFSRN has no LR conv)."""

GROUP_TYPES: tuple[str, ...] = ("ffg",)
"""Cell-group types: ``ffg``, MAFFSRN's feature-fusion group (see :class:`GroupGene`)."""

TAILS: tuple[str, ...] = ("conv3x3", "dual", "edsr")
"""The tail (upsampler): ``conv3x3`` -> PixelShuffle (default); MAFFSRN's ``dual``: conv3x3
and conv5x5 to ``3 * scale**2`` channels, each PixelShuffled, summed; or EDSR's ``edsr``:
[conv3x3 to ``4 * width`` -> PixelShuffle(2)] twice at x4 (once at x2; conv3x3 to ``9 * width``
-> PixelShuffle(3) at x3), then conv3x3 to 3 channels at the HR size (EDSR, MemSR)."""

INPUT_SKIPS: tuple[str, ...] = ("none", "bicubic")
"""A global skip from the network input to its output: ``none`` (default) or ``bicubic``
(MAFFSRN: ``F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False)``)."""

_TAP_RE = re.compile(r"^cells\.(\d+)(\.act0)?$")


class GenotypeError(ValueError):
    """A genotype field holds a value that is not allowed."""


def min_patch_size(attentions: Iterable[str], scale: int) -> int:
    """The smallest HR training patch on which none of ``attentions`` degenerates.

    The LR side must reach every op's :data:`ATTENTION_MIN_INPUT`; the HR side is that times
    ``scale`` (x4 with ESA: 27 * 4 = 108 px).
    """
    lr = max((ATTENTION_MIN_INPUT.get(a, 1) for a in attentions), default=1)
    return lr * scale


def check_patch_size(patch_size: int, attentions: Iterable[str], scale: int,
                     where: str = "patch_size") -> None:
    """Refuse a training patch on which an attention op would degenerate (see
    :data:`ATTENTION_MIN_INPUT`), naming the op, the patch and the smallest patch that works."""
    attentions = tuple(attentions)
    need = min_patch_size(attentions, scale)
    if patch_size < need:
        worst = max(attentions, key=lambda a: ATTENTION_MIN_INPUT.get(a, 1))
        lr_min = ATTENTION_MIN_INPUT[worst]
        raise GenotypeError(
            f"{where}: got {patch_size} (LR {patch_size // scale} px at x{scale}); allowed: >= "
            f"{need}. On LR patches under {lr_min} px the '{worst}' attention pools to less than "
            f"3x3 and degenerates into a global gate in training. Set {where}={need} or more, "
            "or leave it unset to get the smallest patch that works.")


def _fail(where: str, got: Any, allowed: str, fix: str = "") -> GenotypeError:
    msg = f"{where}: got {got!r}; allowed: {allowed}"
    return GenotypeError(f"{msg}. {fix}" if fix else msg)


def _check_name(where: str, value: Any, names: Iterable[str]) -> None:
    names = tuple(names)
    if value not in names:
        raise _fail(where, value, ", ".join(names))


def check_names(where: str, values: Iterable[str], allowed: Iterable[str]) -> None:
    """A non-empty list of known names without duplicates (candidate lists of searches)."""
    values, allowed = list(values), tuple(allowed)
    if not values:
        raise _fail(where, values, "a non-empty list of " + ", ".join(allowed))
    bad = [v for v in values if v not in allowed]
    if bad:
        raise GenotypeError(f"{where}: got unknown {bad}; valid names: {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise GenotypeError(f"{where}: got duplicates in {values}; list each name once")


def _check_int(where: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise _fail(where, value, f"an integer >= {lo}" + (f" and <= {hi}" if hi else ""))
    if hi is not None and value > hi:
        raise _fail(where, value, f"an integer >= {lo} and <= {hi}")


def _check_bool(where: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(where, value, "true or false")


def _unknown_keys(where: str, data: Mapping[str, Any], known: Iterable[str]) -> None:
    extra = sorted(set(data) - set(known))
    if extra:
        raise _fail(where, extra, "keys " + ", ".join(sorted(known)), "Remove or rename them.")


@dataclass(frozen=True)
class Attention:
    """An attention choice with its hidden width.

    ``channels`` is the hidden width: ESA's ``f`` (default ``C // 4`` for ``esa`` and MAFFSRN's
    ``esa_mab``, 16 for ``esa_lite``), CCA's bottleneck (default ``max(1, C // 16)``), HFAB's
    ``mid`` (default 16); ``pa``, ``cea`` and ``none`` have none.
    ``blocks``, ``op`` and ``bn`` apply to ``hfab`` only: the number of inner conv-act-conv
    blocks, their conv op, and whether the training-form batch norms are present.
    """

    type: str = "none"
    channels: int | None = None
    blocks: int = 1
    op: str = "conv3x3"
    bn: bool = False

    def validate(self, where: str = "attention") -> None:
        _check_name(f"{where}.type", self.type, ATTENTIONS)
        if self.type in ("none", "pa", "cea"):
            if self.channels is not None:
                raise _fail(f"{where}.channels", self.channels, "null",
                            f"'{self.type}' has no hidden width.")
        elif self.channels is not None:
            _check_int(f"{where}.channels", self.channels, 1)
        _check_int(f"{where}.blocks", self.blocks, 1)
        _check_name(f"{where}.op", self.op, CONV_OPS)
        _check_bool(f"{where}.bn", self.bn)
        if self.type != "hfab" and (self.blocks != 1 or self.op != "conv3x3" or self.bn):
            raise _fail(where, asdict(self), "blocks=1, op='conv3x3', bn=false",
                        "blocks/op/bn apply to 'hfab' only.")

    def hidden(self, channels: int) -> int:
        """The resolved hidden width for an attention over ``channels`` features."""
        if self.channels is not None:
            return self.channels
        defaults = {"esa": channels // 4, "esa_lite": 16, "cca": channels // 16, "hfab": 16,
                    "esa_mab": channels // 4}
        return max(1, defaults.get(self.type, 0))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "channels": self.channels}
        if self.type == "hfab":
            out.update(blocks=self.blocks, op=self.op, bn=self.bn)
        return out

    @classmethod
    def from_dict(cls, data: str | Mapping[str, Any], where: str = "attention") -> Attention:
        if isinstance(data, str):
            return cls(type=data)
        if not isinstance(data, Mapping):
            raise _fail(where, data, "a name or a mapping with key 'type'")
        _unknown_keys(where, data, ("type", "channels", "blocks", "op", "bn"))
        return cls(**data)


AttentionSpec = Attention | tuple[Attention, ...]
"""A cell's attention: one :class:`Attention`, or a sequence of 2 to :data:`MAX_ATTENTIONS`
gates multiplied onto the same input (``x * g_1(x) * g_2(x)``, MAFFSRN's MAB)."""


def _as_attention_spec(value: Any, where: str = "attention") -> Any:
    """Mappings and names as :class:`Attention`, lists as tuples of them; a one-element list is
    the single attention (its canonical form). Anything else is left for ``validate``."""
    if isinstance(value, (str, Mapping)):
        return Attention.from_dict(value, where)
    if isinstance(value, (list, tuple)):
        items = tuple(a if isinstance(a, Attention) else
                      Attention.from_dict(a, f"{where}[{k}]") if isinstance(a, (str, Mapping))
                      else a for k, a in enumerate(value))
        return items[0] if len(items) == 1 else items
    return value


@dataclass(frozen=True)
class CellGene:
    """One cell of the network.

    Args:
        type: cell type, one of :data:`CELL_TYPES`.
        ops: the conv op of each slot (see :data:`CELL_SLOTS` for the slot count).
        attention: the attention choice, or a sequence of 2 to :data:`MAX_ATTENTIONS` attention
            gates (none of them ``none``), all computed from the same input and multiplied onto
            it: ``x * g_1(x) * g_2(x)`` (MAFFSRN's MAB: ``esa_mab`` then ``cea``). In JSON a
            single attention is a mapping (as always), a sequence a list of mappings.
        act: the activation, one of :data:`ACTIVATIONS`.
        inner: the inner width. RFDB: distilled channels (default ``width // 2``); IMDB:
            distilled channels (default ``width // 4``); RLFB and SPAB: mid channels (default
            ``width``); ERB and MAB: must be null.
        shallow_residual: RFDB only: add the stage input to each refine conv (RFDN's SRB).
        block_residual: add the cell input to the cell output (where the cell type puts it:
            RLFB before its 1x1 and attention, IMDB after its fuse, RFDB, ERB and MAB at the
            end, SPAB inside its gate: ``(h3 + x) * (sigmoid(h3) - 0.5)``). MAFFSRN's
            ``MAB(x) + x`` inside a feature-fusion group is a MAB with it.
    """

    type: str
    ops: tuple[str, ...]
    attention: AttentionSpec = field(default_factory=Attention)
    act: str = "lrelu0.05"
    inner: int | None = None
    shallow_residual: bool = False
    block_residual: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.ops, list):
            object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "attention", _as_attention_spec(self.attention))

    @property
    def attentions(self) -> tuple[Attention, ...]:
        """The cell's attention choices as a tuple (one element for a single attention)."""
        att = self.attention
        return att if isinstance(att, tuple) else (att,)

    def single_attention(self, where: str = "cell") -> Attention:
        """The cell's one attention; a sequence is refused (the searchers' spaces have one
        attention slot per cell)."""
        if isinstance(self.attention, tuple):
            raise _fail(f"{where}.attention", [a.type for a in self.attention],
                        "a single attention here", "The searchers' spaces have one attention "
                        "slot per cell; sequences of gates exist in hand-built genotypes only.")
        return self.attention

    def validate(self, width: int, where: str = "cell") -> None:
        _check_name(f"{where}.type", self.type, CELL_TYPES)
        slots = CELL_SLOTS[self.type]
        if not isinstance(self.ops, tuple) or len(self.ops) not in slots:
            raise _fail(f"{where}.ops", self.ops,
                        f"a list of {' or '.join(map(str, slots))} conv op names "
                        f"for a '{self.type}' cell")
        for i, op in enumerate(self.ops):
            _check_name(f"{where}.ops[{i}]", op, CONV_OPS)
        self._validate_attention(f"{where}.attention")
        _check_name(f"{where}.act", self.act, ACTIVATIONS)
        if self.type in ("erb", "mab"):
            if self.inner is not None:
                raise _fail(f"{where}.inner", self.inner, "null",
                            f"An '{self.type}' has no inner width.")
        elif self.inner is not None:
            hi = width - 1 if self.type == "imdb" else None
            _check_int(f"{where}.inner", self.inner, 1, hi)
        _check_bool(f"{where}.shallow_residual", self.shallow_residual)
        _check_bool(f"{where}.block_residual", self.block_residual)
        if self.shallow_residual and self.type != "rfdb":
            raise _fail(f"{where}.shallow_residual", True, "false",
                        "The shallow residual exists in 'rfdb' cells only.")

    def _validate_attention(self, where: str) -> None:
        att = self.attention
        if isinstance(att, Attention):
            att.validate(where)
            return
        if not isinstance(att, tuple) or not 2 <= len(att) <= MAX_ATTENTIONS:
            raise _fail(where, att, f"one attention, or a list of 2 to {MAX_ATTENTIONS}")
        for k, a in enumerate(att):
            if not isinstance(a, Attention):
                raise _fail(f"{where}[{k}]", a, "an Attention, a name or a mapping with 'type'")
            a.validate(f"{where}[{k}]")
            if a.type == "none":
                raise _fail(f"{where}[{k}].type", "none", "an attention gate in a sequence",
                            "'none' is no gate; drop it from the list.")

    def inner_width(self, width: int) -> int:
        """The resolved inner width (distilled or mid channels) of this cell."""
        if self.inner is not None:
            return self.inner
        return {"rfdb": width // 2, "imdb": width // 4, "rlfb": width, "erb": width,
                "spab": width, "mab": width}[self.type]

    def to_dict(self) -> dict[str, Any]:
        att = self.attention
        return {
            "type": self.type,
            "ops": list(self.ops),
            "attention": ([a.to_dict() for a in att] if isinstance(att, tuple)
                          else att.to_dict()),
            "act": self.act,
            "inner": self.inner,
            "shallow_residual": self.shallow_residual,
            "block_residual": self.block_residual,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "cell") -> CellGene:
        if not isinstance(data, Mapping):
            raise _fail(where, data, "a mapping with keys type, ops, attention, act, ...")
        _unknown_keys(where, data, [f for f in cls.__dataclass_fields__])
        if "type" not in data or "ops" not in data:
            raise _fail(where, dict(data), "a mapping with at least 'type' and 'ops'")
        kwargs = dict(data)
        ops = kwargs["ops"]
        if not isinstance(ops, (list, tuple)):
            raise _fail(f"{where}.ops", ops, "a list of conv op names")
        kwargs["ops"] = tuple(ops)
        att = data.get("attention", "none")
        if not isinstance(att, (str, Mapping, list, tuple)):
            raise _fail(f"{where}.attention", att, "a name, a mapping with key 'type', or a "
                        f"list of 2 to {MAX_ATTENTIONS} of them")
        kwargs["attention"] = _as_attention_spec(att, f"{where}.attention")
        return cls(**kwargs)


@dataclass(frozen=True)
class GroupGene:
    """A feature-fusion group over ``size`` consecutive cells (MAFFSRN's FFG with its M-BFF).

    With cell outputs ``x_0 .. x_{n-1}`` (each cell fed the previous one's output, the first
    the group input ``x``): ``r = x_0``, then ``r = conv1x1(shuffle(concat[r, x_k]))`` (2C -> C)
    for ``k = 1 .. n-1``, and the output is ``res_scale * r + skip_scale * x``. MAFFSRN's
    ``x_k = MAB_k(x_{k-1}) + x_{k-1}`` for the middle cells is their ``block_residual``.

    Args:
        size: cells in the group (>= 2).
        type: the group type, one of :data:`GROUP_TYPES`.
        shuffle: a channel shuffle with 2 groups (``a0, b0, a1, b1, ...``) before each fusion
            1x1. Training form: it is a fixed permutation of that conv's input channels and
            folds into its weights at deployment (the deployed gene has ``shuffle=false``).
        res_scale: a learnable scalar (init 1) on the fused output. Training form: folds into
            the last fusion 1x1 at deployment.
        skip_scale: a learnable scalar (init 1) on the group input. It stays in the deployed
            form (one multiply): folding it would mean rescaling the next group's input, which
            is not one linear op for every cell type.
    """

    size: int
    type: str = "ffg"
    shuffle: bool = True
    res_scale: bool = True
    skip_scale: bool = True

    def validate(self, where: str = "group") -> None:
        _check_int(f"{where}.size", self.size, 2)
        _check_name(f"{where}.type", self.type, GROUP_TYPES)
        for name in ("shuffle", "res_scale", "skip_scale"):
            _check_bool(f"{where}.{name}", getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: int | Mapping[str, Any], where: str = "group") -> GroupGene:
        """A mapping, or a plain size (the MAFFSRN defaults for the rest)."""
        if isinstance(data, int) and not isinstance(data, bool):
            return cls(size=data)
        if not isinstance(data, Mapping):
            raise _fail(where, data, "a group size or a mapping with key 'size'")
        _unknown_keys(where, data, [f for f in cls.__dataclass_fields__])
        if "size" not in data:
            raise _fail(where, dict(data), "a mapping with key 'size'")
        return cls(**data)


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
            raise _fail("Genotype.scale", self.scale, ", ".join(map(str, SCALES)))
        _check_int("Genotype.width", self.width, 2)
        if not isinstance(self.cells, tuple) or not self.cells:
            raise _fail("Genotype.cells", self.cells, "a non-empty tuple of CellGene")
        for i, cell in enumerate(self.cells):
            if not isinstance(cell, CellGene):
                raise _fail(f"Genotype.cells[{i}]", cell, "a CellGene")
            cell.validate(self.width, f"Genotype.cells[{i}]")
        _check_bool("Genotype.fusion", self.fusion)
        _check_name("Genotype.fusion_act", self.fusion_act, FUSION_ACTS)
        if isinstance(self.data_range, bool) or self.data_range not in DATA_RANGES:
            raise _fail("Genotype.data_range", self.data_range, "1.0 or 255.0")
        for name in ("lr_conv_before_fusion", "long_skip", "bias"):
            _check_bool(f"Genotype.{name}", getattr(self, name))
        if isinstance(self.input_scale, bool) or self.input_scale not in INPUT_SCALES:
            raise _fail("Genotype.input_scale", self.input_scale, "1.0 or 255.0")
        self._validate_mean()
        _check_name("Genotype.head_op", self.head_op, FRAME_OPS)
        _check_name("Genotype.lr_conv_op", self.lr_conv_op, LR_CONV_OPS)
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
                    raise _fail(f"Genotype.{where}", op, f"an op other than {banned} when "
                                "bias=false", "Those ops pad with their biases; set bias=true "
                                "or use conv3x3 or conv3xc.")

    def _validate_groups(self) -> None:
        groups = self.groups
        if groups is None:
            return
        if not isinstance(groups, tuple) or not groups:
            raise _fail("Genotype.groups", groups, "null or a non-empty list of groups")
        for j, group in enumerate(groups):
            if not isinstance(group, GroupGene):
                raise _fail(f"Genotype.groups[{j}]", group, "a GroupGene, a size or a mapping")
            group.validate(f"Genotype.groups[{j}]")
        sizes = [g.size for g in groups]
        if sum(sizes) != len(self.cells):
            raise _fail("Genotype.groups", sizes, f"sizes summing to the number of cells, "
                        f"{len(self.cells)}", f"They sum to {sum(sizes)}; add or remove cells "
                        "or change the sizes.")
        if self.fusion:
            raise _fail("Genotype.fusion", True, "false with groups",
                        "The groups fuse their own cells; set fusion=false or groups=null.")

    def _validate_maffsrn_switches(self) -> None:
        _check_bool("Genotype.weight_norm", self.weight_norm)
        _check_name("Genotype.tail", self.tail, TAILS)
        _check_bool("Genotype.tail_scales", self.tail_scales)
        _check_name("Genotype.input_skip", self.input_skip, INPUT_SKIPS)
        _check_bool("Genotype.output_mean", self.output_mean)
        if self.output_mean and self.input_mean is None:
            raise _fail("Genotype.output_mean", True, "true only with an input_mean",
                        "It adds input_mean back to the output; set input_mean (EDSR: the DIV2K "
                        "mean) or output_mean=false.")
        if self.tail_scales and self.tail != "dual":
            raise _fail("Genotype.tail_scales", True, "true only with tail='dual'",
                        f"tail is {self.tail!r}; set tail='dual' or tail_scales=false.")
        if self.weight_norm:
            for name, allowed in (("head_op", ("conv3x3",)), ("lr_conv_op", ("conv3x3", "none"))):
                if getattr(self, name) not in allowed:
                    raise _fail(f"Genotype.{name}", getattr(self, name),
                                f"{' or '.join(allowed)} when weight_norm=true",
                                "Weight norm applies to plain frame convs; set weight_norm=false "
                                f"or {name}='conv3x3'.")
        if self.lr_conv_op == "none" and self.lr_conv_before_fusion:
            raise _fail("Genotype.lr_conv_op", "none", "an op when lr_conv_before_fusion=true",
                        "Set lr_conv_before_fusion=false or give the LR conv an op.")

    def _validate_mean(self) -> None:
        m = self.input_mean
        if m is None:
            return
        ok = isinstance(m, tuple) and len(m) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and 0.0 <= v <= 1.0 for v in m)
        if not ok:
            raise _fail("Genotype.input_mean", m, "null or three numbers in [0, 1] (an RGB "
                        "mean of [0, 1] images)", "SPAN uses [0.4488, 0.4371, 0.404].")

    def _validate_taps(self) -> None:
        taps = self.fusion_taps
        if taps is not None:
            if not self.fusion:
                raise _fail("Genotype.fusion_taps", list(taps), "null when fusion=false",
                            "Set fusion=true or drop fusion_taps.")
            if not isinstance(taps, tuple) or not taps:
                raise _fail("Genotype.fusion_taps", taps, "null or a non-empty list of tap names")
            for k, tap in enumerate(taps):
                self._check_tap(f"Genotype.fusion_taps[{k}]", tap)
            if len(set(taps)) != len(taps):
                raise _fail("Genotype.fusion_taps", list(taps), "each tap once",
                            "Remove the duplicates.")
        if self.lr_conv_before_fusion and (taps is None or "lr_conv" not in taps):
            raise _fail("Genotype.lr_conv_before_fusion", True,
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
            raise _fail(where, tap, allowed)
        i = int(match.group(1))
        if match.group(2) and self.cells[i].type not in TAP_CELLS:
            raise _fail(where, tap, allowed,
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
            raise _fail("Genotype", data, "a JSON object")
        fields = ("scale", "width", "cells", "fusion", "fusion_act", "data_range", *_SWITCHES)
        _unknown_keys("Genotype", data, (*fields, "version"))
        version = data.get("version", GENOTYPE_VERSION)
        if version != GENOTYPE_VERSION:
            raise _fail("Genotype.version", version, str(GENOTYPE_VERSION))
        missing = [k for k in ("scale", "width", "cells") if k not in data]
        if missing:
            raise _fail("Genotype", sorted(data), "a mapping with keys scale, width, cells",
                        f"Missing: {', '.join(missing)}.")
        cells = data["cells"]
        if not isinstance(cells, (list, tuple)):
            raise _fail("Genotype.cells", cells, "a list of cell mappings")
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
