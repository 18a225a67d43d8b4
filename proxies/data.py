"""Image data pipeline for training and validating super-resolution candidates.

Images are decoded once with Pillow into float32 ``HxWx3`` arrays in ``[0, 1]``, mod-cropped to the
scale and paired with a bicubic low-resolution (LR) version that is quantised to 8-bit levels, as
LR PNGs on disk are. :class:`SRImageSet` keeps these ``(name, hr, lr)`` triples in memory, serves
whole images for validation and seeded random aligned patches for training.

Two downsamplers are available:

* ``"torch"`` (default): :func:`bicubic_downsample`, antialiased bicubic
  ``torch.nn.functional.interpolate``. Inside the image it uses the same cubic kernel (a = -0.5,
  widened by the scale) as MATLAB; at the borders it renormalises the clipped kernel instead of
  mirroring, so only the outermost LR pixels differ (see ``tests/test_data.py`` for measured
  numbers).
* ``"matlab"``: :func:`matlab_imresize`, a float64 numpy re-implementation of MATLAB's
  ``imresize(img, 1/s, 'bicubic')`` for downscaling, the usual reference for SR benchmarks.

Decoded images are cached per process (keyed by absolute path, mtime and size), as are the LR
images (per source, scale and downsampler); :func:`clear_cache` empties both caches.

The embedded default data set consists of the natural photographs bundled with scikit-image (no
download needed); see :data:`DEFAULT_TRAIN_NAMES`, :data:`DEFAULT_VAL_NAMES` and
:func:`default_split`. Benchmark sets (Set5, Set14, B100, T91) are read from a folder with
:meth:`SRImageSet.from_folder` or :func:`dataset_from_spec`.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import warnings
import zlib
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_SIDE",
    "DEFAULT_TRAIN_NAMES",
    "DEFAULT_VAL_NAMES",
    "DOWNSAMPLERS",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "SRImage",
    "SRImageSet",
    "bicubic_downsample",
    "clear_cache",
    "dataset_from_spec",
    "default_images",
    "default_split",
    "load_image",
    "matlab_imresize",
    "modcrop",
]

#: File suffixes (lower case, compared case-insensitively) treated as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Names accepted by the ``downsampler`` arguments.
DOWNSAMPLERS: tuple[str, ...] = ("torch", "matlab")

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
_DEFAULT_PREFIX = "default:"

# Errors Pillow raises for unreadable, truncated or corrupt files.
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
    Image.DecompressionBombError,
)  # fmt: skip


class ImageReadError(ValueError):
    """An image file exists but could not be decoded."""


class SRImage(NamedTuple):
    """One decoded image pair: HR mod-cropped to the scale, LR exactly ``scale`` times smaller."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


# --------------------------------------------------------------------------------------------
# Decoding and resizing
# --------------------------------------------------------------------------------------------


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file into a float32 ``HxWx3`` array in ``[0, 1]``.

    * Greyscale modes (``1``, ``L``, ``LA``, ``I;16*``, ``I``, ``F``) are replicated to RGB.
    * Alpha channels are dropped (not composited); palette images are expanded to colour.
    * 16-bit greyscale (``I;16``, ``I;16B``, ``I;16L``, ``I``) is scaled by 1/65535 in float64;
      ``I`` values outside 0..65535 are clipped. ``F`` images are taken as ``[0, 1]`` and clipped.
    * 16-bit RGB/RGBA PNGs: Pillow (13) itself keeps only the high byte of each sample when it
      opens them, so they arrive as 8-bit; results are within 1/255 of ``value / 65535``.
    * Other modes (CMYK, YCbCr, ...) are converted with Pillow's ``convert("RGB")``.
    * EXIF orientation tags are not applied (pixels are used as stored).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: the file cannot be decoded; the message names the file and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"load_image: image file {str(path)!r} does not exist or is not a file; "
            "pass the path of an existing image file."
        )
    try:
        with Image.open(path) as im:
            im.load()
            return _pil_to_float_rgb(im)
    except _DECODE_ERRORS as exc:
        raise ImageReadError(
            f"load_image: cannot decode image file {str(path)!r}: {type(exc).__name__}: {exc}. "
            f"Check that it is a valid image (accepted extensions: {', '.join(IMAGE_EXTENSIONS)}) "
            "or remove it from the folder."
        ) from exc


