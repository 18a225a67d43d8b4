"""Tests for the image data pipeline (``proxies.data.images``, ``proxies.data.downsample``,
``proxies.data.imageset``, ``proxies.data.specs``)."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from proxies.data import downsample, images
from proxies.data import imageset as data
from proxies.data import specs as datasets

DATASETS = Path(
    os.environ.get("SRNAS_DATASETS")
    or Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
)
needs_set5 = pytest.mark.skipif(
    not (DATASETS / "Set5" / "HR").is_dir(),
    reason=f"shared benchmark folder {DATASETS / 'Set5' / 'HR'} absent (set SRNAS_DATASETS)",
)
needs_set14 = pytest.mark.skipif(
    not (DATASETS / "Set14" / "HR" / "bridge.png").is_file(),
    reason=f"{DATASETS / 'Set14' / 'HR' / 'bridge.png'} absent (set SRNAS_DATASETS)",
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random image already on 8-bit levels, float32 HxWx3."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(h, w, 3)) / 255.0).astype(np.float32)


def _save(path: Path, img: np.ndarray) -> Path:
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path)
    return path


def _write_png16(path: Path, arr: np.ndarray) -> None:
    """Minimal PNG writer for 16-bit RGB (3 channels) or RGBA (4 channels) uint16 arrays."""
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + body))
        return struct.pack(">I", len(body)) + tag + body + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------------------------
# load_image
# ---------------------------------------------------------------------------------------------


def test_load_rgb_8bit_exact(tmp_path):
    img = _noise(5, 7)
    out = images.load_image(_save(tmp_path / "a.png", img))
    assert out.dtype == np.float32 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_load_grey_replicated(tmp_path, mode):
    grey = np.array([[0, 64, 255], [10, 20, 30]], dtype=np.uint8)
    im = Image.fromarray(grey)
    if mode == "LA":
        im = Image.merge("LA", (im, Image.fromarray(np.full_like(grey, 7))))
    im.save(tmp_path / "g.png")
    out = images.load_image(tmp_path / "g.png")
    assert out.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey / np.float32(255))


def test_load_bilevel(tmp_path):
    im = Image.new("1", (4, 2), 0)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "b.png")
    out = images.load_image(tmp_path / "b.png")
    assert out.shape == (2, 4, 3)
    assert out[0, 1].tolist() == [1.0, 1.0, 1.0] and out.sum() == 3.0


def test_load_rgba_drops_alpha(tmp_path):
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0  # fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = images.load_image(tmp_path / "a.png")
    assert out.shape == (3, 3, 3)
    np.testing.assert_allclose(out[1, 1], np.array([200, 100, 50]) / 255, atol=1e-7)


def test_load_palette_with_transparency(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([10, 20, 30, 250, 128, 0] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "p.png", transparency=bytes([0, 128]))  # per-entry alpha table
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns if such an image goes straight to RGB
        out = images.load_image(tmp_path / "p.png")
    assert out.shape == (1, 2, 3)
    np.testing.assert_allclose(out[0] * 255, [[10, 20, 30], [250, 128, 0]], atol=1e-4)


def test_load_16bit_grey_full_precision(tmp_path):
    vals = np.array([[0, 1, 257], [1000, 65534, 65535]], dtype=np.uint16)
    Image.fromarray(vals).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    out = images.load_image(tmp_path / "g16.png")
    expected = (vals / 65535.0).astype(np.float32)  # 1 and 65534 would be lost at 8 bits
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], expected)


def test_load_32bit_int_mode_i(tmp_path):
    vals = np.array([[0, 300, 65535]], dtype=np.int32)
    Image.fromarray(vals).save(tmp_path / "i.tif")
    with Image.open(tmp_path / "i.tif") as im:
        assert im.mode == "I"
    out = images.load_image(tmp_path / "i.tif")
    np.testing.assert_array_equal(out[..., 1], (vals / 65535.0).astype(np.float32))


@pytest.mark.parametrize("channels", [3, 4])
def test_load_16bit_rgb_png(tmp_path, channels):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65536, size=(6, 5, channels)).astype(np.uint16)
    _write_png16(tmp_path / "rgb16.png", arr)
    out = images.load_image(tmp_path / "rgb16.png")
    assert out.shape == (6, 5, 3) and out.dtype == np.float32
    # Pillow keeps only the high byte of 16-bit colour samples: within 1/255 of the exact value.
    assert np.abs(out - arr[..., :3] / 65535.0).max() <= 1 / 255


def test_unreadable_file_names_path(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(images.ImageReadError, match="broken.png") as info:
        images.load_image(bad)
    assert isinstance(info.value, ValueError)


def test_truncated_file_raises_image_read_error(tmp_path):
    _save(tmp_path / "full.png", _noise(64, 64))
    blob = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(images.ImageReadError, match="cut.png"):
        images.load_image(tmp_path / "cut.png")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        images.load_image(tmp_path / "nope.png")


# ---------------------------------------------------------------------------------------------
# modcrop and downsampling
# ---------------------------------------------------------------------------------------------


def test_modcrop_keeps_top_left():
    img = _noise(13, 10)
    out = downsample.modcrop(img, 4)
    assert out.shape == (12, 8, 3)
    np.testing.assert_array_equal(out, img[:12, :8])
    assert downsample.modcrop(img, 1).shape == img.shape
    with pytest.raises(ValueError, match="scale"):
        downsample.modcrop(img, 0)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("fn", [downsample.bicubic_downsample, downsample.matlab_imresize])
def test_lr_size_exact_on_odd_sizes(scale, fn):
    hr = downsample.modcrop(_noise(37, 53), scale)
    lr = fn(hr, scale)
    assert lr.shape == (37 // scale, 53 // scale, 3) and lr.dtype == np.float32
    assert lr.min() >= 0 and lr.max() <= 1
    np.testing.assert_array_equal(lr * 255, np.round(lr * 255))  # quantised to 8-bit levels


def test_bicubic_downsample_modcrops_itself():
    assert downsample.bicubic_downsample(_noise(37, 53), 4).shape == (9, 13, 3)
    assert downsample.bicubic_downsample(_noise(9, 10)[..., 0], 3).shape == (3, 3)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matlab_constant_stays_constant(scale):
    img = np.full((24, 36, 3), 0.4, dtype=np.float32)
    out = downsample.matlab_imresize(img, scale)
    np.testing.assert_array_equal(out, np.float32(round(0.4 * 255) / 255))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matlab_ramp_sampled_at_pixel_centres(scale):
    w = 36  # slope 6 levels/pixel: the ramp at every LR centre is a whole 8-bit level
    ramp = np.tile((np.arange(w) * 6 / 255.0)[None, :, None], (12, 1, 3))
    out = downsample.matlab_imresize(ramp, scale)
    centres = (np.arange(w // scale) + 0.5) * scale - 0.5  # LR centres in HR pixel coordinates
    inner = slice(2, -2)  # away from the mirrored borders
    np.testing.assert_allclose(out[1, inner, 0] * 255, centres[inner] * 6, atol=1e-3)
    np.testing.assert_array_equal(out[0], out[-1])  # rows are untouched by a horizontal ramp


def test_matlab_border_mirroring_hand_computed():
    # x2 weights: 0.5*cubic(0.5*d) normalised: +-0.43359375, +-0.11328125, -0.03515625, -0.01171875.
    # Ramp 10*j (j = 1..24) with MATLAB's [1..n, n..1] mirroring gives 14.49 at the first output
    # and 235.51 at the last (edge-clamped kernels would give 15 and 235); 20*i - 5 inside.
    ramp = np.tile((np.arange(1, 25) * 10 / 255.0)[None, :], (6, 1))
    out = np.round(downsample.matlab_imresize(ramp, 2)[2] * 255).astype(int)
    assert out.tolist() == [14] + [20 * i - 5 for i in range(2, 12)] + [236]


# Measured on skimage's astronaut (512x512 RGB), torch path vs matlab_imresize, in 8-bit levels:
#   x2: mean 0.0076, max 11, PSNR 65.8 dB;  x3: mean 0.019, max 12, PSNR 60.2 dB;
#   x4: mean 0.029, max 12, PSNR 58.2 dB.
# Set5 (5 images): x2 mean 0.018, max 11, PSNR >= 57.8 dB; x3 mean 0.039, max 13, >= 53.4 dB;
#   x4 mean 0.062, max 15, >= 51.2 dB.
# All differences sit in the outer two LR rows/columns (torch renormalises the clipped kernel,
# MATLAB mirrors); inside, the two agree to 1 level at most (float32 rounding at .5 ties).
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_torch_path_close_to_matlab_imresize(scale):
    astronaut = dict(datasets.default_images())["astronaut"]
    hr = downsample.modcrop(astronaut, scale)
    ref, fast = downsample.matlab_imresize(hr, scale), downsample.bicubic_downsample(hr, scale)
    diff = np.abs(ref.astype(np.float64) - fast) * 255
    psnr = 10 * np.log10(255**2 / np.mean(diff**2))
    assert psnr > 55, psnr
    assert diff.mean() < 0.05 and diff.max() <= 16
    assert diff[2:-2, 2:-2].max() <= 1.0 + 1e-4
    assert diff[:2].max() > 0  # the border rule differs; proves the two paths are distinct


# ---------------------------------------------------------------------------------------------
# SRImageSet construction and errors
# ---------------------------------------------------------------------------------------------


def test_from_folder_loads_sorted_and_case_insensitive(tmp_path):
    _save(tmp_path / "b.PNG", _noise(20, 24, 1))
    _save(tmp_path / "a.bmp", _noise(21, 25, 2))
    (tmp_path / "notes.txt").write_text("x")
    ds = data.SRImageSet.from_folder(tmp_path, 2)
    assert ds.names == ["a", "b"] and len(ds) == 2
    assert ds.images[0].hr.shape == (20, 24, 3) and ds.images[0].lr.shape == (10, 12, 3)
    assert data.SRImageSet.from_folder(tmp_path, 2, max_images=1).names == ["a"]


def test_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        data.SRImageSet.from_folder(tmp_path / "nothere", 2)


def test_folder_empty_mentions_extensions_and_example(tmp_path):
    with pytest.raises(ValueError, match="no image files") as info:
        data.SRImageSet.from_folder(tmp_path, 2)
    assert ".png" in str(info.value) and "Set5/HR" in str(info.value)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    (tmp_path / "HR").mkdir()
    _save(tmp_path / "HR" / "x.png", _noise(8, 8))
    with pytest.raises(ValueError, match="no image files.*HR"):
        data.SRImageSet.from_folder(tmp_path, 2)


def test_folder_is_a_file(tmp_path):
    f = _save(tmp_path / "x.png", _noise(8, 8))
    with pytest.raises(ValueError, match="not a directory"):
        data.SRImageSet.from_folder(f, 2)


@pytest.mark.parametrize("scale", [0, -2, 2.5, True])
def test_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        data.SRImageSet.from_arrays([("a", _noise(8, 8))], scale)


def test_bad_downsampler():
    with pytest.raises(ValueError, match="downsampler.*'bilinear'"):
        data.SRImageSet.from_arrays([("a", _noise(8, 8))], 2, downsampler="bilinear")


def test_patch_not_multiple_of_scale(tmp_path):
    _save(tmp_path / "a.png", _noise(32, 32))
    with pytest.raises(ValueError, match="patch_size.*multiple of scale=3.*got 32"):
        data.SRImageSet.from_folder(tmp_path, 3, patch_size=32)


def test_one_patch_size_rule_for_the_data_and_the_training_loops():
    """``search_space.patch`` is the one rule: the data sets refuse a patch that is no positive
    multiple of the scale with the same message the training loops give (naming their key),
    and the loops also refuse one on which an attention degenerates."""
    from search_space import GenotypeError
    from search_space.patch import check_patch_size, training_patch_size

    size = check_patch_size(np.int64(24), 3)
    assert size == 24 and type(size) is int
    for bad in (0, -6, 25, 24.0, True, "24"):
        with pytest.raises(ValueError, match=r"^patch_size \(HR patch side in pixels\) must be "
                           r"a positive multiple of scale=3, got .*; use e\.g\. patch_size=48"):
            check_patch_size(bad, 3)
    with pytest.raises(ValueError, match=r"^data\.patch_size \(HR .* scale=4, got 50; use e\.g\. "
                       r"data\.patch_size=48"):
        training_patch_size(50, ["none"], 4, default=48, where="data.patch_size")
    with pytest.raises(GenotypeError, match=r"^proxy\.patch_size: got 64 \(LR 16 px at x4\); "
                       r"allowed: >= 108\. .*'esa' attention"):
        check_patch_size(64, 4, ["pa", "esa"], where="proxy.patch_size")
    assert check_patch_size(108, 4, ["esa"]) == 108
    assert training_patch_size(None, ["esa"], 3, default=48) == 81  # 27 px LR
    assert training_patch_size(None, ["pa"], 3, default=50) == 51  # rounded up to the scale
    sset = data.SRImageSet.from_arrays([("a", _noise(32, 32))], 2, patch_size=np.int64(16))
    lr, hr = sset.random_patches(2, np.int64(16), np.random.default_rng(0))
    assert hr.shape[-1] == 16 and lr.shape[-1] == 8


def test_small_image_skipped_with_warning(tmp_path):
    _save(tmp_path / "big.png", _noise(40, 40))
    _save(tmp_path / "tiny.png", _noise(40, 20))
    with pytest.warns(UserWarning, match=r"tiny\.png.*40x20.*patch_size=24"):
        ds = data.SRImageSet.from_folder(tmp_path, 2, patch_size=24)
    assert ds.names == ["big"]


def test_all_images_too_small(tmp_path):
    _save(tmp_path / "a.png", _noise(30, 20))
    _save(tmp_path / "b.png", _noise(18, 18))
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match=r"patch_size=48.*a\.png.*30x20.*smaller patch_size"),
    ):
        data.SRImageSet.from_folder(tmp_path, 4, patch_size=48)


def test_from_arrays_formats_and_errors():
    grey8 = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    ds = data.SRImageSet.from_arrays([("g", grey8), ("f", _noise(6, 8))], 2)
    hr = ds.images[0].hr
    assert hr.shape == (6, 8, 3) and np.array_equal(hr[..., 2], grey8 / np.float32(255))
    with pytest.raises(ValueError, match=r"'bad'.*\[0, 1\]"):
        data.SRImageSet.from_arrays([("bad", _noise(6, 8) * 255)], 2)
    with pytest.raises(ValueError, match="empty"):
        data.SRImageSet.from_arrays([], 2)


def test_matlab_downsampler_selectable():
    img = _noise(24, 24)
    ds = data.SRImageSet.from_arrays([("a", img)], 4, downsampler="matlab")
    np.testing.assert_array_equal(ds.images[0].lr, downsample.matlab_imresize(img, 4))
    ds = data.SRImageSet.from_arrays([("a", img)], 4)
    np.testing.assert_array_equal(ds.images[0].lr, downsample.bicubic_downsample(img, 4))


def test_whole_image_access():
    ds = data.SRImageSet.from_arrays([("a", _noise(21, 26)), ("b", _noise(30, 30, 1))], 3)
    name, lr, hr = ds[0]
    assert name == "a" and lr.shape == (1, 3, 7, 8) and hr.shape == (1, 3, 21, 24)
    assert lr.dtype == torch.float32 and hr.dtype == torch.float32
    np.testing.assert_array_equal(hr[0].permute(1, 2, 0).numpy(), ds.images[0].hr)
    assert [n for n, _, _ in ds] == ["a", "b"] and ds[-1][0] == "b"
    with pytest.raises(IndexError):
        ds[2]
    assert not ds.images[0].hr.flags.writeable


# ---------------------------------------------------------------------------------------------
# Random patches
# ---------------------------------------------------------------------------------------------


def _dihedral(p: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(q, k) for q in (p, p[:, ::-1]) for k in range(4)]


def _locate(ds: data.SRImageSet, lr: torch.Tensor, hr: torch.Tensor) -> int:
    """Find the patch in image 0 (any orientation), check HR aligns, return the orientation."""
    s, im = ds.scale, ds.images[0]
    lp_arr, hp_arr = lr.permute(1, 2, 0).numpy(), hr.permute(1, 2, 0).numpy()
    lp = lp_arr.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(im.lr, (lp, lp, 3))[:, :, 0]
    for t, (lv, hv) in enumerate(zip(_dihedral(lp_arr), _dihedral(hp_arr), strict=True)):
        hits = np.argwhere((windows == lv).all(axis=(2, 3, 4)))
        if len(hits):
            assert len(hits) == 1
            y, x = hits[0]
            np.testing.assert_array_equal(hv, im.hr[y * s : (y + lp) * s, x * s : (x + lp) * s])
            return t
    raise AssertionError("LR patch not found in the set's LR image")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_random_patches_shapes_and_alignment(scale):
    ds = data.SRImageSet.from_arrays([("n", _noise(16 * scale, 20 * scale))], scale)
    p = 6 * scale
    lr, hr = ds.random_patches(8, p, np.random.default_rng(0), augment=False)
    assert lr.shape == (8, 3, 6, 6) and hr.shape == (8, 3, p, p)
    assert lr.dtype == hr.dtype == torch.float32
    assert lr.is_contiguous() and hr.is_contiguous()
    assert float(hr.min()) >= 0 and float(hr.max()) <= 1
    assert {_locate(ds, lr[b], hr[b]) for b in range(8)} == {0}  # no augmentation


def test_augmentation_changes_orientation_consistently():
    ds = data.SRImageSet.from_arrays([("n", _noise(40, 40))], 2)
    lr, hr = ds.random_patches(32, 12, np.random.default_rng(3))
    orientations = {_locate(ds, lr[b], hr[b]) for b in range(32)}  # same transform on LR and HR
    assert len(orientations) >= 5


def test_random_patches_deterministic_under_seed():
    ds = data.SRImageSet.from_arrays([("a", _noise(40, 48)), ("b", _noise(36, 50, 1))], 4)
    a = ds.random_patches(6, 16, np.random.default_rng(7))
    b = ds.random_patches(6, 16, np.random.default_rng(7))
    c = ds.random_patches(6, 16, np.random.default_rng(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_random_patches_picks_only_large_images_uniformly():
    imgs = [
        ("dark", np.full((32, 32, 3), 0.2, np.float32)),
        ("tiny", np.full((8, 40, 3), 0.5, np.float32)),
        ("bright", np.full((40, 32, 3), 0.8, np.float32)),
    ]
    ds = data.SRImageSet.from_arrays(imgs, 2)
    _, hr = ds.random_patches(400, 16, np.random.default_rng(0))
    means = hr.mean(dim=(1, 2, 3)).numpy()
    n_dark = int(np.isclose(means, 0.2, atol=0.01).sum())
    assert not np.isclose(means, 0.5, atol=0.01).any()
    assert 150 < n_dark < 250 and n_dark + int(np.isclose(means, 0.8, atol=0.01).sum()) == 400


def test_random_patches_errors():
    ds = data.SRImageSet.from_arrays([("a", _noise(20, 30))], 2)
    with pytest.raises(ValueError, match="patch_size=24.*20x30"):
        ds.random_patches(2, 24, np.random.default_rng(0))
    with pytest.raises(ValueError, match="multiple of scale=2"):
        ds.random_patches(2, 7, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        ds.random_patches(2, 8, 0)


# ---------------------------------------------------------------------------------------------
# Caching
# ---------------------------------------------------------------------------------------------


def test_cache_reuses_and_invalidates(tmp_path):
    f = _save(tmp_path / "a.png", _noise(20, 20))
    one = data.SRImageSet.from_folder(tmp_path, 2)
    two = data.SRImageSet.from_folder(tmp_path, 2)
    assert np.shares_memory(one.images[0].hr, two.images[0].hr)
    assert one.images[0].lr is two.images[0].lr
    assert data.SRImageSet.from_folder(tmp_path, 2, downsampler="matlab").images[0].lr is not (
        one.images[0].lr
    )

    new = _noise(20, 20, 5)
    _save(f, new)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    three = data.SRImageSet.from_folder(tmp_path, 2)
    np.testing.assert_array_equal(three.images[0].hr, new)

    data.clear_cache()
    four = data.SRImageSet.from_folder(tmp_path, 2)
    assert not np.shares_memory(three.images[0].hr, four.images[0].hr)


# ---------------------------------------------------------------------------------------------
# Embedded default data set and specs
# ---------------------------------------------------------------------------------------------


def test_default_images_and_split():
    imgs = dict(datasets.default_images())
    assert set(imgs) == set(datasets.DEFAULT_TRAIN_NAMES) | set(datasets.DEFAULT_VAL_NAMES)
    assert len(imgs) == 15
    assert all(a.ndim == 3 and a.shape[2] == 3 and max(a.shape[:2]) <= 1024 for a in imgs.values())
    assert imgs["retina"].shape == (1024, 1024, 3)  # centre crop of 1411x1411
    import skimage.data

    full = images.load_image(Path(os.path.dirname(skimage.data.__file__)) / "retina.jpg")
    np.testing.assert_array_equal(imgs["retina"], full[193:1217, 193:1217])

    train, val = datasets.default_split("train", 4), datasets.default_split("val", 4, patch_size=96)
    assert val.names == list(datasets.DEFAULT_VAL_NAMES) == ["chelsea", "coffee", "rocket"]
    assert train.names == list(datasets.DEFAULT_TRAIN_NAMES) and len(train) == 12
    assert not set(train.names) & set(val.names)
    assert all(
        im.hr.shape[0] % 4 == 0 and im.lr.shape[0] * 4 == im.hr.shape[0] for im in train.images
    )


def test_default_split_bad_name():
    with pytest.raises(ValueError, match=r"\['train', 'val'\].*'test'"):
        datasets.default_split("test", 2)


def test_dataset_from_spec(tmp_path):
    ds = datasets.dataset_from_spec("default:val", 3)
    assert ds.names == list(datasets.DEFAULT_VAL_NAMES) and ds.scale == 3
    _save(tmp_path / "z.png", _noise(12, 12))
    assert datasets.dataset_from_spec(str(tmp_path), 3).names == ["z"]
    with pytest.raises(ValueError, match="'train', 'val'"):
        datasets.dataset_from_spec("default:everything", 2)


@needs_set5
def test_set5_from_shared_folder():
    ds = datasets.dataset_from_spec(str(DATASETS / "Set5" / "HR"), 3)
    assert ds.names == ["baby", "bird", "butterfly", "head", "woman"]
    shapes = {n: im.hr.shape for n, im in zip(ds.names, ds.images, strict=True)}
    assert shapes["baby"] == (510, 510, 3) and shapes["woman"] == (342, 228, 3)
    assert all(im.lr.shape == (im.hr.shape[0] // 3, im.hr.shape[1] // 3, 3) for im in ds.images)


@needs_set14
def test_bridge_becomes_rgb():
    img = images.load_image(DATASETS / "Set14" / "HR" / "bridge.png")
    assert img.shape == (512, 512, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])


def test_compare_downsamplers_command(capsys):
    from proxies.data.downsample import compare_downsamplers
    from proxies.data.downsample_check import main

    hr = np.linspace(0, 1, 48 * 40 * 3, dtype=np.float32).reshape(48, 40, 3)
    row = compare_downsamplers(hr, 4)
    assert row["interior_max_abs_levels"] <= 1.0 and row["psnr_db"] > 40
    assert main(["default:val", "--scales", "4"]) == 0
    out = capsys.readouterr().out
    assert "| default:val (3) | x4 |" in out
