"""The study's storage: an Optuna storage for a URL (:func:`make_storage`: SQLite and other
databases through :class:`~optuna.storages.RDBStorage` with a heartbeat, or a journal file), and
the trials of a worker that died: found sooner than Optuna finds them (the trial's owner,
:func:`process_owner`, and a heartbeat from the moment it runs), failed and retried with their
draws (:class:`RetryWithItsDraws`, :func:`fail_stale_trials`). A storage file that is not what
its URL says (random bytes, another program's SQLite database, a file that is no Optuna journal)
is refused before Optuna opens it, and left as it is
(:func:`results.table.storage_file.check_storage_file`).
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
from pathlib import Path
from typing import Any

from results.table.storage_file import check_storage_file, journal_path
from searchers.common.config import ConfigError
from searchers.trials.config import StudyConfig

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "journal")
OWNER_ATTR = "srnas:owner"  # trial system attribute: the process that runs the trial


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
    seeded by the position of the attempt (:func:`searchers.trials.samplers.drawn_trials`), so
    it draws them all again as the attempt did; a kept prefix would be returned without a draw
    and shift the draws of every later parameter."""

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
    """An Optuna storage for ``url``: RDB (heartbeat + retry) or a journal file; a corrupt or
    foreign storage file is refused first
    (:func:`results.table.storage_file.check_storage_file`)."""

    import optuna

    scheme = check_storage_url(url)
    check_storage_file(url, where="study.storage")  # a corrupt or foreign file: refused
    if scheme == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = journal_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
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
