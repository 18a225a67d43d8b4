"""The numbers of a report: per-image metrics, the NTIRE-style table, the aim and the seeds.

:func:`evaluate_run` evaluates (or reuses) a run's per-image metrics; :func:`build_table`
makes one row per run; :func:`aim_verdict` judges the aim on it, :func:`seed_summary` folds
the runs of one architecture; :func:`search_points` and :func:`link_search_trials` put the
search's trials beside the retrained nets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from proxies.measure.profile_rows import ProfileRow
from results.evaluate.inference import Tile
from results.evaluate.sets import evaluate_model
from results.plots.page import _write_text_atomic
from results.report.runs import ReportError, RetrainedRun
from results.run_folder import RunFolder
from search_space import Genotype, GenotypeError
from search_space.zoo import AIM_NET, REFERENCE_NET

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger("results.report")  # every report module logs as the command

__all__ = [
    "MEMORY_REFERENCE",
    "aim_latency_ratio",
    "aim_verdict",
    "build_table",
    "evaluate_run",
    "link_search_trials",
    "repeated_seeds",
    "search_points",
    "seed_summary",
    "set_labels",
]

#: The net whose peak memory the aim's memory bound is.
MEMORY_REFERENCE = "fmen_s"


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def evaluate_run(
    run: RetrainedRun,
    model: nn.Module,
    sets: Sequence[str],
    *,
    device: torch.device,
    tile: Tile,
    datasets_root: str | Path | None,
    cache_dir: Path,
) -> pd.DataFrame:
    """Per-image metrics of ``run`` on ``sets``, cached in ``cache_dir/<name>.csv``.

    The cache is reused when its sidecar records the same weights (SHA-256 of deployed.pt), the
    same sets and the same tiling; otherwise the net is evaluated again.
    """
    key = {"weights_sha256": _sha256(RunFolder(run.run_dir).deployed), "sets": list(sets),
           "tile": tile, "datasets_root": None if datasets_root is None else str(datasets_root)}
    csv_path, key_path = cache_dir / f"{run.name}.csv", cache_dir / f"{run.name}.json"
    if csv_path.exists() and key_path.exists():
        try:
            if json.loads(key_path.read_text(encoding="utf-8")) == key:
                logger.info("%s: reusing %s", run.name, csv_path)
                return pd.read_csv(csv_path)
        except (OSError, json.JSONDecodeError):
            pass
    df = evaluate_model(model, sets, scale=run.deployed.scale,
                        data_range=run.deployed.data_range, device=device, tile=tile,
                        datasets_root=datasets_root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(df.to_csv(index=False), csv_path)
    _write_text_atomic(json.dumps(key, indent=2), key_path)
    return df


def build_table(
    runs: Sequence[RetrainedRun],
    summaries: Mapping[str, pd.DataFrame],
    profiles: Mapping[str, ProfileRow],
) -> pd.DataFrame:
    """One row per run: kind, per-set metrics (``psnr_y_<set>``, ``ssim_y_<set>``,
    ``psnr_rgb_<set>``) and the profile columns of
    :class:`proxies.measure.profile_rows.ProfileRow`."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {"name": run.name, "kind": run.kind, "zoo_name": run.zoo_name}
        for rec in summaries[run.name].to_dict("records"):
            label = rec["set"]
            row[f"psnr_y_{label}"] = rec["psnr_y_db"]
            row[f"ssim_y_{label}"] = rec["ssim_y"]
            row[f"psnr_rgb_{label}"] = rec["psnr_rgb_db"]
        prof = profiles[run.name].to_dict()
        prof.pop("name")
        row.update(prof)
        row["iterations"] = run.deploy_check.get("iterations")
        row["deploy_max_abs_diff"] = run.deploy_check.get("max_abs_diff_0_1")
        rows.append(row)
    return pd.DataFrame(rows)


def set_labels(table: pd.DataFrame) -> list[str]:
    """The set labels of a :func:`build_table` table, in column order."""
    return [c[len("psnr_y_"):] for c in table.columns if c.startswith("psnr_y_")]


