"""Multi-objective architecture trials with Optuna: ``python searchers/optuna_search.py``, or
from Python :func:`run_study` (an :class:`~searchers.trials.config.OptunaConfig`), which returns
a :class:`StudyResult`.

Each trial samples one architecture (or takes a zoo net: the yardstick is enqueued as the first
trials of every study), measures latency and peak memory on this device and trains it briefly
for a proxy PSNR (see :mod:`searchers.trials.trial`). NSGA-II by default (``study.sampler=tpe``
for TPE, ``study.sampler=random`` for random search, the baseline a search must beat).
The storage defaults to a SQLite file in the run folder, with a heartbeat and retries of failed
trials; any Optuna storage URL works (``postgresql://...`` for several hosts) and
``journal:///path/to/file.log`` gives a journal file for NFS. Re-running the same command
resumes the study; ``run.workers=N`` runs N worker processes on it; more hosts join by running
the same command with the same storage URL. Point ``optuna-dashboard STORAGE_URL`` at the
storage to watch it.

The settings are :mod:`searchers.trials.config`, the storage :mod:`searchers.trials.storage`,
the samplers :mod:`searchers.trials.samplers`; this module opens the study, runs the objective
in one or more workers and is the command.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from results.run_folder import RunFolder
from searchers.common.command import exit_status, log_to_stderr
from searchers.common.config import ConfigError, dump_yaml, load_config
from searchers.common.spend import SpendMeter
from searchers.trials.config import OptunaConfig
from searchers.trials.samplers import drawn_trials, make_sampler, trial_sampler
from searchers.trials.storage import (
    check_storage_url,
    fail_stale_trials,
    make_storage,
    retried_numbers,
)
from searchers.trials.supernet_space import check_space_in_supernet
from searchers.trials.trial import (
    DIRECTIONS,
    OBJECTIVE_NAMES,
    NotInSpace,
    SampleSpace,
    evaluate_genotype,
    genotype_params,
    normalise_interface,
    sample_genotype,
    study_patch_size,
    zoo_genotype,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("searchers.trials.study")

__all__ = [
    "StudyResult",
    "WorkersFailed",
    "main",
    "open_study",
    "run_study",
    "run_worker",
    "storage_url",
]


def storage_url(cfg: OptunaConfig) -> str:
    """The study's storage URL: ``study.storage``, or the SQLite file ``study.db`` in the run
    folder."""
    return cfg.study.storage or f"sqlite:///{cfg.run.folder().resolve() / 'study.db'}"


def open_study(cfg: OptunaConfig, storage_url: str) -> Any:
    """Create or load the study; refuse one whose objectives differ; enqueue the zoo once."""
    import optuna

    storage = make_storage(storage_url, cfg.study)
    names = optuna.get_all_study_names(storage)
    if cfg.study.name in names:
        existing = optuna.load_study(study_name=cfg.study.name, storage=storage)
        dirs = tuple(d.name.lower() for d in existing.directions)
        metrics = tuple(existing.metric_names or ())
        if dirs != DIRECTIONS or metrics != OBJECTIVE_NAMES:
            raise ConfigError(
                f"study {cfg.study.name!r} in {storage_url} has objectives {metrics or '?'} "
                f"with directions {dirs}; this search needs {OBJECTIVE_NAMES} {DIRECTIONS}. "
                "Choose another study.name or storage.")
    study = optuna.create_study(study_name=cfg.study.name, storage=storage,
                                directions=list(DIRECTIONS),  # type: ignore[arg-type]
                                sampler=make_sampler(cfg.study),
                                load_if_exists=True)
    if cfg.study.name not in names:
        study.set_metric_names(list(OBJECTIVE_NAMES))
        if cfg.study.enqueue_zoo:
            outside = []
            for name, params in zoo_params(cfg.space, cfg.study.zoo).items():
                if params is None:
                    outside.append(name)
                    if cfg.study.zoo_outside == "skip":
                        continue
                study.enqueue_trial(params or {}, user_attrs={"zoo": name,
                                                              "in_space": params is not None})
            if outside:
                study.set_user_attr("zoo_outside_space", outside)
                logger.warning(
                    "zoo nets outside the sampled space: %s; %s (widen the space to hold them, "
                    "e.g. base: spaces/cpu.yaml)", ", ".join(outside),
                    "not enqueued (study.zoo_outside=skip)" if cfg.study.zoo_outside == "skip"
                    else "enqueued as references without parameters (study.zoo_outside="
                    "reference; a sampler's model-based part then sees no shared parameters)")
    return study


def zoo_params(space: SampleSpace, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each zoo net's trial parameters in ``space``: those of its normalised form
    (:func:`normalise_interface`: the interface conventions are not sampled), or None for a
    net the space cannot express (the log says which field is out; ``study.zoo_outside``
    says whether it is skipped or enqueued as a reference without parameters)."""
    out: dict[str, dict[str, Any] | None] = {}
    for name in names:
        genotype = normalise_interface(zoo_genotype(name, space.scale))  # validates the name
        try:
            out[name] = genotype_params(genotype, space, f"zoo net {name!r}")
        except NotInSpace as exc:
            logger.info("%s", exc)
            out[name] = None
    return out


