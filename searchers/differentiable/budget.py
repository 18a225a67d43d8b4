"""What a DARTS search may spend: the budget-mode targets relative to a zoo net
(:func:`budget_targets`, measured once per hardware table) and the CPU-seconds the selection
after the loop is expected to cost (:func:`selection_reserve`, which ``search.cpu_seconds``
keeps back)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from search_space.files import atomic_write_text
from searchers.differentiable.config import DartsConfig, SearchConfig

logger = logging.getLogger("searchers.differentiable.search")

__all__ = ["budget_targets", "selection_reserve"]


def budget_targets(cfg: DartsConfig, table: Any, run_dir: Path) -> dict[str, float]:
    """Absolute budget-mode targets from ``loss.reference`` x ``loss.latency_x`` /
    ``memory_x``: the reference measured whole, in its deployed form, at the table's
    settings and cached with the hardware table (runs sharing a cached table share their
    targets); ``budget.json`` in the run folder holds them and a resumed run reads them
    back."""
    loss, hw = cfg.loss, cfg.hardware
    if loss.reference is None or (loss.latency_x is None and loss.memory_x is None):
        return {}
    path = run_dir / "budget.json"
    if path.exists():
        saved = json.loads(path.read_text())
    else:
        from search_space.zoo import ZOO, at_scale
        from searchers.differentiable.latency_table import measure_whole_net

        ref = at_scale(ZOO[loss.reference], cfg.space.scale)
        entry = measure_whole_net(table, loss.reference, ref)  # deployed, cached
        saved = {"reference": loss.reference, "size": hw.lr_size,
                 "reference_latency_ms": entry.latency_ms,
                 "reference_memory_mib": entry.memory_mib}
        if loss.latency_x is not None:
            saved["latency_target_ms"] = loss.latency_x * saved["reference_latency_ms"]
        if loss.memory_x is not None:
            saved["memory_target_mib"] = loss.memory_x * saved["reference_memory_mib"]
        atomic_write_text(path, json.dumps(saved, indent=2) + "\n")
    figures = ", ".join(f"{k}={v:.3f}" for k, v in saved.items()
                        if k.endswith(("_ms", "_mib")))
    logger.info("budget relative to %s: %s", loss.reference, figures)
    return {k: saved[k] for k in ("latency_target_ms", "memory_target_mib") if k in saved}


def selection_reserve(net: Any, sc: SearchConfig, rule: str, step_s: float) -> float:
    """The seconds the selection after the loop is expected to cost: the perturbation
    rule evaluates each searched slot of the cell type it keeps at a position (counted
    for the type with most) once as it is and once without each of its ``select_top_m``
    heaviest candidates, each evaluation ``select_batches`` forwards, about a sixth of a
    search step (a weight step and an architecture step, each a forward and a backward).
    The alpha rule costs nothing."""
    from searchers.differentiable.mixed import MixedOp
    from searchers.differentiable.supernet import MixedCell

    if rule != "perturbation":
        return 0.0

    def cost(m: MixedOp) -> int:
        return 1 + min(sc.select_top_m, len(m.candidates))

    evaluations = len(net.spec.widths) if net.spec.elastic else 0
    for cell in net.cells:
        assert isinstance(cell, MixedCell)
        mixed = cell.mixed
        evaluations += cost(mixed) if len(mixed.candidates) > 1 else 0
        per_type = []
        for op in mixed.ops:
            slots = {m.slot: m for m in op.modules()
                     if isinstance(m, MixedOp) and len(m.candidates) > 1}
            per_type.append(sum(cost(m) for m in slots.values()))
        evaluations += max(per_type, default=0)
    return evaluations * sc.select_batches * step_s / 6
