"""The paths of supernet training (:mod:`searchers.sharing.train`): a uniform random subnet
of an elastic space (:func:`sample_subnet`), and the sandwich rule's largest and smallest
(:func:`largest_subnet`, :func:`smallest_subnet`: the most and fewest parameters of each
candidate at the supernet's width; cell types ranked built with their costliest slots)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from search_space.cells import CELLS, DEFAULT_BUILDER
from search_space.genes import Attention, CellGene
from search_space.genotype import Genotype
from search_space.ops import ACTIVATION_OPS
from searchers.differentiable.elastic import check_widths
from searchers.differentiable.supernet import SupernetSpec

__all__ = ["largest_subnet", "sample_subnet", "smallest_subnet"]


def _genotype(spec: SupernetSpec, width: int, cells: list[CellGene]) -> Genotype:
    return Genotype(scale=spec.scale, width=width, cells=tuple(cells), fusion=spec.fusion,
                    data_range=spec.data_range)


def _cell(spec: SupernetSpec, cell_type: str, ops: Sequence[str], attention: str,
          act: str) -> CellGene:
    return replace(spec.template_gene(cell_type), ops=tuple(ops),
                   attention=Attention(attention), act=act)


def sample_subnet(spec: SupernetSpec, widths: Sequence[int], cells_min: int,
                  rng: np.random.Generator) -> Genotype:
    """One subnet drawn uniformly: the width from ``widths`` (each ``<= spec.width``), the
    depth from ``cells_min..spec.num_cells``, and per cell its type, a conv op per slot, its
    attention and its activation, each uniform over the candidates."""
    check_widths(widths, spec.width, "widths")
    if not 1 <= cells_min <= spec.num_cells:
        raise ValueError(f"cells_min: got {cells_min}; give 1 to {spec.num_cells}")

    def pick(options: Sequence[Any]) -> Any:
        return options[int(rng.integers(len(options)))]

    width = int(pick(list(widths)))
    n = int(rng.integers(cells_min, spec.num_cells + 1))
    cells = []
    for _ in range(n):
        t = str(pick(spec.cell_types))
        slots = len(spec.template_gene(t).ops)
        ops = [str(pick(spec.conv_candidates)) for _ in range(slots)]
        cells.append(_cell(spec, t, ops, str(pick(spec.attention_candidates)),
                           str(pick(spec.act_candidates))))
    return _genotype(spec, width, cells)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@lru_cache(maxsize=32)
def _ranked(spec: SupernetSpec) -> dict[str, tuple[str, ...]]:
    """Every candidate list sorted by parameter count at the spec's width, fewest first (ties:
    the order of the spec). Cell types are ranked built with their costliest slots."""
    w = spec.width
    with torch.random.fork_rng(devices=[]):
        conv = sorted(spec.conv_candidates,
                      key=lambda c: _params(DEFAULT_BUILDER.conv("rank", c, w, w)))
        att = sorted(spec.attention_candidates, key=lambda a: _params(
            DEFAULT_BUILDER.attention("rank", Attention(a), w, spec.act_candidates[0])))
        act = sorted(spec.act_candidates, key=lambda a: _params(ACTIVATION_OPS[a](w)))

        def cell_params(t: str) -> int:
            gene = _cell(spec, t, [conv[-1]] * len(spec.template_gene(t).ops), att[-1], act[-1])
            return _params(CELLS[t](gene, w))

        types = sorted(spec.cell_types, key=cell_params)
    return {"conv": tuple(conv), "attention": tuple(att), "act": tuple(act),
            "type": tuple(types)}


def _extreme(spec: SupernetSpec, width: int, cells: int, end: int) -> Genotype:
    r = _ranked(spec)
    t = r["type"][end]
    gene = _cell(spec, t, [r["conv"][end]] * len(spec.template_gene(t).ops),
                 r["attention"][end], r["act"][end])
    return _genotype(spec, width, [gene] * cells)


def largest_subnet(spec: SupernetSpec) -> Genotype:
    """The sandwich rule's largest path: the spec's width and cells, and in every slot the
    candidate with the most parameters at that width (a cell type ranked with its costliest
    slots; ties: the last of the spec's order among the tied, as a stable sort leaves them)."""
    return _extreme(spec, spec.width, spec.num_cells, -1)


def smallest_subnet(spec: SupernetSpec, widths: Sequence[int], cells_min: int) -> Genotype:
    """The sandwich rule's smallest path: the least of ``widths``, ``cells_min`` cells, and in
    every slot the candidate with the fewest parameters (ties: the first of the spec's order)."""
    check_widths(widths, spec.width, "widths")
    return _extreme(spec, min(widths), cells_min, 0)
