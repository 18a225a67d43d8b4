"""SR cells, keyed by type: ``CELLS[gene.type](gene, width)``.

Every conv slot is built from :data:`search_space.ops.OPS`, every attention from
:data:`search_space.attention.ATTENTION_OPS`, every activation from
:data:`search_space.ops.ACTIVATION_OPS`. The switches reproduce where the published nets
differ (see ``../shared/reference/architectures.md``):

* RFDB (RFDN, Liu et al. ECCVW 2020): three distillation stages (1x1 distill + act; refine
  slot [+ stage input] + act), a fourth slot to the distilled width + act, concat, 1x1 fuse,
  attention [+ cell input].
* RLFB (RLFN, Kong et al. CVPRW 2022): three slots each followed by act [+ cell input], 1x1,
  attention.
* ERB (FMEN, Du et al. CVPRW 2022): slot -> act -> slot [+ cell input], attention.
* IMDB (IMDN, Hui et al. ACM MM 2019): progressive split stages (slot + act, split off the
  distilled channels), a fourth slot to the distilled width, concat, attention, 1x1 fuse
  [+ cell input].
* SPAB (SPAN, Wan et al. CVPRW 2024): slot + act, slot + act, slot, then the parameter-free
  gate ``(h3 [+ cell input]) * (sigmoid(h3) - 0.5)``, attention (SPAN: none).
* MAB (MAFFSRN, Muqeet et al. ECCVW 2020): slot + act, slot, then the attention gates (MAFFSRN:
  ``esa_mab`` and ``cea``, both of the same input, multiplied), [+ cell input].

Cell groups, keyed by type in :data:`GROUPS` (``GROUPS[gene.type](gene, width)``), fuse the
outputs of consecutive cells: ``ffg`` is MAFFSRN's feature-fusion group (M-BFF fusion).

Every cell takes ``bias`` (default true): whether its conv slots and fixed 1x1 convs have
biases (:attr:`Genotype.bias <search_space.genotype.Genotype>`); attention convs always do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from search_space.attention import ATTENTION_OPS, AttentionProduct
from search_space.genes import Attention, AttentionSpec, CellGene, GroupGene
from search_space.ops import (
    ACTIVATION_OPS,
    OPS,
    ConvChain,
    StatelessAct,
    add_residual,
    spab_gate,
)
from search_space.registry import Registry
from search_space.rep import ChannelShuffle, WeightNormConv2d, bias_of, fold_shuffle, plain_conv


class SlotBuilder:
    """Builds the searchable parts of a cell from the op tables.

    Every cell asks its builder for each conv slot, its attention and its activations, naming
    the slot (``"cells.3.conv1"``, ``"cells.3.attention"``, ``"cells.3.act"``). This default
    builds the op the genotype names; the DARTS supernet passes a builder that returns mixed
    ops over the candidates instead, so one cell implementation serves both.
    """

    def conv(self, slot: str, op: str, c_in: int, c_out: int, bias: bool = True) -> nn.Module:
        return OPS[op](c_in, c_out, bias=bias)

    def attention(self, slot: str, spec: Attention, channels: int, act: str) -> nn.Module:
        return ATTENTION_OPS[spec.type](channels, spec, act)

    def attention_of(self, slot: str, spec: AttentionSpec, channels: int, act: str
                     ) -> nn.Module:
        """A cell's attention: one op (:meth:`attention`, at ``slot``), or for a sequence an
        :class:`~search_space.attention.AttentionProduct` of one op per element (slots
        ``slot.0``, ``slot.1``, ...)."""
        if isinstance(spec, Attention):
            return self.attention(slot, spec, channels, act)
        return AttentionProduct([self.attention(f"{slot}.{k}", s, channels, act)
                                 for k, s in enumerate(spec)], slot)

    def act(self, slot: str, name: str, channels: int) -> nn.Module:
        return ACTIVATION_OPS[name](channels)

    def stateless_act(self, slot: str, name: str, channels: int) -> nn.Module:
        return StatelessAct(name, channels)


DEFAULT_BUILDER = SlotBuilder()

CellBuilder = Callable[..., nn.Module]
CELLS: Registry[CellBuilder] = Registry("cell type")


@CELLS.register("rfdb")
class RFDB(nn.Module):
    """Residual feature distillation block.

    Args:
        gene: the cell gene (4 conv slots; ``inner`` = distilled channels, default width // 2).
        width: feature channels.
        builder: builds the slots (default: the ops the gene names).
        prefix: slot-name prefix, e.g. ``"cells.0."``.
        bias: the conv slots and the fixed 1x1 convs have biases.
    """

    def __init__(self, gene: CellGene, width: int, builder: SlotBuilder = DEFAULT_BUILDER,
                 prefix: str = "", bias: bool = True) -> None:
        super().__init__()
        dc = gene.inner_width(width)
        b, act = builder, gene.act
        self.shallow_residual = gene.shallow_residual
        self.block_residual = gene.block_residual
        self.distill = nn.ModuleList(nn.Conv2d(width, dc, 1, bias=bias) for _ in range(3))
        self.refine = nn.ModuleList(b.conv(f"{prefix}conv{i}", op, width, width, bias)
                                    for i, op in enumerate(gene.ops[:3]))
        self.c4 = b.conv(f"{prefix}conv3", gene.ops[3], width, dc, bias)
        self.act_d = nn.ModuleList(b.act(f"{prefix}act", act, dc) for _ in range(4))
        self.act_r = nn.ModuleList(b.act(f"{prefix}act", act, width) for _ in range(3))
        self.c5 = nn.Conv2d(4 * dc, width, 1, bias=bias)
        self.attention = b.attention_of(f"{prefix}attention", gene.attention, width, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, distilled = x, []
        stages = zip(self.distill, self.refine, self.act_d[:3], self.act_r, strict=True)
        for distill, refine, act_d, act_r in stages:
            distilled.append(act_d(distill(h)))
            r = refine(h)
            h = act_r(add_residual(r, h) if self.shallow_residual else r)
        distilled.append(self.act_d[3](self.c4(h)))
        out = self.attention(self.c5(torch.cat(distilled, dim=1)))
        return add_residual(out, x) if self.block_residual else out


@CELLS.register("rlfb")
class RLFB(nn.Module):
    """Residual local feature block.

    Args:
        gene: the cell gene (3 conv slots; ``inner`` = mid channels, default width).
        width: feature channels.
    """

    def __init__(self, gene: CellGene, width: int, builder: SlotBuilder = DEFAULT_BUILDER,
                 prefix: str = "", bias: bool = True) -> None:
        super().__init__()
        mid = gene.inner_width(width)
        b = builder
        self.block_residual = gene.block_residual
        chans = (width, mid, mid, width)
        self.convs = nn.ModuleList(b.conv(f"{prefix}conv{i}", op, chans[i], chans[i + 1], bias)
                                   for i, op in enumerate(gene.ops))
        self.acts = nn.ModuleList(b.act(f"{prefix}act", gene.act, c) for c in chans[1:])
        self.c5 = nn.Conv2d(width, width, 1, bias=bias)
        self.attention = b.attention_of(f"{prefix}attention", gene.attention, width, gene.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv, act in zip(self.convs, self.acts, strict=True):
            h = act(conv(h))
        if self.block_residual:
            h = add_residual(h, x)
        return self.attention(self.c5(h))


@CELLS.register("erb")
class ERB(nn.Module):
    """Enhanced residual block paired with an attention (FMEN's ERB + HFAB).

    Args:
        gene: the cell gene (2 conv slots, or 1 for FMEN's warm-up conv; no inner width).
        width: feature channels.
    """

    def __init__(self, gene: CellGene, width: int, builder: SlotBuilder = DEFAULT_BUILDER,
                 prefix: str = "", bias: bool = True) -> None:
        super().__init__()
        self.block_residual = gene.block_residual
        self.body = ConvChain(gene.ops, width, gene.act, builder, prefix, bias)
        self.attention = builder.attention_of(f"{prefix}attention", gene.attention, width,
                                              gene.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.attention(add_residual(h, x) if self.block_residual else h)


@CELLS.register("imdb")
class IMDB(nn.Module):
    """Information multi-distillation block.

    Args:
        gene: the cell gene (4 conv slots; ``inner`` = distilled channels, default width // 4).
        width: feature channels.
    """

    def __init__(self, gene: CellGene, width: int, builder: SlotBuilder = DEFAULT_BUILDER,
                 prefix: str = "", bias: bool = True) -> None:
        super().__init__()
        d = gene.inner_width(width)
        b = builder
        self.split = [d, width - d]
        self.block_residual = gene.block_residual
        rest = width - d
        chans = ((width, width), (rest, width), (rest, width), (rest, d))
        self.convs = nn.ModuleList(b.conv(f"{prefix}conv{i}", op, *chans[i], bias)
                                   for i, op in enumerate(gene.ops))
        self.acts = nn.ModuleList(b.act(f"{prefix}act", gene.act, width) for _ in range(3))
        self.attention = b.attention_of(f"{prefix}attention", gene.attention, 4 * d, gene.act)
        self.c5 = nn.Conv2d(4 * d, width, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, distilled = x, []
        for conv, act in zip(self.convs[:3], self.acts, strict=True):
            d, h = torch.split(act(conv(h)), self.split, dim=1)
            distilled.append(d)
        distilled.append(self.convs[3](h))
        out = self.c5(self.attention(torch.cat(distilled, dim=1)))
        return add_residual(out, x) if self.block_residual else out


@CELLS.register("spab")
class SPAB(nn.Module):
    """Swift parameter-free attention block (SPAN's SPAB).

    Args:
        gene: the cell gene (3 conv slots; ``inner`` = mid channels, default width).
        width: feature channels.
        builder: builds the slots (default: the ops the gene names).
        prefix: slot-name prefix.
        bias: the conv slots have biases.

    ``a1 = act(slot0(x)); h3 = slot2(act(slot1(a1)))``; output
    ``attention((h3 + x) * (sigmoid(h3) - 0.5))`` (the ``+ x`` is ``block_residual``; SPAN has
    it, and no attention). :meth:`features` also returns ``a1``, the post-activation output of
    the first slot, which SPAN fuses from its last block (the ``cells.{i}.act0`` tap).
    """

    def __init__(self, gene: CellGene, width: int, builder: SlotBuilder = DEFAULT_BUILDER,
                 prefix: str = "", bias: bool = True) -> None:
        super().__init__()
        mid = gene.inner_width(width)
        b = builder
        self.block_residual = gene.block_residual
        chans = (width, mid, mid, width)
        self.convs = nn.ModuleList(b.conv(f"{prefix}conv{i}", op, chans[i], chans[i + 1], bias)
                                   for i, op in enumerate(gene.ops))
        self.acts = nn.ModuleList(b.act(f"{prefix}act", gene.act, mid) for _ in range(2))
        self.attention = b.attention_of(f"{prefix}attention", gene.attention, width, gene.act)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, a1)``: the cell output and its first slot's post-activation output."""
        a1 = self.acts[0](self.convs[0](x))
        h3 = self.convs[2](self.acts[1](self.convs[1](a1)))
        out = spab_gate(h3, x if self.block_residual else None)
        return self.attention(out), a1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[0]


@CELLS.register("mab")
class MAB(nn.Module):
    """Multi-attention block (MAFFSRN's MAB).

    Args:
        gene: the cell gene (2 conv slots; no inner width).
        width: feature channels.
        builder: builds the slots (default: the ops the gene names).
        prefix: slot-name prefix.
        bias: the conv slots have biases.

    ``y = slot1(act(slot0(x)))``, output ``attention(y) [+ x]``. MAFFSRN's attention is the
    sequence ``esa_mab, cea``: ``y * g_esa(y) * g_cea(y)``, with no residual inside the MAB
    (its FFG adds ``x`` to the middle two, which is ``block_residual`` here).
    """

    def __init__(self, gene: CellGene, width: int, builder: SlotBuilder = DEFAULT_BUILDER,
                 prefix: str = "", bias: bool = True) -> None:
        super().__init__()
        b = builder
        self.block_residual = gene.block_residual
        self.convs = nn.ModuleList(b.conv(f"{prefix}conv{i}", op, width, width, bias)
                                   for i, op in enumerate(gene.ops))
        self.act = b.act(f"{prefix}act", gene.act, width)
        self.attention = b.attention_of(f"{prefix}attention", gene.attention, width, gene.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.attention(self.convs[1](self.act(self.convs[0](x))))
        return add_residual(out, x) if self.block_residual else out


GroupBuilder = Callable[..., nn.Module]
GROUPS: Registry[GroupBuilder] = Registry("cell group type")


def frame_conv(c_in: int, c_out: int, k: int, bias: bool = True, weight_norm: bool = False
               ) -> nn.Conv2d:
    """A zero-padded ``k x k`` conv of the net's frame, weight-normalised on request."""
    cls = WeightNormConv2d if weight_norm else nn.Conv2d
    return cls(c_in, c_out, k, padding=k // 2, bias=bias)


class Scale(nn.Module):
    """A learnable scalar factor (MAFFSRN's ``Scale``): a one-element parameter ``scale``.

    Args:
        init: the initial value.
    """

    def __init__(self, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


@GROUPS.register("ffg")
class FeatureFusionGroup(nn.Module):
    """The fusion of MAFFSRN's feature-fusion group (its M-BFF), over the outputs of the
    group's cells (the cells themselves stay in the net's ``cells``).

    Args:
        gene: the group gene (see :class:`~search_space.genes.GroupGene`).
        width: feature channels.
        bias: the fusion 1x1s have biases.
        weight_norm: the fusion 1x1s are weight-normalised (training form).

    ``r = x_0``; ``r = fuse_k(concat[r, x_k])`` for each later cell output, where ``fuse_k`` is
    [channel shuffle (2 groups) ->] 1x1 2C -> C; output ``[res_scale *] r + [skip_scale *] x``.
    :meth:`reparameterize` folds the weight norm and the shuffle into the 1x1s and
    ``res_scale`` into the last one; ``skip_scale`` stays.
    """

    def __init__(self, gene: GroupGene, width: int, bias: bool = True,
                 weight_norm: bool = False) -> None:
        super().__init__()
        self.gene, self.width, self.bias = gene, width, bias

        def fuse() -> nn.Module:
            conv = frame_conv(2 * width, width, 1, bias, weight_norm)
            return nn.Sequential(ChannelShuffle(2), conv) if gene.shuffle else conv

        self.fuse = nn.ModuleList(fuse() for _ in range(gene.size - 1))
        self.res_scale = Scale(1.0) if gene.res_scale else None
        self.skip_scale = Scale(1.0) if gene.skip_scale else None

    def forward(self, outs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        r = outs[0]
        for fuse, o in zip(self.fuse, outs[1:], strict=True):
            r = fuse(torch.cat([r, o], dim=1))
        if self.res_scale is not None:
            r = self.res_scale(r)
        skip = self.skip_scale(x) if self.skip_scale is not None else x
        return add_residual(r, skip)

    @torch.no_grad()
    def reparameterize(self) -> FeatureFusionGroup:
        """The deployed group: plain 1x1s (shuffle and weight norm folded), ``res_scale`` in
        the last one."""
        gene = replace(self.gene, shuffle=False, res_scale=False)
        out = FeatureFusionGroup(gene, self.width, self.bias)
        convs = []
        for fuse in self.fuse:
            if isinstance(fuse, nn.Sequential):
                shuffle, conv = fuse
                assert isinstance(shuffle, ChannelShuffle) and isinstance(conv, nn.Conv2d)
                convs.append(fold_shuffle(conv, shuffle.groups))
            else:
                assert isinstance(fuse, nn.Conv2d)
                convs.append(plain_conv(fuse))
        if self.res_scale is not None:
            s = self.res_scale.scale
            convs[-1].weight.mul_(s)
            if convs[-1].bias is not None:
                bias_of(convs[-1]).mul_(s)
        out = out.to(convs[0].weight)
        out.fuse = nn.ModuleList(convs)
        if self.skip_scale is not None:
            assert out.skip_scale is not None
            out.skip_scale.load_state_dict(self.skip_scale.state_dict())
        return out
