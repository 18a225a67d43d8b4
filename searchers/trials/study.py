"""Multi-objective architecture trials with Optuna: ``python searchers/optuna_search.py``.

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
"""

from __future__ import annotations

import argparse
import copy
import datetime
import logging
import math
import multiprocessing
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from search_space.files import error_line
from searchers.common.config import (
    ConfigError,
    MeasureSection,
    RunSection,
    load_config,
    save_run_config,
)
from searchers.trials.trial import (
    DEFAULT_ZOO,
    DIRECTIONS,
    OBJECTIVE_NAMES,
    BudgetConfig,
    ConstraintConfig,
    NotInSpace,
    ProxyConfig,
    SampleSpace,
    evaluate_genotype,
    genotype_params,
    sample_genotype,
    study_patch_size,
    zoo_genotype,
)

logger = logging.getLogger("searchers.trials.study")

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "journal")
OWNER_ATTR = "srnas:owner"  # trial system attribute: the process that runs the trial


@dataclass
class StudyConfig:
    name: str = "srnas"
    n_trials: int = 24
    sampler: Literal["nsga2", "tpe", "random"] = "nsga2"  # random: the search's baseline
    population_size: int = 8
    seed: int = 0
    storage: str | None = None  # default: sqlite:///<run folder>/study.db
    heartbeat_s: int = 60
    grace_s: int = 180
    retries: int = 1
    enqueue_zoo: bool = True
    zoo: list[str] = field(default_factory=lambda: list(DEFAULT_ZOO))

    def __post_init__(self) -> None:
        if self.n_trials < 1 or self.population_size < 2:
            raise ValueError(f"n_trials >= 1 and population_size >= 2 needed; got "
                             f"{self.n_trials}, {self.population_size}")


@dataclass
class TrialsRun(RunSection):
    """The trial search's run folder (:class:`searchers.common.config.RunSection`) and its worker
    processes (Optuna; Ray Tune's trials run as the cluster schedules them)."""

    dir: str = "runs/optuna"
    name: str | None = "default"
    workers: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.workers < 1:
            raise ValueError(f"workers: got {self.workers}; must be >= 1")


