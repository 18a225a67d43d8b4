"""What a GPU-check item sees and returns, the time cap it runs under, and the dry run's images.

:class:`Context` (the output folder, dry run or not, the CUDA device or why there is none, the
images), :class:`Item` and :class:`ItemResult`, :class:`Skipped` (a missing prerequisite, with
the reason) and :class:`ItemTimeout`; :func:`time_cap` stops an item at its cap;
:func:`parse_markdown_table` reads an item's Markdown table back into rows;
:func:`write_dry_images` writes the dry run's tiny images. See :mod:`searchers.tools.gpu_check`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


class Skipped(Exception):  # noqa: N818 (a status, not an error)
    """A prerequisite of the item is missing; the message says which and how to get it."""


class ItemTimeout(Exception):  # noqa: N818
    """The item ran past its time cap."""


@dataclass
class Context:
    """What every item sees."""

    out: Path
    dry_run: bool
    device: torch.device | None  # None: no CUDA in a real run
    images: str
    cuda_reason: str = ""

    def need_cuda(self) -> torch.device:
        """The device to measure on: the CPU in a dry run, else CUDA (or :class:`Skipped`)."""
        if self.dry_run:
            return torch.device("cpu")
        if self.device is None:
            raise Skipped(self.cuda_reason)
        return self.device


@dataclass
class ItemResult:
    """What one item gave: its status, time, the reason when not ``ok``, its data and table."""

    name: str
    title: str
    status: str  # ok | skipped | failed | timeout
    seconds: float
    cap_s: float
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    markdown: str = ""


@dataclass(frozen=True)
class Item:
    """One row of the items table: a function of the :class:`Context` returning
    ``(data, markdown)``, run under ``cap_s`` seconds."""

    name: str
    title: str
    cap_s: float
    run: Callable[[Context], tuple[dict[str, Any], str]]


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raise :class:`ItemTimeout` in the block once ``seconds`` of wall time have passed
    (``SIGALRM``; in another thread or without ``SIGALRM`` the block runs uncapped)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        logger.warning("no time cap here (not the main thread, or no SIGALRM)")
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise ItemTimeout(f"ran past its cap of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_markdown_table(text: str) -> list[dict[str, Any]]:
    """The rows of the first Markdown table in ``text`` as dicts (numbers as floats; ``-``
    as ``None``)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return []
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        row: dict[str, Any] = {}
        for key, cell in zip(header, cells, strict=False):
            if cell == "-":
                row[key] = None
                continue
            try:
                row[key] = float(cell)
            except ValueError:
                row[key] = cell
        rows.append(row)
    return rows


def fmt(value: Any, spec: str = ".2f") -> str:
    """``value`` formatted with ``spec``; ``-`` for ``None``."""
    return "-" if value is None else format(value, spec)


def write_dry_images(out: Path) -> Path:
    """Three tiny HR images (48 px) in ``out/_dry_images/HR`` for the dry run."""
    from PIL import Image

    folder = out / "_dry_images" / "HR"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 48, dtype=np.float64)
    for i in range(3):
        smooth = (base[None, :, None] * 0.6 + base[:, None, None] * 0.4) * np.ones((1, 1, 3))
        arr = np.clip(smooth + rng.normal(0, 12, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"dry{i}.png")
    return folder


def dry_folder(ctx: Context) -> str:
    """The dry run's HR image folder (:func:`write_dry_images`)."""
    return str(ctx.out / "_dry_images" / "HR")