def aim_verdict(
    table: pd.DataFrame,
    psnr_reference: str = AIM_NET,
    memory_reference: str = MEMORY_REFERENCE,
) -> dict[str, Any]:
    """Does a derived net reach ``psnr_reference``'s Y-PSNR on every set, at lower latency
    than ``psnr_reference``, with no more peak memory than ``memory_reference``?

    Returns ``{"available": bool, "reason": str | None, "met_by": [names], "reference_runs":
    {zoo name: runs}, "nets": {name:
    {"psnr_margin_db": {set: dB}, "latency_ratio": x, "memory_margin_mib": MiB,
    "reaches_psnr": bool, "faster": bool, "within_memory": bool, "met": bool}}}``. Latency is
    compared through the ratios to the latency reference (``REFERENCE_NET``, whichever net it
    is) timed interleaved with each net: ``"latency_ratio"`` is the net's ratio divided by
    ``psnr_reference``'s, faster when below 1; margins
    are net minus reference (PSNR) and reference minus net (memory). A reference retrained
    several times (seeds) counts with the mean of its runs; ``"reference_runs"`` gives how many.
    """
    zoo_rows = table.loc[table["kind"] == "zoo"]
    zoo = zoo_rows.groupby("zoo_name").mean(numeric_only=True)  # several seeds: their mean
    absent = [n for n in (psnr_reference, memory_reference) if n not in zoo.index]
    if absent:
        return {"available": False, "met_by": [], "nets": {}, "reference_runs": {},
                "reason": f"the runs hold no retrained {' or '.join(absent)}: retrain them on the "
                          "same budget "
                          "to judge the aim"}
    ref, mem_ref = zoo.loc[psnr_reference], zoo.loc[memory_reference]
    counts = zoo_rows["zoo_name"].value_counts()
    reference_runs = {n: int(counts[n]) for n in dict.fromkeys((psnr_reference, memory_reference))}
    nets: dict[str, Any] = {}
    for rec in table.loc[table["kind"] == "derived"].to_dict("records"):
        margins = {s: float(rec[f"psnr_y_{s}"] - ref[f"psnr_y_{s}"]) for s in set_labels(table)}
        latency = _ratio(rec.get("latency_ratio"), ref.get("latency_ratio"))
        mem_margin = _difference(mem_ref.get("peak_memory_mib"), rec.get("peak_memory_mib"))
        verdict = {
            "psnr_margin_db": margins,
            "latency_ratio": latency,
            "memory_margin_mib": mem_margin,
            "reaches_psnr": all(m >= 0 for m in margins.values()),
            "faster": latency is not None and latency < 1.0,
            "within_memory": mem_margin is not None and mem_margin >= 0,
        }
        verdict["met"] = verdict["reaches_psnr"] and verdict["faster"] and verdict["within_memory"]
        nets[rec["name"]] = verdict
    return {"available": True, "reason": None, "nets": nets, "reference_runs": reference_runs,
            "met_by": [name for name, v in nets.items() if v["met"]]}


_SEED_SUFFIX = re.compile(r"[_-](?:s|seed)\d+$")


