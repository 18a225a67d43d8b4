"""Elastic width and depth on the one supernet: its subnets, for weight sharing.

The :class:`~searchers.differentiable.supernet.SuperNet` of a :class:`SupernetSpec` holds every
candidate of every slot at the spec's ``width`` and ``num_cells``, which are the maxima here. A
*subnet* is the :class:`~search_space.network.SRNet` of a genotype that lies inside the spec
(:func:`check_subnet`): any width up to ``width``, the first ``n <= num_cells`` cells, and per
cell a type, a conv op per slot, an attention and an activation among the candidates. Its
weights are slices of the supernet's (once-for-all's channel slicing):

* every tensor of the subnet is the *leading* slice of the supernet's tensor at the same place
  (the first ``w`` channels in every dimension that is smaller), a view;
* depth: the subnet's cell ``i`` is the supernet's cell ``i`` (so the first ``n`` cells);
* the network fusion's 1x1 conv takes one block of ``width`` input channels per cell; a subnet
  takes the first ``w`` channels of each of its ``n`` cells' blocks (a differentiable gather,
  not a view), so a cell's features meet the same fusion weights at every width and depth.
  Inside a cell a concatenation (RFDB's and IMDB's distilled features) takes the leading slice
  of the concatenation, as every other tensor does.

:func:`subnet_names` is the one name mapping (a mixed op maps to its chosen candidate, a mixed
cell to the chosen cell type); :func:`subnet_parameters` slices along it, so
``torch.func.functional_call(model, subnet_parameters(net, g), (x,))`` trains the supernet's
shared weights, and :func:`extract_subnet` copies the slices into a standalone net (the trials'
``proxy.kind: supernet``; :func:`load_subnet_weights` is the DARTS inheritance of
``proxy.supernet``). :mod:`searchers.differentiable.paths` draws the paths of supernet
training (``searchers/train_supernet.py``).

**What of the trials' space it covers** (:class:`searchers.trials.sampled_space.SampleSpace`,
``configs/spaces/cpu.yaml``): ``widths`` (any width up to the spec's ``width``), ``num_cells``
(``cells_min`` up to the spec's ``num_cells``), and per cell ``cell_types``,
``conv_candidates`` (one per slot), ``attention_candidates`` (single attentions; no ``+``
sequences) and ``act_candidates`` (the supernet samples one per cell, the trials one per net:
a subset). ``data_ranges`` and ``input_scales`` are free: they are interfaces of the deployed
net only, the trained form is the same. Everything else is fixed at the spec's template values:
``fusion`` (the spec's), ``fusion_taps: all``, ``fusion_acts: lrelu0.05``, ``erb_slots`` (2),
``inners`` and ``attention_channels`` (the defaults, e.g. RFDB's ``width // 2``, ESA's
``width // 4``; an explicit value equal to the default at the subnet's width is accepted),
``hfab_blocks: 1``, ``hfab_ops: conv3x3``, ``hfab_bn: false``, ``residuals: auto``,
``group_sizes: 0``, ``long_skip: true``, ``input_norms: none``, ``output_mean: false``,
``head_ops``/``lr_conv_ops: conv3x3``, ``weight_norm: false``, ``tails: conv3x3``,
``tail_scales: false``, ``input_skips: none``, ``bias: true``.

Of the yardstick (:data:`search_space.zoo.YARDSTICK`) ``imdn_ntire`` (a supernet of width 64,
8 cells, ``fusion: false``, ``imdb`` cells) and ``rfdn_aim2020`` (width 50, 4 cells,
``fusion: true``, ``rfdb`` cells, ``esa``) are subnets of a supernet whose frame fits them; no
one supernet holds both (``fusion`` differs). ``rlfn_ntire`` is not (its RLFB mid width 48
differs from the template's ``width``), nor ``fmen_s`` (one-slot ERB cells, HFAB with two
blocks), nor ``span_ntire2024`` (SPAN's fusion taps, no long skip, an input mean).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from search_space.checks import GenotypeError
from search_space.genes import Attention, CellGene
from search_space.genotype import Genotype
from search_space.network import SRNet
from searchers.differentiable.mixed import MixedOp
from searchers.differentiable.supernet import MixedCell, SuperNet, SupernetSpec

__all__ = [
    "ElasticSpace",
    "SubnetError",
    "check_subnet",
    "extract_subnet",
    "load_subnet_weights",
    "subnet_names",
    "subnet_parameters",
    "subnet_structure",
]


class SubnetError(GenotypeError):
    """A genotype that is no subnet of the supernet; the message names the first field outside,
    its value and the fix."""


@dataclass(frozen=True)
class ElasticSpace:
    """What supernet training samples, and what a trial needs to rebuild the supernet
    (``supernet.json`` of a ``train_supernet`` run).

    Args:
        spec: the supernet (its ``width`` and ``num_cells`` are the maxima).
        widths: the widths training samples (each ``<= spec.width``).
        cells_min: the fewest cells training samples (``<= spec.num_cells``).
    """

    spec: SupernetSpec
    widths: tuple[int, ...]
    cells_min: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        check_widths(self.widths, self.spec.width)
        if not 1 <= self.cells_min <= self.spec.num_cells:
            raise ValueError(f"cells_min: got {self.cells_min}; give 1 to num_cells "
                             f"({self.spec.num_cells})")

    def to_dict(self) -> dict[str, Any]:
        spec = {f.name: getattr(self.spec, f.name) for f in fields(self.spec)
                if not f.name.startswith("_")}
        spec["block_residual"] = [list(p) for p in self.spec.block_residual]
        spec = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()}
        return {"spec": spec, "widths": list(self.widths), "cells_min": self.cells_min}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ElasticSpace:
        try:
            spec = dict(data["spec"])
            spec["block_residual"] = tuple(tuple(p) for p in spec.get("block_residual", ()))
            spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
            return cls(SupernetSpec(**spec), tuple(data["widths"]), int(data["cells_min"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"supernet description: {exc!r}; expected keys spec, widths, "
                             "cells_min as train_supernet writes them") from exc


def check_widths(widths: Sequence[int], width: int, where: str = "space.widths") -> None:
    """Widths to sample: a non-empty list of distinct integers in ``4..width``."""
    bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, int) or not
           4 <= w <= width]
    if not widths or bad or len(set(widths)) != len(widths):
        raise ValueError(f"{where}: got {list(widths)}; give distinct widths from 4 to the "
                         f"supernet's width {width}, e.g. [{max(4, width // 2)}, {width}]")


# --------------------------------------------------------------------------------------------
# Which genotypes are subnets
# --------------------------------------------------------------------------------------------

_FREE_FIELDS = ("scale", "width", "cells", "data_range", "input_scale")
"""Genotype fields not compared with the template frame: the elastic ones and the deployed-only
interfaces (the trained form is the same whatever they say)."""


def _refuse(where: str, got: Any, allowed: str, fix: str) -> SubnetError:
    return SubnetError(f"{where}: got {got!r}; the supernet allows {allowed}. {fix}")


def check_subnet(spec: SupernetSpec, genotype: Genotype) -> None:
    """Refuse a genotype that is no subnet of ``spec``'s supernet.

    Raises:
        SubnetError: naming the first field outside (scale, a frame field, width above the
            maximum, more cells, a cell type, op, attention or activation not among the
            candidates, an inner width, residual or slot count other than the template's),
            with the value and the fix.
    """
    g = genotype
    if g.scale != spec.scale:
        raise _refuse("genotype.scale", g.scale, f"x{spec.scale}",
                      "Sample at the supernet's scale or train one at this scale.")
    template = spec.template_genotype()
    for f in fields(Genotype):
        if f.name in _FREE_FIELDS:
            continue
        ours, theirs = getattr(g, f.name), getattr(template, f.name)
        if f.name == "fusion_taps" and ours is not None and ours == tuple(
                f"cells.{i}" for i in range(g.num_cells)):
            ours = None  # every cell output, spelt out
        if ours != theirs:
            raise _refuse(f"genotype.{f.name}", ours, f"only {theirs!r} (its frame)",
                          f"Set {f.name} to {theirs!r}, or train a supernet with that frame.")
    if g.width > spec.width:
        raise _refuse("genotype.width", g.width, f"at most {spec.width}",
                      f"Sample widths <= {spec.width}, or train a wider supernet "
                      f"(space.width={g.width}).")
    if g.num_cells > spec.num_cells:
        raise _refuse("genotype.cells", f"{g.num_cells} cells", f"at most {spec.num_cells}",
                      f"Sample at most {spec.num_cells} cells, or train a deeper supernet "
                      f"(space.num_cells={g.num_cells}).")
    for i, cell in enumerate(g.cells):
        _check_cell(spec, cell, g.width, f"genotype.cells[{i}]")


def _check_cell(spec: SupernetSpec, cell: CellGene, width: int, where: str) -> None:
    def among(field: str, value: str, candidates: tuple[str, ...], key: str) -> None:
        if value not in candidates:
            raise _refuse(f"{where}.{field}", value, f"one of {list(candidates)}",
                          f"Add it to space.{key} and train the supernet again, or sample "
                          "among those.")

    among("type", cell.type, spec.cell_types, "cell_types")
    base = spec.template_gene(cell.type)
    if len(cell.ops) != len(base.ops):
        raise _refuse(f"{where}.ops", list(cell.ops), f"{len(base.ops)} slots in a "
                      f"'{cell.type}' cell", f"Give {len(base.ops)} ops (the template's slots).")
    for j, op in enumerate(cell.ops):
        among(f"ops[{j}]", op, spec.conv_candidates, "conv_candidates")
    if isinstance(cell.attention, tuple):
        raise _refuse(f"{where}.attention", [a.type for a in cell.attention],
                      "a single attention", "Sequences of gates are not supernet slots.")
    att = cell.attention
    among("attention.type", att.type, spec.attention_candidates, "attention_candidates")
    plain = Attention(att.type)
    if (att.hidden(width), att.blocks, att.op, att.bn) != (
            plain.hidden(width), plain.blocks, plain.op, plain.bn):
        raise _refuse(f"{where}.attention", att.to_dict(), f"the default {plain.to_dict()} "
                      f"(hidden width {plain.hidden(width)} at width {width})",
                      "Set attention_channels=[null] (and HFAB's defaults) in the space.")
    among("act", cell.act, spec.act_candidates, "act_candidates")
    if cell.inner_width(width) != base.inner_width(width):
        raise _refuse(f"{where}.inner", cell.inner, f"the default inner width "
                      f"{base.inner_width(width)} at width {width}",
                      "Set inners=[null] in the space.")
    residuals = (cell.shallow_residual, cell.block_residual)
    if residuals != (base.shallow_residual, base.block_residual):
        raise _refuse(f"{where}.(shallow_residual, block_residual)", residuals,
                      f"the template's {(base.shallow_residual, base.block_residual)}",
                      "Set residuals=[auto] in the space.")


# --------------------------------------------------------------------------------------------
# The one name mapping, and the slices
# --------------------------------------------------------------------------------------------


def _choice(spec: SupernetSpec, genotype: Genotype) -> dict[str, str]:
    """Slot name -> chosen candidate, as the supernet's mixed ops name their slots."""
    choice: dict[str, str] = {}
    for i, cell in enumerate(genotype.cells):
        p = spec.slot_prefix(i, cell.type)
        choice[f"cells.{i}.type"] = cell.type
        choice.update({f"{p}conv{j}": op for j, op in enumerate(cell.ops)})
        choice[f"{p}attention"] = cell.single_attention(f"cells[{i}]").type
        choice[f"{p}act"] = cell.act
    return choice


_CACHE_SIZE = 64
_STRUCTURES: OrderedDict[tuple[Any, ...], tuple[SRNet, dict[str, str]]] = OrderedDict()


def _cached(net: SuperNet, genotype: Genotype) -> tuple[SRNet, dict[str, str]]:
    """The genotype's net (built without touching the global RNG, on the supernet's device)
    and its name mapping, kept for the last :data:`_CACHE_SIZE` genotypes."""
    device = next(net.parameters()).device
    key = (net.spec, genotype, str(device))
    hit = _STRUCTURES.get(key)
    if hit is not None:
        _STRUCTURES.move_to_end(key)
        return hit
    check_subnet(net.spec, genotype)
    with torch.random.fork_rng(devices=[]):
        model = SRNet(genotype).to(device)
    names = _map_names(net, model, genotype)
    _STRUCTURES[key] = (model, names)
    if len(_STRUCTURES) > _CACHE_SIZE:
        _STRUCTURES.popitem(last=False)
    return model, names


def _map_names(net: SuperNet, model: nn.Module, genotype: Genotype) -> dict[str, str]:
    choice = _choice(net.spec, genotype)
    out: dict[str, str] = {}

    def walk(dst: nn.Module, src: nn.Module, dp: str, sp: str) -> None:
        if isinstance(src, MixedCell):
            src, sp = src.mixed, f"{sp}mixed."
        if isinstance(src, MixedOp):
            pick = choice.get(src.slot)
            if pick not in src.candidates:
                raise SubnetError(f"{src.slot}: got {pick!r}; the supernet's candidates are "
                                  f"{list(src.candidates)}. Sample among those.")
            k = src.candidates.index(pick)
            walk(dst, src.ops[k], dp, f"{sp}ops.{k}.")
            return
        own = {n for n, _ in src.named_parameters(recurse=False)}
        own |= {n for n, _ in src.named_buffers(recurse=False)}
        for n, _ in [*dst.named_parameters(recurse=False), *dst.named_buffers(recurse=False)]:
            if n in own:
                out[dp + n] = sp + n
        for name, child in dst.named_children():
            other = src._modules.get(name)
            if other is None:
                raise SubnetError(f"{dp}{name}: the supernet has no such module at {sp}{name}; "
                                  "the genotype's structure differs from the supernet's")
            walk(child, other, f"{dp}{name}.", f"{sp}{name}.")

    walk(model, net, "", "")
    missing = [n for n, _ in model.named_parameters() if n not in out]
    if missing:
        raise SubnetError(f"parameters {missing[:3]} of the genotype's net have no place in the "
                          "supernet; the genotype's structure differs from the supernet's")
    return out


def subnet_names(net: SuperNet, genotype: Genotype) -> dict[str, str]:
    """The subnet's parameter and buffer names -> the supernet's (the one mapping: a mixed op
    maps to its chosen candidate, a mixed cell to the chosen cell type, cell ``i`` to cell
    ``i``). The net's own bookkeeping buffers the supernet has not (``value_range``,
    ``input_scale``) are left out. Cached per genotype."""
    return dict(_cached(net, genotype)[1])


def subnet_structure(net: SuperNet, genotype: Genotype) -> SRNet:
    """The cached net of ``genotype`` whose own weights are never trained: the module to pass to
    ``torch.func.functional_call`` with :func:`subnet_parameters` (do not modify it)."""
    return _cached(net, genotype)[0]


def _slice(name: str, src: torch.Tensor, shape: torch.Size, genotype: Genotype,
           spec: SupernetSpec) -> torch.Tensor:
    if src.shape == shape:
        return src
    if len(shape) != src.dim() or any(d > s for d, s in zip(shape, src.shape, strict=True)):
        raise SubnetError(f"{name}: the subnet's shape {tuple(shape)} does not fit in the "
                          f"supernet's {tuple(src.shape)}")
    if name == "fusion.0.weight" and src.dim() == 4:  # one input block per cell: see above
        w_out, n, w, big = shape[0], genotype.num_cells, genotype.width, spec.width
        blocks = src.view(src.shape[0], spec.num_cells, big, *src.shape[2:])
        return blocks[:w_out, :n, :w].reshape(shape)
    return src[tuple(slice(0, d) for d in shape)]


def subnet_parameters(net: SuperNet, genotype: Genotype) -> dict[str, torch.Tensor]:
    """The subnet's parameters and buffers by name, as slices of the supernet's tensors
    (views, differentiable; the fusion's gather: see the module docstring)::

        torch.func.functional_call(build_model(g), subnet_parameters(net, g), (x,))

    computes the subnet on ``x`` with the supernet's shared weights, and its backward pass
    reaches them. In train mode batch norms update the supernet's running statistics slices.

    Raises:
        SubnetError: the genotype is no subnet of ``net`` (:func:`check_subnet`).
    """
    model, names = _cached(net, genotype)
    theirs: dict[str, torch.Tensor] = dict(net.named_parameters(remove_duplicate=False))
    theirs.update(dict(net.named_buffers(remove_duplicate=False)))
    ours: dict[str, torch.Tensor] = dict(model.named_parameters())
    ours.update(dict(model.named_buffers()))
    return {d: _slice(d, theirs[s], ours[d].shape, genotype, net.spec)
            for d, s in names.items()}


@torch.no_grad()
def load_subnet_weights(model: SRNet, net: SuperNet) -> SRNet:
    """Copy the supernet's slices into ``model`` (the net of a genotype, ``model.genotype``), in
    place; returns it. Its own bookkeeping buffers are left as they are."""
    genotype = model.genotype
    params = subnet_parameters(net, genotype)
    own: dict[str, torch.Tensor] = dict(model.named_parameters())
    own.update(dict(model.named_buffers()))
    for name, value in params.items():
        own[name].copy_(value)
    return model


def extract_subnet(net: SuperNet, genotype: Genotype) -> SRNet:
    """The standalone net of ``genotype`` with the supernet's slices copied in (detached), on
    the supernet's device, in train mode like a freshly built net."""
    model = SRNet(genotype).to(next(net.parameters()).device)
    return load_subnet_weights(model, net)
