"""Host-wide isolation of measurements from the training of other srnas processes.

With several workers on one host (``run.workers=N``, several Ray trials per node), one worker
would time latency while the others train on the same cores or GPU, and its figures would depend
on what the others happen to do. This module is a reader/writer lock shared by every srnas
process on the host:

* :func:`measuring` is the exclusive side. :func:`proxies.measure.latency.measure_latency`,
  :func:`proxies.measure.latency.measure_latency_ratio` and
  :func:`proxies.measure.memory.measure_peak_memory`
  hold it around their measured work.
* :func:`training` is the shared side, to wrap around every training step (and other heavy
  compute such as a validation forward). Any number of processes and threads may be inside
  training sections at once.

Both are context managers, re-entrant within a thread (a ``training()`` inside ``measuring()``
is a no-op; a ``measuring()`` inside ``training()`` suspends the thread's training share for its
duration and takes it back afterwards). Entering and leaving a training section when nobody
measures costs a few ``flock`` system calls (microseconds), cheap enough for every step.

Mechanism: two lock files in :func:`proxies.measure.lock_files.lock_dir` locked with
:func:`fcntl.flock`, ``measure.lock`` (the main lock) and ``turnstile.lock``. A measurer takes
the turnstile exclusively, then the main lock exclusively. A trainer takes the turnstile
shared, then the main lock shared, then lets go of the turnstile. Once a measurer holds the
turnstile no new training section starts on the host, so it waits only for the sections
already running (one step each) to end: a stream of trainers cannot starve it. Trainers resume
as soon as the measurement ends. The kernel drops ``flock`` locks of a process that exits or
crashes, so a dead worker never blocks the others. Threads of one process coordinate
in-process (a writer-preferring reader/writer lock), since ``flock`` locks belong to the
process's open file, not to a thread. A forked child (e.g. a DataLoader worker) starts with
no section held and never releases its parent's.

Guaranteed, among processes on one host that use this module with the same lock folder: while a
process is inside :func:`measuring`, no other such process or thread is inside
:func:`measuring` or :func:`training`. Measurements are serialised host-wide (one at a time).

Not guaranteed:

* Work outside the sections: data loading and augmentation, DataLoader worker processes
  (they prefetch in the background), checkpoint I/O, Python start-up and imports, Optuna
  storage or Ray bookkeeping, and anything the caller did not wrap in :func:`training`.
* Processes that are not srnas (or that run with ``SRNAS_ISOLATION=off``), other users' jobs
  whose lock folder differs, other containers or hosts (each has its own ``/tmp``), and the
  machine's own state (clock and thermal throttling after a training burst, caches).
* Fairness among measurers (``flock`` is not FIFO; several waiting measurers go in arbitrary
  order) and a bound on how long a trainer waits (it waits for every measurement queued).
* The lock folder must be on a local filesystem; on NFS ``flock`` may be emulated with locks
  seen by every host mounting it, which would serialise hosts with each other.

Environment (``SRNAS_ISOLATION``, ``SRNAS_LOCK_DIR``, ``SRNAS_LOCK_TIMEOUT``) and the lock
files themselves: :mod:`proxies.measure.lock_files`. On a platform without :mod:`fcntl` (Windows)
both
context managers do nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

from proxies.measure.lock_files import (
    WARN_EVERY_S,
    IsolationTimeout,
    LockFiles,
    enabled,
    lock_advice,
    lock_deadline,
    lock_dir,
)

__all__ = [
    "measuring",
    "training",
]


class _State:
    """This process's view: which threads hold what, and which file lock is held."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.readers = 0  # threads whose training share is held
        self.owner: int | None = None  # thread measuring (exclusive)
        self.writers_waiting = 0  # threads waiting to measure (they go before new readers)
        self.busy = False  # a thread is taking the file locks (outside ``cond``)
        self.mode: str | None = None  # file locks held: "sh", "ex" or None
        self.files: LockFiles | None = None
        self.local = threading.local()  # per thread: ex_depth, sh_depth, sh_held

    def thread(self) -> threading.local:
        local = self.local
        if not hasattr(local, "ex_depth"):
            local.ex_depth, local.sh_depth, local.sh_held = 0, 0, False
        return local

    def files_now(self) -> LockFiles:
        """The lock files of the current :func:`lock_dir` (only called with nothing held)."""
        folder = lock_dir()
        if self.files is None or self.files.folder != folder:
            if self.files is not None:
                self.files.close()
            self.files = LockFiles(folder)
        return self.files

    def wait(self, deadline: float, timeout: float, who: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise IsolationTimeout(f"{who}: another thread of this process held the "
                                   f"measurement lock for over {timeout:.0f} s; {lock_advice()}")
        self.cond.wait(min(remaining, WARN_EVERY_S))

    def enter_shared(self, deadline: float, timeout: float) -> None:
        with self.cond:
            while True:
                if self.owner is None and self.writers_waiting == 0:
                    if self.mode == "sh":
                        self.readers += 1
                        return
                    if not self.busy:
                        self.busy = True
                        break
                self.wait(deadline, timeout, "training")
        try:
            files = self.files_now()
            files.take(files.turnstile, True, deadline, timeout, "training")
            try:
                files.take(files.main, True, deadline, timeout, "training")
            finally:
                files.release(files.turnstile)
        except BaseException:
            with self.cond:
                self.busy = False
                self.cond.notify_all()
            raise
        with self.cond:
            self.busy, self.mode = False, "sh"
            self.readers += 1
            self.cond.notify_all()

    def exit_shared(self) -> None:
        with self.cond:
            self.readers -= 1
            if self.readers == 0 and self.mode == "sh":
                assert self.files is not None
                self.files.release(self.files.main)
                self.mode = None
            self.cond.notify_all()

    def enter_exclusive(self, deadline: float, timeout: float) -> None:
        with self.cond:
            self.writers_waiting += 1
            try:
                while not (self.owner is None and self.readers == 0 and not self.busy):
                    self.wait(deadline, timeout, "measuring")
            except BaseException:
                self.cond.notify_all()
                raise
            finally:
                self.writers_waiting -= 1
            self.owner, self.busy = threading.get_ident(), True
        try:
            files = self.files_now()
            files.take(files.turnstile, False, deadline, timeout, "measuring")
            try:
                files.take(files.main, False, deadline, timeout, "measuring")
            except BaseException:
                files.release(files.turnstile)
                raise
        except BaseException:
            with self.cond:
                self.owner, self.busy = None, False
                self.cond.notify_all()
            raise
        with self.cond:
            self.busy, self.mode = False, "ex"

    def exit_exclusive(self) -> None:
        with self.cond:
            assert self.files is not None
            self.files.release(self.files.main)
            self.files.release(self.files.turnstile)
            self.owner, self.mode = None, None
            self.cond.notify_all()


_STATE = _State()


def _reset_in_forked_child() -> None:
    global _STATE
    old, _STATE = _STATE, _State()
    if old.files is not None:
        old.files.close()  # close only: unlocking would release the parent's locks


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_forked_child)