def objective(trial: Any, cfg: OptunaConfig,
              meter: SpendMeter | None = None) -> tuple[float, float, float]:
    """One trial: a zoo net (enqueued) or a sampled architecture, measured and trained;
    ``meter``'s lap (the worker's spend since its last trial ended: this trial's sampling and
    work) is recorded as the user attribute ``spent_s``, whatever the outcome."""
    try:
        genotype = trial_genotype(trial, cfg)
        try:
            patch = study_patch_size(cfg.space, cfg.proxy,
                                     cfg.study.zoo if cfg.study.enqueue_zoo else [])
            result = evaluate_genotype(genotype, cfg.proxy, cfg.measure, cfg.constraints,
                                       patch, cfg.budget,
                                       reference=bool(trial.user_attrs.get("is_zoo")))
        except Exception as exc:  # recorded as FAIL with its reason; the study goes on
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:1000])
            raise
        return record_result(trial, result)
    finally:
        if meter is not None:
            trial.set_user_attr(SPENT_ATTR, meter.lap())


SPENT_ATTR = "spent_s"
"""The user attribute with what a trial cost its worker, in :mod:`searchers.common.spend`'s
seconds (CPU-seconds on a CPU)."""


def study_spent(study: Any, zoo: bool = False) -> float:
    """The seconds the study's searched trials have cost (:data:`SPENT_ATTR`, summed; a trial
    whose worker was killed mid-trial recorded nothing). The zoo trials, the yardstick every
    method is compared with, are not the search's: ``zoo=True`` sums theirs instead."""
    return float(sum(t.user_attrs.get(SPENT_ATTR, 0.0) for t in study.get_trials(deepcopy=False)
                     if bool(t.user_attrs.get("is_zoo")) == zoo))


def trial_costs(study: Any) -> list[float]:
    """What each searched trial that finished cost (:data:`SPENT_ATTR`)."""
    return [float(t.user_attrs[SPENT_ATTR]) for t in study.get_trials(deepcopy=False)
            if SPENT_ATTR in t.user_attrs and not t.user_attrs.get("is_zoo")]


def starts_another(costs: list[float], budget: float) -> bool:
    """Whether a study under ``study.cpu_seconds=budget`` starts another trial after searched
    trials that cost ``costs``: while at least half a trial's mean cost is left. The last
    trial then ends on either side of the budget by up to half a mean trial, so a study's
    spend centres on its budget as a DARTS search's does; starting while anything was left
    overshot by 2-32 CPU-s of 150 (BENCHMARKS.md, issue 27)."""
    left = budget - sum(costs)
    return left > 0 and (not costs or left >= 0.5 * sum(costs) / len(costs))


def trial_genotype(trial: Any, cfg: OptunaConfig) -> Any:
    """The trial's net: its zoo net (enqueued; checked against its enqueued parameters) or
    one sampled from ``cfg.space``; recorded as the user attributes ``name``, ``is_zoo`` and
    ``genotype``."""
    zoo = trial.user_attrs.get("zoo")
    genotype = zoo_genotype(zoo, cfg.space.scale) if zoo else sample_genotype(trial, cfg.space)
    if zoo and trial.user_attrs.get("in_space"):  # the enqueued parameters rebuild the net
        sampled = sample_genotype(trial, cfg.space)
        if sampled != normalise_interface(genotype):
            raise ConfigError(f"zoo net {zoo!r}: its enqueued parameters give another net in "
                              "this space (was study.space changed after the study began?); "
                              "use a new study.name")
    trial.set_user_attr("name", zoo or f"trial_{trial.number}")
    trial.set_user_attr("is_zoo", bool(zoo))
    trial.set_user_attr("genotype", genotype.to_json(indent=None))
    return genotype


def record_result(trial: Any, result: Any) -> tuple[float, float, float]:
    """Record a :class:`~searchers.trials.trial.TrialResult` on ``trial`` (its attributes and
    constraints) and return the values to tell; NaN PSNR (diverged) fails the trial."""
    for key, value in result.attrs().items():
        trial.set_user_attr(key, value)
    if math.isnan(result.psnr_db):
        trial.set_user_attr("fail_reason", "the proxy training diverged (NaN loss)")
        return result.values  # Optuna records NaN values as FAIL
    set_constraints(trial, result.constraints)  # also for -inf (over budget, untrained)
    return result.values


