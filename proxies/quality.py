"""Image-quality metrics for single-image super-resolution, with the conventions fixed in code.

Published SR numbers differ by tenths of a dB depending on how the border is cropped, which
Y-channel formula is used and whether the output is quantised first. This module pins every one
of those choices:

==================  ==========================================================================
Convention          Value used here
==================  ==========================================================================
Input range         Images in [0, 255]: ``uint8`` HxWx3 RGB or HxW grey, or real-valued arrays
                    in [0, 255] (anything outside raises ``ValueError``).
Tensor inputs       1x3xHxW or 3xHxW in [0, ``data_range``], converted by ``tensor_to_uint8``:
                    clamp to [0, data_range], ``x * 255 / data_range``, round half to even,
                    cast to ``uint8`` (what saving the SR output as PNG does; NTIRE 2022 uses
                    ``np.uint8((x * 255 / range).round())``).
Border crop         ``crop_border`` pixels removed on every side; by convention = scale factor.
Y channel           ITU-R BT.601 as MATLAB ``rgb2ycbcr``:
                    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, R, G, B in [0, 255],
                    float64 and *not* rounded (BasicSR). MATLAB rounds Y for ``uint8`` input,
                    which adds rounding noise to the MSE: PSNR drops by 0.005-0.03 dB at
                    25-33 dB, but ~0.1 dB near 39 dB and more above. We follow BasicSR.
Arithmetic          float64 throughout.
PSNR                10 log10(255^2 / MSE), MSE over all pixels (and all three channels in RGB
                    mode); ``float('inf')`` for identical images.
SSIM                Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, normalised; K1 = 0.01,
                    K2 = 0.03, L = 255; 'valid' filtering (no padding, the 5-pixel margin of
                    the map is never formed); mean of the SSIM map. RGB mode: mean of the three
                    per-channel SSIMs.
RGB mode            As NTIRE 2022: PSNR over all three channels, border = scale, uint8 inputs.
==================  ==========================================================================

``evaluate_pair`` applies all of this to an SR tensor and its HR ground truth and reports
Y-PSNR, Y-SSIM and RGB-PSNR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["QualityResult", "evaluate_pair", "psnr", "rgb_to_y", "ssim", "tensor_to_uint8"]

PIXEL_MAX = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def _gaussian_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Return the normalised 1-D Gaussian whose outer product is the 2-D SSIM window."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


_GAUSS = _gaussian_1d()


def _as_image(img: np.ndarray, name: str) -> np.ndarray:
    """Validate an HxW or HxWx3 image in [0, 255] and return it as float64."""
    if isinstance(img, torch.Tensor):
        raise TypeError(
            f"{name}: got a torch.Tensor of shape {tuple(img.shape)}; this function takes numpy "
            "images in [0, 255]. Convert with tensor_to_uint8(t, data_range) first."
        )
    arr = np.asarray(img)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(
            f"{name}: got shape {arr.shape}; expected HxW (grey) or HxWx3 (RGB, channels last). "
            "Transpose CxHxW arrays to HxWxC."
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float64)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"{name}: got dtype {arr.dtype}; expected uint8 or a real-valued dtype.")
    out = arr.astype(np.float64)
    if not np.all((out >= 0.0) & (out <= PIXEL_MAX)):
        raise ValueError(
            f"{name}: values must lie in [0, 255], got min {np.min(out)}, max {np.max(out)} "
            "(NaN counts as out of range). Images in [0, 1] or [-1, 1] must be converted first, "
            "e.g. with tensor_to_uint8(t, data_range)."
        )
    return out


def _y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of a float64 HxWx3 image in [0, 255], unrounded (no validation)."""
    return img @ _Y_WEIGHTS / PIXEL_MAX + 16.0


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y channel (ITU-R BT.601, MATLAB ``rgb2ycbcr`` coefficients) of an RGB image.

    Args:
        img: HxWx3 RGB image in [0, 255] (uint8 or real-valued).

    Returns:
        HxW float64 array ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``, in [16, 235],
        not rounded.
    """
    arr = _as_image(img, "img")
    if arr.ndim != 3:
        raise ValueError(f"img: got shape {arr.shape}; rgb_to_y needs an HxWx3 RGB image.")
    return _y(arr)


def tensor_to_uint8(t: torch.Tensor, data_range: float = 1.0) -> np.ndarray:
    """Quantise an image tensor exactly as saving it to PNG would.

    Args:
        t: 1x3xHxW or 3xHxW tensor with values nominally in [0, data_range] (any device/dtype).
        data_range: the value that maps to 255 (1.0 for [0, 1] tensors, 255.0 for [0, 255]).

    Returns:
        HxWx3 uint8 array: ``round_half_even(clamp(t, 0, data_range) * 255 / data_range)``,
        computed in float64.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t: expected a torch.Tensor, got {type(t).__name__}.")
    if not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ValueError(
            f"data_range: got {data_range!r}; expected a finite number > 0 "
            "(1.0 for [0, 1] tensors, 255.0 for [0, 255] tensors)."
        )
    shape = tuple(t.shape)
    if t.dim() == 4 and shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(
            f"t: got shape {shape}; expected 1x3xHxW or 3xHxW (one RGB image). "
            "Index batches one image at a time and expand grey images to 3 channels."
        )
    x = t.detach().to(device="cpu", dtype=torch.float64)
    if torch.isnan(x).any():
        raise ValueError(f"t: contains {int(torch.isnan(x).sum())} NaN values; cannot quantise.")
    x = torch.round(x.clamp(0.0, float(data_range)) * 255.0 / float(data_range))
    return x.permute(1, 2, 0).numpy().astype(np.uint8)


