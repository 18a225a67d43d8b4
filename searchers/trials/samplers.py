"""The study's samplers: the configured one (:func:`make_sampler`) and, for each trial, one
seeded by the trial's position in a run without kills (:func:`trial_sampler`,
:func:`drawn_trials`), so that a study resumed after a kill, or run by several workers, draws
what the uninterrupted one drew and no worker re-draws another's architectures.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from searchers.trials.config import StudyConfig
from searchers.trials.storage import retried_numbers


def make_sampler(cfg: StudyConfig, nsga2: type | None = None) -> Any:
    """The study's sampler; ``nsga2`` replaces Optuna's NSGA-II class (a subclass of it).

    None takes a ``constraints_func``: Optuna 5 deprecates it (a FutureWarning) and every
    sampler reads each finished trial's constraints from the trial itself
    (``Trial.set_constraint``, which :func:`searchers.trials.study.set_constraints` writes):
    NSGA-II by constrained domination, TPE by putting infeasible trials below every feasible
    one (c-TPE), GP through one GP per constraint in its acquisition (logCEHVI for several
    objectives). Each reads the whole study history when it samples, so one re-created per
    trial (:func:`trial_sampler`) sees what one kept alive would, less GP's kernel warm start.
    """
    import warnings

    import optuna

    if cfg.sampler == "tpe":
        with warnings.catch_warnings():  # `group` is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True, group=True,
                                              n_startup_trials=cfg.startup_trials)
    if cfg.sampler == "gp":
        # a define-by-run space: parameters outside the intersection are drawn at random, as
        # TPE's group decomposition does; that is expected, not worth a warning per trial
        return optuna.samplers.GPSampler(seed=cfg.seed, n_startup_trials=cfg.startup_trials,
                                         warn_independent_sampling=False)
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