def _pil_to_float_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.clip(np.asarray(im, dtype=np.float64) / 65535.0, 0.0, 1.0)
    elif mode == "F":
        arr = np.clip(np.asarray(im, dtype=np.float64), 0.0, 1.0)
    else:
        if mode in ("1", "L", "LA", "La"):
            im = im.convert("L")
        elif mode in ("P", "PA"):
            im = im.convert("RGBA")  # keeps palette transparency from warning; alpha dropped below
        elif mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
            im = im.convert("RGB")
        arr = np.asarray(im, dtype=np.float64) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3], dtype=np.float32)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Keep the top-left ``H - H % scale`` by ``W - W % scale`` pixels (a view, no copy)."""
    scale = _check_scale(scale)
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def _quantise(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] and round to 8-bit levels (half away from zero, like MATLAB's uint8)."""
    return (np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5) / 255.0).astype(np.float32)


def _as_hwc(img: np.ndarray, fn: str) -> tuple[np.ndarray, bool]:
    arr = np.asarray(img)
    if arr.ndim == 2:
        return arr[:, :, None], True
    if arr.ndim != 3:
        raise ValueError(
            f"{fn}: img must be HxW or HxWxC, got an array of shape {arr.shape}; "
            "pass one image in channels-last layout."
        )
    return arr, False


def bicubic_downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased bicubic downscaling by ``scale`` with torch, quantised to 8-bit levels.

    ``hr`` (``HxW`` or ``HxWxC`` float in [0, 1]) is mod-cropped first, so the result is exactly
    ``H // scale`` by ``W // scale``; returns float32 with the same layout.
    """
    scale = _check_scale(scale)
    arr, squeeze = _as_hwc(modcrop(hr, scale), "bicubic_downsample")
    h, w = arr.shape[:2]
    if scale == 1:
        out = _quantise(arr)
    else:
        x = torch.from_numpy(np.array(arr.transpose(2, 0, 1), dtype=np.float32))[None]
        y = F.interpolate(
            x, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False
        )
        out = _quantise(y[0].permute(1, 2, 0).numpy())
    return out[:, :, 0] if squeeze else out


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    a = np.abs(x)
    a2, a3 = a * a, a * a * a
    near = (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1.0)
    far = (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1.0) & (a <= 2.0))
    return near + far


def _matlab_weights(in_len: int, scale: int) -> np.ndarray:
    """Dense ``ceil(in_len / scale) x in_len`` matrix of MATLAB's imresize weights for 1/scale."""
    out_len = math.ceil(in_len / scale)
    width = 4.0 * scale  # antialiasing widens the 4-tap kernel by the scale
    u = np.arange(1, out_len + 1, dtype=np.float64) * scale + 0.5 * (1.0 - scale)  # 1-based
    idx = np.floor(u - width / 2.0)[:, None] + np.arange(int(math.ceil(width)) + 2)[None, :]
    weights = _cubic((u[:, None] - idx) / scale) / scale
    weights /= weights.sum(axis=1, keepdims=True)
    # MATLAB mirrors out-of-range indices through [1..n, n..1] (edge sample repeated).
    m = np.mod(idx.astype(np.int64) - 1, 2 * in_len)
    src = np.where(m < in_len, m, 2 * in_len - 1 - m)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], src.shape)
    np.add.at(mat, (rows.ravel(), src.ravel()), weights.ravel())
    return mat


