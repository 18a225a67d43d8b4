"""The one atomic file writer of the project (every layer above imports it from here).

:func:`atomic_write` writes through a temporary file in the target's folder (created with mode
``0o666`` so the umask applies, as for any file), flushes and ``fsync`` s it, renames it over the
target with :func:`os.replace` and ``fsync`` s the folder. A reader therefore sees the old file
or the new one, never a part of one, and a process killed mid-write leaves the target as it was
(only its ``.NAME.PID.HEX.tmp`` temporary behind, which the next write does not reuse). After a
power loss the new content is on disk once the call returned (where the file system honours
``fsync``; folder ``fsync`` is skipped where unsupported).

:func:`error_line` turns the error of a refused input or a failed write into the one line a
command prints before it exits with status 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "error_line", "fsync_dir"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """``fsync`` a folder, so a rename inside it survives a crash (a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], object],
    before_replace: Callable[[Path], object] | None = None,
) -> Path:
    """Call ``write`` on a binary handle of a temporary file, then put it in place at ``path``
    atomically (see the module docstring); the parent folder is created if needed.
    ``before_replace(target)`` runs once the new file is whole on disk, just before it takes the
    name (a checkpoint keeps the file it replaces there)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace(target)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode(encoding)))


def error_line(exc: BaseException) -> str:
    """``exc`` as one line: its message with whitespace runs (newlines too) collapsed; an error
    the operating system raised (it has an ``errno``) names the path, the reason and the fix."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        where = f"{exc.filename!s}: " if exc.filename else ""
        code = errno.errorcode.get(exc.errno, str(exc.errno))
        if exc.errno in _NO_SPACE:
            fix = "free disk space, or point run.dir (or --out) at a folder on another disk"
        elif exc.errno in _NO_WRITE:
            fix = "make the folder writable, or point run.dir (or --out) at a writable folder"
        else:
            fix = "check the path and that the folder exists"
        text = f"{where}{exc.strerror} ({code}); {fix}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
