"""The degradation: HR images downscaled to LR by an integer scale, quantised to 8-bit levels.

Two downsamplers are available (:data:`DOWNSAMPLERS`, chosen by name in :func:`downsample`):

* ``"torch"`` (default): :func:`bicubic_downsample`, antialiased bicubic
  ``torch.nn.functional.interpolate``. Inside the image it uses the same cubic kernel (a = -0.5,
  widened by the scale) as MATLAB; at the borders it renormalises the clipped kernel instead of
  mirroring, so only the outermost LR pixels differ (see ``tests/test_data.py`` for measured
  numbers).
* ``"matlab"``: :func:`matlab_imresize`, a float64 numpy re-implementation of MATLAB's
  ``imresize(img, 1/s, 'bicubic')`` for downscaling, the usual reference for SR benchmarks.

The LR is quantised to 8-bit levels, as LR PNGs on disk are. :func:`compare_downsamplers`
measures how close the two come on one image (``python -m proxies.data.downsample_check SPEC ...``:
per
data set, :mod:`proxies.data.downsample_check`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DOWNSAMPLERS",
    "bicubic_downsample",
    "compare_downsamplers",
    "downsample",
    "matlab_imresize",
    "modcrop",
]

#: Names accepted by the ``downsampler`` arguments.
DOWNSAMPLERS: tuple[str, ...] = ("torch", "matlab")


def check_scale(scale: object) -> int:
    """``scale`` as an int; a clear error unless it is an integer >= 1."""
    if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or scale < 1:
        raise ValueError(
            f"scale must be an integer >= 1 (typically 2, 3 or 4), got {scale!r}; "
            "pass e.g. scale=4."
        )
    return int(scale)


def check_downsampler(downsampler: object) -> str:
    """``downsampler`` as a str; a clear error unless it is one of :data:`DOWNSAMPLERS`."""
    if downsampler not in DOWNSAMPLERS:
        raise ValueError(
            f"downsampler must be one of {DOWNSAMPLERS}, got {downsampler!r}; "
            "use 'torch' (default) or 'matlab' (MATLAB imresize reference)."
        )
    return str(downsampler)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Keep the top-left ``H - H % scale`` by ``W - W % scale`` pixels (a view, no copy)."""
    scale = check_scale(scale)
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
    scale = check_scale(scale)
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
    scale = check_scale(scale)
    arr, squeeze = _as_hwc(img, "matlab_imresize")
    arr = arr.astype(np.float64)
    if scale > 1:
        rows = np.tensordot(_matlab_weights(arr.shape[0], scale), arr, axes=(1, 0))
        arr = np.tensordot(_matlab_weights(arr.shape[1], scale), rows, axes=(1, 1))
        arr = arr.transpose(1, 0, 2)
    out = _quantise(arr)
    return out[:, :, 0] if squeeze else out


def downsample(hr: np.ndarray, scale: int, downsampler: str) -> np.ndarray:
    """``hr`` mod-cropped and downscaled by ``scale`` with the named ``downsampler``."""
    hr = modcrop(hr, scale)
    if downsampler == "matlab":
        return matlab_imresize(hr, scale)
    return bicubic_downsample(hr, scale)


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
