"""Tune's OptunaSearch with Optuna constraints passed through (imports Ray at import time).

Kept apart from ``searchers/ray_tune.py`` so that the command can explain a missing Ray, and
at module level so that Tune can pickle the searcher by reference.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from optuna.samplers import NSGAIISampler
from ray.tune.search.optuna import OptunaSearch

from searchers.trials.study import set_constraints
from searchers.trials.trial import OBJECTIVE_NAMES

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


class PicklableNSGAIISampler(NSGAIISampler):
    """NSGA-II that Tune can checkpoint.

    Optuna 5's genetic samplers hold a ``threading.Lock``, so pickling the searcher (which Tune
    does when it starts and at every checkpoint) fails with "cannot pickle '_thread.lock'".
    The locks are left out of the pickle and made afresh, unlocked, when it is loaded.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        locks = {k: isinstance(v, type(threading.RLock())) for k, v in state.items()
                 if isinstance(v, _LOCK_TYPES)}
        for key in locks:
            del state[key]
        state["_srnas_locks"] = locks
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        locks = state.pop("_srnas_locks", {})
        self.__dict__.update(state)
        for key, reentrant in locks.items():
            setattr(self, key, threading.RLock() if reentrant else threading.Lock())


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch that passes each trial's constraints on to the Optuna trial.

    Tune's OptunaSearch only tells Optuna the objective values; constraints set by the
    objective would be lost, so NSGA-II could not prefer feasible trials.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result:
            set_constraints(ot_trial, {k: float(v) for k, v in
                                       (result.get("constraints") or {}).items()})
            if result.get("fail_reason"):
                ot_trial.set_user_attr("fail_reason", str(result["fail_reason"]))
            if not all(math.isfinite(float(result.get(k, math.nan))) for k in OBJECTIVE_NAMES):
                # A failed or diverged trial is a FAIL for Optuna (telling NaN values would
                # raise inside Tune and leave the Optuna trial RUNNING forever).
                result, error = None, True
        super().on_trial_complete(trial_id, result, error)