def matlab_imresize(img: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(img, 1/scale, 'bicubic')`` for downscaling, in float64 numpy.

    Cubic kernel with a = -0.5, widened by ``scale`` for antialiasing (kernel width ``4*scale``),
    MATLAB's symmetric index mirroring at the borders. The output is ``ceil(H/scale)`` by
    ``ceil(W/scale)`` (MATLAB's size rule; exact division on a mod-cropped input), clamped to
    [0, 1] and quantised to 8-bit levels. ``img``: ``HxW`` or ``HxWxC`` float in [0, 1].
    Like MATLAB on ``double`` input there is no rounding between the two 1-D passes (MATLAB on
    ``uint8`` input rounds after the first pass, which can move a pixel by one level).
    """
    scale = _check_scale(scale)
    arr, squeeze = _as_hwc(img, "matlab_imresize")
    arr = arr.astype(np.float64)
    if scale > 1:
        rows = np.tensordot(_matlab_weights(arr.shape[0], scale), arr, axes=(1, 0))
        arr = np.tensordot(_matlab_weights(arr.shape[1], scale), rows, axes=(1, 1))
        arr = arr.transpose(1, 0, 2)
    out = _quantise(arr)
    return out[:, :, 0] if squeeze else out


def _downsample(hr: np.ndarray, scale: int, downsampler: str) -> np.ndarray:
    hr = modcrop(hr, scale)
    if downsampler == "matlab":
        return matlab_imresize(hr, scale)
    return bicubic_downsample(hr, scale)


# --------------------------------------------------------------------------------------------
# Validation helpers and caches
# --------------------------------------------------------------------------------------------


def _check_scale(scale: object) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or scale < 1:
        raise ValueError(
            f"scale must be an integer >= 1 (typically 2, 3 or 4), got {scale!r}; "
            "pass e.g. scale=4."
        )
    return int(scale)


def _check_patch_size(patch_size: object, scale: int) -> int:
    ok = isinstance(patch_size, int | np.integer) and not isinstance(patch_size, bool)
    if not ok or int(patch_size) < 1 or int(patch_size) % scale:  # type: ignore[call-overload]
        raise ValueError(
            f"patch_size (HR patch side in pixels) must be a positive multiple of scale={scale}, "
            f"got {patch_size!r}; use e.g. patch_size={scale * max(1, 48 // scale)}."
        )
    return int(patch_size)  # type: ignore[call-overload]


def _check_downsampler(downsampler: object) -> str:
    if downsampler not in DOWNSAMPLERS:
        raise ValueError(
            f"downsampler must be one of {DOWNSAMPLERS}, got {downsampler!r}; "
            "use 'torch' (default) or 'matlab' (MATLAB imresize reference)."
        )
    return str(downsampler)


_FileKey = tuple[str, int, int]
_HR_CACHE: dict[_FileKey, np.ndarray] = {}
_LR_CACHE: dict[tuple[Hashable, int, str], np.ndarray] = {}


def clear_cache() -> None:
    """Forget every cached decoded HR and computed LR image."""
    _HR_CACHE.clear()
    _LR_CACHE.clear()


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def _load_cached(path: Path) -> tuple[np.ndarray, _FileKey]:
    """Decode ``path`` (read-only result) through the cache keyed by (abs path, mtime, size)."""
    path = path.resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    img = _HR_CACHE.get(key)
    if img is None:
        stale = [k for k in _HR_CACHE if k[0] == key[0]]  # same file, older mtime or size
        if stale:
            for k in stale:
                del _HR_CACHE[k]
            for lr_key in [k for k in _LR_CACHE if k[0][0] == key[0]]:  # type: ignore[index]
                del _LR_CACHE[lr_key]  # LR keys start with the HR key
        img = _HR_CACHE[key] = _readonly(load_image(path))
    return img, key


def _lr_for(hr: np.ndarray, key: Hashable | None, scale: int, downsampler: str) -> np.ndarray:
    if key is None:
        return _readonly(_downsample(hr, scale, downsampler))
    lr_key = (key, scale, downsampler)
    lr = _LR_CACHE.get(lr_key)
    if lr is None:
        lr = _LR_CACHE[lr_key] = _readonly(_downsample(hr, scale, downsampler))
    return lr


def _array_to_float_rgb(name: str, img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"image {name!r}: expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape {arr.shape}; "
            "pass channels-last images."
        )
    if arr.dtype == np.uint8:
        arr = arr / 255.0
    elif arr.dtype == np.uint16:
        arr = arr / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo < 0.0 or hi > 1.0 or not np.isfinite([lo, hi]).all():
            raise ValueError(
                f"image {name!r}: float values must lie in [0, 1], got range [{lo}, {hi}]; "
                "divide 8-bit data by 255 first."
            )
    else:
        raise ValueError(
            f"image {name!r}: unsupported dtype {arr.dtype}; use float in [0, 1], uint8 or uint16."
        )
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# The image set
# --------------------------------------------------------------------------------------------


class _Source(NamedTuple):
    name: str
    label: str  # how to name the image in messages (file path or array name)
    hr: np.ndarray
    key: Hashable | None  # cache key for the LR, or None for uncached in-memory arrays


class SRImageSet:
    """Decoded ``(name, hr, lr)`` triples for one scale, held in memory.

    ``hr`` is float32 ``HxWx3`` in [0, 1], mod-cropped to ``scale``; ``lr`` is its downsampled,
    8-bit-quantised version of exactly ``H/scale x W/scale``. Arrays are read-only (they may be
    shared with the module cache). Build with :meth:`from_folder`, :meth:`from_arrays`,
    :func:`default_split` or :func:`dataset_from_spec`.
    """

    def __init__(
        self,
        images: Sequence[SRImage],
        scale: int,
        *,
        downsampler: str = "torch",
        source: str = "<arrays>",
    ) -> None:
        self.scale = _check_scale(scale)
        self.downsampler = _check_downsampler(downsampler)
        self.source = source
        if not images:
            raise ValueError(f"SRImageSet: images is empty (source {source}); pass >= 1 image.")
        for im in images:
            h, w = im.hr.shape[:2]
            s = self.scale
            if h % s or w % s or im.lr.shape != (h // s, w // s, 3):
                raise ValueError(
                    f"SRImageSet: image {im.name!r} has HR shape {im.hr.shape} and LR shape "
                    f"{im.lr.shape}; HR must be mod-cropped to scale={self.scale} and LR exactly "
                    "scale times smaller (build sets with from_folder/from_arrays)."
                )
        self.images: tuple[SRImage, ...] = tuple(images)

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike[str],
        scale: int,
        *,
        patch_size: int | None = None,
        downsampler: str = "torch",
        max_images: int | None = None,
        split: str | None = None,
    ) -> SRImageSet:
        """Load every image file directly inside ``path`` (sorted by name; not recursive).

        Files whose suffix is in :data:`IMAGE_EXTENSIONS` count as images; hidden files (names
        starting with ``.``) are ignored. ``max_images`` keeps only the first N files. With
        ``patch_size``, images smaller than the patch are skipped with a warning. ``split``
        (``"train"`` or ``"holdout"``) keeps one side of the folder's fixed hold-out split
        (:func:`holdout_split`).
        """
        scale = _check_scale(scale)
        downsampler = _check_downsampler(downsampler)
        if patch_size is not None:
            patch_size = _check_patch_size(patch_size, scale)
        bad_max = isinstance(max_images, bool) or not isinstance(max_images, int | None)
        if bad_max or (max_images is not None and max_images < 1):
            raise ValueError(f"max_images must be None or an int >= 1, got {max_images!r}.")
        folder = Path(path).expanduser()
        hint = "e.g. '../shared/datasets/Set5/HR' or 'default:train'"
        if not folder.exists():
            raise FileNotFoundError(
                f"Image folder {str(folder)!r} does not exist; pass a folder of images, {hint}."
            )
        if not folder.is_dir():
            raise ValueError(
                f"Image folder {str(folder)!r} is not a directory; pass the folder that holds the "
                f"images, not a file ({hint})."
            )
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
        files = [
            p for p in entries
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        ]  # fmt: skip
        if not files:
            subdirs = [p.name for p in entries if p.is_dir()][:5]
            extra = f" It has subfolders {subdirs} (not searched)." if subdirs else ""
            raise ValueError(
                f"Image folder {str(folder)!r} contains no image files (accepted extensions, any "
                f"case: {', '.join(IMAGE_EXTENSIONS)}).{extra} Point it at a folder of images, "
                f"{hint}."
            )
        if split is not None:
            files = holdout_split([f.name for f in files], split, str(folder), files)
        if max_images is not None:
            files = files[:max_images]
        sources = []
        for f in files:
            hr, key = _load_cached(f)
            sources.append(_Source(f.stem, str(f), hr, key))
        return _build(sources, scale, patch_size, downsampler, f"folder {str(folder)!r}")

    @classmethod
    def from_arrays(
        cls,
        named_images: Sequence[tuple[str, np.ndarray]],
        scale: int,
        *,
        patch_size: int | None = None,
        downsampler: str = "torch",
    ) -> SRImageSet:
        """Build a set from in-memory ``(name, image)`` pairs.

        Images may be ``HxW`` / ``HxWx1`` (replicated), ``HxWx3`` or ``HxWx4`` (alpha dropped),
        float in [0, 1], uint8 or uint16. Same rules as :meth:`from_folder`; LR is not cached.
        """
        scale = _check_scale(scale)
        downsampler = _check_downsampler(downsampler)
        if patch_size is not None:
            patch_size = _check_patch_size(patch_size, scale)
        if not named_images:
            raise ValueError("from_arrays: named_images is empty; pass a list of (name, image).")
        sources = [
            _Source(str(n), repr(str(n)), _readonly(_array_to_float_rgb(str(n), a)), None)
            for n, a in named_images
        ]
        return _build(sources, scale, patch_size, downsampler, "the given arrays")

    # -- access -------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [im.name for im in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor, torch.Tensor]:
        """``(name, lr, hr)`` as float32 tensors of shape ``1x3xhxw`` in [0, 1]."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"SRImageSet index {index} out of range for {len(self)} images.")
        im = self.images[index]
        return im.name, _to_tensor(im.lr[None]), _to_tensor(im.hr[None])

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (
            f"SRImageSet({len(self)} images, scale={self.scale}, "
            f"downsampler={self.downsampler!r}, source={self.source})"
        )

    def random_patches(
        self,
        batch_size: int,
        patch_size: int,
        rng: np.random.Generator,
        *,
        augment: bool = True,
        keep: slice | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of aligned random crops ``(lr, hr)``: ``Bx3xpxp`` float32 tensors in [0, 1].

        ``patch_size`` is the HR side (a multiple of ``scale``); the LR side is
        ``patch_size // scale``. Each sample picks an image uniformly among those at least
        ``patch_size`` on both sides, a crop position on the LR grid (so LR and HR align exactly)
        and, with ``augment``, random horizontal flip, vertical flip and 90-degree rotation
        applied identically to LR and HR. All randomness is drawn from ``rng``.

        ``keep`` (a slice of ``range(batch_size)``, default all): the draws of the whole batch
        are made, in the same order, but only the kept patches are cropped and returned; so
        ranks that share ``rng`` and keep disjoint slices together return exactly the batch one
        process would draw, and ``rng`` ends in the same state on each.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
                "pass np.random.default_rng(seed)."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        patch_size = _check_patch_size(patch_size, self.scale)
        s, lp = self.scale, patch_size // self.scale
        eligible = [im for im in self.images if min(im.hr.shape[:2]) >= patch_size]
        if not eligible:
            largest = max(self.images, key=lambda im: min(im.hr.shape[:2]))
            raise ValueError(
                f"random_patches: no image in {self.source} is at least patch_size={patch_size} "
                f"on both sides (largest: {largest.name!r}, {_hw(largest.hr)}); "
                "use a smaller patch_size."
            )
        kept = range(batch_size)[keep] if keep is not None else range(batch_size)
        if not kept:
            raise ValueError(f"random_patches: keep={keep!r} selects no patch of a batch of "
                             f"{batch_size}; pass a slice within range({batch_size}).")
        lr_out = np.empty((len(kept), lp, lp, 3), dtype=np.float32)
        hr_out = np.empty((len(kept), patch_size, patch_size, 3), dtype=np.float32)
        for b in range(batch_size):
            im = eligible[int(rng.integers(len(eligible)))]
            y = int(rng.integers(im.lr.shape[0] - lp + 1))
            x = int(rng.integers(im.lr.shape[1] - lp + 1))
            flips = rng.integers(2, size=3) if augment else None
            if b not in kept:
                continue
            lr = im.lr[y : y + lp, x : x + lp]
            hr = im.hr[y * s : (y + lp) * s, x * s : (x + lp) * s]
            if flips is not None:
                hflip, vflip, rot = flips
                lr, hr = _augment(lr, hflip, vflip, rot), _augment(hr, hflip, vflip, rot)
            lr_out[kept.index(b)], hr_out[kept.index(b)] = lr, hr
        return _to_tensor(lr_out), _to_tensor(hr_out)


def _augment(img: np.ndarray, hflip: int, vflip: int, rot: int) -> np.ndarray:
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1]
    if rot:
        img = np.rot90(img, axes=(0, 1))
    return img


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    """``BxHxWx3`` numpy -> contiguous ``Bx3xHxW`` float32 tensor (always a fresh copy)."""
    return torch.from_numpy(np.array(batch.transpose(0, 3, 1, 2), dtype=np.float32, order="C"))


def _hw(img: np.ndarray) -> str:
    return f"{img.shape[0]}x{img.shape[1]} (HxW)"


def _build(
    sources: Sequence[_Source],
    scale: int,
    patch_size: int | None,
    downsampler: str,
    origin: str,
) -> SRImageSet:
    images: list[SRImage] = []
    for src in sources:
        h, w = src.hr.shape[:2]
        if patch_size is not None and (h < patch_size or w < patch_size):
            warnings.warn(
                f"Skipping image {src.label} from {origin}: its size {_hw(src.hr)} is smaller "
                f"than patch_size={patch_size} on at least one side.",
                stacklevel=3,
            )
            continue
        if h < scale or w < scale:
            raise ValueError(
                f"Image {src.label} from {origin} is {_hw(src.hr)}, smaller than scale={scale}; "
                "remove it or use a smaller scale."
            )
        hr = modcrop(src.hr, scale)
        images.append(SRImage(src.name, hr, _lr_for(hr, src.key, scale, downsampler)))
    if not images:
        biggest = max(sources, key=lambda s: min(s.hr.shape[:2]))
        fit = min(biggest.hr.shape[:2]) // scale * scale
        raise ValueError(
            f"Every image in {origin} is smaller than patch_size={patch_size} (largest image: "
            f"{biggest.label}, {_hw(biggest.hr)}); use a smaller patch_size "
            f"(at most {fit} for scale={scale})."
        )
    logger.info("Loaded %d images from %s at x%d (%s).", len(images), origin, scale, downsampler)
    return SRImageSet(images, scale, downsampler=downsampler, source=origin)


# --------------------------------------------------------------------------------------------
# Embedded default data set and specs
# --------------------------------------------------------------------------------------------


def _default_sources(names: Sequence[str]) -> list[_Source]:
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
        hr, key = _load_cached(by_stem[name])
        h, w = hr.shape[:2]
        ch, cw = min(h, DEFAULT_MAX_SIDE), min(w, DEFAULT_MAX_SIDE)
        top, left = (h - ch) // 2, (w - cw) // 2
        hr = hr[top : top + ch, left : left + cw]
        sources.append(_Source(name, str(by_stem[name]), hr, (*key, "crop", DEFAULT_MAX_SIDE)))
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
    scale = _check_scale(scale)
    downsampler = _check_downsampler(downsampler)
    if patch_size is not None:
        patch_size = _check_patch_size(patch_size, scale)
    sources = _default_sources(_DEFAULT_SPLITS[split])
    return _build(sources, scale, patch_size, downsampler, f"default split {split!r}")


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
    if SPLIT_SEPARATOR in spec and not spec.startswith(_DEFAULT_PREFIX):
        path, _, split = spec.rpartition(SPLIT_SEPARATOR)
        return path, split
    return spec, None


def dataset_from_spec(
    spec: str, scale: int, *, patch_size: int | None = None, downsampler: str = "torch"
) -> SRImageSet:
    """Resolve a data-set spec: ``"default:train"`` / ``"default:val"``, a folder path, or one
    side of a folder's fixed hold-out split, ``"PATH::train"`` / ``"PATH::holdout"``
    (:func:`holdout_split`)."""
    if not isinstance(spec, str | os.PathLike):
        raise TypeError(
            f"spec must be a string, got {type(spec).__name__}; "
            "use 'default:train', 'default:val', a folder path or 'FOLDER::holdout'."
        )
    spec = os.fspath(spec)
    if spec.startswith(_DEFAULT_PREFIX):
        split = spec[len(_DEFAULT_PREFIX) :]
        return default_split(split, scale, patch_size=patch_size, downsampler=downsampler)
    path, side = split_spec(spec)
    return SRImageSet.from_folder(path, scale, patch_size=patch_size, downsampler=downsampler,
                                  split=side)


# --------------------------------------------------------------------------------------------
# How close the torch downsampler comes to MATLAB imresize
# --------------------------------------------------------------------------------------------


def compare_downsamplers(hr: np.ndarray, scale: int, border: int = 2) -> dict[str, float]:
    """Torch vs MATLAB-style LR of one HR image, in 8-bit levels.

    Returns the mean and max absolute difference over the whole LR image, the max difference
    inside an LR ``border``-pixel margin, and the RGB PSNR between the two LR images.
    """
    hr = modcrop(hr, scale)
    a = bicubic_downsample(hr, scale).astype(np.float64) * 255.0
    b = matlab_imresize(hr, scale).astype(np.float64) * 255.0
    diff = np.abs(a - b)
    inner = diff[border:-border, border:-border] if min(diff.shape[:2]) > 2 * border else diff
    mse = float(np.mean(diff**2))
    return {
        "mean_abs_levels": float(diff.mean()),
        "max_abs_levels": float(diff.max()),
        "interior_max_abs_levels": float(inner.max()) if inner.size else 0.0,
        "psnr_db": math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m proxies.data SPEC ... [--scales 2 3 4]``: torch vs MATLAB downsampling."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m proxies.data",
        description="Measure how close the torch bicubic downsampler comes to MATLAB imresize.",
    )
    parser.add_argument("specs", nargs="+", help="'default:train', 'default:val' or HR folders")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    args = parser.parse_args(argv)
    print("| images | scale | mean abs [levels] | max abs | max abs inside 2-px margin | "
          "min PSNR [dB] |")
    print("|---|---|---|---|---|---|")
    for spec in args.specs:
        images = dataset_from_spec(spec, 1).images
        for scale in args.scales:
            rows = [compare_downsamplers(im.hr, scale) for im in images]
            print(f"| {spec} ({len(rows)}) | x{scale} | "
                  f"{np.mean([r['mean_abs_levels'] for r in rows]):.4f} | "
                  f"{max(r['max_abs_levels'] for r in rows):.0f} | "
                  f"{max(r['interior_max_abs_levels'] for r in rows):.0f} | "
                  f"{min(r['psnr_db'] for r in rows):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
