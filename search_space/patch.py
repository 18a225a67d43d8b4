"""The one rule of the HR training patch: a positive multiple of the scale, and large enough that
no attention op of the net (or of the space a search samples) degenerates on it.

:func:`min_patch_size` is the smallest such patch, :func:`check_patch_size` refuses a given patch
in one line (naming the patch, what is allowed and the fix), and :func:`training_patch_size`
resolves a configured patch (``None``: a default raised to the smallest that works). The data
sets, every training loop and the searches' proxies call these; no torch import.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping

from search_space.checks import GenotypeError

__all__ = ["ATTENTION_MIN_INPUT", "check_patch_size", "min_patch_size", "training_patch_size"]

ATTENTION_MIN_INPUT: Mapping[str, int] = {"esa": 27, "esa_lite": 27, "esa_mab": 25}
"""The smallest LR side (px) on which an attention op works as designed; 1 for those not listed.

ESA and RLFN's ESA-lite pool a stride-2 3x3 conv's output with a 7x7 window of stride 3. On
27 px the pooled map is 3x3; below it the map shrinks to 2x2 or 1x1 and the "spatial" gate
becomes a global, per-channel one: a net trained on such patches learns a channel gate and is
tested as a spatial one. Training patches are checked against this (:func:`min_patch_size`).
MAFFSRN's ESA variant pads its stride-2 conv by 1 (``ceil(n / 2)`` px), so its pooled map is
3x3 from 25 px on (MAFFSRN itself trained on 24 px LR patches at x4, where it is 2x2).
"""


def min_patch_size(attentions: Iterable[str], scale: int) -> int:
    """The smallest HR training patch on which none of ``attentions`` degenerates.

    The LR side must reach every op's :data:`ATTENTION_MIN_INPUT`; the HR side is that times
    ``scale`` (x4 with ESA: 27 * 4 = 108 px).
    """
    lr = max((ATTENTION_MIN_INPUT.get(a, 1) for a in attentions), default=1)
    return lr * scale


def _as_int(value: object) -> int | None:
    """``value`` as an int where it is an integer (a NumPy one too, not a bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_patch_size(patch_size: object, scale: int, attentions: Iterable[str] = (), *,
                     where: str = "patch_size") -> int:
    """``patch_size`` as an int, refused unless it is a positive multiple of ``scale`` and (with
    ``attentions``) at least :func:`min_patch_size`; the message names ``where``, the patch,
    the smallest patch that works and, for an attention, the op that would degenerate."""
    size = _as_int(patch_size)
    if size is None or size < 1 or size % scale:
        raise ValueError(
            f"{where} (HR patch side in pixels) must be a positive multiple of scale={scale}, "
            f"got {patch_size!r}; use e.g. {where}={scale * max(1, 48 // scale)}."
        )
    attentions = tuple(attentions)
    need = min_patch_size(attentions, scale)
    if size < need:
        worst = max(attentions, key=lambda a: ATTENTION_MIN_INPUT.get(a, 1))
        lr_min = ATTENTION_MIN_INPUT[worst]
        raise GenotypeError(
            f"{where}: got {size} (LR {size // scale} px at x{scale}); allowed: >= "
            f"{need}. On LR patches under {lr_min} px the '{worst}' attention pools to less than "
            f"3x3 and degenerates into a global gate in training. Set {where}={need} or more, "
            "or leave it unset to get the smallest patch that works.")
    return size


def training_patch_size(patch_size: int | None, attentions: Iterable[str], scale: int, *,
                        default: int, where: str = "patch_size") -> int:
    """The HR training patch: ``patch_size`` checked (:func:`check_patch_size`), or for
    ``None`` the default: ``default`` raised to :func:`min_patch_size` of ``attentions`` and
    rounded up to a multiple of ``scale``."""
    attentions = tuple(attentions)
    if patch_size is None:
        need = max(default, min_patch_size(attentions, scale))
        return int(math.ceil(need / scale) * scale)
    return check_patch_size(patch_size, scale, attentions, where=where)
