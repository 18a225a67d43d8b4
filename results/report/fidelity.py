"""A recipe's fidelity: does it rank the zoo as the converged nets do?

The zoo nets' official checkpoints (``../shared/reference/converged_psnr.md``) are the end
points of their authors' long trainings. A short recipe that ranks the retrained zoo nets
differently ranks learning speed rather than the nets, and a "beats" found at it is a
short-recipe result. :func:`recipe_fidelity` gives Spearman's and Kendall's rank correlations
between a recipe's Y-PSNR of the zoo nets and the converged Y-PSNR, per set and on the mean over
the sets both have.

``python -m results.report.fidelity REPORT_DIR [--converged FILE]`` reads a report's
``report.json`` (its seed table: one row per net, the mean over seeds) and prints the figures;
training forms are matched to their zoo names (``fmen_s_train`` -> ``fmen_s``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proxies.measure.stats import kendall, spearman

DEFAULT_CONVERGED = Path("../shared/reference/converged_psnr.md")
GOAL = 0.9
"""The fidelity under which a recipe's verdicts are marked as short-recipe results."""

Table = Mapping[str, Mapping[str, float]]


def read_converged(path: Path = DEFAULT_CONVERGED) -> dict[str, dict[str, float]]:
    """``{zoo name: {set: Y-PSNR}}`` from the Markdown table of ``converged_psnr.md``."""
    if not path.exists():
        raise FileNotFoundError(f"converged PSNR table: {path} does not exist; pass the path of "
                                "../shared/reference/converged_psnr.md (--converged FILE)")
    rows = [line for line in path.read_text().splitlines() if line.startswith("|")]
    if len(rows) < 3:
        raise ValueError(f"{path}: no Markdown table found")
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    sets = {i: h.split()[0] for i, h in enumerate(head) if h.endswith("Y-PSNR")}
    out: dict[str, dict[str, float]] = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = cells[0].strip("`")
        out[name] = {s: float(cells[i]) for i, s in sets.items()}
    return out


def zoo_name(name: str, zoo: Mapping[str, Any]) -> str | None:
    """The zoo name of a report row (``fmen_s_train_s0`` -> ``fmen_s``), or None."""
    base = re.sub(r"_s\d+$", "", name)
    for candidate in (base, re.sub(r"_train$", "", base)):
        if candidate in zoo:
            return candidate
    return None


def recipe_fidelity(ours: Table, converged: Table) -> dict[str, Any]:
    """Rank correlations of ``ours`` (zoo name -> set -> Y-PSNR at our recipe) with
    ``converged``, over the nets and sets both have: per set, and on each net's mean over the
    common sets (``mean``). ``verdicts_hold`` is whether the mean's Spearman reaches
    :data:`GOAL`."""
    nets = sorted(n for n in ours if n in converged)
    if len(nets) < 3:
        raise ValueError(f"recipe fidelity needs at least 3 zoo nets with converged figures; "
                         f"got {nets} (known: {sorted(converged)})")
    sets = [s for s in next(iter(converged.values())) if all(s in ours[n] for n in nets)]
    if not sets:
        raise ValueError(f"no set in common between the recipe's figures and the converged "
                         f"table (converged: {list(next(iter(converged.values())))})")
    out: dict[str, Any] = {"nets": nets, "sets": sets, "per_set": {}}
    for s in sets:
        a, b = [ours[n][s] for n in nets], [converged[n][s] for n in nets]
        out["per_set"][s] = {"spearman": spearman(a, b), "kendall": kendall(a, b)}
    a = [sum(ours[n][s] for s in sets) / len(sets) for n in nets]
    b = [sum(converged[n][s] for s in sets) / len(sets) for n in nets]
    out["mean"] = {"spearman": spearman(a, b), "kendall": kendall(a, b)}
    out["verdicts_hold"] = bool(out["mean"]["spearman"] >= GOAL)
    return out


def from_report(report_dir: Path, converged: Table) -> dict[str, dict[str, float]]:
    """``{zoo name: {set: mean Y-PSNR}}`` of the zoo rows of a report's seed table."""
    path = report_dir / "report.json"
    if not path.exists():
        raise FileNotFoundError(f"{report_dir}: no report.json; give the folder "
                                "python -m results.report wrote")
    return from_seed_rows(json.loads(path.read_text()).get("seeds") or [], converged)


def from_seed_rows(rows: list[dict[str, Any]], converged: Table) -> dict[str, dict[str, float]]:
    """``{zoo name: {set: mean Y-PSNR}}`` of the rows of a report's seed table that are zoo
    nets of ``converged`` (a row marked ``kind`` other than ``zoo`` is not)."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        name = zoo_name(str(row.get("name", "")), converged)
        if name is None or row.get("kind", "zoo") != "zoo":
            continue
        out[name] = {k[len("psnr_y_"):]: float(v) for k, v in row.items()
                     if k.startswith("psnr_y_") and v is not None and math.isfinite(float(v))}
    return out


def render(result: dict[str, Any]) -> str:
    lines = [f"Recipe fidelity over {len(result['nets'])} zoo nets ({', '.join(result['nets'])}):"]
    for s, r in result["per_set"].items():
        lines.append(f"  {s}: Spearman {r['spearman']:.3f}, Kendall {r['kendall']:.3f}")
    m = result["mean"]
    verdict = ("verdicts hold" if result["verdicts_hold"] else
               f"under {GOAL}: a 'beats' at this recipe is a short-recipe result")
    lines.append(f"  mean over {', '.join(result['sets'])}: Spearman {m['spearman']:.3f}, "
                 f"Kendall {m['kendall']:.3f} ({verdict})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m results.report.fidelity",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("report", type=Path, help="a folder written by python -m results.report")
    p.add_argument("--converged", type=Path, default=DEFAULT_CONVERGED)
    args = p.parse_args(argv)
    try:
        converged = read_converged(args.converged)
        print(render(recipe_fidelity(from_report(args.report, converged), converged)))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
