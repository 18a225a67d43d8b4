"""``pipeline.md``, the pipeline's verdict: what each search spent, each retrained net beside
the zoo, the recipe's fidelity (:mod:`results.report.fidelity`: do the retrained zoo nets rank
as the converged ones do? under 0.9 every "beats" below is a short-recipe result, and says
so), and under ``pipeline.search_seeds`` each method's mean and spread over its searches, with
whether the difference between two methods is larger than their spreads."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

from searchers.stages.tables import dominance_table, hypervolume_line, mean_spread


def summary(pipeline: Any, report_dir: Path) -> str:
    """The final ``pipeline.md`` of ``pipeline`` (a :class:`~searchers.stages.pipeline.
    Pipeline`, which imports this module) from the report in ``report_dir``."""
    payload = json.loads((report_dir / "report.json").read_text())
    seeds = payload.get("seeds") or []
    p = pipeline.cfg.pipeline
    fidelity, short = fidelity_line(seeds, Path(p.converged))
    lines = [f"# Pipeline {p.name}", "",
             f"Budget: {pipeline.budget_text()}; each net retrained with seeds {p.seeds} on "
             "the same recipe; report: report/report.html.", "", fidelity, "",
             search_table(pipeline), ""]
    if short:
        lines += ["**Short-recipe results**: the recipe's fidelity is under 0.9, so a net "
                  "that \"dominates\" a zoo net below does so at this recipe, not "
                  "necessarily converged.", ""]
    lines += [dominance_table(seeds), ""]
    if p.search_seeds is not None:
        lines += [methods_table(pipeline, seeds), ""]
    lines.append(hypervolume_line(seeds))
    from searchers.stages.matched import Matched

    matched = Matched(pipeline).table()
    if matched:
        lines += ["", matched]
    return "\n".join(lines) + "\n"


def fidelity_line(seeds: list[dict[str, Any]], converged_path: Path) -> tuple[str, bool]:
    """The recipe-fidelity sentence and whether the recipe is short (fidelity under 0.9, or
    not measurable: then every verdict counts as short too)."""
    from results.report.fidelity import GOAL, from_seed_rows, read_converged, recipe_fidelity

    try:
        converged = read_converged(converged_path)
        result = recipe_fidelity(from_seed_rows(seeds, converged), converged)
    except (OSError, ValueError) as exc:
        return (f"Recipe fidelity: not measured ({exc}); list at least 3 zoo nets of the "
                "converged table in pipeline.zoo. Every verdict below counts as a "
                "short-recipe result.", True)
    m = result["mean"]
    n = len(result["nets"])
    few = n < FIDELITY_MIN_NETS
    if few:
        verdict = (f"over only {n} nets (a perfect order of {n} comes by chance once in "
                   f"{math.factorial(n)}): too few to vouch for the recipe, so the verdicts "
                   f"below count as short-recipe results; list at least {FIDELITY_MIN_NETS} "
                   "zoo nets of the converged table in pipeline.zoo")
    elif result["verdicts_hold"]:
        verdict = "at least 0.9: the verdicts below hold at this recipe"
    else:
        verdict = f"under {GOAL}: short-recipe results"
    return (f"Recipe fidelity (the retrained zoo nets {', '.join(result['nets'])} against their "
            f"converged Y-PSNR, {converged_path.name}; mean over {', '.join(result['sets'])}): "
            f"Spearman {m['spearman']:.3f}, Kendall {m['kendall']:.3f}, {verdict}.",
            few or not result["verdicts_hold"])


FIDELITY_MIN_NETS = 5
"""The fewest zoo nets whose order can vouch for a recipe (4 nets fall in a perfect order by
chance once in 24)."""


def _amount(pipeline: Any, search: Any) -> str:
    """What a search did: trials finished (the studies), steps (DARTS), supernet steps."""
    from results.run_folder import RunFolder
    from searchers.stages.progress import finished_steps

    folder = RunFolder(pipeline.root / "search" / search.label)
    if search.method == "darts":
        return f"{finished_steps(folder)} steps"
    import optuna

    from searchers.trials.storage import make_storage
    from searchers.trials.study import finished_trials

    try:
        study = optuna.load_study(study_name=search.label, storage=make_storage(
            pipeline.storage(search), pipeline.cfg.trials.study))
        trials = f"{finished_trials(study)} trials"
    except (KeyError, OSError, ValueError):
        trials = "? trials"
    if search.method == "oneshot":
        steps = finished_steps(RunFolder(pipeline.supernet_dir(search)))
        return f"{steps} supernet steps + {trials}"
    return trials


def search_table(pipeline: Any) -> str:
    """Per search: its method and seed, what it spent (CPU-seconds, wall) and did."""
    state = pipeline._state()
    path = pipeline.root / "selected" / "selected.json"
    chosen = json.loads(path.read_text()) if path.exists() else {}
    lines = ["| search | method | search seed | spent [CPU-s] | wall time [s] | trials / steps | "
             "hands over |", "|---|---|---|---|---|---|---|"]
    for s in pipeline.searches():
        stage = f"search.{s.label}"
        seed = "-" if s.seed is None else str(s.seed)
        info = chosen.get(s.label, {})
        net = ("no net under the budget" if "none" in info else
               f"trial {info['trial']}" if "trial" in info else "its derived net")
        lines.append(f"| {s.label} | {s.method} | {seed} | "
                     f"{state['cpu_seconds'].get(stage, math.nan):.0f} | "
                     f"{state['seconds'].get(stage, math.nan):.0f} | {_amount(pipeline, s)} | "
                     f"{net} |")
    return "\n".join(lines)


def methods_table(pipeline: Any, seeds: list[dict[str, Any]]) -> str:
    """Per method: the mean and spread (standard deviation) over its searches of the retrained
    net's Y-PSNR per set (each search's net: its mean over the retraining seeds), its latency
    ratio; then each pair of methods on the mean over the sets, and whether the difference is
    larger than the sum of their spreads."""
    rows = {str(r.get("name")): r for r in seeds}
    sets = [k[len("psnr_y_"):] for k in seeds[0] if k.startswith("psnr_y_")] if seeds else []
    per_method: dict[str, list[dict[str, Any]]] = {}
    searches: dict[str, int] = {}
    for s in pipeline.searches():
        searches[s.method] = searches.get(s.method, 0) + 1
        if s.label in rows:
            per_method.setdefault(s.method, []).append(rows[s.label])

    def stats(values: list[float]) -> tuple[float, float]:
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return math.nan, math.nan
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan

    def value(r: dict[str, Any], key: str) -> float:
        v = r.get(key)
        return math.nan if v is None else float(v)

    head = ("| method | searches with a net | " +
            " | ".join(f"{s} Y-PSNR over searches" for s in sets) +
            " | mean over sets | latency x ref |\n|---|---|" + "---|" * (len(sets) + 2))
    body, means = [], {}
    for method, rs in per_method.items():
        cells = [mean_spread(*stats([value(r, f"psnr_y_{s}") for r in rs])) for s in sets]
        overall = stats([statistics.fmean(value(r, f"psnr_y_{s}") for s in sets) for r in rs])
        means[method] = overall
        lat = stats([value(r, "latency_ratio") for r in rs])
        body.append(f"| {method} | {len(rs)} of {searches[method]} | {' | '.join(cells)} | "
                    f"{mean_spread(*overall)} | {mean_spread(*lat)} |")
    pairs = []
    for a, b in itertools.combinations(means, 2):
        (ma, sa), (mb, sb) = means[a], means[b]
        spreads = (0.0 if math.isnan(sa) else sa) + (0.0 if math.isnan(sb) else sb)
        if math.isnan(sa) or math.isnan(sb):
            word = "no spread with one search each: not decided"
        elif abs(ma - mb) > spreads:
            word = "larger than their spreads"
        else:
            word = "within their spreads: not decided"
        lead, other = (a, b) if ma >= mb else (b, a)
        pairs.append(f"- {lead} over {other}: {abs(ma - mb):+.2f} dB on the mean over the "
                     f"sets (spreads {sa:.2f}, {sb:.2f}): {word}.")
    return "\n".join(["Each method over its search seeds (mean +- standard deviation of its "
                      "searches' nets):", "", head, *body, "", *pairs])
