"""The names a genotype's fields take: conv ops, attentions, activations, cell and group types,
tails, and the defaults of the searchers' spaces.

The op names declared here are the keys of the op table in :mod:`search_space.ops`; the op-name
string is the only link between search, retraining and export. The module imports nothing
beyond the standard library, like every module a genotype needs.
"""

from __future__ import annotations

from collections.abc import Mapping

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

MAX_WIDTH = 1024
"""The widest channel count a genotype may ask for (the trunk, a cell's inner width, an
attention's hidden width): 4x EDSR's 256, 16x the zoo's widest trunk (64). A sanity bound;
whether a net fits the machine is :mod:`search_space.memory`'s question."""

MAX_CELLS = 256
"""The most cells a genotype (or a searched space) may have: 8x MAFFSRN-L's 32."""

MAX_BLOCKS = 64
"""The most inner blocks of one HFAB attention (FMEN-S: 2)."""

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
"""Cell-group types: ``ffg``, MAFFSRN's feature-fusion group (see
:class:`search_space.genes.GroupGene`)."""

TAILS: tuple[str, ...] = ("conv3x3", "dual", "edsr")
"""The tail (upsampler): ``conv3x3`` -> PixelShuffle (default); MAFFSRN's ``dual``: conv3x3
and conv5x5 to ``3 * scale**2`` channels, each PixelShuffled, summed; or EDSR's ``edsr``:
[conv3x3 to ``4 * width`` -> PixelShuffle(2)] twice at x4 (once at x2; conv3x3 to ``9 * width``
-> PixelShuffle(3) at x3), then conv3x3 to 3 channels at the HR size (EDSR, MemSR)."""

INPUT_SKIPS: tuple[str, ...] = ("none", "bicubic")
"""A global skip from the network input to its output: ``none`` (default) or ``bicubic``
(MAFFSRN: ``F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False)``)."""
