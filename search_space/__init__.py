"""The search space: genotypes, the op table, cells, the network and the reference zoo.

``from search_space import Genotype`` does not import torch; ``build_model``,
``reparameterize`` and ``SRNet`` load torch on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_space.checks import GenotypeError
from search_space.choices import ACTIVATIONS, ATTENTIONS, CELL_SLOTS, CELL_TYPES, CONV_OPS
from search_space.genes import Attention, CellGene, GroupGene
from search_space.genotype import Genotype

if TYPE_CHECKING:
    from search_space.network import SRNet, build_model, reparameterize

_LAZY = {"SRNet", "build_model", "reparameterize"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from search_space import network

        return getattr(network, name)
    raise AttributeError(f"module 'search_space' has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS",
    "ATTENTIONS",
    "CELL_SLOTS",
    "CELL_TYPES",
    "CONV_OPS",
    "Attention",
    "CellGene",
    "Genotype",
    "GenotypeError",
    "GroupGene",
    "SRNet",
    "build_model",
    "reparameterize",
]