@dataclass
class OptunaConfig:
    space: SampleSpace = field(default_factory=SampleSpace)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    measure: MeasureSection = field(default_factory=MeasureSection)
    constraints: ConstraintConfig = field(default_factory=ConstraintConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    run: TrialsRun = field(default_factory=TrialsRun)


def check_storage_url(url: str) -> str:
    """The scheme of storage ``url``; :class:`ConfigError` naming it if it is not supported."""
    scheme = url.split(":", 1)[0].split("+", 1)[0] if ":" in url else ""
    if scheme not in STORAGE_SCHEMES:
        raise ConfigError(f"study.storage: got {url!r} (scheme {scheme!r}); supported schemes: "
                          f"{', '.join(STORAGE_SCHEMES)}, e.g. sqlite:///runs/study.db, "
                          "postgresql://user@host/db, journal:///shared/study.log")
    return scheme


class RetryWithItsDraws:
    """Optuna's stale-trial retry (``RetryHeartbeatStaleTrialCallback``), except for an
    attempt that died while it drew its architecture (no ``genotype`` attribute yet, and not a
    zoo net): its retry keeps none of the parameters drawn so far. The retry's sampler is
    seeded by the position of the attempt (:func:`drawn_trials`), so it draws them all again as
    the attempt did; a kept prefix would be returned without a draw and shift the draws of
    every later parameter."""

    def __init__(self, max_retry: int | None) -> None:
        self.max_retry = max_retry

    def __call__(self, study: Any, trial: Any) -> None:
        import warnings

        import optuna
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        if "genotype" not in trial.user_attrs and "zoo" not in trial.user_attrs:
            trial = copy.copy(trial)
            trial.params, trial.distributions = {}, {}
        with warnings.catch_warnings():  # the retry callback is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)(study, trial)


def make_storage(url: str, cfg: StudyConfig) -> Any:
    """An Optuna storage for ``url``: RDB (heartbeat + retry) or a journal file."""

    import optuna

    scheme = check_storage_url(url)
    if scheme == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = url.split(":", 1)[1].lstrip("/")
        path = "/" + path if url.startswith("journal:///") else path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    retry = RetryWithItsDraws(max_retry=cfg.retries)
    # A worker killed mid-trial stops its heartbeat; after the grace period the trial is
    # marked FAIL and re-enqueued (up to study.retries times) for another worker.
    return _heartbeat_storage_class()(
        url, heartbeat_interval=cfg.heartbeat_s, grace_period=cfg.grace_s,
        heartbeat_stale_trial_callback=retry,
        engine_kwargs={"connect_args": {"timeout": 60}} if scheme == "sqlite" else None,
    )


def process_owner(pid: int) -> str:
    """``host|boot id|pid namespace|pid|start time`` of process ``pid`` (``?`` for a part this
    machine cannot tell: no ``/proc``), the owner recorded on each trial it runs."""
    parts = [socket.gethostname(), "?", "?", str(pid), "?"]
    try:
        parts[1] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        parts[2] = os.readlink("/proc/self/ns/pid")
        parts[4] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        pass
    return "|".join(parts)


def owner_is_dead(owner: str) -> bool:
    """True only when ``owner`` (:func:`process_owner`) is a process of this machine and pid
    namespace that is gone: no such pid, a zombie, or the pid reused by a process started at
    another time. Any other owner (another host, unknown parts) may be alive: False."""
    parts = owner.split("|")
    mine = process_owner(os.getpid()).split("|")
    if len(parts) != 5 or "?" in parts or "?" in mine or parts[:3] != mine[:3]:
        return False
    try:
        fields = Path(f"/proc/{int(parts[3])}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    except (OSError, ValueError, IndexError):
        return False
    return fields[0] in ("Z", "X") or fields[19] != parts[4]


_STORAGE_CLASS: Any = None


def _heartbeat_storage_class() -> Any:
    """Optuna's RDBStorage, with stale trials found sooner and without a hole.

    Optuna records a trial's first heartbeat only when the trial's heartbeat thread starts,
    after ``study.ask()`` created (or popped) the trial and sampled it; a worker killed in
    between left a RUNNING trial without a heartbeat, which Optuna never finds stale
    (``RDBStorage._get_stale_trial_ids`` skips it), so it stayed RUNNING for good. Here a
    trial gets its owner (:func:`process_owner`; in the same write for a new trial, right
    after for a popped waiting one) and a heartbeat the moment it turns RUNNING, and a trial
    counts as stale when Optuna finds its heartbeat stale, when its owner is a process of
    this machine that is gone (:func:`owner_is_dead`: a re-run on the host of a killed worker
    fails its trial at once, without waiting for ``study.grace_s``), or when it has no owner
    ``study.grace_s`` after it started (a popped trial whose worker was killed between the
    pop and the next write)."""
    global _STORAGE_CLASS
    if _STORAGE_CLASS is not None:
        return _STORAGE_CLASS
    import optuna
    from optuna.trial import FrozenTrial, TrialState

    class HeartbeatRDBStorage(optuna.storages.RDBStorage):
        def _create_new_trial(self, study_id: int, template_trial: Any = None) -> Any:
            # create_new_trial and Optuna's storage cache both create trials through this; a
            # new RUNNING trial is written with its owner in the same transaction
            if template_trial is None:
                template_trial = FrozenTrial(
                    number=-1, state=TrialState.RUNNING, value=None, values=None,
                    datetime_start=datetime.datetime.now(), datetime_complete=None,
                    params={}, distributions={}, user_attrs={},
                    system_attrs={OWNER_ATTR: process_owner(os.getpid())},
                    intermediate_values={}, trial_id=-1)
            trial = super()._create_new_trial(study_id, template_trial)
            if template_trial.state == TrialState.RUNNING:
                self.record_heartbeat(trial._trial_id)
            return trial

        def set_trial_state_values(self, trial_id: int, state: Any,
                                   values: Any = None) -> bool:
            changed = bool(super().set_trial_state_values(trial_id, state, values))
            if changed and state == TrialState.RUNNING:  # a waiting trial popped
                self._claim(trial_id)
            return changed

        def _claim(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, OWNER_ATTR, process_owner(os.getpid()))
            self.record_heartbeat(trial_id)

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            stale = [int(t) for t in super()._get_stale_trial_ids(study_id)]
            grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
            now = datetime.datetime.now()  # Optuna's datetime_start is local time too
            for t in self.get_all_trials(study_id, deepcopy=False,
                                         states=(TrialState.RUNNING,)):
                owner = t.system_attrs.get(OWNER_ATTR)
                if t._trial_id in stale:
                    continue
                if (owner is None and t.datetime_start is not None
                        and (now - t.datetime_start).total_seconds() > grace) or (
                            owner is not None and owner_is_dead(str(owner))):
                    stale.append(t._trial_id)
            return stale

    _STORAGE_CLASS = HeartbeatRDBStorage
    return _STORAGE_CLASS


def make_sampler(cfg: StudyConfig, nsga2: type | None = None) -> Any:
    """The study's sampler; ``nsga2`` replaces Optuna's NSGA-II class (a subclass of it)."""
    import optuna

    if cfg.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True, group=True)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    cls = nsga2 or optuna.samplers.NSGAIISampler
    return cls(population_size=cfg.population_size, seed=cfg.seed)


def random_sampler(seed: int, worker: int, trials_so_far: int) -> Any:
    """The random sampler of one trial, seeded by (seed, worker, trials already in the study):
    reproducible for one worker, and neither a resumed study nor a second worker re-draws the
    architectures already drawn (a sampler seeded once per process would)."""
    import numpy as np
    import optuna

    state = np.random.SeedSequence([seed, worker, trials_so_far]).generate_state(1)[0]
    return optuna.samplers.RandomSampler(seed=int(state))


def trial_sampler(cfg: StudyConfig, worker: int, drawn: int) -> Any:
    """The sampler of one trial, seeded by (seed, worker, ``drawn``: the trials drawn before
    it), so that a study resumed after a kill draws what the uninterrupted one drew, and a
    second worker draws other architectures (one sampler seeded per process re-draws the
    first trials after every restart, and every worker draws the same ones)."""
    if cfg.sampler == "random":
        return random_sampler(cfg.seed, worker, drawn)
    import numpy as np

    state = np.random.SeedSequence([cfg.seed, worker, drawn]).generate_state(1)[0]
    return make_sampler(replace(cfg, seed=int(state)))


def drawn_trials(study: Any) -> int:
    """The position of the study's next trial in a run without kills: its number less the
    failed attempts that were retried before it; for a retry (the next trial when one is
    waiting: Optuna pops the lowest number first), the position of the attempt it repeats.
    Seeding the next draw with it (:func:`trial_sampler`) makes a study resumed after a kill
    draw what the uninterrupted one drew, the killed attempt included."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    number = len(trials)
    if waiting:
        head = min(waiting, key=lambda t: t.number)
        number = min(retried_numbers([head]), default=head.number)
    return number - sum(1 for n in retried if n < number)


def retried_numbers(trials: list[Any]) -> set[int]:
    """The numbers of the trials that were retried (the stale-trial retry records them)."""
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # retry_history is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}


def fail_stale_trials(study: Any) -> None:
    """Fail the study's trials whose worker is gone (:func:`_heartbeat_storage_class`),
    re-enqueueing each up to ``study.retries`` times."""
    import warnings

    import optuna

    with warnings.catch_warnings():  # marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


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
            for name, params in zoo_params(cfg.space, cfg.study.zoo).items():
                study.enqueue_trial(params or {}, user_attrs={"zoo": name,
                                                              "in_space": params is not None})
    return study


def zoo_params(space: SampleSpace, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each zoo net's trial parameters in ``space`` (:func:`genotype_params`), or None for a
    net the space cannot express (it is then still evaluated, outside the distributions, and
    the log says which field is out: widen the space, e.g. ``base: spaces/full.yaml``)."""
    out: dict[str, dict[str, Any] | None] = {}
    for name in names:
        genotype = zoo_genotype(name, space.scale)  # validates the name
        try:
            out[name] = genotype_params(genotype, space, f"zoo net {name!r}")
        except NotInSpace as exc:
            logger.warning("%s; it is enqueued without parameters, so the sampler cannot "
                           "mutate around it", exc)
            out[name] = None
    return out


def objective(trial: Any, cfg: OptunaConfig) -> tuple[float, float, float]:
    """One trial: a zoo net (enqueued) or a sampled architecture, measured and trained."""
    zoo = trial.user_attrs.get("zoo")
    genotype = zoo_genotype(zoo, cfg.space.scale) if zoo else sample_genotype(trial, cfg.space)
    if zoo and trial.user_attrs.get("in_space"):  # the enqueued parameters rebuild the net
        sampled = sample_genotype(trial, cfg.space)
        if sampled != genotype:
            raise ConfigError(f"zoo net {zoo!r}: its enqueued parameters give another net in "
                              "this space (was study.space changed after the study began?); "
                              "use a new study.name")
    trial.set_user_attr("name", zoo or f"trial_{trial.number}")
    trial.set_user_attr("is_zoo", bool(zoo))
    trial.set_user_attr("genotype", genotype.to_json(indent=None))
    try:
        patch = study_patch_size(cfg.space, cfg.proxy,
                                 cfg.study.zoo if cfg.study.enqueue_zoo else [])
        result = evaluate_genotype(genotype, cfg.proxy, cfg.measure, cfg.constraints, patch,
                                   cfg.budget)
    except Exception as exc:  # recorded as FAIL with its reason; the study goes on
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:1000])
        raise
    for key, value in result.attrs().items():
        trial.set_user_attr(key, value)
    if not math.isfinite(result.psnr_db):
        trial.set_user_attr("fail_reason", "the proxy training diverged (NaN loss)")
        return result.values  # Optuna records NaN values as FAIL
    set_constraints(trial, result.constraints)
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

    if cfg.measure.threads:
        torch.set_num_threads(cfg.measure.threads)
    study = optuna.load_study(study_name=cfg.study.name,
                              storage=make_storage(storage_url, cfg.study),
                              sampler=make_sampler(cfg.study))
    # A trial of a killed worker of this host is failed (and retried) before the first pass;
    # one of another host once its heartbeat is older than study.grace_s (Optuna checks
    # before every trial, and this run checks again at the end).
    fail_stale_trials(study)
    bar = None
    for _ in range(3 * cfg.study.n_trials):  # a cap: each pass runs (or loses) one trial
        finished = finished_trials(study)
        if finished >= cfg.study.n_trials:
            break
        if bar is None and worker == 0:
            from tqdm import tqdm

            bar = tqdm(total=cfg.study.n_trials, initial=finished, desc="trials", unit="trial")
        study.sampler = trial_sampler(cfg.study, worker, drawn_trials(study))
        try:
            study.optimize(lambda t: objective(t, cfg), n_trials=1, catch=(Exception,))
        except ValueError as exc:
            if "Cannot tell a" not in str(exc):
                raise
            logger.warning("worker %d: another worker finished the same trial first (%s)",
                           worker, exc)
        if bar is not None:
            bar.n = min(finished_trials(study), cfg.study.n_trials)
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
WORKER_PRELOAD = ["searchers.trials.study", "searchers.trials.trial", "proxies.measure.latency",
                  "proxies.measure.memory", "proxies.measure.complexity", "search_space.network"]


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python searchers/optuna_search.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_config(OptunaConfig, args.config, args.overrides)
        patch = study_patch_size(cfg.space, cfg.proxy,
                                 cfg.study.zoo if cfg.study.enqueue_zoo else [])
        logger.info("every trial trains on %d px HR patches; selection on %s", patch,
                    cfg.proxy.val)
        run_dir = cfg.run.folder()
        storage_url = cfg.study.storage or f"sqlite:///{run_dir.resolve() / 'study.db'}"
        check_storage_url(storage_url)
        fresh = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)  # the default study.db lives in it
        try:
            open_study(cfg, storage_url)  # before the config is saved: a refused study
        except BaseException:  # (other objectives, no server) leaves the folder as it was
            if fresh:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        save_run_config(run_dir, cfg, [sys.argv[0], *argv])
    except (ConfigError, ValueError, OSError) as exc:
        logger.error("%s", error_line(exc))
        return 2
    logger.info("study %r on %s, %d worker(s)", cfg.study.name, storage_url, cfg.run.workers)
    if cfg.run.workers == 1:
        run_worker(cfg, storage_url, 0)
    else:
        ctx = _worker_context()
        procs = [ctx.Process(target=_worker_entry, args=(cfg, storage_url, w))
                 for w in range(cfg.run.workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        if any(proc.exitcode for proc in procs):
            logger.error("a worker failed (exit codes %s)", [proc.exitcode for proc in procs])
            return 1
    from results.table.optuna_study import from_optuna

    table = from_optuna(make_storage(storage_url, cfg.study), cfg.study.name)
    table.to_csv(run_dir / "trials.csv", index=False)
    logger.info("%d trials; table in %s; report: python -m results.summary --storage %s --out %s",
                len(table), run_dir / "trials.csv", storage_url, run_dir / "report")
    return 0