def set_constraints(trial: Any, constraints: dict[str, float]) -> None:
    """Record a trial's constraint values (feasible when every one is <= 0) for Optuna and for
    optuna-dashboard.

    Optuna 5 keeps each one under its own name (``trial.set_constraint``: system attribute
    ``constraints:NAME``), which its samplers read. optuna-dashboard 0.21 still reads the old
    list under ``constraints`` and shows every trial's constraints as empty without it, so the
    same values are written there too, in sorted-name order, with the names as the user
    attribute ``constraint_names``. Optuna then sees each value twice (``"0"``, ``"1"``, ... and
    the names): feasibility is unchanged, and a trial's total violation doubles for every trial
    alike, so NSGA-II's constrained ranking is unchanged too."""
    names = sorted(constraints)
    for name in names:
        trial.set_constraint(name, constraints[name])
    if names:
        # Trial has no public setter for system attributes; Optuna's own samplers write the
        # old-format list the same way (optuna/samplers/_base.py).
        trial.storage.set_trial_system_attr(trial._trial_id, "constraints",
                                            [float(constraints[n]) for n in names])
        trial.set_user_attr("constraint_names", names)


def finished_trials(study: Any) -> int:
    """The trials that count toward ``study.n_trials``: COMPLETE and PRUNED ones, and FAIL ones
    that will not be run again. A trial whose worker was killed is failed once its heartbeat
    is stale and re-enqueued as a new trial (``study.retries``); the failed attempt does not
    count, its retry does, so a user who asks for 8 trials gets 8 finished ones."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and t.number not in retried))


def run_worker(cfg: OptunaConfig, storage_url: str, worker: int) -> None:
    """Run trials on the shared study until it holds ``study.n_trials`` finished trials
    (:func:`finished_trials`).

    One trial per ``optimize`` call, re-reading the study in between, so that workers on
    several processes or hosts stop together. SQLite cannot lock a waiting (enqueued) trial, so
    two workers may occasionally pop the same one; the second one's result is then dropped with
    a warning (PostgreSQL and MySQL lock the row, so it does not happen there).
    """
    import optuna

    if cfg.proxy.kind == "halving":  # brackets of ask/tell (Optuna's pruners are single-objective)
        from searchers.trials.halving import StudyHooks, run_halving_worker

        return run_halving_worker(cfg, storage_url, worker, StudyHooks(
            trial_genotype=trial_genotype, record_result=record_result,
            finished_trials=finished_trials))
    if cfg.measure.threads:
        torch.set_num_threads(cfg.measure.threads)
    study = optuna.load_study(study_name=cfg.study.name,
                              storage=make_storage(storage_url, cfg.study),
                              sampler=make_sampler(cfg.study))
    # A trial of a killed worker of this host is failed (and retried) before the first pass;
    # one of another host once its heartbeat is older than study.grace_s (Optuna checks
    # before every trial, and this run checks again at the end).
    fail_stale_trials(study)
    meter = SpendMeter(cfg.measure.device)
    budget = cfg.study.cpu_seconds
    bar = None
    for _ in range(3 * cfg.study.n_trials):  # a cap: each pass runs (or loses) one trial
        finished = finished_trials(study)
        if finished >= cfg.study.n_trials:
            break
        costs = trial_costs(study) if budget is not None else []
        spent = sum(costs)
        if budget is not None and not starts_another(costs, budget):
            logger.info("worker %d: the study has spent %.0f of study.cpu_seconds=%.0f after "
                        "%d trials; no trial starts", worker, spent, budget, finished)
            break
        if bar is None and worker == 0:
            from tqdm import tqdm

            bar = (tqdm(total=cfg.study.n_trials, initial=finished, desc="trials", unit="trial")
                   if budget is None else
                   tqdm(total=round(budget), initial=min(round(spent), round(budget)),
                        desc="trials (CPU-s)", unit="s"))
        study.sampler = trial_sampler(cfg.study, worker, drawn_trials(study))
        try:
            study.optimize(lambda t: objective(t, cfg, meter), n_trials=1, catch=(Exception,))
        except ValueError as exc:
            if "Cannot tell a" not in str(exc):
                raise
            logger.warning("worker %d: another worker finished the same trial first (%s)",
                           worker, exc)
        if bar is not None:
            bar.n = (min(finished_trials(study), cfg.study.n_trials) if budget is None
                     else min(round(study_spent(study)), round(budget)))
            bar.refresh()
    if bar is not None:
        bar.close()
    fail_stale_trials(study)
    from optuna.trial import TrialState

    running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    if running:
        logger.info("worker %d: trials %s still RUNNING (on other workers, or of a worker "
                    "killed on another host less than study.grace_s=%ds ago: the next run "
                    "fails and retries those)", worker, running, cfg.study.grace_s)


# what every worker imports, imported once by the fork server that forks the workers
WORKER_PRELOAD = ["searchers.trials.study", "searchers.trials.storage", "searchers.trials.samplers",
                  "searchers.trials.trial", "proxies.measure.latency", "proxies.measure.memory",
                  "proxies.measure.complexity", "search_space.network"]


def _worker_context() -> Any:
    """How ``run.workers`` processes start: forked from a fork server that imported
    :data:`WORKER_PRELOAD` once (the server never trains or measures, so the forks start clean),
    instead of each worker importing torch and the project again (about 1.5 s of CPU each).
    Where there is no fork server (Windows), spawned."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_PRELOAD)
    return ctx


