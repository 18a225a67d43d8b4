"""Trials that take their weights from a supernet instead of training from scratch:
``proxy.kind: supernet`` (:func:`shared_subnet`, a subnet's slices of a weight-sharing
supernet) and ``proxy.supernet`` with ``kind: train`` (:func:`inherit_supernet_weights`, a
DARTS supernet at its full width and depth), both along the one subnet mapping of
:mod:`searchers.differentiable.elastic`."""

from __future__ import annotations

from pathlib import Path

import torch

from search_space.genotype import Genotype


def shared_subnet(genotype: Genotype, run_dir: Path) -> torch.nn.Module:
    """``proxy.kind: supernet``: the net of ``genotype`` with its slices of the supernet in
    ``run_dir`` (a ``train_supernet`` run, or a DARTS search), loaded once per process.

    Raises:
        SubnetError: the genotype lies outside the supernet (the field, value and fix).
    """
    from searchers.differentiable.elastic import extract_subnet
    from searchers.sharing.load import load_supernet

    return extract_subnet(load_supernet(run_dir).net, genotype)


def inherit_supernet_weights(model: torch.nn.Module, run_dir: Path) -> None:
    """Copy the weights of the chosen candidates from a DARTS run's supernet checkpoint (or a
    supernet training's), along the one subnet mapping
    (:func:`searchers.differentiable.elastic.load_subnet_weights`).

    The genotype must lie in the supernet's space at its full width and depth (same scale,
    width, cell count and candidates); otherwise a ValueError says which field differs.
    """
    from search_space.network import SRNet
    from searchers.differentiable.elastic import load_subnet_weights
    from searchers.sharing.load import load_supernet

    shared = load_supernet(run_dir)
    spec = shared.space.spec
    g: Genotype = model.genotype  # type: ignore[assignment]
    for field_name, ours, theirs in (("scale", g.scale, spec.scale),
                                     ("width", g.width, spec.width),
                                     ("num_cells", g.num_cells, spec.num_cells),
                                     ("fusion", g.fusion, spec.fusion)):
        if ours != theirs:
            raise ValueError(f"proxy.supernet: the genotype's {field_name} is {ours} but the "
                             f"supernet's is {theirs}; sample within the supernet's space")
    assert isinstance(model, SRNet)
    load_subnet_weights(model, shared.net)
