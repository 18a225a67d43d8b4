"""Does a search beat chance? Its net against random nets of its space at matched latency.

``python -m searchers.tools.matched_random RUN [--n 8] [--tolerance 0.1] [--seeds 0 1 2]
[--retrain CONFIG] [--out DIR] [key=value ...]``

``RUN`` is a DARTS run folder: its space, hardware table and derived ``genotype.json`` (or
``--genotype FILE``, a net of that space). Random nets are drawn uniformly from the space (every
slot, every position's cell type) and kept by rejection when the lookup table predicts a
latency within ``--tolerance`` of the searched net's; each kept net is then timed interleaved
with the searched net in its deployed form (the hardware section's settings) and dropped when
the measured ratio falls outside the tolerance. The searched net and the ``--n`` random ones are
retrained with one recipe (``--retrain`` and the ``key=value`` overrides of it) for every seed
of ``--seeds``; the verdict is the searched net's rank by mean hold-out Y-PSNR (the recipe's
``data.val``: a split of the training images). Goal: the top quarter. With two or more seeds
the report says how much of the verdict is seed noise (the pooled seed spread, the reliability
of the means, and how often a redraw of that noise keeps the searched net in the top quarter:
:func:`~searchers.stages.matched.rank_noise`).

The pipeline runs the same check for every search of every method (``matched.n``,
:mod:`searchers.stages.matched`); this command checks one DARTS run, with the lookup table's
estimate to pre-select the draws. A net so cheap that the draws never land near it sits in a
corner of the space: the report then says so with the cheapest draws' ratios, and no rank is
given.

Output in ``--out`` (default ``RUN/matched``): ``matched.json``, ``matched.md``, ``draws.json``
(the kept nets, reused on a re-run) and ``retrain/NET_sSEED`` run folders (a killed run resumes:
finished trainings are skipped, unfinished ones resume from their checkpoints). ``--draw-only``
stops after ``draws.json``: the timing wants quiet cores, the retrainings do not, so draw first,
then run one process per seed side by side and a last one over all seeds for the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from results.run_folder import RunFolder
from search_space.files import atomic_write_text
from searchers.common.command import exit_status, log_to_stderr
from searchers.common.config import ConfigError, load_config
from searchers.stages.matched import (
    hold_out_psnr,
    noise_line,
    random_derived,
    rank_noise,
    rank_of,
)

logger = logging.getLogger("searchers.tools.matched_random")


def _supernet(run: Path) -> tuple[Any, Any]:
    """The run's supernet with its hardware costs (from the table's cache) and its config."""
    from searchers.differentiable.config import DartsConfig
    from searchers.differentiable.latency_table import HardwareTable, fill_supernet_costs
    from searchers.differentiable.supernet import SuperNet

    folder = RunFolder(run)
    if not folder.config.exists():
        raise ConfigError(f"{run}: no {folder.config.name}; give the run folder of a DARTS "
                          "search (e.g. runs/darts/quickstart)")
    cfg = load_config(DartsConfig, folder.config)
    net = SuperNet(cfg.space.supernet_spec())
    fill_supernet_costs(net, HardwareTable(cfg.hardware.settings(), cfg.hardware.cache_dir))
    return net, cfg


def draw_matched(net: Any, searched: Any, n: int, tolerance: float, max_draws: int,
                 seed: int) -> tuple[list[Any], dict[str, Any]]:
    """Up to ``n`` distinct random genotypes whose table-predicted latency lies within
    ``tolerance`` of ``searched``'s, and what the draws looked like."""
    from searchers.differentiable.latency_table import predict_genotype

    rng = np.random.default_rng(seed)
    target = predict_genotype(net, searched)["latency_ms"]
    kept: list[Any] = []
    ratios = []
    for _ in range(max_draws):
        g = random_derived(net, rng)
        ratio = predict_genotype(net, g)["latency_ms"] / target
        ratios.append(ratio)
        if abs(ratio - 1) <= tolerance and g != searched and g not in kept:
            kept.append(g)
            if len(kept) == n:
                break
    r = np.array(ratios)
    stats = {"draws": len(ratios), "kept": len(kept), "predicted_ms": target,
             "ratio_min": float(r.min()), "ratio_median": float(np.median(r)),
             "within_tolerance": int((abs(r - 1) <= tolerance).sum())}
    return kept, stats


def confirm(searched: Any, nets: list[Any], cfg: Any) -> list[float]:
    """Each net's latency measured as a ratio to the searched net's, timed interleaved."""
    from proxies.measure.latency import measure_latency_ratio
    from search_space import build_model

    settings = replace(cfg.hardware.settings(), rounds=3)
    ref = build_model(searched)
    return [measure_latency_ratio(build_model(g), ref, settings).ratio_median for g in nets]


