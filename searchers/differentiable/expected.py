"""What a DARTS supernet is expected to cost under its mixing weights: latency, peak memory and
parameters, differentiable in the architecture weights (the hardware penalty's input), each
width's costs mixed by the width's probability when the width is searched."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from searchers.differentiable.mixed import MixedOp, normalised
from searchers.differentiable.supernet import MixedCell, SuperNet

__all__ = ["expected_cost", "expected_peak_memory"]


def expected_cost(net: SuperNet) -> dict[str, torch.Tensor]:
    """Expected latency (ms), peak memory (MiB) and parameters under the mixing weights.

    Latency and parameters add up over the net: the fixed rest, each cell type's fixed
    part, and every slot's ``weights @ table``. Peak memory does not add up: a derived
    net's peak is the largest of its parts (as
    :func:`searchers.differentiable.latency_table.predict_genotype`
    predicts it), so the memory term is the exact expectation of that maximum over the
    product distribution of the slots' choices (:func:`expected_peak_memory`). With an
    elastic width each width's expectation (its own costs, the same weights) is weighted
    by the width's probability: the width is one more independent choice. All three are
    differentiable in the architecture weights.
    """
    if net.width_gate is None:
        return _expected_cost_at(net, net)
    p = normalised(net.width_gate.weights())
    parts = [_expected_cost_at(net, net.cost_net(w)) for w in net.spec.widths]
    return {k: sum((p[j] * part[k] for j, part in enumerate(parts)),
                   torch.zeros((), device=net.device)) for k in parts[0]}


def _expected_cost_at(net: SuperNet, src: SuperNet) -> dict[str, torch.Tensor]:
    """:func:`expected_cost` with ``net``'s weights and ``src``'s costs."""
    lat0, _, par0 = src.base_cost
    device = net.device
    lat = torch.tensor(lat0, device=device)
    par = torch.tensor(par0, device=device)
    for cell, cost_cell in zip(net.cells, src.cells, strict=True):
        mixed, costs = cast(MixedCell, cell).mixed, cast(MixedCell, cost_cell).mixed
        w = mixed.weights()
        for j, (sub, cost_sub) in enumerate(zip(mixed.ops, costs.ops, strict=True)):
            slots = _slot_pairs(sub, cost_sub)
            lat = lat + w[j] * (costs.latency_ms[j].to(device) + sum(
                (m.expected(c.latency_ms.to(device)) for m, c in slots),
                torch.zeros((), device=device)))
            par = par + w[j] * (costs.params[j].to(device) + sum(
                (m.expected(c.params.to(device)) for m, c in slots),
                torch.zeros((), device=device)))
    return {"latency_ms": lat, "memory_mib": expected_peak_memory(net, src), "params": par}


def expected_peak_memory(net: SuperNet, src: SuperNet) -> torch.Tensor:
    """``E[max(parts' peak memory)]`` over the slots' choices, exactly (the costs of
    ``src``: ``net`` itself, or its twin at another width; the weights of ``net``).

    Each choice is an independent categorical (the normalised mixing weights; slots that
    share one ``alpha``, like a cell's activations, are one choice). With ``F(t)`` the
    probability that every part stays at or under ``t``,

    ``F(t) = [base <= t] * prod_cells sum_types w_type [fixed_type <= t]
    * prod_choices_of_type sum_c p_c [max_slots mem_slot[c] <= t]``

    and ``E[max] = sum_k v_k (F(v_k) - F(v_{k-1}))`` over the sorted distinct values
    ``v_k`` the peak can take. The gradient reaches every weight whose candidates differ in
    memory around the peak, base term included.
    """
    _, mem0, _ = src.base_cost
    device = net.device
    base = torch.tensor(float(mem0), device=device)
    values = [base.view(1)]
    cell_parts: list[list[tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor,
                                                                        torch.Tensor]]]]] = []
    for cell, cost_cell in zip(net.cells, src.cells, strict=True):
        mixed, costs = cast(MixedCell, cell).mixed, cast(MixedCell, cost_cell).mixed
        p_type = normalised(mixed.weights())
        per_type = []
        for j, (sub, cost_sub) in enumerate(zip(mixed.ops, costs.ops, strict=True)):
            groups: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
            for m, c in _slot_pairs(sub, cost_sub):
                groups.setdefault(id(m.alpha), (normalised(m.weights()), []))[1].append(
                    c.memory_mib.to(device))
            choices = [(p, torch.stack(mems).amax(dim=0)) for p, mems in groups.values()]
            fixed = costs.memory_mib[j].to(device)
            values += [fixed.view(1), *(v for _, v in choices)]
            per_type.append((p_type[j], fixed, choices))
        cell_parts.append(per_type)
    t = torch.unique(torch.cat(values).detach())  # sorted
    cdf = (base <= t).to(t.dtype)
    for per_type in cell_parts:
        cell_cdf = torch.zeros_like(t)
        for p, fixed, choices in per_type:
            term = p * (fixed <= t).to(t.dtype)
            for q, v in choices:
                term = term * (q[:, None] * (v[:, None] <= t[None, :])).sum(dim=0)
            cell_cdf = cell_cdf + term
        cdf = cdf * cell_cdf
    pmf = torch.diff(cdf, prepend=torch.zeros(1, device=device, dtype=cdf.dtype))
    return (pmf * t).sum()


def _slot_pairs(sub: nn.Module, cost_sub: nn.Module) -> list[tuple[MixedOp, MixedOp]]:
    """The mixed ops of a cell type's module, each with its twin in ``cost_sub`` (the same
    module at another width; the same module when there is no twin)."""
    own = [m for m in sub.modules() if isinstance(m, MixedOp)]
    if cost_sub is sub:
        return [(m, m) for m in own]
    costs = [m for m in cost_sub.modules() if isinstance(m, MixedOp)]
    return list(zip(own, costs, strict=True))
