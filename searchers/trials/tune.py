"""The same multi-objective trials as Ray Tune trials: ``python searchers/ray_tune.py``.

Tune's ``OptunaSearch`` drives the same define-by-run space and objective as
``searchers/optuna_search.py`` (NSGA-II by default, three objectives). Tune drops Optuna's
constraints, so :class:`ConstrainedOptunaSearch` passes them through. Actors are reused;
resources per trial come from the config (a trial that times latency on a GPU takes a whole
GPU). The zoo nets are the first trials.

GPU measurement: a trial whose ``measure.device`` is ``cuda``/``cuda:N``, or ``auto`` on a
cluster with GPUs (``ray.cluster_resources()``), requests at least one GPU whatever
``resources.gpu`` says (see :func:`trial_resources`), and fails with a clear reason if its
worker has no GPU (:func:`check_trial_device`) instead of timing on the CPU. Set
``measure.device=cpu`` to measure on CPUs on a GPU cluster.

Cluster: ``ray get-auth-token --generate`` and ``ray start --head`` on the head, each worker
host with the token and ``RAY_AUTH_MODE=token ray start --address=HEAD_IP:6379``, then run this
with ``--address HEAD_IP:6379`` (or ``--address auto`` on a cluster node); see the README.
Without ``--address`` a fresh local instance is used. A trial whose worker or node dies is run
again (``study.retries``). After the driver dies, re-running the same command resumes the
experiment (``Tuner.restore``); a trial that had finished after Tune's last experiment
checkpoint reports its recorded result instead of running again (:func:`trainable`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from results.run_folder import RunFolder
from search_space.files import atomic_write_text, error_line
from searchers.common.command import log_to_stderr
from searchers.common.config import ConfigError, dump_yaml, from_dict, load_config
from searchers.trials.config import OptunaConfig
from searchers.trials.ray_address import check_ray_address, cluster_auth_mode
from searchers.trials.samplers import make_sampler
from searchers.trials.study import zoo_params
from searchers.trials.supernet_space import check_space_in_supernet
from searchers.trials.trial import (
    DIRECTIONS,
    OBJECTIVE_NAMES,
    evaluate_genotype,
    sample_genotype,
    study_patch_size,
    zoo_genotype,
)

logger = logging.getLogger("searchers.trials.tune")

MODES = ["max" if d == "maximize" else "min" for d in DIRECTIONS]


@dataclass
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0
    max_concurrent: int = 1


@dataclass
class RayConfig(OptunaConfig):
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        if self.proxy.kind == "halving":  # a bracket keeps its survivors' nets in one process
            raise ValueError("proxy.kind: got 'halving'; Ray Tune runs each trial alone and its "
                             "ASHA/HyperBand stop trials on one metric, so halving among "
                             "candidates within budget runs only in searchers/optuna_search.py "
                             "(or use proxy.kind=train here)")
        if self.study.cpu_seconds is not None:
            raise ValueError(f"study.cpu_seconds: got {self.study.cpu_seconds}; Ray Tune runs "
                             "study.n_trials trials (its trials run on other hosts, whose "
                             "CPU time this process does not see): set study.cpu_seconds=null, "
                             "or run the budgeted study with searchers/optuna_search.py")
        if self.resources.max_concurrent < 1:
            raise ValueError(f"resources.max_concurrent: got {self.resources.max_concurrent}; "
                             "must be >= 1")


def require_ray() -> Any:
    try:
        import ray
        from ray import tune  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"searchers/ray_tune.py needs Ray Tune ({exc}); install it with "
            "`pip install \"ray[tune]\"` (it is part of this project's core install: "
            "pip install -e .)") from exc
    return ray


class _Fixed:
    """Replays a sampled Optuna parameter dict through :func:`sample_genotype`."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.params[name]

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return int(self.params[name])


