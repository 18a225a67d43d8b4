"""The training checkpoints of a run, written so that a kill never costs more than the steps since
the last one: :func:`save_checkpoint` replaces the checkpoint atomically and keeps the one it
replaces (:func:`previous_checkpoint`), :func:`load_checkpoint` refuses a damaged file naming
the last good one, and :func:`atomic_torch_save` saves any torch object atomically (a
retraining's final weights). Where a run keeps its checkpoint is
:attr:`results.run_folder.RunFolder.checkpoint`.

A checkpoint holds tensors and plain values only (dicts, lists, tuples, strings, numbers, None:
the random states of :func:`rng_state` are such values, a genotype is its JSON text), so it loads
with ``torch.load(weights_only=True)`` and no allow-list; :func:`load_checkpoint` refuses a file
that needs more (a crafted one: loading it could run code) naming the type it asked for."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from results.safe_load import load_error, load_weights_only, refusal, refused_global
from search_space.files import atomic_write, fsync_dir
from searchers.common.config import ConfigError

__all__ = ["atomic_torch_save", "load_checkpoint", "previous_checkpoint", "save_checkpoint"]


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` atomically: a kill mid-write never leaves a truncated file."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def previous_checkpoint(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint before the newest one:
    ``checkpoint.pt`` -> ``checkpoint.prev.pt``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def save_checkpoint(obj: Any, path: str | Path) -> Path:
    """Save a training checkpoint atomically (:func:`search_space.files.atomic_write`), keeping
    the one it replaces as :func:`previous_checkpoint`. The new file is written and fsynced
    first, the old one is then hard-linked to the ``.prev`` name, and only then does the new one
    take the name: at every instant ``path`` is a whole checkpoint (the old or the new), so a
    kill, even mid-write, loses at most the steps since the last one. Temporary files a killed
    writer left behind (one process writes a run's checkpoint) are removed by the next save."""
    target = Path(path)

    def keep_previous(target: Path) -> None:
        if target.exists():
            link = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.prev")
            os.link(target, link)
            try:
                os.replace(link, previous_checkpoint(target))
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
                raise

    atomic_write(target, lambda fh: torch.save(obj, fh), before_replace=keep_previous)
    for stale in target.parent.glob(f".{target.name}.*"):  # left by a writer killed mid-write
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    fsync_dir(target.parent)
    return target


def load_checkpoint(path: str | Path, map_location: Any = "cpu",
                    keys: Sequence[str] = ("step",)) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=
    True)``, refusing a damaged one (empty, truncated, not a checkpoint, or missing ``keys``)
    with a :class:`ConfigError` that names the file and the last good one to go back to, and a
    crafted one (it needs a type or function besides tensors and plain values) with a
    :class:`ConfigError` naming the file and that type; nothing of it runs, and it never
    returns half a checkpoint."""
    target = Path(path)
    prev = previous_checkpoint(target)
    size = target.stat().st_size
    try:
        if size == 0:
            raise ValueError("the file is empty (0 bytes)")
        ckpt = load_weights_only(target, map_location)
        if not isinstance(ckpt, dict) or any(k not in ckpt for k in keys):
            found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
            raise ValueError(f"it holds {found}, not a checkpoint with {list(keys)}")
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        refused = refused_global(exc, target)
        if refused is not None:
            raise ConfigError(refusal(target, refused, "checkpoint")) from None
        if prev.is_file() and prev.stat().st_size > 0:
            fix = (f"the last good one is {prev} (the checkpoint before it): "
                   f"`mv {prev} {target}` and --resume again continues from there")
        else:
            fix = "no earlier checkpoint is kept; start a new run (another run.name=...)"
        raise ConfigError(f"checkpoint {target} is damaged ({size} bytes; "
                          f"{load_error(exc)}); {fix}") from exc
    return ckpt


def rng_state(rng: Any) -> dict[str, Any]:
    """Every random state a resumed run needs: torch's (and CUDA's), the run's numpy
    ``Generator`` ``rng`` and Python's ``random``."""
    import random

    return {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state,
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(rng: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (into ``rng`` and the global generators)."""
    import random

    torch.set_rng_state(state["torch"])
    rng.bit_generator.state = state["numpy"]
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
