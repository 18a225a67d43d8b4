"""Reading a torch file without running code: every file this project reads with ``torch.load``
(checkpoints, ``model.pt``/``deployed.pt``, a supernet's weights) is read with
``weights_only=True``, which refuses any object but tensors and plain Python values (dicts,
lists, tuples, strings, numbers, None) before it is built; this project writes nothing else into
them (its random states, configs and genotypes are stored as plain values and JSON text).

:func:`load_weights_only` is that ``torch.load``; :func:`refused_global` tells a refused file
from a damaged one: the ``module.name`` of the type or function the file asked for
(``posix.system``, ``pathlib.PosixPath``, ...), from torch's error or, where torch stopped before
reaching it (a plain pickle of a newer protocol), from the pickle's opcodes, read with
:mod:`pickletools` and never run. :func:`refusal` is the one line a command prints for it,
:func:`load_error` the gist of torch's error for a damaged file, on one line.
"""

from __future__ import annotations

import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["load_error", "load_weights_only", "refusal", "refused_global"]

# torch's weights-only unpickler names the global it refused in one of these forms
_NAMED = re.compile(r"(?:GLOBAL|Unsupported class) ([A-Za-z_][\w.]*\w)")
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
            "SHORT_BINSTRING"}
_SCAN_LIMIT = 64 << 20  # bytes of a plain pickle scanned for its globals


def load_weights_only(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, map_location=map_location, weights_only=True)``, without torch's
    warning about a plain pickle of a newer protocol (the load fails right after it, and
    :func:`refused_global` names the reason)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location=map_location, weights_only=True)


def _pickle_bytes(path: Path) -> bytes:
    """The pickle in ``path``: a torch zip file's ``data.pkl``, else the file's first bytes."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            return archive.read(names[0]) if names else b""
    with path.open("rb") as fh:
        return fh.read(_SCAN_LIMIT)


def _pickled_globals(path: Path) -> list[str]:
    """The ``module.name`` globals the pickle in ``path`` refers to, in order, read with
    :func:`pickletools.genops` (nothing is imported or run); those before any damage."""
    found: list[str] = []
    pushed: list[str | None] = []  # the strings pushed so far (a memo fetch may push one)
    memo: dict[int, str | None] = {}
    last: str | None = None
    try:
        for op, arg, _ in pickletools.genops(_pickle_bytes(path)):
            name = op.name
            if name == "GLOBAL" and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif name == "STACK_GLOBAL" and len(pushed) >= 2:
                found.append(f"{pushed[-2]}.{pushed[-1]}")
            elif name in _STRINGS and isinstance(arg, str):
                pushed.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = last
            elif name in ("BINPUT", "LONG_BINPUT", "PUT") and isinstance(arg, int):
                memo[arg] = last
            elif name in ("BINGET", "LONG_BINGET", "GET") and isinstance(arg, int):
                pushed.append(memo.get(arg))
            last = arg if name in _STRINGS and isinstance(arg, str) else (
                last if name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT") else None)
    except (ValueError, KeyError, IndexError, EOFError, OSError, zipfile.BadZipFile,
            NotImplementedError):
        pass  # damaged from here on: the globals found before the damage
    return found


def _plain_global(name: str) -> bool:
    """A global torch's own files hold (tensors' rebuild functions, storages, OrderedDict)."""
    return name.startswith(("torch.", "collections.OrderedDict", "_codecs.encode"))


def refused_global(exc: BaseException, path: str | Path) -> str | None:
    """The ``module.name`` that ``torch.load(path, weights_only=True)`` refused with ``exc``,
    or None when the file is damaged (truncated, random bytes, not a torch file) rather than
    refused. Where torch's message does not name it (it stopped at an opcode first), the
    pickle is scanned for a global that is not one of torch's own."""
    import pickle

    if not isinstance(exc, pickle.UnpicklingError):
        return None
    named = _NAMED.search(str(exc))
    if named:
        return named.group(1).rstrip(".")
    foreign = [g for g in _pickled_globals(Path(path)) if not _plain_global(g)]
    return foreign[0] if foreign else None


def load_error(exc: BaseException, limit: int = 300) -> str:
    """``exc`` of a failed ``torch.load`` on one line: the weights-only unpickler's own reason
    (e.g. ``Unsupported operand 89`` for bytes that are no pickle) without torch's paragraphs
    around it, cut to ``limit`` characters."""
    text = " ".join(str(exc).split())
    if "Weights only load failed" in text:
        reason = text.split("WeightsUnpickler error:", 1)[-1].split(" Check the documentation")[0]
        text = f"not a pickle torch reads weights-only: {reason.strip(' .')}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refusal(path: str | Path, name: str, what: str = "file") -> str:
    """The one line for ``path`` refused because it holds ``name``: what was refused, why, and
    that this project never writes such a file."""
    return (f"{what} {path} was refused: it needs {name}, which torch.load(weights_only=True) "
            "refuses (only tensors and plain values load: another type or function could run "
            "code); this project never writes such objects into its files, so this one was made "
            "or altered elsewhere, and nothing was loaded. Do not load files from sources you "
            "do not trust: take the run's genotype JSON and retrain, or start a new run")
