"""Image reading: an image file or an in-memory array as float32 ``HxWx3`` in ``[0, 1]``.

:func:`load_image` decodes a file with Pillow (the rules for greyscale, alpha, 16-bit and other
modes are in its docstring) and raises :class:`ImageReadError` naming the file when it cannot;
:func:`array_to_float_rgb` applies the same layout to an array. :data:`IMAGE_EXTENSIONS` says
which files count as images. :func:`check_rgb8` refuses what a training or selection folder must
not hold (greyscale, alpha, 16-bit), where the benchmark sets' loader converts it.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "array_to_float_rgb", "check_rgb8", "load_image"]

#: File suffixes (lower case, compared case-insensitively) treated as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Errors Pillow raises for unreadable, truncated or corrupt files.
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
    Image.DecompressionBombError,
)  # fmt: skip


class ImageReadError(ValueError):
    """An image file exists but could not be decoded."""


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


def _not_rgb8(im: Image.Image) -> str | None:
    """What keeps ``im`` from being a plain 8-bit RGB image, or None."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return f"mode {mode!r}: 16-bit or float greyscale, not 8-bit RGB"
    if mode in ("1", "L"):
        return f"mode {mode!r}: greyscale, not RGB"
    if mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        return f"mode {mode!r}: it has an alpha channel; RGB without alpha is needed"
    if mode not in ("RGB", "P"):
        return f"mode {mode!r}, not RGB"
    return None


def check_rgb8(path: str | os.PathLike[str]) -> None:
    """Refuse an image file that is not 8-bit RGB (greyscale, alpha, 16-bit, CMYK, ...): a
    training or selection folder must hold what the net is trained for, not a silent
    conversion. Raises :class:`ImageReadError` naming the file, its mode and the fix. A file
    Pillow cannot open passes here; :func:`load_image` reports it."""
    try:
        with Image.open(path) as im:
            problem = _not_rgb8(im)
    except _DECODE_ERRORS:
        return
    if problem is not None:
        raise ImageReadError(
            f"image file {str(path)!r} is {problem}; training and selection folders take 8-bit "
            "RGB images only. Convert it (e.g. PIL.Image.open(f).convert('RGB').save(f)) or "
            "remove it from the folder"
        )


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


def array_to_float_rgb(name: str, img: np.ndarray) -> np.ndarray:
    """``img`` (``HxW``, ``HxWx1``, ``HxWx3`` or ``HxWx4``; float in [0, 1], uint8 or uint16) as
    float32 ``HxWx3`` in [0, 1]: grey replicated, alpha dropped. ``name`` labels errors."""
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
