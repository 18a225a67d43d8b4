"""How a DARTS search turns its trained supernet into one net (``search.select``).

``alpha`` takes every slot's largest architecture weight (the DARTS paper's rule). With a short
search on a CPU the weights stay near uniform (0.083-0.086 for 12 candidates after 300 steps)
and what moves them steadily is the hardware penalty, not the validation loss: the argmax then
walks to the cheapest op of every slot (issue 26: four ERB cells of ``conv1x1`` only).

``perturbation`` (Wang et al., "Rethinking Architecture Selection in Differentiable NAS", ICLR
2021) scores each candidate by what the trained supernet loses without it: the mean L1 loss on
a fixed set of selection batches (the same batches for every candidate, so the comparisons are
paired) with that candidate left out, less the loss with it. Slots are decided one after the
other, outermost first (each position's cell type, then that type's conv slots, attention and
activation): a decided slot computes its choice alone from then on (progressive
discretisation, without DARTS-PT's fine-tuning between decisions). Only the ``top_m``
candidates by architecture weight are scored (progressive shrinking of the candidate set).

With an elastic width (``space.widths``) both rules take the width of the largest weight
first: a perturbation would always keep the widest (a narrower mask only removes channels),
while the weights were trained against the latency penalty. The perturbation rule then
decides the other slots at that width and scores each width by the selection loss at it
(``-loss``, so that a narrower width's score lost is the loss it adds), for the budget fit.

Either rule then meets a hard latency budget (:func:`fit_budget`): while the table-predicted
latency of the chosen net is above the target, the slot swap that saves the most latency per
unit of score lost is made (a narrower width is one more swap, at that width's costs).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from searchers.differentiable.mixed import MixedOp
from searchers.differentiable.supernet import MixedCell, SuperNet

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Selection:
    """The choice per slot, and each scored candidate's score (higher: more important).

    ``margins`` (perturbation only): per slot with two or more scored candidates, the runner-up,
    the chosen candidate's margin over it and that margin's t statistic over the selection
    batches (the mean of the per-batch differences over their standard error; NaN with one
    batch): how far the decision stands above the batches' noise.
    """

    choice: dict[str, str] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    evaluations: int = 0
    margins: dict[str, dict[str, Any]] = field(default_factory=dict)

    def uncertain(self, t: float = 2.0) -> list[str]:
        """The slots whose decision's margin is under ``t`` standard errors."""
        return [slot for slot, m in self.margins.items() if not abs(m["t"]) >= t]


def describe(genotype: Any) -> str:
    """One line per net: ``erb(conv3x3,conv1x1;esa) | rfdb(...)``."""
    return " | ".join(f"{c.type}({','.join(c.ops)};{'+'.join(a.type for a in c.attentions)})"
                      for c in genotype.cells)


def fixed_batches(data: Any, n: int, batch_size: int, patch_size: int, seed: int,
                  device: torch.device) -> list[Batch]:
    """``n`` batches drawn once with their own seed: every candidate is scored on these."""
    from searchers.training.loop import sample_batch

    rng = np.random.default_rng(seed)
    return [sample_batch(data, batch_size, patch_size, rng, device) for _ in range(n)]


@torch.inference_mode()
def batch_losses(net: SuperNet, batches: list[Batch]) -> np.ndarray:
    """The L1 loss on each batch."""
    return np.array([float(F.l1_loss(net(lr), hr)) for lr, hr in batches])


def mean_loss(net: SuperNet, batches: list[Batch]) -> float:
    return float(np.mean(batch_losses(net, batches)))


def margin(per_batch: dict[str, np.ndarray], best: str) -> dict[str, Any]:
    """``best``'s margin over the runner-up (by mean), with the paired t over the batches."""
    runner_up = max((c for c in per_batch if c != best), key=lambda c: per_batch[c].mean())
    diff = per_batch[best] - per_batch[runner_up]
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else math.nan
    t = diff.mean() / se if se > 0 else (math.inf if diff.mean() > 0 else math.nan)
    return {"runner_up": runner_up, "margin": float(diff.mean()), "t": float(t)}


def _ops(net: SuperNet, slot: str) -> list[MixedOp]:
    """Every mixed op of ``slot`` (a cell's activations share one slot and one weight)."""
    return [op for op in net.mixed_ops() if op.slot == slot]


@contextmanager
def _set(ops: list[MixedOp], attr: str, value: int) -> Iterator[None]:
    for op in ops:
        setattr(op, attr, value)
    try:
        yield
    finally:
        for op in ops:
            setattr(op, attr, None)


def _slots_in_order(net: SuperNet, choice: dict[str, str]) -> Iterator[MixedOp]:
    """The undecided searched slots, outermost first; a cell's slots only for the cell type
    chosen at its position (computed lazily, so a position's type is decided first)."""
    for cell in net.cells:
        assert isinstance(cell, MixedCell)
        mixed = cell.mixed
        if len(mixed.candidates) > 1:
            yield mixed
        j = mixed.candidates.index(choice.get(mixed.slot, mixed.candidates[0]))
        seen: set[str] = set()
        for m in mixed.ops[j].modules():
            if isinstance(m, MixedOp) and len(m.candidates) > 1 and m.slot not in seen:
                seen.add(m.slot)
                yield m