class DefineSpace:
    """The define-by-run space: the zoo nets first, then sampled architectures.

    A picklable object (Tune checkpoints the searcher with it).
    """

    def __init__(self, cfg: OptunaConfig) -> None:
        self.cfg = cfg
        zoo = zoo_params(cfg.space, cfg.study.zoo) if cfg.study.enqueue_zoo else {}
        self.inside = [(name, p) for name, p in zoo.items() if p is not None]
        self.outside = [name for name, p in zoo.items()
                        if p is None and cfg.study.zoo_outside == "reference"]

    @property
    def points_to_evaluate(self) -> list[dict[str, Any]]:
        """The zoo nets inside the space, as enqueued parameters (the first trials)."""
        return [p for _, p in self.inside]

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        k = len(self.inside)
        if trial.number < k:  # an enqueued zoo net: its parameters are the fixed ones
            sample_genotype(trial, self.cfg.space)
            return {"zoo": self.inside[trial.number][0]}
        if trial.number < k + len(self.outside):
            return {"zoo": self.outside[trial.number - k]}
        sample_genotype(trial, self.cfg.space)
        return None


def measure_wants_cuda(device: str, cluster_gpus: float) -> bool:
    """True if trials measure on CUDA: ``measure.device`` is ``cuda``/``cuda:N``, or ``auto``
    while the cluster has GPUs (``cluster_gpus``, the cluster's total ``GPU`` resource)."""
    d = device.strip().lower()
    return cluster_gpus > 0 if d == "auto" else d.startswith("cuda")


def trial_resources(cfg: RayConfig, cluster_gpus: float) -> dict[str, float]:
    """Tune resources of one trial: ``resources.cpu``/``resources.gpu``, but at least one
    whole GPU when the trial measures on CUDA (:func:`measure_wants_cuda`)."""
    resources = {"cpu": float(cfg.resources.cpu), "gpu": float(cfg.resources.gpu)}
    if measure_wants_cuda(cfg.measure.device, cluster_gpus) and resources["gpu"] < 1:
        logger.info("measure.device=%s with %g GPU(s) in the cluster: each trial requests 1 GPU "
                    "(resources.gpu=%g), so that latency is timed on a GPU it owns; set "
                    "measure.device=cpu to measure on CPUs", cfg.measure.device, cluster_gpus,
                    cfg.resources.gpu)
        resources["gpu"] = 1.0
    return resources


def check_trial_device(device: str, wants_cuda: bool) -> None:
    """Inside a trial: raise if measurement asked for CUDA but this worker has none.

    ``wants_cuda`` is the driver's :func:`measure_wants_cuda` (``device=auto`` on a GPU
    cluster means CUDA); an explicit ``cuda``/``cuda:N`` always does.

    Raises:
        RuntimeError: CUDA wanted and ``torch.cuda.is_available()`` is False.
    """
    import torch

    explicit = device.strip().lower().startswith("cuda")
    if (wants_cuda or explicit) and not torch.cuda.is_available():
        meant = "" if explicit else " (auto, and the cluster has GPUs)"
        raise RuntimeError(
            f"measure.device={device}{meant} means cuda, but this Ray worker has no GPU "
            f"(torch.cuda.is_available() is False; torch {torch.__version__}, CUDA "
            f"{torch.version.cuda}, CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); latency is not timed on the CPU "
            "instead. Give trials a GPU (resources.gpu=1, a CUDA build of torch on every "
            "worker) or set measure.device=cpu.")


EVALUATED_DIR = "evaluated"  # in the run folder: each finished evaluation's report


