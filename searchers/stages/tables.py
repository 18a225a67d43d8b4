"""The tables of ``pipeline.md``: each retrained net beside the zoo (:func:`dominance_table`)
and the hypervolume of the searched nets against the zoo's (:func:`hypervolume_line`)."""

from __future__ import annotations

import math
from typing import Any


def dominance_table(seeds: list[dict[str, Any]]) -> str:
    """Per net: mean +- std Y-PSNR per set over its seeds, latency ratio, peak memory and,
    for a searched net, the zoo nets it dominates (a higher mean Y-PSNR on every set at no
    more latency and peak memory)."""
    if not seeds:
        return "(no seed table in the report)"
    sets = [k[len("psnr_y_"):] for k in seeds[0] if k.startswith("psnr_y_")]

    def num(r: dict[str, Any], key: str, default: float = math.nan) -> float:
        value = r.get(key)
        return default if value is None else float(value)

    head = ("| net | kind | " + " | ".join(f"{s} Y-PSNR" for s in sets) +
            " | latency x ref | memory [MiB] | params [M] | dominates |\n|---|---|" +
            "---|" * (len(sets) + 4))
    zoo = [r for r in seeds if r.get("kind") == "zoo"]
    body = []
    for r in seeds:
        dom = [] if r.get("kind") == "zoo" else [
            z["name"] for z in zoo
            if all(num(r, f"psnr_y_{s}", -math.inf) > num(z, f"psnr_y_{s}", math.inf)
                   for s in sets)
            and num(r, "latency_ratio", math.inf) <= num(z, "latency_ratio", -math.inf)
            and num(r, "peak_memory_mib", math.inf) <= num(z, "peak_memory_mib", -math.inf)]
        cells = " | ".join(mean_spread(num(r, f"psnr_y_{s}"), num(r, f"std_psnr_y_{s}"))
                           for s in sets)
        body.append(f"| {r['name']} | {r.get('kind', '?')} | {cells} | "
                    f"{num(r, 'latency_ratio'):.2f} | {num(r, 'peak_memory_mib'):.1f} | "
                    f"{num(r, 'params_m'):.3f} | {', '.join(dom) or '-'} |")
    return head + "\n" + "\n".join(body)


def hypervolume_line(seeds: list[dict[str, Any]]) -> str:
    """The hypervolume of the retrained searched nets against the zoo's, in (Y-PSNR mean
    over sets and seeds: max, latency ratio: min, peak memory: min), both bounded by the
    zoo's worst value in each objective moved 5 % further (:func:`results.table.pareto.
    front_summary`); a ratio > 1 means the searched front covers more than the zoo's."""
    import pandas as pd

    from results.table.pareto import front_summary

    rows = []
    for r in seeds:
        psnr = [float(v) for k, v in r.items() if k.startswith("psnr_y_") and v is not None]
        rows.append({"name": r["name"], "is_zoo": r.get("kind") == "zoo",
                     "state": "COMPLETE", "feasible": True,
                     "psnr_y": sum(psnr) / len(psnr) if psnr else math.nan,
                     "latency_ratio": r.get("latency_ratio", math.nan),
                     "peak_memory_mib": r.get("peak_memory_mib", math.nan)})
    df = pd.DataFrame(rows).astype({"latency_ratio": float, "peak_memory_mib": float})
    objectives = {"psnr_y": "max", "latency_ratio": "min", "peak_memory_mib": "min"}
    try:
        s = front_summary(df, objectives, margin=0.05)
    except ValueError as exc:
        return f"Hypervolume: not computed ({exc})"
    ref = ", ".join(f"{k} {v:.4g}" for k, v in s["reference_point"].items())
    ratio = s["hypervolume_ratio"]
    dominated = "; ".join(f"{z} by {', '.join(by)}" for z, by in s["zoo_dominated"].items())
    return (f"Hypervolume (Y-PSNR mean over sets, latency ratio, peak memory; reference "
            f"point {ref}): searched {s['hypervolume_search']:.4g}, zoo "
            f"{s['hypervolume_zoo']:.4g}, ratio "
            f"{'n/a' if ratio is None else f'{ratio:.3f}'}; searched nets on the combined "
            f"front: {', '.join(s['front_combined_searched']) or 'none'}; zoo nets "
            f"dominated in these three: {dominated or 'none'}.")


def mean_spread(mean: float, std: float) -> str:
    """``28.77 +- 0.01``; the mean alone where one seed gives no spread."""
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} +- {std:.2f}"
