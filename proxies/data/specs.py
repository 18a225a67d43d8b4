"""Data sets by name: the embedded default set and the spec strings that name a set.

The embedded default data set consists of the natural photographs bundled with scikit-image (no
download needed); see :data:`DEFAULT_TRAIN_NAMES`, :data:`DEFAULT_VAL_NAMES` and
:func:`default_split`. :func:`dataset_from_spec` resolves ``"default:train"`` /
``"default:val"``, a folder of images (benchmark sets: Set5, Set14, B100, T91) or one side of a
folder's fixed hold-out split (``"PATH::holdout"``, :mod:`proxies.data.splits`) into an
:class:`proxies.data.imageset.SRImageSet`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from proxies.data.downsample import check_downsampler, check_scale
from proxies.data.images import IMAGE_EXTENSIONS
from proxies.data.imageset import Source, SRImageSet, build_set, load_cached
from proxies.data.splits import DEFAULT_PREFIX, split_spec
from search_space.patch import check_patch_size

__all__ = [
    "DEFAULT_MAX_SIDE",
    "DEFAULT_TRAIN_NAMES",
    "DEFAULT_VAL_NAMES",
    "dataset_from_spec",
    "default_images",
    "default_split",
]

#: Default validation images (file stems in scikit-image's data folder).
DEFAULT_VAL_NAMES: tuple[str, ...] = ("chelsea", "coffee", "rocket")
#: Default training images: the other natural photographs bundled with scikit-image. Synthetic or
#: non-photographic files (chessboard, logo, text, page, phantom, color, horse, cell, clock_motion,
#: microaneurysms) are left out.
DEFAULT_TRAIN_NAMES: tuple[str, ...] = (
    "astronaut", "brick", "camera", "coins", "grass", "gravel", "hubble_deep_field", "ihc",
    "moon", "motorcycle_left", "motorcycle_right", "retina",
)  # fmt: skip
#: Default images larger than this on a side are centre-cropped to it (only retina, 1411x1411).
DEFAULT_MAX_SIDE = 1024
_DEFAULT_SPLITS = {"train": DEFAULT_TRAIN_NAMES, "val": DEFAULT_VAL_NAMES}


def _default_sources(names: Sequence[str]) -> list[Source]:
    import skimage.data

    folder = Path(os.path.dirname(skimage.data.__file__))
    by_stem = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    sources = []
    for name in names:
        if name not in by_stem:
            raise FileNotFoundError(
                f"Default image {name!r} not found in scikit-image's data folder {str(folder)!r}; "
                "reinstall scikit-image (>= 0.22) or use a folder data set instead."
            )
        hr, key = load_cached(by_stem[name])
        h, w = hr.shape[:2]
        ch, cw = min(h, DEFAULT_MAX_SIDE), min(w, DEFAULT_MAX_SIDE)
        top, left = (h - ch) // 2, (w - cw) // 2
        hr = hr[top : top + ch, left : left + cw]
        sources.append(Source(name, str(by_stem[name]), hr, (*key, "crop", DEFAULT_MAX_SIDE)))
    return sources


def default_images() -> list[tuple[str, np.ndarray]]:
    """The embedded natural photographs as ``(name, float32 HxWx3 in [0, 1])``, train then val.

    Read from the files bundled in scikit-image's package folder (no download). Images larger
    than :data:`DEFAULT_MAX_SIDE` on a side are centre-cropped to it. Arrays are read-only.
    """
    return [(s.name, s.hr) for s in _default_sources(DEFAULT_TRAIN_NAMES + DEFAULT_VAL_NAMES)]


def default_split(
    split: str, scale: int, *, patch_size: int | None = None, downsampler: str = "torch"
) -> SRImageSet:
    """The embedded set's ``"train"`` (:data:`DEFAULT_TRAIN_NAMES`) or ``"val"`` split."""
    if split not in _DEFAULT_SPLITS:
        raise ValueError(
            f"split must be one of {sorted(_DEFAULT_SPLITS)}, got {split!r}; "
            "use 'train' or 'val' (spec strings 'default:train' / 'default:val')."
        )
    scale = check_scale(scale)
    downsampler = check_downsampler(downsampler)
    if patch_size is not None:
        patch_size = check_patch_size(patch_size, scale)
    sources = _default_sources(_DEFAULT_SPLITS[split])
    return build_set(sources, scale, patch_size, downsampler, f"default split {split!r}")


def dataset_from_spec(
    spec: str, scale: int, *, patch_size: int | None = None, downsampler: str = "torch"
) -> SRImageSet:
    """Resolve a data-set spec: ``"default:train"`` / ``"default:val"``, a folder path, or one
    side of a folder's fixed hold-out split, ``"PATH::train"`` / ``"PATH::holdout"``
    (:func:`proxies.data.splits.holdout_split`). These sets train and select nets, so a folder's
    files must be 8-bit RGB (``rgb_only``; greyscale, alpha and 16-bit are refused)."""
    if not isinstance(spec, str | os.PathLike):
        raise TypeError(
            f"spec must be a string, got {type(spec).__name__}; "
            "use 'default:train', 'default:val', a folder path or 'FOLDER::holdout'."
        )
    spec = os.fspath(spec)
    if spec.startswith(DEFAULT_PREFIX):
        split = spec[len(DEFAULT_PREFIX) :]
        return default_split(split, scale, patch_size=patch_size, downsampler=downsampler)
    path, side = split_spec(spec)
    return SRImageSet.from_folder(path, scale, patch_size=patch_size, downsampler=downsampler,
                                  split=side, rgb_only=True)