def seed_summary(table: pd.DataFrame, runs: Sequence[RetrainedRun]) -> pd.DataFrame:
    """One row per architecture over its runs (seeds), in first-seen order.

    Runs whose deployed genotypes and training recipes (``budget``: data, optim, and the KD
    teacher and initialisation where there is one) are equal are one architecture. Its row has
    ``name`` (the zoo name, or the run name without a trailing ``_s<k>``/``_seed<k>``; with a
    ``+KD`` or ``+MemSR init+KD`` suffix for a zoo net trained so), ``kind``,
    ``zoo_name``, ``runs``, ``seeds``, ``run_names``; per set the mean ``psnr_y_<set>`` and
    ``ssim_y_<set>`` with ``std_psnr_y_<set>`` (sample standard deviation, NaN for one run),
    ``min_psnr_y_<set>`` and ``max_psnr_y_<set>``; and the mean of every other numeric column
    (latency ratio, peak memory, params, ...). The mean columns keep the names of
    :func:`build_table`, so :func:`aim_verdict` judges this table as it judges the runs.
    """
    keys = {run.name: run.deployed.to_json(indent=None) + json.dumps(run.budget, sort_keys=True,
                                                                     default=str)
            for run in runs}
    recipes = {run.name: _recipe_suffix(run.budget) for run in runs}
    seeds = {run.name: run.seed for run in runs}
    sets = set_labels(table)
    order = list(dict.fromkeys(keys[name] for name in table["name"]))
    rows = []
    for key in order:
        group = table.loc[[keys[n] == key for n in table["name"]]]
        first = group.iloc[0]
        names = group["name"].tolist()
        zoo = first.get("zoo_name")
        label = (zoo + recipes[first["name"]] if isinstance(zoo, str)
                 else _SEED_SUFFIX.sub("", str(first["name"])))
        row: dict[str, Any] = {"name": label, "kind": first["kind"],
                               "zoo_name": zoo if isinstance(zoo, str) else None,
                               "runs": len(group), "run_names": ",".join(names),
                               "seeds": ",".join(str(seeds.get(n)) for n in names)}
        numeric = group.select_dtypes("number").mean()
        row.update({k: float(v) for k, v in numeric.items() if k != "runs"})
        for s in sets:
            values = group[f"psnr_y_{s}"].astype(float)
            row[f"std_psnr_y_{s}"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            row[f"min_psnr_y_{s}"] = float(values.min())
            row[f"max_psnr_y_{s}"] = float(values.max())
        rows.append(row)
    return pd.DataFrame(rows)


def _recipe_suffix(budget: Mapping[str, Any]) -> str:
    kd = budget.get("kd")
    if not kd:
        return ""
    return " +MemSR init+KD" if kd.get("init") == "memsr" else " +KD"


def repeated_seeds(summary: pd.DataFrame) -> dict[str, list[str]]:
    """Architectures retrained more than once with the same seed: their runs are not
    independent repeats (name -> the seeds as given)."""
    out = {}
    for rec in summary.to_dict("records"):
        seeds = str(rec["seeds"]).split(",")
        if len(seeds) != len(set(seeds)):
            out[str(rec["name"])] = seeds
    return out


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _ratio(a: Any, b: Any) -> float | None:
    x, y = _finite(a), _finite(b)
    return None if x is None or y is None or y == 0 else x / y


def _difference(a: Any, b: Any) -> float | None:
    x, y = _finite(a), _finite(b)
    return None if x is None or y is None else x - y


# --------------------------------------------------------------------------------------------
# Search points
# --------------------------------------------------------------------------------------------


def aim_latency_ratio(runs: Sequence[RetrainedRun], profiles: Mapping[str, ProfileRow],
                      reference: str) -> float | None:
    """The aim net's (``AIM_NET``) latency ratio to ``reference`` for the ``x rlfn_ntire``
    column: 1 when it is the reference, else the mean ratio of the runs that deploy to it
    (as :func:`aim_verdict` averages its seeds), None when none does."""
    if reference == AIM_NET:
        return 1.0
    ratios = [profiles[r.name].latency_ratio for r in runs if r.zoo_name == AIM_NET]
    found = [x for x in ratios if x is not None]
    return float(np.mean(found)) if found else None


def search_points(df: pd.DataFrame, reference: str = REFERENCE_NET) -> pd.DataFrame:
    """The complete trials of a search table, with latency and memory as ratios to the
    reference zoo trial of the same study (columns ``latency_x`` and ``memory_x``).

    Raises:
        ReportError: the table has no complete ``reference`` zoo trial.
    """
    ref = df.loc[(df["name"] == reference) & df["is_zoo"].astype(bool)
                 & (df["state"] == "COMPLETE")]
    if ref.empty:
        zoo = sorted(df.loc[df["is_zoo"].astype(bool), "name"].astype(str).unique())
        raise ReportError(
            f"the search holds no complete {reference!r} trial to express latency and memory "
            f"as ratios (its zoo trials: {zoo}); run the search with the zoo enqueued, or pass "
            "--reference with one of its zoo nets"
        )
    points = df.loc[df["state"] == "COMPLETE"].copy()
    points["latency_x"] = points["latency_ms"] / float(ref["latency_ms"].iloc[0])
    points["memory_x"] = points["memory_mib"] / float(ref["memory_mib"].iloc[0])
    return points


def link_search_trials(points: pd.DataFrame, runs: Sequence[RetrainedRun]) -> dict[str, str]:
    """``{run name: search trial name}`` for the runs whose trained (else deployed) genotype is
    a trial's."""
    by_genotype: dict[Genotype, str] = {}
    for name, text in zip(points["name"], points["genotype"], strict=True):
        if isinstance(text, str):
            try:
                by_genotype.setdefault(Genotype.from_json(text), str(name))
            except (GenotypeError, ValueError):
                continue  # not a genotype of this space (e.g. a foreign trial)
    links = {}
    for run in runs:
        for genotype in (run.genotype, run.deployed):  # fmen_s_train was searched as fmen_s
            if genotype in by_genotype:
                links[run.name] = by_genotype[genotype]
                break
    return links