def run(run_dir: Path, *, genotype: Path | None, n: int, tolerance: float, seeds: list[int],
        retrain_config: str | None, overrides: list[str], out: Path, max_draws: int,
        draw_seed: int, draw_only: bool = False) -> dict[str, Any]:
    from search_space import Genotype
    from searchers.training.config import RetrainConfig
    from searchers.training.retrain import retrain

    if n < 1 or not 0 < tolerance < 1 or not seeds:
        raise ConfigError(f"--n >= 1, 0 < --tolerance < 1 and one or more --seeds needed; got "
                          f"{n}, {tolerance}, {seeds}")
    rcfg = load_config(RetrainConfig, retrain_config, overrides)  # bad input fails here
    net, cfg = _supernet(run_dir)
    searched = Genotype.load(genotype or RunFolder(run_dir).genotype)
    out.mkdir(parents=True, exist_ok=True)
    draws_path = out / "draws.json"
    if draws_path.exists():
        saved = json.loads(draws_path.read_text())
        nets = [Genotype.from_dict(d) for d in saved["nets"]]
        stats, measured = saved["stats"], saved["measured_ratio"]
    else:
        nets, stats = draw_matched(net, searched, 3 * n, tolerance, max_draws, draw_seed)
        measured_all = confirm(searched, nets, cfg)
        pairs = [(g, m) for g, m in zip(nets, measured_all, strict=True)
                 if abs(m - 1) <= tolerance][:n]
        stats["measured_out_of_tolerance"] = len(nets) - sum(
            abs(m - 1) <= tolerance for m in measured_all)
        nets, measured = [g for g, _ in pairs], [m for _, m in pairs]
        atomic_write_text(draws_path, json.dumps(
            {"stats": stats, "measured_ratio": measured,
             "nets": [g.to_dict() for g in nets]}, indent=2) + "\n")
    logger.info("draws: %s", stats)
    if draw_only:
        logger.info("%d nets drawn and timed into %s; retrain them with the same --out",
                    len(nets), draws_path)
        return {"draw_stats": stats, "measured_ratio": measured}
    corner = len(nets) < n
    pairs = list(zip(nets, measured, strict=True))
    jobs = [("searched", searched, 1.0)] + [(f"random{k}", g, m)
                                            for k, (g, m) in enumerate(pairs)]
    rows: list[dict[str, Any]] = []
    for label, g, ratio in jobs:
        psnrs = []
        for seed in seeds:
            rc = replace(rcfg, run=replace(rcfg.run, dir=str(out / "retrain"),
                                           name=f"{label}_s{seed}", seed=seed))
            folder = RunFolder(rc.run.folder())
            if not folder.deployed.exists():
                retrain(g, rc, resume=folder.checkpoint.exists(),
                        command=["python", "-m", "searchers.tools.matched_random"])
            psnrs.append(hold_out_psnr(folder.path))
        rows.append({"net": label, "latency_ratio": ratio, "psnr_db": psnrs,
                     "mean_db": float(np.mean(psnrs)), "genotype": g.to_dict()})
    ranked = sorted(rows, key=lambda r: -r["mean_db"])
    rank, of, top = rank_of(rows[0]["mean_db"], [r["mean_db"] for r in rows[1:]])
    result = {"run": str(run_dir), "tolerance": tolerance, "seeds": seeds, "draw_stats": stats,
              "corner": corner, "rank": rank, "of": of, "top_quarter": (not corner) and top,
              "noise": rank_noise(rows[0]["psnr_db"], [r["psnr_db"] for r in rows[1:]]),
              "recipe": {"config": retrain_config, "overrides": overrides}, "rows": ranked}
    atomic_write_text(out / "matched.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "matched.md", render(result))
    print(render(result))
    return result


def render(result: dict[str, Any]) -> str:
    s = result["draw_stats"]
    lines = [f"# Matched-latency check: {result['run']}", "",
             f"Random nets of the same space within +-{result['tolerance']:.0%} of the searched "
             f"net's latency: {s['kept']} kept of {s['draws']} draws by the table "
             f"(cheapest draw {s['ratio_min']:.2f}x, median {s['ratio_median']:.2f}x its "
             f"predicted latency), confirmed by interleaved timing; retrained with seeds "
             f"{result['seeds']}, hold-out Y-PSNR.", ""]
    if result["corner"]:
        lines += ["**Corner**: fewer than the wanted random nets lie near the searched net's "
                  "latency; its rank below compares it with those found only.", ""]
    lines += ["| rank | net | latency ratio to searched | PSNR per seed [dB] | mean [dB] |",
              "|---|---|---|---|---|"]
    for k, r in enumerate(result["rows"], 1):
        per = ", ".join(f"{p:.2f}" for p in r["psnr_db"])
        lines.append(f"| {k} | {r['net']} | {r['latency_ratio']:.2f} | {per} | "
                     f"{r['mean_db']:.2f} |")
    verdict = "in the top quarter" if result["top_quarter"] else "not in the top quarter"
    lines += ["", f"The searched net ranks {result['rank']} of {result['of']}: {verdict}."]
    if "noise" in result:  # absent from the files of checks run before it was added
        lines += ["", noise_line(result["noise"], len(result["seeds"]))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m searchers.tools.matched_random",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a DARTS run folder")
    p.add_argument("--genotype", type=Path, help="the net to check (default: RUN/genotype.json)")
    p.add_argument("--n", type=int, default=8, help="random nets (default 8)")
    p.add_argument("--tolerance", type=float, default=0.10, help="latency match (default 0.1)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="retraining seeds (default 0 1 2: with fewer the seed noise is hard to "
                        "tell from the nets' differences)")
    p.add_argument("--retrain", help="the retraining recipe (a retrain config)")
    p.add_argument("--out", type=Path, help="output folder (default RUN/matched)")
    p.add_argument("--max-draws", type=int, default=20000)
    p.add_argument("--draw-seed", type=int, default=0)
    p.add_argument("--draw-only", action="store_true",
                   help="draw and time the random nets (draws.json), retrain nothing: timing "
                        "wants quiet cores, the retrainings of each seed can then run side by "
                        "side with the same --out")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides of the retraining recipe")
    args = p.parse_intermixed_args(argv)
    log_to_stderr()

    def work() -> None:
        run(args.run, genotype=args.genotype, n=args.n, tolerance=args.tolerance,
            seeds=args.seeds, retrain_config=args.retrain, overrides=args.overrides,
            out=args.out or args.run / "matched", max_draws=args.max_draws,
            draw_seed=args.draw_seed, draw_only=args.draw_only)

    return exit_status(work, logger)


if __name__ == "__main__":
    sys.exit(main())