def _prepare(
    img1: np.ndarray, img2: np.ndarray, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Validate, crop and (optionally) convert both images to Y; returns float64 arrays."""
    a, b = _as_image(img1, "img1"), _as_image(img2, "img2")
    if a.shape != b.shape:
        raise ValueError(
            f"img1 and img2 must have the same shape, got {a.shape} and {b.shape}. "
            "Crop the ground truth to the SR output size (or fix the model's output size)."
        )
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)):
        raise TypeError(f"crop_border: expected an int, got {crop_border!r}.")
    h, w = a.shape[:2]
    if crop_border < 0 or 2 * crop_border >= min(h, w):
        raise ValueError(
            f"crop_border: got {crop_border} for an image of size {h}x{w}; need "
            f"0 <= crop_border < {(min(h, w) + 1) // 2} so that pixels remain. Use the scale "
            "factor as crop_border, on full-size images."
        )
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel and a.ndim == 3:
        a, b = _y(a), _y(b)
    return a, b


def psnr(img1: np.ndarray, img2: np.ndarray, *, crop_border: int, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB between two images in [0, 255].

    Args:
        img1, img2: HxWx3 RGB or HxW grey images in [0, 255], same shape.
        crop_border: pixels removed on every side before measuring (usually the scale factor).
        y_channel: measure on the BT.601 Y channel (ignored for grey images); if False, the
            MSE is taken over all three RGB channels.

    Returns:
        ``10 log10(255^2 / MSE)``; ``float('inf')`` when the cropped images are identical.
    """
    a, b = _prepare(img1, img2, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(PIXEL_MAX**2 / mse)


def _filter_valid(img: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filtering: output is (H-10)x(W-10), no padding."""
    rows = sliding_window_view(img, SSIM_WINDOW, axis=0) @ _GAUSS
    return sliding_window_view(rows, SSIM_WINDOW, axis=1) @ _GAUSS


def _ssim_2d(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM over the valid region of two float64 HxW images in [0, 255]."""
    c1 = (SSIM_K1 * PIXEL_MAX) ** 2
    c2 = (SSIM_K2 * PIXEL_MAX) ** 2
    mu_x, mu_y = _filter_valid(x), _filter_valid(y)
    var_x = _filter_valid(x * x) - mu_x * mu_x
    var_y = _filter_valid(y * y) - mu_y * mu_y
    cov = _filter_valid(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return float(np.mean(num / den))


def ssim(img1: np.ndarray, img2: np.ndarray, *, crop_border: int, y_channel: bool = True) -> float:
    """Structural similarity (Wang et al. 2004) between two images in [0, 255].

    Args:
        img1, img2: HxWx3 RGB or HxW grey images in [0, 255], same shape.
        crop_border: pixels removed on every side before measuring (usually the scale factor).
        y_channel: measure on the BT.601 Y channel (ignored for grey images); if False, the
            result is the mean of the three per-channel SSIMs.

    Returns:
        Mean of the SSIM map over the valid region (11x11 Gaussian window, sigma 1.5).
    """
    a, b = _prepare(img1, img2, crop_border, y_channel)
    h, w = a.shape[:2]
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(
            f"crop_border: after cropping {crop_border} pixels the image is {h}x{w}, smaller "
            f"than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window. Use larger images (at least "
            f"{SSIM_WINDOW + 2 * crop_border} pixels per side for this crop_border)."
        )
    if a.ndim == 2:
        return _ssim_2d(a, b)
    return float(np.mean([_ssim_2d(a[..., c], b[..., c]) for c in range(3)]))


@dataclass(frozen=True)
class QualityResult:
    """Quality of one SR output against its HR ground truth (border = scale, uint8 inputs)."""

    psnr_y_db: float
    ssim_y: float
    psnr_rgb_db: float


def evaluate_pair(
    sr: torch.Tensor, hr: torch.Tensor, *, scale: int, data_range: float = 1.0
) -> QualityResult:
    """Y-PSNR, Y-SSIM and RGB-PSNR of an SR output against its HR ground truth.

    Both tensors are quantised with ``tensor_to_uint8(t, data_range)`` and ``scale`` pixels are
    cropped from every side, as in BasicSR (Y) and NTIRE 2022 (RGB).

    Args:
        sr: super-resolved image, 1x3xHxW or 3xHxW in [0, data_range].
        hr: ground truth with exactly the same shape as ``sr``.
        scale: upscaling factor, used as the border crop.
        data_range: value that maps to 255.
    """
    for name, t in (("sr", sr), ("hr", hr)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}.")
    if sr.shape != hr.shape:
        raise ValueError(
            f"sr and hr must have the same shape, got sr {tuple(sr.shape)} and hr "
            f"{tuple(hr.shape)}. Crop the HR image to a multiple of scale before downsampling."
        )
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale: got {scale!r}; expected a positive int (2, 3, 4, ...).")
    sr8, hr8 = tensor_to_uint8(sr, data_range), tensor_to_uint8(hr, data_range)
    return QualityResult(
        psnr_y_db=psnr(sr8, hr8, crop_border=scale, y_channel=True),
        ssim_y=ssim(sr8, hr8, crop_border=scale, y_channel=True),
        psnr_rgb_db=psnr(sr8, hr8, crop_border=scale, y_channel=False),
    )