def _record_key(config: dict[str, Any]) -> str:
    """The name of a trial's record: a digest of its whole config (sampled parameters, zoo
    net, study config), not its trial id, so a trial that ``Tuner.restore`` runs again under a
    new id with the same parameters finds the record."""
    plain = {k: v for k, v in config.items() if k != "_evaluated"}
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _recorded(folder: str | None, key: str) -> dict[str, Any] | None:
    """The report recorded before under ``key``, or None."""
    if not folder:
        return None
    try:
        return json.loads((Path(folder) / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def trainable(config: dict[str, Any]) -> None:
    """One Tune trial: rebuild the genotype from the sampled parameters and evaluate it.

    Its report, once the net was evaluated, is recorded (``<run>/evaluated/<key>.json``, the
    key a digest of the trial's config: :func:`_record_key`) before it goes to Tune. A trial
    that finished after the driver's last save of the experiment state is run again by
    ``Tuner.restore``, under its own id when the state listed it, under a new one with the same
    parameters when it did not; either way it reports the recorded result instead of
    evaluating the net a second time (the same config is evaluated once per run folder). A
    trial whose evaluation raised is not recorded, so a restarted one tries again. Trials on
    other hosts see the record only where the run folder is shared."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    folder = config.get("_evaluated")
    key = _record_key(config)
    recorded = _recorded(folder, key)
    if recorded is not None:
        logger.info("trial %s: this config was evaluated before the driver stopped; its "
                    "recorded result is reported, the net is not evaluated again", trial_id)
        if not recorded.get("is_zoo"):
            recorded["name"] = f"trial_{trial_id}"
        tune.report(recorded)
        return
    cfg = from_dict(RayConfig, config["_cfg"])
    params = {k: v for k, v in config.items()
              if k not in ("_cfg", "_measure_cuda", "_evaluated", "zoo")}
    zoo = config.get("zoo")
    genotype = zoo_genotype(zoo, cfg.space.scale) if zoo else sample_genotype(_Fixed(params),
                                                                                cfg.space)
    name = zoo or f"trial_{trial_id}"
    report: dict[str, Any] = {"name": name, "is_zoo": bool(zoo),
                              "genotype": genotype.to_json(indent=None)}
    try:
        check_trial_device(cfg.measure.device, bool(config.get("_measure_cuda", False)))
        patch = study_patch_size(cfg.space, cfg.proxy,
                                 cfg.study.zoo if cfg.study.enqueue_zoo else [])
        result = evaluate_genotype(genotype, cfg.proxy, cfg.measure, cfg.constraints, patch,
                                   cfg.budget)
    except Exception as exc:  # reported as a failed trial with its reason; Tune goes on
        report.update({k: math.nan for k in OBJECTIVE_NAMES})
        report["fail_reason"] = f"{type(exc).__name__}: {exc}"[:1000]
        tune.report(report)  # not recorded: a restarted trial tries again
        return
    report.update(asdict(result))
    if not math.isfinite(result.psnr_db):
        report["fail_reason"] = "the proxy training diverged (NaN loss)"
    if folder:
        with contextlib.suppress(OSError):  # a folder this host cannot write: not recorded
            atomic_write_text(Path(folder) / f"{key}.json", json.dumps(report))
    tune.report(report)


def run(cfg: RayConfig, run_dir: Path, address: str | None) -> Any:
    ray = require_ray()
    from ray import tune

    run_dir = run_dir.resolve()
    if not ray.is_initialized():
        try:
            ray.init(address=address or "local", include_dashboard=False,
                     logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError) as exc:
            raise ConfigError(
                f"--address {address}: could not connect to the Ray cluster ({exc}). Check the "
                "address (`ray status` on the head prints it); with token authentication, "
                "this host needs the head's token in ~/.ray/auth_token, $RAY_AUTH_TOKEN or "
                "$RAY_AUTH_TOKEN_PATH (`ray get-auth-token` on the head prints it)") from exc
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    resources = trial_resources(cfg, cluster_gpus)  # a trial that times on CUDA owns a GPU
    fn = tune.with_resources(trainable, resources)
    exp_dir = run_dir / "tune"
    if tune.Tuner.can_restore(str(exp_dir)):
        logger.info("resuming %s", exp_dir)
        tuner = tune.Tuner.restore(str(exp_dir), trainable=fn, resume_errored=True)
    else:
        from searchers.trials.tune_searcher import ConstrainedOptunaSearch, PicklableNSGAIISampler

        space = DefineSpace(cfg)
        search = ConstrainedOptunaSearch(
            space=space, metric=list(OBJECTIVE_NAMES), mode=MODES,
            points_to_evaluate=space.points_to_evaluate or None,
            sampler=make_sampler(cfg.study, nsga2=PicklableNSGAIISampler), seed=cfg.study.seed)
        tuner = tune.Tuner(
            fn,
            param_space={"_cfg": _plain(cfg),
                         "_measure_cuda": measure_wants_cuda(cfg.measure.device, cluster_gpus),
                         "_evaluated": str(run_dir / EVALUATED_DIR)},
            tune_config=tune.TuneConfig(
                search_alg=search, num_samples=cfg.study.n_trials, reuse_actors=True,
                max_concurrent_trials=cfg.resources.max_concurrent),
            # a trial whose worker or node died is run again (study.retries times, as on
            # Optuna's heartbeat), not left ERROR
            run_config=tune.RunConfig(name="tune", storage_path=str(run_dir), verbose=1,
                                      failure_config=tune.FailureConfig(
                                          max_failures=cfg.study.retries)),
        )
    return tuner.fit()


def _plain(cfg: Any) -> dict[str, Any]:
    from searchers.common.config import to_dict

    return to_dict(cfg)


def main(argv: list[str] | None = None) -> int:
    """The command. The run folder is locked (:meth:`RunFolder.lock`) from before its first
    write to the end of the experiment, so a second driver of it is refused; the trials write
    into it (``evaluated/``, Tune's trial folders) from their workers, for this driver."""
    with contextlib.ExitStack() as held:
        return _main(argv, held)


def _main(argv: list[str] | None, held: contextlib.ExitStack) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python searchers/ray_tune.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config")
    p.add_argument("--address", help="Ray cluster address (default: a fresh local instance)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    log_to_stderr()
    try:
        if args.address not in (None, "local"):
            cluster_auth_mode()  # before Ray is imported: it reads RAY_AUTH_MODE at import
        require_ray()
        check_ray_address(args.address)  # in seconds, not after Ray's retries (minutes)
        overrides = list(args.overrides)
        if not any(o.startswith("run.dir=") for o in overrides):
            overrides.append("run.dir=runs/ray")
        cfg = load_config(RayConfig, args.config, overrides)
        study_patch_size(cfg.space, cfg.proxy, cfg.study.zoo if cfg.study.enqueue_zoo else [])
        if cfg.proxy.kind == "supernet" and cfg.proxy.supernet:
            check_space_in_supernet(cfg.space, cfg.proxy.supernet,
                                    cfg.study.zoo if cfg.study.enqueue_zoo else [])
        if cfg.proxy.supernet:  # trials run in Tune's trial folders: an absolute path
            cfg.proxy.supernet = str(Path(cfg.proxy.supernet).resolve())
            from searchers.sharing.load import load_supernet

            load_supernet(cfg.proxy.supernet)  # a damaged or crafted checkpoint: refused here
        run_dir = cfg.run.folder()
        held.enter_context(RunFolder(run_dir).lock())
        run_dir.mkdir(parents=True, exist_ok=True)
        RunFolder(run_dir).record(dump_yaml(cfg), [sys.argv[0], *argv])
    except ImportError as exc:
        logger.error("%s", exc)
        return 2
    except (ConfigError, ValueError, OSError) as exc:
        logger.error("%s", error_line(exc))
        return 2
    try:
        grid = run(cfg, run_dir, args.address)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    errors = sum(1 for r in grid if r.error is not None)
    logger.info("%d trials (%d crashed) in %s; report: python -m results.summary --ray %s --out %s",
                len(grid), errors, run_dir / "tune", run_dir / "tune", run_dir / "report")
    return 0
