"""The retrained run folders a report compares (``python searchers/retrain.py`` runs).

:func:`load_run` reads one folder into a :class:`RetrainedRun`; :func:`check_runs` refuses
runs a report cannot compare (repeated names, mixed scales, different training budgets, see
:func:`budget_differences`); :func:`selection_overlaps` finds runs selected on a reported set;
:func:`build_deployed` loads a run's deployed net.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from results.evaluate.command import load_checkpoint
from results.evaluate.sets import resolve_set
from results.run_folder import RunFolder, RunFolderError
from search_space import Genotype, GenotypeError
from search_space.zoo import ZOO

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger("results.report")  # every report module logs as the command

__all__ = [
    "BUDGET_SECTIONS",
    "ReportError",
    "RetrainedRun",
    "budget_differences",
    "build_deployed",
    "check_runs",
    "load_run",
    "selection_overlaps",
    "zoo_match",
]

#: Sections of a retrain run's ``config.yaml`` that make its training budget.
BUDGET_SECTIONS: tuple[str, ...] = ("data", "optim")


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


def load_run(run_dir: str | Path) -> RetrainedRun:
    """Read a finished retrain run folder (:class:`results.run_folder.RunFolder`).

    Raises:
        FileNotFoundError: the folder does not exist.
        ReportError: it is not a retrain run, or its training has not finished (the message
            gives the command that resumes it).
    """
    folder = RunFolder(Path(run_dir).expanduser())
    where = str(folder.path)
    if not folder.path.is_dir():
        raise FileNotFoundError(
            f"run folder {where!r} does not exist; pass folders written by "
            "python searchers/retrain.py (run.dir/run.name, e.g. runs/retrain/NAME)"
        )
    missing = folder.missing(folder.config, folder.genotype)
    if missing:
        raise ReportError(
            f"run folder {where!r} lacks {missing}: it is not a searchers/retrain.py run "
            f"folder; pass the folder that holds {folder.config.name}, {folder.genotype.name} "
            f"and {folder.deployed.name}"
        )
    unfinished = folder.unfinished()
    if unfinished:
        first = folder.first_command() or "python searchers/retrain.py ..."
        raise ReportError(
            f"run {where!r} has no {unfinished[0]}: its training has not finished. "
            f"Resume it with the command it was started with plus --resume: {first} --resume"
        )
    try:
        genotype = Genotype.load(folder.genotype)
        deployed = Genotype.load(folder.deployed_genotype)
        cfg = folder.read_config()
        deploy_check = folder.read_json(folder.deploy_check)
    except (GenotypeError, RunFolderError) as exc:
        raise ReportError(f"run {where!r}: {exc}") from exc
    budget = {section: cfg.get(section, {}) for section in BUDGET_SECTIONS}
    kd = cfg.get("kd") or {}
    if kd.get("teacher"):  # distillation is part of the recipe (runs without it have no kd)
        budget["kd"] = {"teacher": kd["teacher"], "weight": kd.get("weight")}
        if kd.get("init", "none") != "none":  # MemSR's initialisation: another recipe
            budget["kd"] |= {"init": kd["init"], "init_patches": kd.get("init_patches")}
    return RetrainedRun(
        name=folder.path.name, run_dir=folder.path, genotype=genotype, deployed=deployed,
        zoo_name=zoo_match(genotype), budget=budget, deploy_check=deploy_check,
        command=folder.read_command(), seed=(cfg.get("run") or {}).get("seed"),
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


def selection_overlaps(runs: Sequence[RetrainedRun], sets: Sequence[str],
                       datasets_root: str | Path | None) -> dict[str, list[str]]:
    """Run name -> the reported sets its selection (validation) data came from.

    A run's selection set is its config's ``data.val`` (a folder, or one side of a folder's
    hold-out split, ``FOLDER::holdout``). Selecting on a set that the report then scores is
    selection on the test set; the report flags every such run.
    """
    from proxies.data.splits import split_spec

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

    folder = RunFolder(run.run_dir)
    model = build_model(run.deployed)
    load_checkpoint(model, folder.deployed, genotype_name=str(folder.deployed_genotype))
    return model.to(device).eval()
