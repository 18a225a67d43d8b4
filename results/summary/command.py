"""Summarise a search: ``python -m results.summary (--storage URL [--study NAME] | --ray DIR) --out
DIR``.

Loads the trial table of an Optuna study or a Ray Tune experiment folder and writes into
``--out``:

* ``trials.csv``: every trial (:mod:`results.table.schema` schema);
* ``front.csv``: the Pareto front of the three objectives over all eligible trials, zoo nets
  included (``is_zoo`` tells them apart), sorted by latency;
* ``front_genotypes/<name>.json``: the genotype of each front row, ready for retraining (rows
  without a genotype are skipped);
* ``summary.json``: :func:`results.table.pareto.front_summary` (hypervolumes against the zoo
reference
  point, dominated zoo nets), or the counts and an ``error`` when the table has no complete zoo
  net; and ``aim_candidates`` (:func:`results.table.pareto.aim_candidates`): the searched front nets
  faster than ``rlfn_ntire`` within ``fmen_s``'s memory, best proxy PSNR first;
* the Plotly report (:func:`results.plots.pareto.write_pareto_report`).

It prints a short summary; exit status 2 for a missing storage / folder or a bad study.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from results.plots.pareto import write_pareto_report
from results.table.optuna_study import from_optuna
from results.table.pareto import pareto_mask, search_summary
from results.table.ray_experiment import from_ray
from results.table.schema import to_csv, validate_table

logger = logging.getLogger("results.summary")

TRIALS_CSV = "trials.csv"
FRONT_CSV = "front.csv"
FRONT_GENOTYPES = "front_genotypes"
SUMMARY_JSON = "summary.json"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m results``."""
    parser = argparse.ArgumentParser(
        prog="python -m results.summary",
        description="Trial table, Pareto front, zoo comparison and Plotly report of a search.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--storage", help="Optuna storage URL, e.g. sqlite:///runs/optuna.db")
    source.add_argument("--ray", type=Path, help="Ray Tune experiment folder")
    parser.add_argument("--study", help="Optuna study name (needed when the storage has several)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="move the zoo reference point this fraction further towards worse (default 0)",
    )
    parser.add_argument(
        "--separate-html",
        action="store_true",
        help="one HTML file per figure (sharing one plotly.min.js) instead of one report",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _file_stem(name: str, taken: set[str]) -> str:
    """A file-system-safe, unique stem for a trial name."""
    stem = _UNSAFE.sub("_", name).strip("._") or "trial"
    candidate, i = stem, 2
    while candidate in taken:
        candidate, i = f"{stem}_{i}", i + 1
    taken.add(candidate)
    return candidate


def write_front_genotypes(front: pd.DataFrame, folder: Path) -> list[Path]:
    """Write ``<name>.json`` (pretty-printed genotype JSON) for each front row with a genotype.

    Rows without a genotype, or whose genotype is not valid JSON, are skipped with a warning.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for name, text in zip(front["name"].tolist(), front["genotype"].tolist(), strict=True):
        if not isinstance(text, str) or not text:
            logger.warning("front row %s has no genotype: skipped", name)
            continue
        try:
            genotype = json.loads(text)
        except json.JSONDecodeError as err:
            logger.warning("front row %s: genotype is not JSON (%s): skipped", name, err)
            continue
        path = folder / f"{_file_stem(str(name), taken)}.json"
        path.write_text(json.dumps(genotype, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _summary(df: pd.DataFrame, margin: float) -> dict[str, Any]:
    return search_summary(df, margin)


def _print_summary(
    df: pd.DataFrame, front: pd.DataFrame, summary: dict[str, Any], out: Path
) -> None:
    counts = df["state"].value_counts().to_dict()
    print(f"{len(df)} trials ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})")
    print(
        f"Pareto front: {len(front)} rows ({int(front['is_zoo'].sum())} zoo): "
        + ", ".join(str(n) for n in front["name"].tolist())
    )
    if "error" in summary:
        print(f"no zoo comparison: {summary['error']}")
    else:
        ratio = summary["hypervolume_ratio"]
        ratio_text = f"{ratio:.3f}" if ratio is not None else "n/a (zoo hypervolume is 0)"
        print(
            f"hypervolume search / zoo: {ratio_text} "
            f"(search {summary['hypervolume_search']:.4g}, zoo {summary['hypervolume_zoo']:.4g})"
        )
        for zoo_name, by in summary["zoo_dominated"].items():
            print(f"  {zoo_name} dominated by {', '.join(by)}")
        if summary["zoo_not_dominated"]:
            print(f"  not dominated: {', '.join(summary['zoo_not_dominated'])}")
    aim = summary.get("aim_candidates", {})
    if aim and "error" not in aim:
        listing = ", ".join(f"{name} ({v['psnr_db']:.2f} dB)" for name, v in aim.items())
        print(f"retrain first (front, faster than rlfn_ntire, within fmen_s's memory, best "
              f"proxy PSNR first): {listing}")
    print(f"written to {out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.ray is not None and args.study is not None:
        parser.error("--study applies to --storage only; a Ray experiment folder is one study")
    try:
        df = from_ray(args.ray) if args.ray is not None else from_optuna(args.storage, args.study)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    validate_table(df)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    to_csv(df, out / TRIALS_CSV)
    front = df.loc[pareto_mask(df)].sort_values(["latency_ms", "psnr_db"], kind="stable")
    to_csv(front, out / FRONT_CSV)
    write_front_genotypes(front, out / FRONT_GENOTYPES)
    summary = _summary(df, args.margin)
    (out / SUMMARY_JSON).write_text(
        json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    write_pareto_report(df, out, single_file=not args.separate_html, summary=summary)
    _print_summary(df, front, summary, out)
    return 0