def _worker_entry(cfg: OptunaConfig, storage_url: str, worker: int) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s w{worker} %(levelname)s "
                        "%(name)s: %(message)s", datefmt="%H:%M:%S")
    run_worker(cfg, storage_url, worker)


class WorkersFailed(RuntimeError):
    """A worker process of ``run.workers`` > 1 ended with an error (its log says which)."""


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` leaves: the run folder, the study's storage URL and name (to load
    it with ``optuna.load_study``), and its trials as a table (one row per trial,
    :func:`results.table.optuna_study.from_optuna`; also in ``trials.csv``)."""

    run_dir: Path
    storage_url: str
    study_name: str
    trials: pd.DataFrame

    @property
    def trials_csv(self) -> Path:
        return self.run_dir / "trials.csv"


def run_study(cfg: OptunaConfig, *, command: Sequence[str] | None = None) -> StudyResult:
    """Run (or resume) the study of ``cfg`` until it holds ``study.n_trials`` finished trials,
    with ``run.workers`` worker processes, and write its table to ``trials.csv``.

    The run folder (``run.dir``/``run.name``) records the config and ``command`` (default
    ``sys.argv``). Raises :class:`ConfigError` (or another ``ValueError``/``OSError``) for bad
    input, leaving a new run folder unwritten; :class:`WorkersFailed` when a worker failed.
    The run folder is locked for the study (:meth:`RunFolder.lock`): another process writing
    it is refused (to join the study from another process, give it another ``run.name`` and
    the same ``study.storage``); the workers are this process's.
    """
    with RunFolder(cfg.run.folder()).lock() as lock:
        return _study(cfg, command, fresh=lock.created)


def _study(cfg: OptunaConfig, command: Sequence[str] | None, *, fresh: bool) -> StudyResult:
    """:func:`run_study` in its locked run folder (``fresh``: the lock created it)."""
    patch = study_patch_size(cfg.space, cfg.proxy, cfg.study.zoo if cfg.study.enqueue_zoo else [])
    if cfg.proxy.kind == "supernet" and cfg.proxy.supernet:  # the space within the supernet's
        check_space_in_supernet(cfg.space, cfg.proxy.supernet,
                                cfg.study.zoo if cfg.study.enqueue_zoo else [])
    if cfg.proxy.supernet:  # loaded (a damaged or crafted checkpoint refused) before any write
        from searchers.sharing.load import load_supernet

        load_supernet(cfg.proxy.supernet)
    logger.info("every trial trains on %d px HR patches; selection on %s", patch, cfg.proxy.val)
    run_dir = cfg.run.folder()
    url = storage_url(cfg)
    check_storage_url(url)
    run_dir.mkdir(parents=True, exist_ok=True)  # the default study.db lives in it
    try:
        open_study(cfg, url)  # before the config is saved: a refused study
    except BaseException:  # (other objectives, no server) leaves the folder as it was
        if fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    RunFolder(run_dir).record(dump_yaml(cfg), list(sys.argv if command is None else command))
    logger.info("study %r on %s, %d worker(s)", cfg.study.name, url, cfg.run.workers)
    if cfg.run.workers == 1:
        run_worker(cfg, url, 0)
    else:
        ctx = _worker_context()
        procs = [ctx.Process(target=_worker_entry, args=(cfg, url, w))
                 for w in range(cfg.run.workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        if any(proc.exitcode for proc in procs):
            raise WorkersFailed(f"a worker failed (exit codes {[p.exitcode for p in procs]})")
    from results.table.optuna_study import from_optuna

    table = from_optuna(make_storage(url, cfg.study), cfg.study.name)
    table.to_csv(run_dir / "trials.csv", index=False)
    logger.info("%d trials; table in %s; report: python -m results.summary --storage %s --out %s",
                len(table), run_dir / "trials.csv", url, run_dir / "report")
    return StudyResult(run_dir=run_dir, storage_url=url, study_name=cfg.study.name,
                       trials=table)


def main(argv: list[str] | None = None) -> int:
    """The command: the config from ``--config`` and the overrides, then :func:`run_study`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python searchers/optuna_search.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    log_to_stderr()
    return exit_status(lambda: run_study(load_config(OptunaConfig, args.config, args.overrides),
                                         command=[sys.argv[0], *argv]),
                       logger, failures={WorkersFailed: 1})
