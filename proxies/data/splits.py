"""The fixed hold-out split of an image folder, and the ``PATH::SPLIT`` spec syntax naming it.

Search and proxy validation select on a folder's ``"holdout"`` side (:func:`holdout_split`), the
other images train; :func:`split_spec` parses ``"PATH::train"`` / ``"PATH::holdout"``. Pure
Python, no image is read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "DEFAULT_PREFIX",
    "HOLDOUT_EVERY",
    "SPLITS",
    "SPLIT_SEPARATOR",
    "holdout_split",
    "split_spec",
]

#: Spec strings starting with this name the embedded default set (``"default:train"``).
DEFAULT_PREFIX = "default:"

HOLDOUT_EVERY = 9
"""Every 9th image of a folder, sorted by file name, starting with the 5th, is held out."""

SPLIT_SEPARATOR = "::"
SPLITS = ("train", "holdout")


def holdout_split(names: Sequence[str], split: str, origin: str,
                  items: Sequence[Any] | None = None) -> list[Any]:
    """One side of the fixed hold-out split of a folder's images.

    Sorted by file name, the images at positions 4, 13, 22, ... (every :data:`HOLDOUT_EVERY`-th,
    starting with the 5th) form ``"holdout"``, the others ``"train"``. The rule is fixed and
    needs no file beside the data: T91's 91 images give 10 held out (``t13``, ``t21``, ``t3``,
    ``t38``, ``t47``, ``t55``, ``t63``, ``tt12``, ``tt20``, ``tt4``) and 81 to train on. Search
    and proxy validation select on ``"holdout"``; Set5, Set14 and B100 stay for the report.

    Returns the ``items`` (default: the names) on that side, in order.
    """
    if split not in SPLITS:
        raise ValueError(f"split of {origin}: got {split!r}; allowed: {', '.join(SPLITS)} "
                         f"(e.g. '{origin}{SPLIT_SEPARATOR}holdout')")
    order = sorted(range(len(names)), key=lambda i: names[i])
    held = {order[k] for k in range(4, len(order), HOLDOUT_EVERY)}
    if not held:
        raise ValueError(f"split of {origin}: {len(names)} images are too few for a hold-out "
                         f"(it needs at least 5); validate on another folder")
    keep = [i for i in range(len(names)) if (i in held) == (split == "holdout")]
    src = list(names if items is None else items)
    return [src[i] for i in keep]


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"PATH::holdout"`` -> ``("PATH", "holdout")``; without a split, ``(spec, None)``."""
    if SPLIT_SEPARATOR in spec and not spec.startswith(DEFAULT_PREFIX):
        path, _, split = spec.rpartition(SPLIT_SEPARATOR)
        return path, split
    return spec, None
