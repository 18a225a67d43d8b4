"""The genes a genotype is made of: a cell's attention (:class:`Attention`), a cell
(:class:`CellGene`) and a feature-fusion group of cells (:class:`GroupGene`).

Each is a frozen, plain value with ``validate``, ``to_dict`` and ``from_dict``; the names its
fields take are in :mod:`search_space.choices`, and the errors name the field, the value and
what is allowed (:mod:`search_space.checks`). No torch import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from search_space.checks import check_bool, check_int, check_name, fail, unknown_keys
from search_space.choices import (
    ACTIVATIONS,
    ATTENTIONS,
    CELL_SLOTS,
    CELL_TYPES,
    CONV_OPS,
    GROUP_TYPES,
    MAX_ATTENTIONS,
    MAX_BLOCKS,
    MAX_WIDTH,
)

__all__ = ["Attention", "AttentionSpec", "CellGene", "GroupGene", "as_attention_spec"]


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
        check_name(f"{where}.type", self.type, ATTENTIONS)
        if self.type in ("none", "pa", "cea"):
            if self.channels is not None:
                raise fail(f"{where}.channels", self.channels, "null",
                           f"'{self.type}' has no hidden width.")
        elif self.channels is not None:
            check_int(f"{where}.channels", self.channels, 1, MAX_WIDTH)
        check_int(f"{where}.blocks", self.blocks, 1, MAX_BLOCKS)
        check_name(f"{where}.op", self.op, CONV_OPS)
        check_bool(f"{where}.bn", self.bn)
        if self.type != "hfab" and (self.blocks != 1 or self.op != "conv3x3" or self.bn):
            raise fail(where, asdict(self), "blocks=1, op='conv3x3', bn=false",
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
            raise fail(where, data, "a name or a mapping with key 'type'")
        unknown_keys(where, data, ("type", "channels", "blocks", "op", "bn"))
        return cls(**data)


AttentionSpec = Attention | tuple[Attention, ...]
"""A cell's attention: one :class:`Attention`, or a sequence of 2 to :data:`MAX_ATTENTIONS`
gates multiplied onto the same input (``x * g_1(x) * g_2(x)``, MAFFSRN's MAB)."""


def as_attention_spec(value: Any, where: str = "attention") -> Any:
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
        object.__setattr__(self, "attention", as_attention_spec(self.attention))

    @property
    def attentions(self) -> tuple[Attention, ...]:
        """The cell's attention choices as a tuple (one element for a single attention)."""
        att = self.attention
        return att if isinstance(att, tuple) else (att,)

    def single_attention(self, where: str = "cell") -> Attention:
        """The cell's one attention; a sequence is refused (the searchers' spaces have one
        attention slot per cell)."""
        if isinstance(self.attention, tuple):
            raise fail(f"{where}.attention", [a.type for a in self.attention],
                       "a single attention here", "The searchers' spaces have one attention "
                       "slot per cell; sequences of gates exist in hand-built genotypes only.")
        return self.attention

    def validate(self, width: int, where: str = "cell") -> None:
        check_name(f"{where}.type", self.type, CELL_TYPES)
        slots = CELL_SLOTS[self.type]
        if not isinstance(self.ops, tuple) or len(self.ops) not in slots:
            raise fail(f"{where}.ops", self.ops,
                       f"a list of {' or '.join(map(str, slots))} conv op names "
                       f"for a '{self.type}' cell")
        for i, op in enumerate(self.ops):
            check_name(f"{where}.ops[{i}]", op, CONV_OPS)
        self._validate_attention(f"{where}.attention")
        check_name(f"{where}.act", self.act, ACTIVATIONS)
        if self.type in ("erb", "mab"):
            if self.inner is not None:
                raise fail(f"{where}.inner", self.inner, "null",
                           f"An '{self.type}' has no inner width.")
        elif self.inner is not None:
            hi = width - 1 if self.type == "imdb" else MAX_WIDTH
            check_int(f"{where}.inner", self.inner, 1, hi)
        check_bool(f"{where}.shallow_residual", self.shallow_residual)
        check_bool(f"{where}.block_residual", self.block_residual)
        if self.shallow_residual and self.type != "rfdb":
            raise fail(f"{where}.shallow_residual", True, "false",
                       "The shallow residual exists in 'rfdb' cells only.")

    def _validate_attention(self, where: str) -> None:
        att = self.attention
        if isinstance(att, Attention):
            att.validate(where)
            return
        if not isinstance(att, tuple) or not 2 <= len(att) <= MAX_ATTENTIONS:
            raise fail(where, att, f"one attention, or a list of 2 to {MAX_ATTENTIONS}")
        for k, a in enumerate(att):
            if not isinstance(a, Attention):
                raise fail(f"{where}[{k}]", a, "an Attention, a name or a mapping with 'type'")
            a.validate(f"{where}[{k}]")
            if a.type == "none":
                raise fail(f"{where}[{k}].type", "none", "an attention gate in a sequence",
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
            raise fail(where, data, "a mapping with keys type, ops, attention, act, ...")
        unknown_keys(where, data, [f for f in cls.__dataclass_fields__])
        if "type" not in data or "ops" not in data:
            raise fail(where, dict(data), "a mapping with at least 'type' and 'ops'")
        kwargs = dict(data)
        ops = kwargs["ops"]
        if not isinstance(ops, (list, tuple)):
            raise fail(f"{where}.ops", ops, "a list of conv op names")
        kwargs["ops"] = tuple(ops)
        att = data.get("attention", "none")
        if not isinstance(att, (str, Mapping, list, tuple)):
            raise fail(f"{where}.attention", att, "a name, a mapping with key 'type', or a "
                       f"list of 2 to {MAX_ATTENTIONS} of them")
        kwargs["attention"] = as_attention_spec(att, f"{where}.attention")
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
        check_int(f"{where}.size", self.size, 2)
        check_name(f"{where}.type", self.type, GROUP_TYPES)
        for name in ("shuffle", "res_scale", "skip_scale"):
            check_bool(f"{where}.{name}", getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: int | Mapping[str, Any], where: str = "group") -> GroupGene:
        """A mapping, or a plain size (the MAFFSRN defaults for the rest)."""
        if isinstance(data, int) and not isinstance(data, bool):
            return cls(size=data)
        if not isinstance(data, Mapping):
            raise fail(where, data, "a group size or a mapping with key 'size'")
        unknown_keys(where, data, [f for f in cls.__dataclass_fields__])
        if "size" not in data:
            raise fail(where, dict(data), "a mapping with key 'size'")
        return cls(**data)

