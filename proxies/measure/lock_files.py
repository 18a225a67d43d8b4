"""The lock-file layer under :mod:`proxies.measure.isolation`: its settings and the two lock files.

:class:`LockFiles` opens ``measure.lock`` (the main lock) and ``turnstile.lock`` in
:func:`lock_dir` and takes them shared or exclusive with :func:`fcntl.flock`, polling until a
deadline; on timeout :class:`IsolationTimeout` names the lock file and the PIDs holding it
(from ``/proc/locks``). Which lock is taken when, and by which thread, is
:mod:`proxies.measure.isolation`'s business.

Environment:

* ``SRNAS_ISOLATION=off`` (or ``0``/``false``/``no``): :func:`enabled` is false and
  :func:`proxies.measure.isolation.measuring` and :func:`proxies.measure.isolation.training` do
  nothing.
* ``SRNAS_LOCK_DIR``: the lock folder; default ``/tmp/srnas-locks`` (``/tmp`` rather than
  ``$TMPDIR``, which schedulers such as Slurm often set per job and would split the host), or
  ``tempfile.gettempdir()/srnas-locks`` where there is no ``/tmp``.
* ``SRNAS_LOCK_TIMEOUT``: seconds to wait for the lock before :class:`IsolationTimeout`
  (default 1800 s; a ``timeout`` argument overrides it, :func:`lock_deadline`). A warning
  naming the lock file and the processes holding it is logged every 60 s of waiting.

On a platform without :mod:`fcntl` (Windows) :func:`enabled` is false.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from types import ModuleType

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # not POSIX: no isolation
    fcntl = None

__all__ = [
    "ENV_DIR",
    "ENV_SWITCH",
    "ENV_TIMEOUT",
    "IsolationTimeout",
    "LockFiles",
    "enabled",
    "lock_advice",
    "lock_deadline",
    "lock_dir",
]

logger = logging.getLogger(__name__)

ENV_SWITCH = "SRNAS_ISOLATION"
ENV_DIR = "SRNAS_LOCK_DIR"
ENV_TIMEOUT = "SRNAS_LOCK_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
WARN_EVERY_S = 60.0
MAIN_LOCK = "measure.lock"
TURNSTILE_LOCK = "turnstile.lock"

_OFF = frozenset({"0", "off", "false", "no", "disable", "disabled"})
_POLL_MIN_S = 1e-4  # first retry interval of a blocked flock, seconds (doubles up to max)
_POLL_MAX_S = 0.02  # longest retry interval, seconds: a trainer resumes <= 20 ms late


class IsolationTimeout(TimeoutError):
    """A measuring or training section could not take the host-wide lock in time."""


def enabled() -> bool:
    """False when ``SRNAS_ISOLATION`` is ``off``/``0``/``false``/``no`` or without fcntl."""
    return fcntl is not None and os.environ.get(ENV_SWITCH, "on").strip().lower() not in _OFF


def lock_dir() -> Path:
    """The host-wide lock folder: ``$SRNAS_LOCK_DIR``, else ``/tmp/srnas-locks``."""
    env = os.environ.get(ENV_DIR, "").strip()
    if env:
        return Path(env)
    base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    return Path(base) / "srnas-locks"


def lock_deadline(timeout: float | None) -> tuple[float, float]:
    """(monotonic deadline, timeout) in seconds, from ``timeout`` or ``$SRNAS_LOCK_TIMEOUT``."""
    if timeout is None:
        raw = os.environ.get(ENV_TIMEOUT, "").strip()
        try:
            timeout = float(raw) if raw else DEFAULT_TIMEOUT_S
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise ValueError(f"{ENV_TIMEOUT}={raw!r} is not a number of seconds > 0; "
                             f"unset it (default {DEFAULT_TIMEOUT_S:.0f} s) or set e.g. 600")
    elif isinstance(timeout, bool) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    return time.monotonic() + timeout, float(timeout)


def _holders(path: Path) -> list[int]:
    """PIDs holding a lock on ``path`` according to ``/proc/locks`` (Linux; else [])."""
    try:
        inode = os.stat(path).st_ino
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            lines = locks.readlines()
    except OSError:
        return []
    pids = set()
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF"; "->" lines are waiters
        parts = line.split()
        if len(parts) < 6 or "->" in parts:
            continue
        with contextlib.suppress(ValueError):
            if int(parts[5].rsplit(":", 1)[-1]) == inode:
                pids.add(int(parts[4]))
    return sorted(pids)


def lock_advice() -> str:
    """How to get past a lock that is not free, for the end of an error message."""
    return (f"raise {ENV_TIMEOUT} (seconds), point {ENV_DIR} at another folder, or set "
            f"{ENV_SWITCH}=off to run without measurement isolation")


class LockFiles:
    """The two lock files of one folder, opened lazily and kept open (one fd each)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.main = folder / MAIN_LOCK
        self.turnstile = folder / TURNSTILE_LOCK
        self._fds: dict[Path, int] = {}

    def fd(self, path: Path) -> int:
        if path not in self._fds:
            self._fds[path] = self._open(path)
        return self._fds[path]

    def _open(self, path: Path) -> int:
        try:
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):  # every user's srnas shares the folder
                    os.chmod(self.folder, 0o1777)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
                with contextlib.suppress(OSError):
                    os.fchmod(fd, 0o666)
            except PermissionError:  # another user's file: flock works on a read-only fd
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise OSError(f"cannot open the srnas measurement lock file {path} ({exc}); "
                          f"set {ENV_DIR} to a writable local folder, or set {ENV_SWITCH}=off "
                          "to run without measurement isolation") from exc
        return fd

    def take(self, path: Path, shared: bool, deadline: float, timeout: float, who: str) -> None:
        """flock ``path`` shared/exclusive, polling until ``deadline``; IsolationTimeout then."""
        assert fcntl is not None
        fd = self.fd(path)
        op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        with contextlib.suppress(BlockingIOError):
            fcntl.flock(fd, op)
            return
        start = time.monotonic()
        next_warn, pause = start + WARN_EVERY_S, _POLL_MIN_S
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise IsolationTimeout(
                    f"{who}: could not lock {path} ({'shared' if shared else 'exclusive'}) "
                    f"within {timeout:.0f} s; held by pid(s) {_holders(path) or 'unknown'} "
                    "(another srnas process measuring or training on this host, or a stopped "
                    f"one); {lock_advice()}")
            if now >= next_warn:
                logger.warning("%s: waiting %.0f s for %s, held by pid(s) %s (gives up after "
                               "%.0f s; %s)", who, now - start, path,
                               _holders(path) or "unknown", timeout, lock_advice())
                next_warn += WARN_EVERY_S
            time.sleep(min(pause, deadline - now))
            pause = min(2 * pause, _POLL_MAX_S)
            with contextlib.suppress(BlockingIOError):
                fcntl.flock(fd, op)
                waited = time.monotonic() - start
                if waited > 1.0:
                    logger.debug("%s: waited %.2f s for %s", who, waited, path)
                return

    def release(self, path: Path) -> None:
        assert fcntl is not None
        if path in self._fds:
            fcntl.flock(self._fds[path], fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the fds without unlocking (in a forked child the parent's locks stay)."""
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
