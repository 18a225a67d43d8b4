"""Successive halving over training steps (``proxy.kind=halving``), with Optuna's ask/tell.

Optuna's pruners work on single-objective studies only, so a halving study runs in brackets:
a worker asks ``proxy.halving_batch`` trials (each sampled as usual, or an enqueued zoo net),
and for each one

1. builds and measures it (:func:`searchers.trials.trial.measure_genotype`: latency, peak
   memory, parameters, the ratios to ``budget.reference``) **before any training**;
2. a search candidate over budget (any constraint of ``budget`` / ``constraints`` on
   latency, memory or parameters > 0) is told at once and never trained: values
   ``(-inf, latency_ms, memory_mib)`` (a PSNR that cannot win: every reader keeps only
   finite values on a front, and the pipeline selects only finite PSNRs), its measured costs,
   its constraint values (infeasible, so every constrained sampler ranks it behind every
   feasible trial), ``rung = -1`` and ``proxy_steps = 0``;
3. the others train in rungs: rung ``r`` trains to ``halving_min_steps * halving_eta**r``
   steps in all, continuing each net from its weights, optimiser and patch stream (kept in
   memory; :class:`~searchers.trials.trial.ProxyTraining`, one cosine schedule over the top
   rung's steps, so a top-rung PSNR equals that of ``proxy.kind=train`` with
   ``proxy.steps`` = the top rung's steps). After each rung the candidates are ranked by
   Pareto rank over (PSNR, latency, memory), then PSNR, and the best ``1/eta`` (at least one)
   go on; the others are told their PSNR at the rung they reached.

The number of rungs is fixed by the batch: ``1 + floor(log_eta(halving_batch))``; a smaller
last bracket still trains its survivor up to the top rung, so every bracket's top rung
means the same training. Zoo nets are references: trained through every rung (never
dropped, whatever their costs, taking no survivor's place).

**Rungs are not compared.** Every trial records ``rung``, ``top_rung`` and ``proxy_steps``.
The samplers see every told value (an early rung's lower PSNR steers them away, which is the
point of halving); selection does not: a trial below the top rung carries the extra entry
``rung`` (rungs short of the top, > 0) in its ``constraints`` user attribute, so the trial
table marks it not feasible, the Pareto fronts leave it out, and the pipeline's selection
(only feasible trials) never picks it. Optuna's own constraints (what the samplers read)
hold the budget only.

**Resuming.** Each trial is told the moment it leaves its bracket, so a killed run loses no
told trial. The bracket's untold trials stay RUNNING; the next run fails them (their owner
is gone, :mod:`searchers.trials.storage`) and re-enqueues each with its parameters
(``study.retries``), and the next bracket trains them again from step 0: an interrupted
bracket is re-run, not continued (the survivors' weights live in memory only).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from search_space.genotype import Genotype
    from searchers.trials.config import OptunaConfig
    from searchers.trials.trial import Measured, ProxyConfig, ProxyTraining, TrialResult

logger = logging.getLogger("searchers.trials.halving")

__all__ = ["StudyHooks", "rung_steps", "run_bracket", "run_halving_worker", "survivors"]


@dataclass(frozen=True)
class StudyHooks:
    """What a bracket needs of :mod:`searchers.trials.study` (passed in by its ``run_worker``,
    which imports this module, so that no import runs back): the trial's net, the recording
    of a result, and the count of finished trials."""

    trial_genotype: Callable[[Any, OptunaConfig], Genotype]
    record_result: Callable[[Any, TrialResult], tuple[float, float, float]]
    finished_trials: Callable[[Any], int]


def rung_steps(proxy: ProxyConfig) -> list[int]:
    """The total training steps of each rung: ``min_steps * eta**r`` for the
    ``1 + floor(log_eta(batch))`` rungs a full bracket climbs."""
    rungs, n = 1, proxy.halving_batch
    while n >= proxy.halving_eta:
        n //= proxy.halving_eta
        rungs += 1
    return [proxy.halving_min_steps * proxy.halving_eta ** r for r in range(rungs)]


def survivors(n: int, eta: int) -> int:
    """How many of ``n`` candidates go on to the next rung: ``n // eta``, at least one."""
    return max(1, n // eta)


@dataclass
class _Candidate:
    trial: Any
    measured: Measured
    run: ProxyTraining
    is_zoo: bool
    psnr: float = math.nan


def _pareto_ranks(points: list[tuple[float, float, float]]) -> list[int]:
    """Non-domination rank of each (psnr max, latency min, memory min) point (0: front)."""
    keys = [(-p, lat, mem) for p, lat, mem in points]
    ranks, left, r = [0] * len(keys), set(range(len(keys))), 0
    while left:
        front = {i for i in left if not any(
            all(a <= b for a, b in zip(keys[j], keys[i], strict=True)) and keys[j] != keys[i]
            for j in left)}
        for i in front:
            ranks[i] = r
        left -= front
        r += 1
    return ranks


class _Beats:
    """One Optuna heartbeat thread per RUNNING trial of the bracket (a bracket holds its
    trials far longer than a trial of ``optimize``; without beats another host would fail
    them as stale after ``study.grace_s``)."""

    def __init__(self, storage: Any) -> None:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        self.storage, self.on = storage, is_heartbeat_enabled(storage)
        self.threads: dict[int, Any] = {}

    def start(self, trial: Any) -> None:
        if self.on:
            from optuna.storages._heartbeat import get_heartbeat_thread

            thread = get_heartbeat_thread(trial._trial_id, self.storage)
            thread.start()
            self.threads[trial._trial_id] = thread

    def stop(self, trial: Any) -> None:
        thread = self.threads.pop(trial._trial_id, None)
        if thread is not None:
            thread.join()

    def stop_all(self) -> None:
        for thread in self.threads.values():
            thread.join()
        self.threads.clear()


def run_bracket(study: Any, cfg: OptunaConfig, worker: int, n: int, hooks: StudyHooks
                ) -> None:
    """One bracket of ``n`` trials: ask, measure, drop those over budget untrained, halve the
    rest over the rungs of :func:`rung_steps`, tell each as it leaves (module docstring)."""
    from optuna.trial import TrialState

    from searchers.trials.samplers import drawn_trials, trial_sampler
    from searchers.trials.trial import ProxyTraining, measure_genotype, study_patch_size

    steps = rung_steps(cfg.proxy)
    top = len(steps) - 1
    patch = study_patch_size(cfg.space, cfg.proxy, cfg.study.zoo if cfg.study.enqueue_zoo else [])
    beats = _Beats(study._storage)

    def tell(c: _Candidate, rung: int, psnr: float) -> None:
        c.trial.set_user_attr("rung", rung)
        c.trial.set_user_attr("top_rung", top)
        result = c.measured.result(psnr, cfg.constraints, cfg.budget,
                                   proxy_steps=c.run.steps_done)
        values = hooks.record_result(c.trial, result)
        if rung < top and not math.isnan(psnr):  # not selectable: see the module docstring
            c.trial.set_user_attr("constraints", {**result.constraints, "rung": top - rung})
        beats.stop(c.trial)
        study.tell(c.trial, list(values))

    def fail(trial: Any, reason: str) -> None:
        trial.set_user_attr("fail_reason", reason[:1000])
        beats.stop(trial)
        study.tell(trial, state=TrialState.FAIL)

    alive: list[_Candidate] = []
    try:
        for _ in range(n):
            study.sampler = trial_sampler(cfg.study, worker, drawn_trials(study))
            with warnings.catch_warnings():  # the heartbeat runs in _Beats, not optimize
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
                trial = study.ask()
            beats.start(trial)
            try:
                genotype = hooks.trial_genotype(trial, cfg)
                measured = measure_genotype(genotype, cfg.proxy, cfg.measure, cfg.budget)
            except Exception as exc:  # recorded as FAIL with its reason; the bracket goes on
                logger.warning("trial %d failed: %s", trial.number, exc)
                fail(trial, f"{type(exc).__name__}: {exc}")
                continue
            is_zoo = bool(trial.user_attrs.get("is_zoo"))
            over = {k: v for k, v in measured.cost_constraints(cfg.constraints,
                                                                cfg.budget).items() if v > 0}
            if over and not is_zoo:
                logger.info("trial %d over budget (%s): not trained", trial.number,
                            ", ".join(f"{k} +{v:.3g}" for k, v in sorted(over.items())))
                trial.set_user_attr("rung", -1)
                trial.set_user_attr("top_rung", top)
                result = measured.result(-math.inf, cfg.constraints, cfg.budget)
                result = replace(result, constraints=measured.cost_constraints(
                    cfg.constraints, cfg.budget))
                values = hooks.record_result(trial, result)
                beats.stop(trial)
                study.tell(trial, list(values))
                continue
            run = ProxyTraining(measured.model, genotype, cfg.proxy, measured.device, patch,
                                total_steps=steps[-1])
            alive.append(_Candidate(trial, measured, run, is_zoo))
        for rung, total in enumerate(steps):
            for c in list(alive):
                try:
                    c.run.advance(total - c.run.steps_done)
                    c.psnr = c.run.psnr()
                except Exception as exc:
                    alive.remove(c)
                    fail(c.trial, f"{type(exc).__name__}: {exc}")
                    continue
                if math.isnan(c.psnr):
                    alive.remove(c)
                    tell(c, rung, c.psnr)  # diverged: recorded as FAIL by record_result
            searched = [c for c in alive if not c.is_zoo]
            if rung == top:
                break
            ranks = _pareto_ranks([(c.psnr, c.measured.latency_ms, c.measured.memory_mib)
                                   for c in searched])
            order = sorted(range(len(searched)), key=lambda i: (ranks[i], -searched[i].psnr))
            keep = survivors(len(searched), cfg.proxy.halving_eta)
            for i in order[keep:]:
                tell(searched[i], rung, searched[i].psnr)
            dropped = {id(searched[i]) for i in order[keep:]}
            alive = [c for c in alive if id(c) not in dropped]
            logger.info("rung %d (%d steps): %d go on to %d steps", rung, total, len(alive),
                        steps[rung + 1])
        for c in alive:
            tell(c, top, c.psnr)
        alive = []
    finally:
        beats.stop_all()  # untold trials stay RUNNING: the next run fails and retries them


def run_halving_worker(cfg: OptunaConfig, storage_url: str, worker: int,
                       hooks: StudyHooks) -> None:
    """:func:`searchers.trials.study.run_worker` for ``proxy.kind=halving``: brackets until
    the study holds ``study.n_trials`` finished trials (the last bracket is cut to what is
    missing; its survivor still climbs to the top rung)."""
    import optuna

    from searchers.trials.samplers import make_sampler
    from searchers.trials.storage import fail_stale_trials, make_storage

    if cfg.measure.threads:
        torch.set_num_threads(cfg.measure.threads)
    study = optuna.load_study(study_name=cfg.study.name,
                              storage=make_storage(storage_url, cfg.study),
                              sampler=make_sampler(cfg.study))
    fail_stale_trials(study)  # a killed bracket's trials: failed and re-enqueued to re-run
    steps = rung_steps(cfg.proxy)
    logger.info("worker %d: successive halving, brackets of %d, rungs of %s steps (the top "
                "rung, %d steps, is the one selected from; proxy.steps is not used)", worker,
                cfg.proxy.halving_batch, steps, steps[-1])
    for _ in range(3 * cfg.study.n_trials):  # a cap: each bracket tells at least one trial
        missing = cfg.study.n_trials - hooks.finished_trials(study)
        if missing <= 0:
            break
        run_bracket(study, cfg, worker, min(cfg.proxy.halving_batch, missing), hooks)
    fail_stale_trials(study)
