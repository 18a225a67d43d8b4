"""The published efficient-SR nets, rebuilt exactly as genotypes of this search space.

Each is built as ``../shared/reference/architectures.md`` describes it; the tests check that
parameter counts equal the published figures exactly and that the NTIRE 2022 counters
reproduce the challenge's FLOPs, activations and #conv.

========================  =========  ===========================================================
name                      params     source
========================  =========  ===========================================================
``imdn_ntire``            893,936    NTIRE 2022 baseline (KAIR's simplified IMDN, 8 IMDB, 64 ch)
``imdn_paper``            715,176    IMDN, ACM MM 2019 (6 IMDB with CCA, fusion, 64 ch)
``rfdn_aim2020``          433,448    E-RFDN, AIM 2020 winner (4 RFDB with ESA, fusion, 50 ch)
``rlfn_ntire``            317,218    RLFN_cut, NTIRE 2022 winner (4 RLFB, 46/48 ch, ESA f=16)
``rlfn_paper``            543,740    RLFN, CVPRW 2022 (6 RLFB, 52 ch)
``fmen_s``                341,066    FMEN-S deployed, NTIRE 2022 2nd (ERB + HFAB, 50 ch)
``fmen_s_train``          1,045,866  FMEN-S training form (RRRB convs, HFAB with batch norms)
``dipnet_ntire2023``      243,252    DIPNet, NTIRE 2023 runtime winner (4 RLFB, 44/38 ch,
                                     ESA-lite 16, trunk convs without bias)
``span_ntire2024``        150,688    SPAN deployed, NTIRE 2024 winner, NTIRE 2026 baseline (28 ch)
``span_ntire2024_train``  634,048    SPAN training form (head, cells, LR conv as Conv3XC)
``dsclora_ntire2025``     130,828    DSCLoRA deployed, NTIRE 2025 winner (SPAN at 26 ch)
``maffsrn``               441,706    MAFFSRN, AIM 2020 (4 FFG x 4 MAB, 32 ch), training form
                                     (weight norm, channel shuffles, 10 learnable scalars)
``maffsrn_l``             830,066    MAFFSRN-L (8 FFG), training form
``edsr_baseline``         1,517,571  EDSR-baseline x4 (16 residual blocks, 64 ch, EDSR tail,
                                     DIV2K mean in and out at 0-255); MemSR's teacher layout
``memsr_plain``           1,517,571  MemSR's plain student of that teacher (``fix_r`` 64):
                                     the same convs with every skip removed
========================  =========  ===========================================================

The 2023-2026 nets are built as ``../shared/reference/architectures_2023_2026.md`` describes
them (sections 1-4). SPAN and DSCLoRA take [0, 1] inputs, feed ``(x - DIV2K mean) * 255`` to
their head once deployed, and return [0, 1] (``input_mean``, ``input_scale``).

MAFFSRN publishes no weights; its entries are the training form of the official code (the
parameter counts include the 512 (896 for -L) weight-norm gains and the 10 (18) scalars).
Deployed (``reparameterize``), the weight norms, the channel shuffles, the groups' output
scalars and the tail scalars fold into plain convs and one scalar per group stays (the skip
scale): MAFFSRN 441,188 params, MAFFSRN-L 829,160, with unchanged FLOPs, activations and #conv.

EDSR-baseline is built as EDSR-PyTorch's ``EDSR`` (``n_resblocks=16, n_feats=64,
res_scale=1``; ``architectures_2023_2026.md`` section 5.2 gives its size): its MeanShift 1x1
convs (24 frozen parameters) are the ``input_mean``/``output_mean`` subtraction and addition
here, so it counts 37 convs where the official module has 39. MemSR's own convs feed an extra
all-ones channel in place of a bias (1,534,991 parameters for its student); ours have ordinary
biases, so the two differ at the image border. ``memsr_plain`` is
:func:`plain_genotype` at MemSR's default size; see that module for the
teacher-to-plain conversion and MemSR's initialisation.

All are x4 as published; :func:`at_scale` gives the same architecture at another scale.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from search_space.checks import GenotypeError, fail
from search_space.genes import Attention, CellGene, GroupGene
from search_space.genotype import Genotype


def _imdn_ntire() -> Genotype:
    cell = CellGene("imdb", ("conv3x3",) * 4, Attention("none"), "lrelu0.05", inner=16,
                    block_residual=True)
    return Genotype(scale=4, width=64, cells=(cell,) * 8, data_range=1.0)


def _imdn_paper() -> Genotype:
    cell = CellGene("imdb", ("conv3x3",) * 4, Attention("cca", channels=4), "lrelu0.05",
                    inner=16, block_residual=True)
    return Genotype(scale=4, width=64, cells=(cell,) * 6, fusion=True, fusion_act="lrelu0.05",
                    data_range=1.0)


def _rfdn_aim2020() -> Genotype:
    cell = CellGene("rfdb", ("conv3x3",) * 4, Attention("esa", channels=12), "lrelu0.05",
                    inner=25, shallow_residual=True, block_residual=False)
    return Genotype(scale=4, width=50, cells=(cell,) * 4, fusion=True, fusion_act="lrelu0.05",
                    data_range=255.0)


def _rlfn(width: int, mid: int, blocks: int) -> Genotype:
    cell = CellGene("rlfb", ("conv3x3",) * 3, Attention("esa_lite", channels=16), "lrelu0.05",
                    inner=mid, block_residual=True)
    return Genotype(scale=4, width=width, cells=(cell,) * blocks, data_range=255.0)


def _fmen_s(train: bool) -> Genotype:
    op = "rep_conv3x3" if train else "conv3x3"

    def hfab(mid: int, blocks: int) -> Attention:
        return Attention("hfab", channels=mid, blocks=blocks, op=op, bn=train)

    warmup = CellGene("erb", ("conv3x3",), hfab(12, 2), "lrelu0.1")
    body = CellGene("erb", (op, op), hfab(16, 1), "lrelu0.1")
    return Genotype(scale=4, width=50, cells=(warmup,) + (body,) * 4, data_range=255.0)


def _dipnet() -> Genotype:
    cell = CellGene("rlfb", ("conv3x3",) * 3, Attention("esa_lite", channels=16), "lrelu0.05",
                    inner=38, block_residual=True)
    return Genotype(scale=4, width=44, cells=(cell,) * 4, data_range=1.0, bias=False)


SPAN_MEAN = (0.4488, 0.4371, 0.4040)
"""The DIV2K RGB mean SPAN subtracts from its [0, 1] input."""


def _span(width: int, train: bool) -> Genotype:
    op = "conv3xc" if train else "conv3x3"
    cell = CellGene("spab", (op,) * 3, Attention("none"), "silu", block_residual=True)
    return Genotype(
        scale=4, width=width, cells=(cell,) * 6, fusion=True, fusion_act="none",
        data_range=1.0, fusion_taps=("head", "lr_conv", "cells.0", "cells.5.act0"),
        lr_conv_before_fusion=True, long_skip=False, input_mean=SPAN_MEAN, input_scale=255.0,
        head_op=op, lr_conv_op=op,
    )


def _maffsrn(groups: int) -> Genotype:
    # MAB: conv3x3 + LReLU(0.05) -> conv3x3 -> x * ESA-variant gate * CEA gate; the FFG adds
    # the input of its middle two MABs (block_residual), fuses with shuffle + 1x1 and scales.
    gates = (Attention("esa_mab", channels=8), Attention("cea"))

    def mab(residual: bool) -> CellGene:
        return CellGene("mab", ("conv3x3",) * 2, gates, "lrelu0.05", block_residual=residual)

    ffg = (mab(False), mab(True), mab(True), mab(False))
    return Genotype(
        scale=4, width=32, cells=ffg * groups, data_range=1.0, long_skip=False,
        lr_conv_op="none", groups=(GroupGene(4),) * groups, weight_norm=True, tail="dual",
        tail_scales=True, input_skip="bicubic",
    )


def _edsr_baseline() -> Genotype:
    cell = CellGene("erb", ("conv3x3",) * 2, Attention("none"), "relu", block_residual=True)
    return Genotype(scale=4, width=64, cells=(cell,) * 16, data_range=255.0,
                    input_mean=SPAN_MEAN, output_mean=True, tail="edsr")


def plain_genotype(depth: int, width: int, scale: int = 4, act: str = "relu", *,
                   op: str = "conv3x3", tail: str = "edsr", data_range: float = 1.0,
                   input_mean: Sequence[float] | None = None, output_mean: bool = False
                   ) -> Genotype:
    """A plain net: head conv -> ``depth`` x [conv -> act -> conv] -> LR conv -> tail, with no
    skip of any kind (MemSR's student: ``plain_genotype(16, 64)``). Its net starts from the
    identity-centred :func:`search_space.plain_init.init_plain_chain` (:func:`is_plain_chain`)."""
    cell = CellGene("erb", (op, op), Attention("none"), act)
    return Genotype(scale=scale, width=width, cells=(cell,) * depth, data_range=data_range,
                    long_skip=False, input_mean=None if input_mean is None else tuple(input_mean),
                    output_mean=output_mean, tail=tail)


PLAIN_ACTS: tuple[str, ...] = ("relu", "lrelu0.05", "lrelu0.1")
"""Activations a carried skip can pass (the identity on positive values)."""

PLAIN_TAILS: tuple[str, ...] = ("edsr", "conv3x3")


def _check_chain(g: Genotype, role: str, *, plain: bool) -> None:
    """Refuse genotypes that are not a chain of [conv -> act -> conv] cells (``plain``: and
    without any skip)."""
    for i, c in enumerate(g.cells):
        where = f"{role} genotype cells[{i}]"
        if c.type != "erb" or len(c.ops) != 2:
            raise fail(f"{where}.type", c.type, "'erb' cells with two conv slots",
                       "MemSR's nets are chains of [conv -> act -> conv] blocks "
                       "(search_space.plain.plain_genotype builds one).")
        if any(a.type != "none" for a in c.attentions):
            raise fail(f"{where}.attention", [a.type for a in c.attentions], "none",
                       "An attention gate multiplies features: it has no plain form.")
        if plain and c.block_residual:
            raise fail(f"{where}.block_residual", True, "false in a plain net",
                       "MemSR's student has no skips (search_space.plain.plain_genotype "
                       "builds one; zoo: memsr_plain).")
    switches = [("fusion", g.fusion, False), ("groups", g.groups, None),
                ("input_skip", g.input_skip, "none")]
    if plain:
        switches.append(("long_skip", g.long_skip, False))
    for name, value, allowed in switches:
        if value != allowed:
            raise fail(f"{role} genotype {name}", value, repr(allowed),
                       f"a {'plain' if plain else 'convertible'} net has no {name}.")
    if g.tail not in PLAIN_TAILS:
        raise fail(f"{role} genotype tail", g.tail, ", ".join(PLAIN_TAILS))


def check_plain(genotype: Genotype) -> None:
    """Raise :class:`GenotypeError` unless ``genotype`` is of the plain family."""
    _check_chain(genotype, "student", plain=True)


def check_convertible(genotype: Genotype) -> None:
    """Raise :class:`GenotypeError` unless :func:`search_space.plain.plain_form` can convert
    ``genotype``'s net."""
    _check_chain(genotype, "teacher", plain=False)
    carries = genotype.long_skip or any(c.block_residual for c in genotype.cells)
    if carries:
        for i, c in enumerate(genotype.cells):
            if c.act not in PLAIN_ACTS:
                raise fail(f"teacher genotype cells[{i}].act", c.act, ", ".join(PLAIN_ACTS),
                           "A skip is carried through the activation as x + offset, which "
                           "only an activation that is the identity on positive values passes.")


_PLAIN_CONV_OP = re.compile(r"(dil_)?conv\d+x\d+(_d\d+)?")
"""The ops that build one plain ``nn.Conv2d`` (``conv3x3``, ``dil_conv3x3_d2``, ...)."""


def is_plain_chain(genotype: Genotype) -> bool:
    """Whether ``genotype`` is of the plain family (:func:`check_plain`) with plain convs only
    (``conv{k}x{k}``, ``dil_conv``; no weight norm): the nets that
    :func:`search_space.network.build_model` gives the identity-centred init (issue 27)."""
    try:
        check_plain(genotype)
    except GenotypeError:
        return False
    ops = [genotype.head_op, *(op for c in genotype.cells for op in c.ops)]
    if genotype.lr_conv_op != "none":
        ops.append(genotype.lr_conv_op)
    return not genotype.weight_norm and all(_PLAIN_CONV_OP.fullmatch(op) for op in ops)


def _memsr_plain() -> Genotype:
    return plain_genotype(16, 64, scale=4, act="relu", data_range=255.0, input_mean=SPAN_MEAN,
                          output_mean=True)


ZOO: dict[str, Genotype] = {
    "imdn_ntire": _imdn_ntire(),
    "imdn_paper": _imdn_paper(),
    "rfdn_aim2020": _rfdn_aim2020(),
    "rlfn_ntire": _rlfn(46, 48, 4),
    "rlfn_paper": _rlfn(52, 52, 6),
    "fmen_s": _fmen_s(train=False),
    "fmen_s_train": _fmen_s(train=True),
    "dipnet_ntire2023": _dipnet(),
    "span_ntire2024": _span(28, train=False),
    "span_ntire2024_train": _span(28, train=True),
    "dsclora_ntire2025": _span(26, train=False),
    "maffsrn": _maffsrn(4),
    "maffsrn_l": _maffsrn(8),
    "edsr_baseline": _edsr_baseline(),
    "memsr_plain": _memsr_plain(),
}
"""Published nets by name (x4)."""

YARDSTICK: tuple[str, ...] = ("imdn_ntire", "rfdn_aim2020", "rlfn_ntire", "fmen_s",
                             "span_ntire2024")
"""The nets every search result is compared with (the DARTS run's final profile, the Optuna
and Ray Tune studies' enqueued zoo trials)."""

REFERENCE_NET = "span_ntire2024"
"""The latency reference: every latency ratio ("x ref") is to SPAN, timed interleaved with it.
SPAN, the NTIRE 2024 winner and the NTIRE 2026 baseline, is the fastest strong net of the zoo.
A ratio below 1 is faster than SPAN."""

AIM_NET = "rlfn_ntire"
"""The bar of the aim: a derived net should reach RLFN's Y-PSNR on every set at lower latency
than RLFN (and within ``fmen_s``'s peak memory). RLFN, the NTIRE 2022 winner, was the baseline
of the NTIRE 2023 and 2024 efficient-SR challenges. Profile tables show the latency ratio to it
too (``x rlfn_ntire``), next to ``x ref``."""


def at_scale(genotype: Genotype, scale: int) -> Genotype:
    """The same architecture with another upscaling factor (only the upsampler changes)."""
    return replace(genotype, scale=scale)


def resolve_genotype(spec: str) -> tuple[str, Genotype]:
    """A zoo name or a genotype JSON file, as ``(label, genotype)``."""
    if spec in ZOO:
        return spec, ZOO[spec]
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return path.stem, Genotype.load(path)
    raise GenotypeError(
        f"genotype: got {spec!r}; expected a zoo name ({', '.join(ZOO)}) "
        "or the path of a genotype JSON file"
    )