def perturbation_select(net: SuperNet, batches: list[Batch], top_m: int = 4) -> Selection:
    """Decide every slot by perturbation (see the module docstring); the net is left as it
    was (no slot fixed or excluded) on return."""
    was_training = net.training
    net.eval()
    out = Selection()
    decided: list[MixedOp] = []
    try:
        gate = net.width_gate
        if gate is not None:
            chosen = int(gate.weights().detach().argmax())
            losses = {}
            for i, name in enumerate(gate.candidates):
                gate.fixed = i
                losses[name] = batch_losses(net, batches)
                out.evaluations += 1
            gate.fixed = chosen
            decided.append(gate)
            out.choice[gate.slot] = gate.candidates[chosen]
            out.scores[gate.slot] = {c: -float(v.mean()) for c, v in losses.items()}
        for op in _slots_in_order(net, out.choice):
            ops = _ops(net, op.slot)
            base = batch_losses(net, batches)
            out.evaluations += 1
            order = torch.argsort(op.weights().detach(), descending=True).tolist()
            per_batch = {}
            for i in order[:max(1, top_m)]:
                with _set(ops, "excluded", i):
                    per_batch[op.candidates[i]] = batch_losses(net, batches) - base
                out.evaluations += 1
            scores = {c: float(d.mean()) for c, d in per_batch.items()}
            best = max(scores, key=scores.__getitem__)
            out.choice[op.slot], out.scores[op.slot] = best, scores
            if len(per_batch) > 1:
                out.margins[op.slot] = margin(per_batch, best)
            for o in ops:
                o.fixed = o.candidates.index(best)
            decided += ops
    finally:
        for o in decided:
            o.fixed = None
        net.train(was_training)
    return out


def alpha_select(net: SuperNet) -> Selection:
    """Every slot's largest architecture weight (the weights are the scores)."""
    dists = net.slot_distributions()
    return Selection(choice={s: max(d, key=d.__getitem__) for s, d in dists.items()},
                     scores=dists)


def fit_budget(net: SuperNet, selection: Selection, latency_target_ms: float | None,
               ) -> tuple[dict[str, str], list[str]]:
    """The choice with the least score lost whose table-predicted latency meets the target.

    Greedy: while above the target, make the swap (one slot, one cheaper candidate) with the
    largest latency saved per unit of score lost; a candidate that was not scored counts as
    scoring below every scored one of its slot. Returns the choice and the swaps made (as
    ``slot: old -> new``). Without a target, or already under it, the choice is returned as is.
    """
    from searchers.differentiable.latency_table import predict_genotype

    choice = dict(selection.choice)
    swaps: list[str] = []
    if latency_target_ms is None:
        return choice, swaps

    def latency(c: dict[str, str]) -> float:
        return predict_genotype(net, net.derive(c))["latency_ms"]

    current = latency(choice)
    while current > latency_target_ms:
        best: tuple[float, str, str, float] | None = None
        for slot, chosen in choice.items():
            scores = selection.scores.get(slot, {})
            floor = min(scores.values(), default=0.0) - 1.0
            for alt in _ops(net, slot)[0].candidates:
                if alt == chosen:
                    continue
                lat = latency({**choice, slot: alt})
                saved = current - lat
                if saved <= 0:
                    continue
                lost = scores.get(chosen, 0.0) - scores.get(alt, floor)
                value = saved / max(lost, 1e-9)
                if best is None or value > best[0]:
                    best = (value, slot, alt, lat)
        if best is None:
            logger.warning("no swap lowers the predicted latency below %.2f ms (at %.2f ms)",
                           latency_target_ms, current)
            break
        _, slot, alt, current = best
        swaps.append(f"{slot}: {choice[slot]} -> {alt}")
        choice[slot] = alt
    return choice, swaps


def select_net(search: Any) -> Any:
    """The net a finished :class:`~searchers.differentiable.search.DartsSearch` hands over:
    every slot decided by ``search.select`` (perturbation or alpha), then fitted under the
    latency budget (``loss.mode=budget``); how each slot was chosen goes to ``selection.json``.
    Returns the genotype."""
    from searchers.differentiable.latency_table import predict_genotype

    sc, net = search.cfg.search, search.net
    start = time.perf_counter()
    if search.select_rule == "perturbation":
        batches = fixed_batches(search.val, sc.select_batches, search.cfg.data.batch_size,
                                search.patch_size, search.cfg.run.seed + 1, search.device)
        selection = perturbation_select(net, batches, sc.select_top_m)
    else:
        selection = alpha_select(net)
    penalty = search.architect.penalty
    target = penalty.latency_target_ms if penalty.mode == "budget" else None
    choice, swaps = fit_budget(net, selection, target)
    genotype = net.derive(choice)
    argmax = net.derive()
    seconds = time.perf_counter() - start
    search.folder.write_json(search.folder.selection, {
        "rule": search.select_rule, "top_m": sc.select_top_m, "batches": sc.select_batches,
        "choice": choice, "scores": selection.scores, "margins": selection.margins,
        "budget_swaps": swaps, "latency_target_ms": target,
        "evaluations": selection.evaluations, "seconds": seconds,
        "predicted": predict_genotype(net, genotype),
        "argmax_predicted": predict_genotype(net, argmax), "argmax_differs": argmax != genotype})
    logger.info("selected by %s in %.1f s (%d evaluations, %d budget swaps): %s",
                search.select_rule, seconds, selection.evaluations, len(swaps),
                describe(genotype))
    uncertain = selection.uncertain()
    if uncertain:
        logger.info("%d of %d decisions stand under 2 standard errors of the selection "
                    "batches' noise (%s): more batches (search.select_batches=%d now) would "
                    "settle them", len(uncertain), len(selection.margins), ", ".join(uncertain),
                    sc.select_batches)
    return genotype
