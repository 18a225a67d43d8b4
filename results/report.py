"""One report per run: ``python -m results.report RUN [RUN ...] --out DIR [--storage URL]``.

Takes the folders of retrained nets (``python searchers/retrain.py``: derived nets and zoo nets
retrained on the same budget) and, optionally, the search they came from (an Optuna storage or
a Ray Tune folder), and writes into ``--out``:

* ``report.html``: one offline page (Plotly; plotly.js in ``plotly.min.js`` beside it) with

  - the search's Pareto front (proxy PSNR against latency and against peak memory, both as
    ratios to the reference net measured in the same study) with the retrained nets added on a
    second y axis (their benchmark Y-PSNR against their latency and memory ratios measured
    here, in one process);
  - the retrained nets alone: benchmark Y-PSNR against measured latency and peak memory;
  - the NTIRE-style table: Y-PSNR / SSIM per set, params, FLOPs, activations, #conv, latency
    (its ratio to the reference, ``span_ntire2024`` by default, timed interleaved, and the
    ratio to ``rlfn_ntire``: the net's ratio over the mean ratio of the ``rlfn_ntire`` runs,
    or of one untrained ``rlfn_ntire`` timed here when none is among the runs) and peak
    memory, every net measured in this process on this machine;
  - whether a derived net meets the aim: the PSNR of ``rlfn_ntire`` on every set at lower
    latency than ``rlfn_ntire`` (its ratio to the reference below that of ``rlfn_ntire``),
    and no more peak memory than ``fmen_s`` (both must be among the runs);
  - side-by-side crops: bicubic, every net, HR, each with its crop PSNR;
  - the training budget, the machine, the measurement settings and the command.
* ``table.csv`` / ``table.md``: the table as numbers and as Markdown;
* ``seeds.csv`` / ``seeds.md``: one row per architecture (runs whose deployed genotypes are
  equal: the same net retrained with several ``run.seed`` values), with the mean, the standard
  deviation and the range of each set's Y-PSNR over its runs; the aim is judged on these means
  too;
* ``report.json``: everything above as data;
* ``eval/<net>.csv``: per-image metrics (reused on a re-run when the weights are unchanged);
* ``crops/<net>.png``: the crops.

Every net is evaluated in its deployed form (``deployed.pt`` with ``deployed_genotype.json``;
the retrain run checked it against the trained form). Runs must share the training budget
(the ``data`` and ``optim`` sections of their ``config.yaml``); ``--allow-mixed-budgets`` lets
different budgets through with a warning. Exit status 2 on bad input, with a message that
names it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import logging
import math
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml

from proxies.latency import resolve_device
from proxies.memory import measure_peak_memory
from proxies.profile import COLUMNS as PROFILE_COLUMNS
from proxies.profile import (
    ProfileRow,
    ProfileSettings,
    machine_info,
    profile_model,
    ratio_note,
    table_cells,
    with_aim_ratio,
)
from proxies.quality import psnr, tensor_to_uint8
from results.evaluate import (
    DEFAULT_SETS,
    Tile,
    _tile_arg,
    evaluate_model,
    load_checkpoint,
    resolve_set,
    sr_forward,
    summarise,
)
from results.plots import _write_text_atomic, write_page_html
from search_space import Genotype, GenotypeError
from search_space.zoo import AIM_NET, REFERENCE_NET, ZOO, at_scale

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from torch import nn

logger = logging.getLogger("results.report")

__all__ = [
    "BUDGET_SECTIONS",
    "MEMORY_REFERENCE",
    "ReportError",
    "RetrainedRun",
    "aim_latency_ratio",
    "aim_verdict",
    "budget_differences",
    "build_parser",
    "build_table",
    "link_search_trials",
    "load_run",
    "main",
    "pick_crop",
    "search_points",
    "table_markdown",
    "zoo_match",
]

REPORT_HTML = "report.html"
TABLE_CSV = "table.csv"
TABLE_MD = "table.md"
SEEDS_CSV = "seeds.csv"
SEEDS_MD = "seeds.md"
REPORT_JSON = "report.json"
EVAL_DIR = "eval"
CROPS_DIR = "crops"

#: Sections of a retrain run's ``config.yaml`` that make its training budget.
BUDGET_SECTIONS: tuple[str, ...] = ("data", "optim")
#: The net whose peak memory the aim's memory bound is.
MEMORY_REFERENCE = "fmen_s"

_DERIVED_COLOR = "#2ca02c"
_ZOO_COLOR = "#1f77b4"
_CSS = """
body { font-family: sans-serif; margin: 1.5em; }
table.ntire { border-collapse: collapse; font-size: 0.9em; }
table.ntire th, table.ntire td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
table.ntire td:first-child, table.ntire th:first-child { text-align: left; }
tr.derived td { background: #eef8ee; }
.crops { display: flex; flex-wrap: wrap; gap: 10px; }
.crops figure { margin: 0; text-align: center; font-size: 0.85em; }
.crops img { image-rendering: pixelated; border: 1px solid #999; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


class ReportError(ValueError):
    """Bad input to the report: the message names what, the value and the fix."""


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainedRun:
    """A finished ``searchers/retrain.py`` run folder.

    ``name`` is the folder's name; ``zoo_name`` the published net the deployed genotype is
    (None for a derived net); ``budget`` the run's ``data`` and ``optim`` config sections.
    """

    name: str
    run_dir: Path
    genotype: Genotype
    deployed: Genotype
    zoo_name: str | None
    budget: dict[str, Any]
    deploy_check: dict[str, Any]
    command: str
    seed: int | None = None

    @property
    def is_zoo(self) -> bool:
        return self.zoo_name is not None

    @property
    def kind(self) -> str:
        return "zoo" if self.is_zoo else "derived"


def zoo_match(genotype: Genotype) -> str | None:
    """The zoo net whose deployed form equals ``genotype.deployed()``, else None.

    ``fmen_s_train`` (trained with re-parameterisable blocks) deploys to ``fmen_s`` and is
    reported as ``fmen_s``; a net the zoo lists only in its training form (``maffsrn``, whose
    weight norm folds away) is reported under that name.
    """
    deployed = genotype.deployed()
    for name, zoo in ZOO.items():
        if zoo.is_deployed and zoo == deployed:
            return name
    for name, zoo in ZOO.items():  # a zoo net listed in its training form only (MAFFSRN)
        if zoo.deployed() == deployed:
            return name
    return None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{what}: cannot read {str(path)!r} ({exc})") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{what}: {str(path)!r} holds a {type(data).__name__}, not an object")
    return data


def load_run(run_dir: str | Path) -> RetrainedRun:
    """Read a finished retrain run folder.

    Raises:
        FileNotFoundError: the folder does not exist.
        ReportError: it is not a retrain run, or its training has not finished (the message
            gives the command that resumes it).
    """
    folder = Path(run_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"run folder {str(folder)!r} does not exist; pass folders written by "
            "python searchers/retrain.py (run.dir/run.name, e.g. runs/retrain/NAME)"
        )
    missing = [n for n in ("config.yaml", "genotype.json") if not (folder / n).is_file()]
    if missing:
        raise ReportError(
            f"run folder {str(folder)!r} lacks {missing}: it is not a searchers/retrain.py run "
            "folder; pass the folder that holds config.yaml, genotype.json and deployed.pt"
        )
    command_file = folder / "command.txt"
    command = command_file.read_text(encoding="utf-8").strip() if command_file.exists() else ""
    unfinished = [n for n in ("deployed.pt", "deployed_genotype.json", "deploy.json")
                  if not (folder / n).is_file()]
    if unfinished:
        first = command.splitlines()[0] if command else "python searchers/retrain.py ..."
        raise ReportError(
            f"run {str(folder)!r} has no {unfinished[0]}: its training has not finished. "
            f"Resume it with the command it was started with plus --resume: {first} --resume"
        )
    try:
        genotype = Genotype.load(folder / "genotype.json")
        deployed = Genotype.load(folder / "deployed_genotype.json")
    except GenotypeError as exc:
        raise ReportError(f"run {str(folder)!r}: {exc}") from exc
    try:
        cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReportError(f"run {str(folder)!r}: config.yaml is not valid YAML ({exc})") from exc
    budget = {section: cfg.get(section, {}) for section in BUDGET_SECTIONS}
    kd = cfg.get("kd") or {}
    if kd.get("teacher"):  # distillation is part of the recipe (runs without it have no kd)
        budget["kd"] = {"teacher": kd["teacher"], "weight": kd.get("weight")}
        if kd.get("init", "none") != "none":  # MemSR's initialisation: another recipe
            budget["kd"] |= {"init": kd["init"], "init_patches": kd.get("init_patches")}
    return RetrainedRun(
        name=folder.name, run_dir=folder, genotype=genotype, deployed=deployed,
        zoo_name=zoo_match(genotype), budget=budget,
        deploy_check=_read_json(folder / "deploy.json", "deploy.json"), command=command,
        seed=(cfg.get("run") or {}).get("seed"),
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def budget_differences(runs: Sequence[RetrainedRun]) -> dict[str, dict[str, Any]]:
    """``{config key: {run name: value}}`` for every budget key whose value differs."""
    flats = {run.name: _flatten(run.budget) for run in runs}
    keys = sorted({k for flat in flats.values() for k in flat})
    diffs: dict[str, dict[str, Any]] = {}
    for key in keys:
        values = {name: flat.get(key, "<unset>") for name, flat in flats.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            diffs[key] = values
    return diffs


def check_runs(runs: Sequence[RetrainedRun], allow_mixed_budgets: bool) -> None:
    """Refuse duplicate names, mixed scales and (unless allowed) different budgets."""
    names = [run.name for run in runs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ReportError(
            f"runs: the folder names {repeated} appear more than once; every run needs its own "
            "name (pass each run folder once, or retrain with distinct run.name=...)"
        )
    scales = {run.name: run.genotype.scale for run in runs}
    if len(set(scales.values())) > 1:
        raise ReportError(
            f"runs: the nets have different scales {scales}; a report compares one scale; "
            "pass runs of one scale"
        )
    diffs = budget_differences(runs)
    if diffs:
        listing = "; ".join(f"{key}: {values}" for key, values in list(diffs.items())[:6])
        if not allow_mixed_budgets:
            raise ReportError(
                f"runs: the training budgets differ ({listing}); the table compares nets "
                "retrained identically. Retrain them with one config, or pass "
                "--allow-mixed-budgets to report them anyway"
            )
        logger.warning("the training budgets differ (%s); the table mixes budgets", listing)


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def selection_overlaps(runs: Sequence[RetrainedRun], sets: Sequence[str],
                       datasets_root: str | Path | None) -> dict[str, list[str]]:
    """Run name -> the reported sets its selection (validation) data came from.

    A run's selection set is its config's ``data.val`` (a folder, or one side of a folder's
    hold-out split, ``FOLDER::holdout``). Selecting on a set that the report then scores is
    selection on the test set; the report flags every such run.
    """
    from proxies.data import split_spec

    reported = {}
    for spec in sets:
        try:
            reported[spec] = resolve_set(spec, datasets_root).resolve()
        except FileNotFoundError:
            continue
    out: dict[str, list[str]] = {}
    for run in runs:
        val = run.budget.get("data", {}).get("val")
        if not isinstance(val, str) or val.startswith("default:"):
            continue
        folder = Path(split_spec(val)[0]).expanduser().resolve()
        hits = [name for name, f in reported.items() if f == folder]
        if hits:
            out[run.name] = hits
    return out


def build_deployed(run: RetrainedRun, device: torch.device) -> nn.Module:
    """The run's deployed net with its weights, in eval mode on ``device``."""
    from search_space import build_model

    model = build_model(run.deployed)
    load_checkpoint(model, run.run_dir / "deployed.pt",
                    genotype_name=str(run.run_dir / "deployed_genotype.json"))
    return model.to(device).eval()


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
    key = {"weights_sha256": _sha256(run.run_dir / "deployed.pt"), "sets": list(sets),
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
    ``psnr_rgb_<set>``) and the profile columns of :class:`proxies.profile.ProfileRow`."""
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


def _seed_cells(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-architecture table (:func:`seed_summary`)."""
    sets = set_labels(summary)
    header = ["Net", "Kind", "Runs (seeds)",
              *(f"{s} PSNR-Y mean \u00b1 std [min-max]" for s in sets),
              "x ref (mean)", f"x {AIM_NET} (mean)", "Params [M]", "Peak mem [MiB]"]
    body = []
    for rec in summary.to_dict("records"):
        cells = [str(rec["name"]), str(rec["kind"]), f"{rec['runs']} ({rec['seeds']})"]
        for s in sets:
            std = _finite(rec[f"std_psnr_y_{s}"])
            cells.append(f"{rec[f'psnr_y_{s}']:.2f} \u00b1 {'-' if std is None else f'{std:.2f}'}"
                         f" [{rec[f'min_psnr_y_{s}']:.2f}-{rec[f'max_psnr_y_{s}']:.2f}]")
        for key, fmt in (("latency_ratio", "{:.2f}"), ("latency_ratio_aim", "{:.2f}"),
                         ("params_m", "{:.3f}"),
                         ("peak_memory_mib", "{:.1f}")):
            value = _finite(rec.get(key))
            cells.append("-" if value is None else fmt.format(value))
        body.append(cells)
    return header, body


def seeds_markdown(summary: pd.DataFrame) -> str:
    """The per-architecture table: Y-PSNR mean +- std [min-max] per set over the runs."""
    return _markdown(*_seed_cells(summary))


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


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


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


def _retrained_traces(table: pd.DataFrame, x: str, y: str, yaxis: str | None,
                      unit: str) -> list[Any]:
    import plotly.graph_objects as go

    traces = []
    for kind, color, symbol in (("derived", _DERIVED_COLOR, "star"),
                                ("zoo", _ZOO_COLOR, "star-diamond")):
        part = table.loc[table["kind"] == kind]
        traces.append(go.Scatter(
            x=part[x].to_numpy(dtype=float), y=part[y].to_numpy(dtype=float),
            mode="markers+text", name=f"retrained {kind}", text=part["name"].tolist(),
            textposition="bottom center", yaxis=yaxis,
            marker={"color": color, "size": 14, "symbol": symbol,
                    "line": {"color": "black", "width": 1}},
            hovertemplate="<b>%{text}</b><br>%{x:.3g} " + unit
                          + "<br>%{y:.2f} dB<extra>retrained</extra>",
        ))
    return traces


def search_figure(points: pd.DataFrame, table: pd.DataFrame, axis: str, reference: str,
                  front_set: str) -> go.Figure:
    """The search's Pareto figure (:func:`results.plots.pareto_figure_2d`: trials, front and
    zoo, proxy PSNR on the left axis) against latency or memory as a ratio to ``reference``,
    with the retrained nets added (benchmark Y-PSNR on ``front_set``, right axis)."""
    import plotly.graph_objects as go

    from results.plots import pareto_figure_2d

    x = f"{axis}_x"
    label = "latency" if axis == "latency" else "peak memory"
    fig = pareto_figure_2d(
        points, x=x, y="psnr_db",
        title=f"Search front and retrained nets: PSNR vs {label} (x {reference})",
    )
    derived = table.loc[table["kind"] == "derived"]
    linked = points.drop_duplicates("name").set_index("name").reindex(
        derived.get("search_trial", pd.Series(dtype=object)).dropna().tolist())
    if not linked.empty:
        fig.add_trace(go.Scatter(
            x=linked[x], y=linked["psnr_db"], mode="markers", name="retrained, as searched",
            text=linked.index.tolist(),
            marker={"color": "rgba(0,0,0,0)", "size": 16, "symbol": "circle-open",
                    "line": {"color": _DERIVED_COLOR, "width": 2}},
            hovertemplate="<b>%{text}</b> (retrained)<br>%{x:.3g}x<br>proxy %{y:.2f} dB"
                          "<extra></extra>",
        ))
    ratio_col = "latency_ratio" if axis == "latency" else "memory_ratio"
    for trace in _retrained_traces(table, ratio_col, f"psnr_y_{front_set}", "y2", "x"):
        fig.add_trace(trace)
    fig.update_layout(
        xaxis={"title": f"{label} / {reference}'s (search: its own measurement; retrained: "
                        "measured here)"},
        yaxis={"title": "search proxy PSNR [dB]"},
        yaxis2={"title": f"retrained Y-PSNR on {front_set} [dB]", "overlaying": "y",
                "side": "right", "showgrid": False},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def retrained_figure(table: pd.DataFrame, front_set: str) -> go.Figure:
    """Benchmark Y-PSNR of the retrained nets against measured latency and peak memory."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("latency", "peak memory"))
    y = f"psnr_y_{front_set}"
    axes = (("latency_ms", "latency", "ms"), ("peak_memory_mib", "peak memory", "MiB"))
    for col, (x, label, unit) in enumerate(axes, 1):
        for trace in _retrained_traces(table, x, y, None, unit):
            trace.showlegend = col == 1
            fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(title_text=f"{label} [{unit}]", row=1, col=col)
        fig.update_yaxes(title_text=f"Y-PSNR on {front_set} [dB]", row=1, col=col)
    fig.update_layout(title=f"Retrained nets on {front_set}: PSNR vs measured cost",
                      height=520, template="plotly_white")
    return fig


# --------------------------------------------------------------------------------------------
# Crops
# --------------------------------------------------------------------------------------------


def pick_crop(hr: np.ndarray, size: int) -> tuple[int, int, float]:
    """``(top, left, score)`` of the ``size x size`` window of ``hr`` (HxWx3 in [0, 1]) with the
    most detail (mean gradient magnitude of the grey image), on a grid of stride ``size // 4``.

    Raises:
        ReportError: the image is smaller than the window.
    """
    h, w = hr.shape[:2]
    if h < size or w < size:
        raise ReportError(f"crop size {size} does not fit an image of {h}x{w}; pass a smaller "
                          "--crop-size")
    grey = hr.mean(axis=2)
    grad = np.zeros_like(grey)
    grad[:, 1:] += np.abs(np.diff(grey, axis=1))
    grad[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(grad.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    stride = max(1, size // 4)
    best = (0, 0, -1.0)
    for top in range(0, h - size + 1, stride):
        for left in range(0, w - size + 1, stride):
            total = (integral[top + size, left + size] - integral[top, left + size]
                     - integral[top + size, left] + integral[top, left])
            score = float(total) / (size * size)
            if score > best[2]:
                best = (top, left, score)
    return best


def _png_data_uri(img: np.ndarray) -> tuple[str, bytes]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), data


def make_crops(
    models: Mapping[str, nn.Module],
    deployed: Mapping[str, Genotype],
    folder: Path,
    *,
    image: str | None,
    size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Crops of one image of ``folder``: bicubic, each net, HR, each with its Y-PSNR.

    ``image`` picks the file stem; None picks the image and window with the most detail
    (:func:`pick_crop`). Returns ``{"image", "box": [top, left, size], "panels": [(label,
    uint8 HxWx3, psnr or None)]}``.
    """
    from proxies.data import SRImageSet

    scale = next(iter(deployed.values())).scale
    data = SRImageSet.from_folder(folder, scale)
    items = list(data)
    if image is not None:
        chosen = [item for item in items if item[0] == image]
        if not chosen:
            raise ReportError(f"--crop-image {image!r} is not in {str(folder)!r}; its images: "
                              f"{[item[0] for item in items]}")
        items = chosen
    size = size - size % scale
    best: tuple[float, str, int, int] | None = None
    for name, _lr, hr in items:
        arr = hr[0].permute(1, 2, 0).numpy()
        top, left, score = pick_crop(arr, size)
        if best is None or score > best[0]:
            best = (score, name, top - top % scale, left - left % scale)
    assert best is not None
    _, name, top, left = best
    _, lr, hr = next(item for item in items if item[0] == name)

    def cut(t: torch.Tensor) -> np.ndarray:
        return tensor_to_uint8(t[..., top:top + size, left:left + size], 1.0)

    hr8 = cut(hr)
    panels: list[tuple[str, np.ndarray, float | None]] = []
    bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    panels.append(("bicubic", cut(bicubic.clamp(0, 1)), None))
    for label, model in models.items():
        sr = sr_forward(model, lr, data_range=deployed[label].data_range, device=device)
        panels.append((label, cut(sr.cpu()), None))
    panels = [(lab, img, psnr(img, hr8, crop_border=0, y_channel=True)) for lab, img, _ in panels]
    panels.append(("HR", hr8, None))
    return {"image": name, "box": [top, left, size], "panels": panels}


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------


def _kind_label(rec: Mapping[str, Any]) -> str:
    """``derived`` (with the search trial it is) or ``zoo`` (with the zoo net it deploys to)."""
    if rec["kind"] == "zoo":
        zoo = rec.get("zoo_name")
        return "zoo" if zoo in (None, rec["name"]) else f"zoo: {zoo}"
    trial = rec.get("search_trial")
    return f"derived: {trial}" if isinstance(trial, str) else "derived"


def _table_cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows: net, kind, PSNR-Y / SSIM per set, then the profile table's columns
    (:data:`proxies.profile.COLUMNS`, formatted by :func:`proxies.profile.table_cells`)."""
    sets = set_labels(table)
    header = ["Net", "Kind", *(f"{s} PSNR-Y / SSIM" for s in sets),
              *(title for title, _ in PROFILE_COLUMNS[1:])]
    names = [f.name for f in fields(ProfileRow)]
    body = []
    for rec in table.to_dict("records"):
        values: dict[str, Any] = {k: None if isinstance(v, float) and math.isnan(v) else v
                                  for k, v in rec.items() if k in names}
        row = ProfileRow(**values)
        body.append([
            str(rec["name"]), _kind_label(rec),
            *(f"{rec[f'psnr_y_{s}']:.2f} / {rec[f'ssim_y_{s}']:.4f}" for s in sets),
            *table_cells(row)[1:],
        ])
    return header, body


def _markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def table_markdown(table: pd.DataFrame) -> str:
    """The NTIRE-style table as Markdown."""
    return _markdown(*_table_cells(table))


def _html_table(header: list[str], body: list[list[str]], kinds: Sequence[Any]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = []
    for cells, kind in zip(body, kinds, strict=True):
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        rows.append(f'<tr class="{html.escape(str(kind))}">{tds}</tr>')
    return f'<table class="ntire"><tr>{head}</tr>\n' + "\n".join(rows) + "</table>"


def _table_html(table: pd.DataFrame) -> str:
    return _html_table(*_table_cells(table), table["kind"])


def _aim_html(aim: Mapping[str, Any]) -> str:
    if not aim["available"]:
        return f"<p><b>Aim not judged:</b> {html.escape(aim['reason'])}.</p>"
    items = []
    for name, v in aim["nets"].items():
        margins = ", ".join(f"{s} {m:+.2f} dB" for s, m in v["psnr_margin_db"].items())
        lat = "-" if v["latency_ratio"] is None else f"{v['latency_ratio']:.2f}x"
        mem = "-" if v["memory_margin_mib"] is None else f"{v['memory_margin_mib']:+.1f} MiB"
        items.append(
            f"<li><b>{html.escape(name)}</b>: {'MEETS' if v['met'] else 'does not meet'} the aim"
            f" (PSNR vs {AIM_NET}: {html.escape(margins)}; latency {lat} of "
            f"{AIM_NET}'s; memory headroom under {MEMORY_REFERENCE}: {mem})</li>")
    met = aim["met_by"]
    head = (f"met by {', '.join(met)}" if met else "not met by any derived net")
    several = [f"{n}: mean of {k} runs" for n, k in aim.get("reference_runs", {}).items() if k > 1]
    if several:
        head += f" ({'; '.join(several)})"
    return (f"<p><b>Aim</b> (the Y-PSNR of {AIM_NET} on every set, at lower latency, "
            f"with no more peak memory than {MEMORY_REFERENCE}): <b>{html.escape(head)}</b>.</p>"
            f"<ul>{''.join(items)}</ul>")


def _crops_html(crops: Mapping[str, Any], out: Path) -> str:
    folder = out / CROPS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    top, left, size = crops["box"]
    figures = []
    for label, img, value in crops["panels"]:
        uri, data = _png_data_uri(img)
        (folder / f"{label}.png").write_bytes(data)
        caption = html.escape(label) + ("" if value is None else f"<br>{value:.2f} dB")
        figures.append(f'<figure><img src="{uri}" width="{2 * size}" height="{2 * size}" '
                       f'alt="{html.escape(label)}"><figcaption>{caption}</figcaption></figure>')
    return (f"<h2>Crops</h2><p>{html.escape(crops['image'])}, HR window top={top}, left={left}, "
            f"{size}x{size} px, shown at 2x (PSNR-Y of the crop)</p>"
            f'<div class="crops">{"".join(figures)}</div>')


def _provenance_html(info: Mapping[str, Any]) -> str:
    text = json.dumps(info, indent=2, default=str)
    return f"<h2>Budget, machine, settings</h2><pre>{html.escape(text)}</pre>"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m results.report``."""
    p = argparse.ArgumentParser(prog="python -m results.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="retrain run folders (derived and zoo)")
    p.add_argument("--out", type=Path, required=True, help="report folder (created)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--storage", help="Optuna storage URL of the search, e.g. "
                                          "sqlite:///runs/optuna/NAME/study.db")
    source.add_argument("--ray", type=Path, help="Ray Tune experiment folder of the search")
    p.add_argument("--study", help="Optuna study name (when the storage has several)")
    p.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS),
                   help="benchmark sets or HR folders (default: Set5 Set14 B100)")
    p.add_argument("--datasets-root", type=Path, help="folder holding <set>/HR")
    p.add_argument("--reference", default=REFERENCE_NET,
                   help=f"zoo net latency ratios are taken to (default {REFERENCE_NET})")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--size", type=int, default=128, help="LR side of the timing input")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads while timing (default 1; 0 keeps torch's setting)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"),
                   help="measurement backend of latency and peak memory (proxies.runtime)")
    p.add_argument("--tile", type=_tile_arg, default=None,
                   help="LR tile side or 'auto' for the evaluation")
    p.add_argument("--crop-set", help="set of the crops (default: the first of --sets)")
    p.add_argument("--crop-image", help="image stem of the crops (default: most detailed)")
    p.add_argument("--crop-size", type=int, default=96, help="HR side of the crops")
    p.add_argument("--allow-mixed-budgets", action="store_true",
                   help="report runs trained with different budgets (with a warning)")
    return p


def _check_args(args: argparse.Namespace) -> None:
    for name, lo in (("size", 16), ("rounds", 1), ("crop_size", 8), ("threads", 0)):
        value = getattr(args, name)
        if value < lo:
            raise ReportError(f"--{name.replace('_', '-')}: got {value}; allowed: >= {lo}")
    if args.reference not in ZOO:
        raise ReportError(f"--reference: got {args.reference!r}; allowed: {list(ZOO)}")
    if args.study is not None and args.storage is None:
        raise ReportError("--study applies to --storage only")


def run_report(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Everything the command does; returns the report's data."""
    from tqdm import tqdm

    from search_space import build_model

    _check_args(args)
    runs = [load_run(folder) for folder in args.runs]
    check_runs(runs, args.allow_mixed_budgets)
    for spec in args.sets:
        resolve_set(spec, args.datasets_root)  # a missing folder fails before any work
    crop_set = args.crop_set or args.sets[0]
    crop_folder = resolve_set(crop_set, args.datasets_root)
    search = None
    if args.storage is not None or args.ray is not None:
        from results.table import from_optuna, from_ray

        table = from_ray(args.ray) if args.ray else from_optuna(args.storage, args.study)
        search = search_points(table, args.reference)
    try:
        device = resolve_device(args.device)
    except RuntimeError as exc:  # CUDA asked for but not available
        raise ReportError(f"--device {args.device}: {exc}") from exc
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    overlaps = selection_overlaps(runs, args.sets, args.datasets_root)
    for name, hits in overlaps.items():
        logger.warning("%s was validated (selected) on %s, which this report also scores: its "
                       "figures there are not test figures", name, ", ".join(hits))
    models = {run.name: build_deployed(run, device) for run in runs}
    summaries: dict[str, pd.DataFrame] = {}
    for run in tqdm(runs, desc="evaluating", unit="net", file=sys.stderr):
        per_image = evaluate_run(run, models[run.name], args.sets, device=device,
                                 tile=args.tile, datasets_root=args.datasets_root,
                                 cache_dir=out / EVAL_DIR)
        summaries[run.name] = summarise(per_image)
    settings = ProfileSettings(device=str(device), lr_size=(args.size, args.size),
                               rounds=args.rounds, threads=args.threads or None,
                               backend=args.backend)
    scale = runs[0].deployed.scale
    reference = build_model(at_scale(ZOO[args.reference], scale)).to(device).eval()
    torch.manual_seed(0)
    profiles = {run.name: profile_model(run.name, models[run.name], settings, reference)
                for run in tqdm(runs, desc="profiling", unit="net", file=sys.stderr)}
    aim_ratio = aim_latency_ratio(runs, profiles, args.reference)
    if aim_ratio is None:  # no retrained rlfn_ntire: time an untrained one (same latency)
        aim_net = build_model(at_scale(ZOO[AIM_NET], scale)).to(device).eval()
        aim_ratio = profile_model(AIM_NET, aim_net, replace(settings, memory=False),
                                  reference).latency_ratio
    profiles = dict(zip(profiles, with_aim_ratio(list(profiles.values()), aim_ratio),
                        strict=True))
    ref_memory = measure_peak_memory(reference, (1, 3, args.size, args.size),
                                     device=device, backend=args.backend,
                                     threads=args.threads or None).peak_memory_mib
    table = build_table(runs, summaries, profiles)
    table["memory_ratio"] = table["peak_memory_mib"] / ref_memory if ref_memory else math.nan
    links = {} if search is None else link_search_trials(search, runs)
    table["search_trial"] = [links.get(run.name) for run in runs]
    front_set = set_labels(table)[0]
    aim = aim_verdict(table)
    seeds = seed_summary(table, runs)
    for name, given in repeated_seeds(seeds).items():
        logger.warning("%s was retrained with repeated seeds (%s): give each run its own "
                       "run.seed for a spread over seeds", name, ", ".join(given))
    aim_mean = aim_verdict(seeds) if (seeds["runs"] > 1).any() else None
    crops = make_crops(models, {r.name: r.deployed for r in runs}, crop_folder,
                       image=args.crop_image, size=args.crop_size, device=device)

    info = machine_info(device)
    if args.threads:
        info["threads"] = args.threads
    budget = runs[0].budget if not budget_differences(runs) else {
        r.name: r.budget for r in runs}
    provenance = {
        "command": shlex.join([sys.executable, "-m", "results.report", *argv]),
        "machine": info,
        "profile_settings": asdict(settings),
        "latency_reference": args.reference,
        "aim_net": AIM_NET,
        "aim_latency_ratio": aim_ratio,
        "training_budget": budget,
        "selected_on_reported_sets": overlaps,
        "runs": {r.name: {"folder": str(r.run_dir), "command": r.command,
                          "deploy_check": r.deploy_check} for r in runs},
    }
    blocks: list[Any] = []
    if search is not None:
        blocks += [search_figure(search, table, "latency", args.reference, front_set),
                   search_figure(search, table, "memory", args.reference, front_set)]
    blocks.append(retrained_figure(table, front_set))
    how = (" (the ONNX export; peak memory: the resident-set rise)"
           if args.backend == "onnxruntime" else " (eager)")
    blocks.append("<h2>NTIRE-style table</h2><p>Every net in its deployed form, measured in "
                  f"this process on {html.escape(args.backend)}{how}: "
                  f"LR {args.size}x{args.size} timing input, "
                  f"{html.escape(ratio_note(args.reference))}; complexity at 256x256."
                  "</p>" + _table_html(table))
    if overlaps:
        blocks.append("<p><b>Selected on a reported set:</b> " + "; ".join(
            f"{html.escape(n)} (validated on {html.escape(', '.join(h))})"
            for n, h in overlaps.items()) + ". Its figures on those sets are not test figures."
            "</p>")
    blocks.append(_aim_html(aim))
    if aim_mean is not None:
        blocks.append("<h2>Over seeds</h2><p>One row per architecture: the Y-PSNR mean "
                      "&plusmn; sample std [min-max] over its runs.</p>"
                      + _html_table(*_seed_cells(seeds), seeds["kind"])
                      + "<p>Judged on the means:</p>" + _aim_html(aim_mean))
    blocks.append(_crops_html(crops, out))
    blocks.append(_provenance_html(provenance))
    title = f"Report: {', '.join(r.name for r in runs)}"
    write_page_html(blocks, out / REPORT_HTML, title, style=_CSS)
    _write_text_atomic(table.to_csv(index=False), out / TABLE_CSV)
    _write_text_atomic(table_markdown(table), out / TABLE_MD)
    _write_text_atomic(seeds.to_csv(index=False), out / SEEDS_CSV)
    _write_text_atomic(seeds_markdown(seeds), out / SEEDS_MD)
    payload = {**provenance, "table": json.loads(table.to_json(orient="records")),
               "aim": aim, "seeds": json.loads(seeds.to_json(orient="records")),
               "aim_over_seeds": aim_mean, "crops": {"set": crop_set, "image": crops["image"],
                                     "box": crops["box"],
                                     "psnr_y_db": {lab: v for lab, _, v in crops["panels"]}},
               "search": None if search is None else {
                   "trials": len(search), "source": args.storage or str(args.ray)}}
    _write_text_atomic(json.dumps(payload, indent=2, default=str), out / REPORT_JSON)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    try:
        payload = run_report(args, argv)
    except (ReportError, FileNotFoundError, ValueError, GenotypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table_markdown(pd.DataFrame(payload["table"])))
    aim = payload["aim"]
    if aim["available"]:
        print("aim met by: " + (", ".join(aim["met_by"]) or "no derived net"))
    else:
        print(f"aim not judged: {aim['reason']}")
    if payload.get("aim_over_seeds"):
        print(seeds_markdown(pd.DataFrame(payload["seeds"])))
        over = payload["aim_over_seeds"]
        print("aim met on the means over seeds by: " + (", ".join(over["met_by"])
                                                         or "no derived net"))
    print(f"report: {args.out / REPORT_HTML}")
    return 0


if __name__ == "__main__":
    from results.report import main as _main

    raise SystemExit(_main())
