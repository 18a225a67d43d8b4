"""The end of a DARTS search: the derived net profiled next to the zoo in the same run, and its
estimated quality on the selection split (:func:`write_profile`, :func:`quality_estimates`;
``search`` is the run's :class:`~searchers.differentiable.search.DartsSearch`)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any

from search_space.files import atomic_write_text

logger = logging.getLogger("searchers.differentiable.search")


def write_profile(search: Any, genotype: Any) -> None:
    """The derived net next to the zoo, measured in the same run (``profile.md``,
    ``profile.json``), with the quality estimates of :func:`quality_estimates`."""
    from proxies.measure.profile_rows import machine_info, profile_genotypes
    from proxies.profile.table import format_table, ratio_note
    from search_space.zoo import AIM_NET, REFERENCE_NET, ZOO, at_scale

    p = search.cfg.profile
    settings = p.settings(str(search.device), search.cfg.hardware.backend)
    scale = genotype.scale
    nets = [("derived (darts)", genotype)]
    nets += [(name, at_scale(ZOO[name], scale)) for name in p.yardstick]
    rows = profile_genotypes(nets, settings, at_scale(ZOO[REFERENCE_NET], scale),
                             at_scale(ZOO[AIM_NET], scale))
    table = format_table(rows, markdown=True)
    info = machine_info(search.device)
    footer = (f"\n\n{info['date']}, torch {info['torch']}, {info.get('gpu', info['cpu'])}, "
              f"device {info['device']}, threads {p.threads}, LR {p.lr_size}x{p.lr_size}, "
              f"x{scale}; complexity at 256x256; {ratio_note(REFERENCE_NET)}.\n")
    budget, over = budget_at_profile_size(search.cfg, rows)
    if over:
        logger.warning(budget.strip().replace("**", ""))
    estimates = quality_estimates(search, nets)
    quality = _estimate_table(estimates, p.estimate_steps, search.cfg.data.val)
    atomic_write_text(search.run_dir / "profile.md", table + footer + budget + quality)
    atomic_write_text(search.run_dir / "profile.json", json.dumps(
        {"machine": info, "settings": asdict(settings), "reference": REFERENCE_NET,
         "aim": AIM_NET, "rows": [r.to_dict() for r in rows],
         "quality_estimates": estimates, "estimate_steps": p.estimate_steps}, indent=2))
    print(table + footer + budget + quality)


def budget_at_profile_size(cfg: Any, rows: list[Any]) -> tuple[str, list[str]]:
    """Whether the derived net (``rows[0]``) keeps the budget's bounds relative to
    ``loss.reference`` at the profile's size: a Markdown line (empty without a relative budget
    or the reference's row) and the bounds it exceeds. The search bounds costs at the hardware
    table's ``lr_size``; activations grow with the pixels and weights do not, so a net within
    a bound there can exceed it at another size."""
    from search_space.zoo import REFERENCE_NET

    loss, lr, table_lr = cfg.loss, cfg.profile.lr_size, cfg.hardware.lr_size
    if loss.mode != "budget" or loss.reference is None:
        return "", []
    own = rows[0]
    ref = next((r for r in rows[1:] if r.name == loss.reference), None)
    if ref is None:
        return "", []
    parts: list[str] = []
    over: list[str] = []
    for what, bound, mine, theirs in (
            ("latency", loss.latency_x, own.latency_ms, ref.latency_ms),
            ("peak memory", loss.memory_x, own.peak_memory_mib, ref.peak_memory_mib)):
        if bound is None or not mine or not theirs:
            continue
        ratio = mine / theirs
        if what == "latency" and loss.reference == REFERENCE_NET and own.latency_ratio:
            ratio = own.latency_ratio  # timed interleaved with it: the table's figure
        parts.append(f"{what} {ratio:.2f}x (bound {bound:.2f}x)")
        if ratio > bound:
            over.append(what)
    if not parts:
        return "", []
    line = (f"\nBudget at the profile's size (LR {lr}x{lr}), relative to {loss.reference}: "
            + ", ".join(parts))
    if not over:
        return line + ": within it.\n", over
    return (line + f": **over the {' and the '.join(over)} bound** here. The search bounds "
            f"costs at the hardware table's size (hardware.lr_size={table_lr}); activations "
            "grow with the pixels and weights do not, so a net within a bound there can exceed "
            f"it at {lr} px. To bound at this size, search with hardware.lr_size={lr}.\n", over)


def quality_estimates(search: Any, nets: list[tuple[str, Any]]
                      ) -> list[dict[str, Any]]:
    """Each net's estimated Y-PSNR on the selection split (``data.val``): its weights
    inherited from the trained supernet, fine-tuned ``profile.estimate_steps`` steps on
    ``data.train`` (the search's patch, batch and weight lr). A net outside the searched
    space (a yardstick net of another frame) has no inherited weights: no estimate, and
    the reason. An estimate ranks nets of one supernet; it is not a retrained result."""
    from search_space.checks import GenotypeError
    from searchers.differentiable.elastic import check_subnet, extract_subnet
    from searchers.training.loop import short_training

    steps = search.cfg.profile.estimate_steps
    if steps is None:
        return []
    out: list[dict[str, Any]] = []
    for label, g in nets:
        try:
            check_subnet(search.spec, g)
        except GenotypeError as exc:
            out.append({"net": label, "psnr_db": None, "why": f"outside the space: {exc}"})
            continue
        start = time.perf_counter()
        psnr = short_training(
            extract_subnet(search.net, g), search.train, search.val, steps=steps,
            lr=search.cfg.search.lr, batch_size=search.cfg.data.batch_size,
            patch_size=search.patch_size, seed=search.cfg.run.seed, scale=g.scale,
            device=search.device)
        out.append({"net": label, "psnr_db": psnr, "seconds": time.perf_counter() - start})
        logger.info("quality estimate of %s: %.2f dB", label, psnr)
    return out


def _estimate_table(estimates: list[dict[str, Any]], steps: int | None, val: str) -> str:
    """The profile's quality section (Markdown)."""
    if not estimates:
        return ""
    lines = ["", f"Estimated quality on the selection split ({val}): Y-PSNR of each net with the "
             f"trained supernet's weights after {steps} fine-tuning steps. An estimate from one "
             "supernet, not a retrained result; compare it with the retrained figures of "
             "`python searchers/retrain.py`.", "", "| net | PSNR estimate [dB] |", "|---|---|"]
    for e in estimates:
        value = f"{e['psnr_db']:.2f}" if e["psnr_db"] is not None else "n/a (outside the space)"
        lines.append(f"| {e['net']} | {value} |")
    return "\n".join(lines) + "\n"