@contextlib.contextmanager
def training(timeout: float | None = None) -> Iterator[None]:
    """Shared side: hold it around each training step (forward, backward, optimiser step).

    Waits while any srnas process on the host measures (:func:`measuring`). Re-entrant; a
    no-op inside :func:`measuring` or with ``SRNAS_ISOLATION=off``.

    Args:
        timeout: seconds to wait for the lock (default ``$SRNAS_LOCK_TIMEOUT`` or 1800 s).

    Raises:
        IsolationTimeout: the lock was not free within ``timeout``; names the lock file and
            the PIDs holding it.
        OSError: the lock file cannot be opened (names it).
    """
    if not enabled():
        yield
        return
    state = _STATE
    local = state.thread()
    if local.ex_depth or local.sh_depth:
        local.sh_depth += 1
        try:
            yield
        finally:
            local.sh_depth -= 1
        return
    state.enter_shared(*lock_deadline(timeout))
    local.sh_depth, local.sh_held = 1, True
    try:
        yield
    finally:
        if state is _STATE:  # not in a child forked inside the section
            local.sh_depth = 0
            if local.sh_held:
                local.sh_held = False
                state.exit_shared()


@contextlib.contextmanager
def measuring(timeout: float | None = None) -> Iterator[None]:
    """Exclusive side: hold it around a latency/memory measurement.

    Waits until no other srnas process or thread on the host is measuring or inside a
    training section; new training sections wait meanwhile. Re-entrant. Inside the thread's own
    :func:`training` section, the training share is let go for the measurement and taken back
    after it. A no-op with ``SRNAS_ISOLATION=off``.

    Args:
        timeout: seconds to wait for the lock (default ``$SRNAS_LOCK_TIMEOUT`` or 1800 s).

    Raises:
        IsolationTimeout: the lock was not free within ``timeout``; names the lock file and
            the PIDs holding it.
        OSError: the lock file cannot be opened (names it).
    """
    if not enabled():
        yield
        return
    state = _STATE
    local = state.thread()
    if local.ex_depth:
        local.ex_depth += 1
        try:
            yield
        finally:
            local.ex_depth -= 1
        return
    suspended = local.sh_held
    if suspended:
        local.sh_held = False
        state.exit_shared()
    state.enter_exclusive(*lock_deadline(timeout))
    local.ex_depth = 1
    try:
        yield
    finally:
        if state is _STATE:  # not in a child forked inside the section
            local.ex_depth = 0
            state.exit_exclusive()
            if suspended:
                state.enter_shared(*lock_deadline(timeout))
                local.sh_held = True
