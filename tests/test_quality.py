"""Tests for proxies.quality: analytic reference values, scikit-image cross-checks, errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from skimage import data, filters, metrics

from proxies.quality import (
    QualityResult,
    evaluate_pair,
    psnr,
    rgb_to_y,
    ssim,
    tensor_to_uint8,
)

C1 = (0.01 * 255) ** 2  # 6.5025
SSIM_KW = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rand_rgb(h: int, w: int, seed: int = 0, high: int = 256) -> np.ndarray:
    return _rng(seed).integers(0, high, (h, w, 3), dtype=np.uint8)


def _crop(img: np.ndarray, c: int) -> np.ndarray:
    return img[c:-c, c:-c] if c else img


# ---------------------------------------------------------------- analytic reference values


def test_rgb_to_y_coefficients() -> None:
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255; the weights sum to 219, so black -> 16,
    # white -> 16 + 219 = 235 and a pure primary at 255 adds exactly its weight. Not rounded.
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = rgb_to_y(img)
    assert y.dtype == np.float64 and y.shape == (1, 5)
    np.testing.assert_allclose(y[0], [16.0, 235.0, 81.481, 144.553, 40.966], rtol=0, atol=1e-12)
    # A grey level g maps to 16 + 219 g / 255 (here g = 1: 16.858823..., not rounded to 17).
    assert rgb_to_y(np.ones((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16 + 219 / 255, abs=1e-12)


def test_identical_images_inf_psnr_ssim_one() -> None:
    img = _rand_rgb(32, 32)
    for y in (True, False):
        assert psnr(img, img.copy(), crop_border=4, y_channel=y) == math.inf
        assert ssim(img, img.copy(), crop_border=4, y_channel=y) == pytest.approx(1.0, abs=1e-12)


def test_constant_offset_one_level_rgb() -> None:
    # Every channel of every pixel differs by 1 -> MSE = 1 -> PSNR = 10 log10(255^2) = 48.1308 dB.
    a = _rand_rgb(24, 24, high=255)
    b = a + np.uint8(1)
    assert psnr(a, b, crop_border=2, y_channel=False) == pytest.approx(
        20 * math.log10(255), abs=1e-9
    )


@pytest.mark.parametrize("d", [1, 3, 10])
def test_grey_offset_y_psnr(d: int) -> None:
    # R = G = B = g vs g + d: Y differs by d * 219 / 255 everywhere, so
    # Y-PSNR = 20 log10(255 / (d * 219 / 255)); RGB-PSNR = 20 log10(255 / d).
    g = _rng(d).integers(0, 256 - d, (20, 20)).astype(np.uint8)
    a = np.repeat(g[..., None], 3, axis=2)
    b = a + np.uint8(d)
    expected_y = 20 * math.log10(255 / (d * 219 / 255))
    assert psnr(a, b, crop_border=3) == pytest.approx(expected_y, abs=1e-9)
    assert psnr(a, b, crop_border=3, y_channel=False) == pytest.approx(
        20 * math.log10(255 / d), abs=1e-9
    )
    # HxW grey input: y_channel is ignored, the grey values themselves are compared.
    for y in (True, False):
        assert psnr(g, g + np.uint8(d), crop_border=3, y_channel=y) == pytest.approx(
            20 * math.log10(255 / d), abs=1e-9
        )


def test_mse_is_mean_over_all_pixels_and_channels() -> None:
    # One value of N = 10x10 pixels differs by 255:
    #   grey: MSE = 255^2 / N          -> PSNR = 10 log10(100) = 20 dB
    #   RGB mode, one channel: MSE = 255^2 / (3N) -> PSNR = 10 log10(300)
    #   Y mode, red channel: Y differs by 65.481 at one pixel -> PSNR = 10 log10(255^2 N / 65.481^2)
    g1 = np.zeros((10, 10), np.uint8)
    g2 = g1.copy()
    g2[4, 6] = 255
    assert psnr(g1, g2, crop_border=0) == pytest.approx(20.0, abs=1e-9)
    c1 = np.zeros((10, 10, 3), np.uint8)
    c2 = c1.copy()
    c2[4, 6, 0] = 255
    assert psnr(c1, c2, crop_border=0, y_channel=False) == pytest.approx(
        10 * math.log10(300), abs=1e-9
    )
    assert psnr(c1, c2, crop_border=0) == pytest.approx(
        10 * math.log10(255**2 * 100 / 65.481**2), abs=1e-9
    )


def test_border_crop_removes_border_differences() -> None:
    # Differences only within 3 pixels of the edge: invisible with crop_border=3, visible with 2
    # (row/column index 2 is changed too).
    a = _rand_rgb(24, 24, seed=1)
    b = _rand_rgb(24, 24, seed=2)
    b[3:-3, 3:-3] = a[3:-3, 3:-3]
    for y in (True, False):
        assert psnr(a, b, crop_border=3, y_channel=y) == math.inf
        assert ssim(a, b, crop_border=3, y_channel=y) == pytest.approx(1.0, abs=1e-12)
        assert math.isfinite(psnr(a, b, crop_border=2, y_channel=y))
        assert ssim(a, b, crop_border=2, y_channel=y) < 0.9999  # ring has low window weight


def test_ssim_constant_images_luminance_term() -> None:
    # Constant images a, b: all variances are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) with
    # C1 = (0.01 * 255)^2; this pins K1 and L = 255.
    a, b = 100.0, 110.0
    expected = (2 * a * b + C1) / (a**2 + b**2 + C1)
    ga, gb = np.full((16, 16), a), np.full((16, 16), b)
    assert ssim(ga, gb, crop_border=0) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.9954764, abs=1e-7)  # 22006.5025 / 22106.5025


def test_ssim_single_window_matches_direct_formula() -> None:
    # An 11x11 image has exactly one valid window position, so the SSIM is one value computed
    # directly here with the 2-D normalised Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03.
    x = _rng(3).integers(0, 256, (11, 11)).astype(np.float64)
    y = np.clip(x + _rng(4).normal(0, 20, (11, 11)), 0, 255)
    r = np.arange(11) - 5.0
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    c2 = (0.03 * 255) ** 2
    expected = (2 * mx * my + C1) * (2 * cxy + c2) / ((mx**2 + my**2 + C1) * (vx + vy + c2))
    assert ssim(x, y, crop_border=0) == pytest.approx(expected, abs=1e-12)


def test_float_and_uint8_inputs_agree() -> None:
    a, b = _rand_rgb(20, 20, seed=5), _rand_rgb(20, 20, seed=6)
    for f in (psnr, ssim):
        assert f(a, b, crop_border=2) == f(
            a.astype(np.float32), b.astype(np.float64), crop_border=2
        )


# ---------------------------------------------------------------- scikit-image cross-checks
# Measured agreement: |difference| <= ~1e-15 (float error only). skimage filters with reflect
# padding but then drops the (11 - 1) / 2 = 5-pixel margin of the SSIM map before averaging, so
# the padded values never enter the mean: it equals our 'valid' SSIM.
TOL = 1e-12


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    hr = data.astronaut()[96:352, 128:384]  # 256x256x3 crop keeps the test fast
    rng = _rng(7)
    noisy = np.clip(np.round(hr + rng.normal(0, 8, hr.shape)), 0, 255).astype(np.uint8)
    blurred = filters.gaussian(hr, sigma=1.2, channel_axis=-1, preserve_range=True)
    blurred = np.clip(np.round(blurred), 0, 255).astype(np.uint8)
    return {
        "random": (_rand_rgb(48, 40, seed=8), _rand_rgb(48, 40, seed=9)),
        "noisy": (noisy, hr),
        "blurred": (blurred, hr),
    }


@pytest.mark.parametrize("name", ["random", "noisy", "blurred"])
@pytest.mark.parametrize("scale", [2, 4])
def test_matches_skimage_y_channel(name: str, scale: int) -> None:
    sr, hr = _pairs()[name]
    ys, yh = _crop(rgb_to_y(sr), scale), _crop(rgb_to_y(hr), scale)
    ref_psnr = metrics.peak_signal_noise_ratio(yh, ys, data_range=255)
    ref_ssim = metrics.structural_similarity(ys, yh, **SSIM_KW)
    assert psnr(sr, hr, crop_border=scale) == pytest.approx(ref_psnr, abs=TOL)
    assert ssim(sr, hr, crop_border=scale) == pytest.approx(ref_ssim, abs=TOL)


@pytest.mark.parametrize("name", ["random", "noisy", "blurred"])
def test_matches_skimage_rgb(name: str) -> None:
    sr, hr = _pairs()[name]
    s, h = _crop(sr, 3).astype(np.float64), _crop(hr, 3).astype(np.float64)
    ref_psnr = metrics.peak_signal_noise_ratio(h, s, data_range=255)
    ref_ssim = metrics.structural_similarity(s, h, channel_axis=2, **SSIM_KW)
    assert psnr(sr, hr, crop_border=3, y_channel=False) == pytest.approx(ref_psnr, abs=TOL)
    assert ssim(sr, hr, crop_border=3, y_channel=False) == pytest.approx(ref_ssim, abs=TOL)


# ---------------------------------------------------------------- tensor_to_uint8


def test_tensor_to_uint8_layout_and_batch_dim() -> None:
    t = torch.randint(0, 256, (3, 5, 7), generator=torch.Generator().manual_seed(0)).double()
    out = tensor_to_uint8(t, data_range=255)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, t.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(tensor_to_uint8(t[None], data_range=255), out)


def test_tensor_to_uint8_round_half_to_even() -> None:
    # data_range 255: the .5 values are exact, round-half-to-even gives 0, 2, 2, 4, 254.
    vals = torch.tensor([0.5, 1.5, 2.5, 3.5, 254.5, 0.49, 0.51])
    out = tensor_to_uint8(vals.view(1, 7, 1).expand(3, 7, 1), data_range=255)
    np.testing.assert_array_equal(out[:, 0, 0], [0, 2, 2, 4, 254, 0, 1])


def test_tensor_to_uint8_boundaries_data_range_one() -> None:
    # x in [0, 1] maps to x * 255: just below (k + 0.5) / 255 -> k, just above -> k + 1.
    k = torch.arange(0, 255, dtype=torch.float64)
    below = tensor_to_uint8(((k + 0.5 - 1e-6) / 255).view(1, 1, -1).expand(3, 1, -1))
    above = tensor_to_uint8(((k + 0.5 + 1e-6) / 255).view(1, 1, -1).expand(3, 1, -1))
    np.testing.assert_array_equal(below[0, :, 0], k.numpy())
    np.testing.assert_array_equal(above[0, :, 0], k.numpy() + 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_to_uint8_matches_ntire_formula(dtype: torch.dtype) -> None:
    # NTIRE 2022: np.uint8((x * 255 / range).round()) in float64, including values that land on
    # (or within float error of) the .5 boundaries.
    # The float32 input is widened to float64 exactly before the formula is applied.
    x = (
        torch.cat(
            [torch.arange(511) / 510.0, torch.rand(89, generator=torch.Generator().manual_seed(0))]
        )
        .to(dtype)
        .view(3, 10, 20)
    )
    for t, r in ((x, 1.0), (x * 255, 255.0), (x * 2, 2.0)):
        ref = np.uint8((t.double().numpy() * 255 / r).round()).transpose(1, 2, 0)
        np.testing.assert_array_equal(tensor_to_uint8(t, r), ref)
    # data_range 1 and 255 agree away from exact .5 boundaries: q / 255 in [0, 1] vs q.
    g = torch.Generator().manual_seed(1)
    frac = torch.tensor([0.0, 0.25, 0.49, 0.51, 0.75], dtype=torch.float64)
    q = (
        torch.randint(0, 255, (3, 6, 6), generator=g)
        + frac[torch.randint(0, 5, (3, 6, 6), generator=g)]
    )
    expected = np.round(q.numpy()).astype(np.uint8).transpose(1, 2, 0)
    np.testing.assert_array_equal(tensor_to_uint8(q / 255, 1.0), expected)
    np.testing.assert_array_equal(tensor_to_uint8(q, 255.0), expected)


def test_tensor_to_uint8_clamps() -> None:
    t1 = torch.tensor([-0.3, 0.0, 1.0, 1.7]).view(1, 4, 1).expand(3, 4, 1)
    np.testing.assert_array_equal(tensor_to_uint8(t1)[:, 0, 0], [0, 0, 255, 255])
    t255 = torch.tensor([-5.0, 300.0, 256.0]).view(1, 3, 1).expand(3, 3, 1)
    np.testing.assert_array_equal(tensor_to_uint8(t255, data_range=255)[:, 0, 0], [0, 255, 255])


# ---------------------------------------------------------------- evaluate_pair


def test_evaluate_pair_matches_array_metrics() -> None:
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 40, 36, generator=g)
    sr = (hr + 0.05 * torch.randn(1, 3, 40, 36, generator=g)).clamp(0, 1)
    res = evaluate_pair(sr, hr, scale=4)
    sr8, hr8 = tensor_to_uint8(sr), tensor_to_uint8(hr)
    assert isinstance(res, QualityResult)
    assert res == QualityResult(
        psnr_y_db=psnr(sr8, hr8, crop_border=4, y_channel=True),
        ssim_y=ssim(sr8, hr8, crop_border=4, y_channel=True),
        psnr_rgb_db=psnr(sr8, hr8, crop_border=4, y_channel=False),
    )
    assert res.psnr_y_db != res.psnr_rgb_db
    assert res.psnr_y_db != psnr(sr8, hr8, crop_border=2)  # the crop really is `scale`
    assert evaluate_pair(sr[0] * 255, hr[0] * 255, scale=4, data_range=255) == res
    with pytest.raises(AttributeError):
        res.psnr_y_db = 0.0  # type: ignore[misc]  # frozen


# ---------------------------------------------------------------- errors


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(20, 20, 3\).*\(20, 21, 3\)"):
        psnr(_rand_rgb(20, 20), _rand_rgb(20, 21), crop_border=2)
    with pytest.raises(ValueError, match=r"\(20, 20, 3\).*\(20, 20\)"):
        ssim(_rand_rgb(20, 20), np.zeros((20, 20), np.uint8), crop_border=2)
    with pytest.raises(ValueError, match=r"\(1, 3, 16, 16\).*\(1, 3, 16, 20\)"):
        evaluate_pair(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 20), scale=2)


@pytest.mark.parametrize("crop", [-1, 10, 11])
def test_bad_crop_border_names_image_size(crop: int) -> None:
    img = _rand_rgb(20, 30)
    with pytest.raises(ValueError, match=rf"crop_border: got {crop} .*20x30"):
        psnr(img, img, crop_border=crop)


def test_crop_border_must_be_int() -> None:
    img = _rand_rgb(20, 20)
    for bad in (2.0, True):
        with pytest.raises(TypeError, match="crop_border"):
            psnr(img, img, crop_border=bad)  # type: ignore[arg-type]


def test_ssim_needs_an_11x11_region() -> None:
    img = _rand_rgb(20, 20)
    assert 0 <= ssim(img, img, crop_border=4) <= 1  # 12x12 left: fine
    with pytest.raises(ValueError, match=r"10x10.*11x11"):
        ssim(img, img, crop_border=5)


@pytest.mark.parametrize("bad", [-1.0, 255.5, 1000.0, float("nan")])
def test_float_values_outside_0_255_rejected(bad: float) -> None:
    a = _rng().uniform(0, 255, (16, 16, 3))
    b = a.copy()
    b[3, 3, 1] = bad
    with pytest.raises(ValueError, match=r"img2: values must lie in \[0, 255\]"):
        psnr(a, b, crop_border=1)
    with pytest.raises(ValueError, match=r"img: values must lie in \[0, 255\]"):
        rgb_to_y(b)


def test_bad_image_types_and_shapes() -> None:
    with pytest.raises(TypeError, match="tensor_to_uint8"):
        psnr(torch.rand(16, 16, 3), torch.rand(16, 16, 3), crop_border=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(3, 16, 16\)"):
        psnr(np.zeros((3, 16, 16)), np.zeros((3, 16, 16)), crop_border=1)
    with pytest.raises(ValueError, match="dtype bool"):
        psnr(np.zeros((16, 16), bool), np.zeros((16, 16), bool), crop_border=1)
    with pytest.raises(ValueError, match="min -1"):
        psnr(np.full((16, 16), -1, np.int16), np.zeros((16, 16), np.int16), crop_border=1)
    with pytest.raises(ValueError, match="HxWx3"):
        rgb_to_y(np.zeros((16, 16), np.uint8))


@pytest.mark.parametrize("shape", [(3, 8), (2, 3, 8, 8), (1, 1, 8, 8), (4, 8, 8), (8, 8, 3)])
def test_tensor_to_uint8_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        tensor_to_uint8(torch.rand(shape))


@pytest.mark.parametrize("dr", [0.0, -1.0, float("inf"), float("nan")])
def test_tensor_to_uint8_rejects_bad_data_range(dr: float) -> None:
    with pytest.raises(ValueError, match="data_range"):
        tensor_to_uint8(torch.rand(3, 4, 4), data_range=dr)


def test_tensor_to_uint8_rejects_nan() -> None:
    t = torch.rand(3, 4, 4)
    t[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN"):
        tensor_to_uint8(t)


@pytest.mark.parametrize("scale", [0, -2, 2.0, True])
def test_evaluate_pair_rejects_bad_scale(scale: object) -> None:
    t = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="scale"):
        evaluate_pair(t, t, scale=scale)  # type: ignore[arg-type]
