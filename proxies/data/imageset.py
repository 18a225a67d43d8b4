"""The in-memory image set that super-resolution candidates train and validate on.

Images are decoded once (:func:`proxies.data.images.load_image`) into float32 ``HxWx3`` arrays in
``[0, 1]``, mod-cropped to the scale and paired with a low-resolution (LR) version made by the
project's degradation (:mod:`proxies.data.downsample`: bicubic, quantised to 8-bit levels as LR
PNGs on
disk are). :class:`SRImageSet` keeps these ``(name, hr, lr)`` triples in memory, serves whole
images for validation and seeded random aligned patches, optionally flipped and rotated, for
training.

Decoded images are cached per process (keyed by absolute path, mtime and size), as are the LR
images (per source, scale and downsampler); :func:`clear_cache` empties both caches.

Sets are read from a folder with :meth:`SRImageSet.from_folder` (benchmark sets: Set5, Set14,
B100, T91) or built from arrays with :meth:`SRImageSet.from_arrays`; the embedded default set and
data-set spec strings are in :mod:`proxies.data.specs`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from proxies.data.downsample import check_downsampler, check_scale, downsample, modcrop
from proxies.data.images import IMAGE_EXTENSIONS, array_to_float_rgb, check_rgb8, load_image
from proxies.data.splits import holdout_split
from search_space.patch import check_patch_size

logger = logging.getLogger(__name__)

__all__ = ["SRImage", "SRImageSet", "clear_cache"]


class SRImage(NamedTuple):
    """One decoded image pair: HR mod-cropped to the scale, LR exactly ``scale`` times smaller."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


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


def load_cached(path: Path) -> tuple[np.ndarray, _FileKey]:
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
        return _readonly(downsample(hr, scale, downsampler))
    lr_key = (key, scale, downsampler)
    lr = _LR_CACHE.get(lr_key)
    if lr is None:
        lr = _LR_CACHE[lr_key] = _readonly(downsample(hr, scale, downsampler))
    return lr


# --------------------------------------------------------------------------------------------
# The image set
# --------------------------------------------------------------------------------------------


class Source(NamedTuple):
    """One HR image on its way into a set (see :func:`build_set`)."""

    name: str
    label: str  # how to name the image in messages (file path or array name)
    hr: np.ndarray
    key: Hashable | None  # cache key for the LR, or None for uncached in-memory arrays


class SRImageSet:
    """Decoded ``(name, hr, lr)`` triples for one scale, held in memory.

    ``hr`` is float32 ``HxWx3`` in [0, 1], mod-cropped to ``scale``; ``lr`` is its downsampled,
    8-bit-quantised version of exactly ``H/scale x W/scale``. Arrays are read-only (they may be
    shared with the module cache). Build with :meth:`from_folder`, :meth:`from_arrays`,
    :func:`proxies.data.specs.default_split` or :func:`proxies.data.specs.dataset_from_spec`.
    """

    def __init__(
        self,
        images: Sequence[SRImage],
        scale: int,
        *,
        downsampler: str = "torch",
        source: str = "<arrays>",
    ) -> None:
        self.scale = check_scale(scale)
        self.downsampler = check_downsampler(downsampler)
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
        rgb_only: bool = False,
    ) -> SRImageSet:
        """Load every image file directly inside ``path`` (sorted by name; not recursive).

        Files whose suffix is in :data:`IMAGE_EXTENSIONS` count as images; hidden files (names
        starting with ``.``) are ignored. ``max_images`` keeps only the first N files. With
        ``patch_size``, images smaller than the patch are skipped with a warning. ``split``
        (``"train"`` or ``"holdout"``) keeps one side of the folder's fixed hold-out split
        (:func:`proxies.data.splits.holdout_split`). ``rgb_only`` refuses greyscale, alpha and
        16-bit
        files (:func:`proxies.data.images.check_rgb8`; training and selection folders) instead of
        converting them (benchmark sets: Set14 holds one greyscale image).
        """
        scale = check_scale(scale)
        downsampler = check_downsampler(downsampler)
        if patch_size is not None:
            patch_size = check_patch_size(patch_size, scale)
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
            if rgb_only:
                check_rgb8(f)
            hr, key = load_cached(f)
            sources.append(Source(f.stem, str(f), hr, key))
        return build_set(sources, scale, patch_size, downsampler, f"folder {str(folder)!r}")

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
        scale = check_scale(scale)
        downsampler = check_downsampler(downsampler)
        if patch_size is not None:
            patch_size = check_patch_size(patch_size, scale)
        if not named_images:
            raise ValueError("from_arrays: named_images is empty; pass a list of (name, image).")
        sources = [
            Source(str(n), repr(str(n)), _readonly(array_to_float_rgb(str(n), a)), None)
            for n, a in named_images
        ]
        return build_set(sources, scale, patch_size, downsampler, "the given arrays")

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
        patch_size = check_patch_size(patch_size, self.scale)
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


def build_set(
    sources: Sequence[Source],
    scale: int,
    patch_size: int | None,
    downsampler: str,
    origin: str,
) -> SRImageSet:
    """An :class:`SRImageSet` of ``sources`` (HR mod-cropped, LR made or taken from the cache);
    with ``patch_size``, smaller images are skipped with a warning. ``origin`` names the set."""
    images: list[SRImage] = []
    for src in sources:
        h, w = src.hr.shape[:2]
        if h < scale or w < scale:
            raise ValueError(
                f"Image {src.label} from {origin} is {_hw(src.hr)}, smaller than scale={scale}; "
                "remove it or use a smaller scale."
            )
        if patch_size is not None and (h < patch_size or w < patch_size):
            warnings.warn(
                f"Skipping image {src.label} from {origin}: its size {_hw(src.hr)} is smaller "
                f"than patch_size={patch_size} on at least one side.",
                stacklevel=3,
            )
            continue
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

