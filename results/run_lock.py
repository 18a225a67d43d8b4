"""The lock of a run folder: one process at a time writes a run folder.

A command that writes a run folder (the DARTS search, a supernet training, a study's driver,
the pipeline, a retraining) holds the folder's lock from before its first write to its end
(:meth:`results.run_folder.RunFolder.lock`, a context manager). The lock is the file ``.lock``
in the folder, locked with ``flock`` and holding the holder's PID, host, start time and
command. A second process that would write the folder refuses at once: :class:`RunFolderBusy`
(a ``ValueError``, so the commands exit with status 2) names the folder, the holder's PID and
host, and the fix. The lock ends with its process, however that ends: a clean exit, an
exception or Ctrl-C release it and remove the file; after a SIGKILL the kernel releases it and
the file stays, and the next process to lock the folder takes it over with one log line naming
the holder that is gone. On a shared file system ``flock`` works across hosts where the file
system locks files (NFS does).

Where the file system has no ``flock`` (``ENOLCK``, ``ENOSYS``, ``EOPNOTSUPP``: e.g. Lustre
mounted without ``-o flock``), the file itself is the lock, created with ``O_EXCL``: a holder
on this host that no longer runs is taken over, a holder on another host cannot be checked and
is refused, the line naming the host and the file to remove if that run is gone.

A process holds a folder's lock once: locking it again (a pipeline's stage locking a folder its
caller holds) counts up and the last release lets go. A forked child does not hold its
parent's lock (its copy of the file is closed after the fork), so a child that outlives its
parent keeps nobody out; the workers of one run (Optuna's ``run.workers`` processes, Ray Tune's
trials, the ranks of a DDP training other than rank 0) never take the lock: the process that
started them holds it for them.

A refused command writes nothing: the lock creates the folders it needs and, released, removes
those it created where they are still empty, and the lock file itself.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: the O_EXCL file alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunFolderBusy", "RunLock"]

logger = logging.getLogger(__name__)

_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
"""What ``flock`` raises on a file system that does not lock files."""

_RECORD_BYTES = 8192
"""The most of a lock file read back (a record is one short JSON line)."""


class RunFolderBusy(ValueError):
    """Another process holds the lock of the run folder this one would write."""


@dataclass
class _Held:
    """A lock this process holds: the open lock file, how often it was taken and the folders
    taking it created (outermost first)."""

    fd: int
    count: int
    created: list[Path]


_HELD: dict[Path, _Held] = {}
_GUARD = threading.Lock()


def _forget_in_child() -> None:
    """After a fork: the child closes its copies of the lock files (the parent's locks stay
    the parent's) and holds none."""
    global _GUARD
    _GUARD = threading.Lock()
    for held in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class RunLock:
    """The lock of the run folder ``folder``, kept in the file ``path`` (in the folder).

    ``with RunLock(folder, path):`` (or :meth:`acquire` and :meth:`release`) holds it;
    ``rename`` is the key the refusal suggests to write elsewhere (``run.name``, or
    ``pipeline.name`` for a pipeline). After :meth:`acquire`, :attr:`created` says whether it
    created the folder.
    """

    def __init__(self, folder: str | os.PathLike[str], path: str | os.PathLike[str], *,
                 rename: str = "run.name") -> None:
        self.folder = Path(folder)
        self.path = Path(path)
        self.rename = rename
        self.created = False
        self._key: Path | None = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._key is not None

    def holder(self) -> dict[str, Any]:
        """The record in the lock file (``pid``, ``host``, ``started``, ``command``; ``{}``
        where there is no file or no record)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return {}
        try:
            return _read(fd)
        finally:
            os.close(fd)

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunFolderBusy` (another process holds it) or
        ``OSError`` (the folder cannot be written); returns ``self``."""
        if self._key is not None:
            raise RuntimeError(f"{self.folder}: this RunLock is held already")
        key = Path(os.path.realpath(self.folder))
        with _GUARD:
            held = _HELD.get(key)
            if held is not None:  # this process holds it: count up
                held.count += 1
                self._key, self.created = key, False
                return self
            created = _make_folders(self.folder)
            try:
                fd = self._lock()
            except BaseException:
                _remove_empty(created)
                raise
            _HELD[key] = _Held(fd, 1, created)
        self._key, self.created = key, bool(created) and created[-1] == self.folder
        return self

    def release(self) -> None:
        """Let the lock go (at the last release of this process: remove the lock file and the
        folders taking it created, where empty). A lock not held is left alone."""
        key, self._key = self._key, None
        if key is None:
            return
        with _GUARD:
            held = _HELD.get(key)
            if held is None:  # forgotten in a forked child
                return
            held.count -= 1
            if held.count:
                return
            del _HELD[key]
            try:
                if _same_file(held.fd, self.path):  # not a file another process made since
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
            finally:
                os.close(held.fd)  # lets the flock go
            _remove_empty(held.created)

    # -- taking the file --------------------------------------------------------------------

    def _lock(self) -> int:
        """The open lock file, locked and holding this process's record."""
        if fcntl is None:
            return self._exclusive()
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise RunFolderBusy(self._busy(holder)) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in _NO_FLOCK:
                    logger.debug("%s: no flock here (%s); the file alone is the lock",
                                 self.path, errno.errorcode.get(exc.errno or 0, exc.errno))
                    return self._exclusive()
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its holder removed the file as it let go: lock the new one
        else:
            raise RunFolderBusy(f"{self.folder}: its lock file {self.path} was replaced five "
                                "times while this process tried to lock it; another process "
                                "is starting and ending runs in this folder: wait for it, or "
                                f"pass another {self.rename}=...")
        previous = _read(fd)
        if previous:
            logger.warning("%s: took over the lock of %s, which no longer runs", self.folder,
                           _who(previous))
        try:
            _write(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _exclusive(self) -> int:
        """The lock without ``flock``: the file created with ``O_EXCL``; a holder on this host
        that no longer runs is taken over, any other refused."""
        try:
            return self._create()
        except FileExistsError:
            holder = self.holder()
            if not _gone(holder):
                raise RunFolderBusy(self._busy(holder, unchecked=True)) from None
        logger.warning("%s: took over the lock of %s, which no longer runs", self.folder,
                       _who(holder))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        try:
            return self._create()
        except FileExistsError:  # another process took it over first
            raise RunFolderBusy(self._busy(self.holder(), unchecked=True)) from None

    def _create(self) -> int:
        """The lock file, created (``O_EXCL``: ``FileExistsError`` where it exists) with this
        process's record."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            _write(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        return fd

    def _busy(self, holder: dict[str, Any], *, unchecked: bool = False) -> str:
        """The one line of a refusal."""
        fix = f"wait for it to end, or write elsewhere with another {self.rename}=..."
        host = holder.get("host")
        if unchecked and host and host != socket.gethostname():
            return (f"{self.folder} is being written by {_who(holder)} (its lock file "
                    f"{self.path}; this file system has no file locks, so a run killed on "
                    f"{host} leaves it behind): {fix}; if no process on {host} writes the "
                    f"folder any more, remove {self.path}")
        if not holder:  # the holder has locked the file and not yet written its record
            return f"{self.folder} is being written by another process (it is starting): {fix}"
        return f"{self.folder} is being written by {_who(holder)}: {fix}"


# -- the record ---------------------------------------------------------------------------------


def _record() -> bytes:
    return (json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                        "command": shlex.join([sys.executable, *sys.argv])}) + "\n").encode()


def _write(fd: int) -> None:
    """This process's record into the lock file, in place: the file must stay the one locked,
    so it is not replaced through the atomic writer (a reader that finds it half-written reads
    no record)."""
    data = _record()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, _RECORD_BYTES, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _who(holder: dict[str, Any]) -> str:
    """``PID 123 on host h (since ...)`` of a record."""
    if not holder:
        return "another process (no PID recorded)"
    return (f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(since {holder.get('started', '?')})")


def _gone(holder: dict[str, Any]) -> bool:
    """Whether the holder is a process of this host that no longer runs."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return False


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


# -- the folders ---------------------------------------------------------------------------------


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing: list[Path] = []
    for path in [folder, *folder.parents]:
        if path.is_dir():
            break
        missing.append(path)
    created: list[Path] = []
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue  # another process made it: not ours to remove
        except BaseException:
            _remove_empty(created)
            raise
        created.append(path)
    return created


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders of ``created`` that are empty, innermost first."""
    for path in reversed(created):
        try:
            os.rmdir(path)
        except FileNotFoundError:  # gone already (a refused study removes its new folder)
            continue
        except OSError:  # not empty: the run wrote into it
            return
