"""Super-resolve one LR image with a net: :func:`sr_forward`, on the whole image or in tiles.

Whole image or tiles
    :func:`sr_forward` runs the net on the whole LR image by default. With ``tile=N`` it cuts the
    LR image into ``N x N`` tiles, runs each with ``overlap`` LR pixels of context on every side
    (clipped at the image border) and keeps only each tile's centre part. For a net whose
    receptive field reaches at most ``overlap`` LR pixels from the output pixel (plain convs,
    ``pa``, ``hfab``; e.g. a 3x3 conv adds 1 pixel, a 5x5 conv 2), the stitched output equals the
    whole-image output up to float rounding: zero padding at a tile edge only reaches pixels that
    are thrown away. Nets with non-local parts are only approximated when tiled: ``cca`` uses
    per-image channel statistics, ``esa``/``esa_lite`` pool with a 7x7 window and stride 3 after
    a stride-2 conv and upsample the result to the tile, so they see the tile, not the image.
    ``tile="auto"`` tries the whole image first and falls back to tiles of 256, 128 and 64 LR
    pixels on an out-of-memory error (with a warning); images of more than ``max_pixels`` LR
    pixels go straight to tiles.

The metric conventions and the benchmark sets are :mod:`results.evaluate.sets`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator
from typing import Literal, NamedTuple

import torch
from torch import nn

logger = logging.getLogger("results.evaluate")  # the evaluation's logger, named for its command

__all__ = [
    "AUTO_MAX_PIXELS",
    "AUTO_TILES",
    "Tile",
    "sr_forward",
]

#: ``tile="auto"``: images with more LR pixels than this are run in tiles straight away.
AUTO_MAX_PIXELS = 1024 * 1024
#: ``tile="auto"``: tile sides (LR pixels) tried in turn after an out-of-memory error.
AUTO_TILES: tuple[int, ...] = (256, 128, 64)

Tile = int | Literal["auto"] | None

# Messages of allocation failures that are not torch.cuda.OutOfMemoryError: the CPU allocator
# ("DefaultCPUAllocator: not enough memory: you tried to allocate ..."), MPS, oneDNN, HIP.
_OOM_MESSAGE = re.compile(
    r"out of memory|not enough memory|can(?:'|no)t allocate|could not allocate|"
    r"failed to allocate|unable to allocate|allocation failed",
    re.IGNORECASE,
)


class _Forward(NamedTuple):
    sr: torch.Tensor
    tiles: int  # number of tiles the image was run in (1 = whole image)


# --------------------------------------------------------------------------------------------
# Forward pass, whole or tiled
# --------------------------------------------------------------------------------------------


def _check_tile(tile: object) -> Tile:
    if tile is None or tile == "auto":
        return tile
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ValueError(
            f"tile: got {tile!r}; allowed: None (whole image), an int >= 1 (LR tile side in "
            "pixels) or 'auto'. Use e.g. tile=128, or 'auto' to tile only when memory runs out."
        )
    return tile


def _check_count(name: str, value: object, lo: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name}: got {value!r}; allowed: an int >= {lo}. Use e.g. {example}.")
    return value


def _is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (CUDA OOM, or a CPU/MPS allocator error)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and bool(_OOM_MESSAGE.search(str(exc)))


def _brief(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return default


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _starts(length: int, tile: int) -> list[int]:
    """Tile origins along one axis: every tile is ``min(tile, length)`` long, the last one is
    moved back so it ends at the border (it overlaps its neighbour instead of being short)."""
    if tile >= length:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _output_scale(out: torch.Tensor, in_h: int, in_w: int) -> int:
    oh, ow = out.shape[-2:]
    if out.dim() != 4 or oh % in_h or ow % in_w or oh // in_h != ow // in_w:
        raise ValueError(
            f"model: an input of {in_h}x{in_w} LR pixels gave an output of shape "
            f"{tuple(out.shape)}, not an integer multiple of the input size; tiled inference "
            "needs an SR net whose output is scale x its input (NCHW)."
        )
    return oh // in_h


def _run_tiled(model: nn.Module, x: torch.Tensor, tile: int, overlap: int,
               out_device: torch.device) -> _Forward:
    """Run ``model`` tile by tile on ``x`` (already scaled and on the model's device)."""
    h, w = x.shape[-2:]
    th, tw = min(tile, h), min(tile, w)
    ys, xs = _starts(h, tile), _starts(w, tile)
    out: torch.Tensor | None = None
    scale = 0
    for y0 in ys:
        for x0 in xs:
            iy0, iy1 = max(0, y0 - overlap), min(h, y0 + th + overlap)
            ix0, ix1 = max(0, x0 - overlap), min(w, x0 + tw + overlap)
            patch = model(x[..., iy0:iy1, ix0:ix1])
            s = _output_scale(patch, iy1 - iy0, ix1 - ix0)
            if out is None:
                scale = s
                shape = (*patch.shape[:2], h * s, w * s)
                out = torch.empty(shape, dtype=patch.dtype, device=out_device)
            elif s != scale:
                raise ValueError(
                    f"model: tiles gave different scales ({scale} and {s}); tiled inference "
                    "needs a net with one fixed scale."
                )
            cy, cx = (y0 - iy0) * s, (x0 - ix0) * s
            core = patch[..., cy : cy + th * s, cx : cx + tw * s]
            out[..., y0 * s : (y0 + th) * s, x0 * s : (x0 + tw) * s] = core.to(out_device)
            del patch, core
    assert out is not None
    return _Forward(out, len(ys) * len(xs))


def _run(model: nn.Module, x: torch.Tensor, tile: int | None, overlap: int,
         out_device: torch.device) -> _Forward:
    if tile is None or (tile >= x.shape[-2] and tile >= x.shape[-1]):
        return _Forward(model(x).to(out_device), 1)
    return _run_tiled(model, x, tile, overlap, out_device)


def _run_auto(model: nn.Module, x: torch.Tensor, overlap: int, max_pixels: int,
              device: torch.device, out_device: torch.device) -> _Forward:
    h, w = x.shape[-2:]
    attempts: list[int | None] = [t for t in AUTO_TILES if t < max(h, w)]
    if h * w <= max_pixels:
        attempts.insert(0, None)
    else:
        logger.info("LR image %dx%d exceeds max_pixels=%d: running in tiles", h, w, max_pixels)
    if not attempts:  # larger than max_pixels but not larger than the smallest tile
        attempts = [None]
    failures: list[str] = []
    for i, tile in enumerate(attempts):
        message = ""
        try:
            return _run(model, x, tile, overlap, out_device)
        except RuntimeError as exc:
            if not _is_oom(exc):
                raise
            message = f"{type(exc).__name__}: {_brief(exc, 200)}"
        # Outside the except block, so the failed attempt's tensors (held by the traceback)
        # are gone before the next, smaller attempt allocates.
        _free_memory(device)
        what = "whole image" if tile is None else f"tiles of {tile}"
        failures.append(f"{what}: {message}")
        if i + 1 < len(attempts):
            nxt = attempts[i + 1]
            logger.warning(
                "out of memory on a %dx%d LR image with %s (%s); retrying with tiles of %d "
                "(overlap %d)", h, w, what, message, nxt, overlap,
            )
    raise RuntimeError(
        f"tile='auto': out of memory on a {h}x{w} LR image with every size tried "
        f"({'; '.join(failures)}). Use a smaller tile (e.g. tile=32), a device with more free "
        "memory, or device='cpu'."
    )


def _forward(model: nn.Module, lr: torch.Tensor, *, data_range: float, tile: Tile,
             overlap: int, device: str | torch.device | None, max_pixels: int) -> _Forward:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: got {type(model).__name__}; expected a torch.nn.Module.")
    if not isinstance(lr, torch.Tensor) or lr.dim() != 4 or lr.shape[1] != 3:
        shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
        raise ValueError(
            f"lr: got {shape}; expected a 1x3xhxw tensor in [0, 1] "
            "(what iterating an SRImageSet yields)."
        )
    if isinstance(data_range, bool) or not isinstance(data_range, int | float) or not (
        math.isfinite(data_range) and data_range > 0
    ):
        raise ValueError(
            f"data_range: got {data_range!r}; allowed: a finite number > 0, the range the net "
            "works in (genotype.data_range: 1.0 or 255.0)."
        )
    tile = _check_tile(tile)
    overlap = _check_count("overlap", overlap, 0, "overlap=16 (LR pixels of context per side)")
    max_pixels = _check_count("max_pixels", max_pixels, 1, f"max_pixels={AUTO_MAX_PIXELS}")
    model_device = _model_device(model)
    dev = model_device if device is None else torch.device(device)
    if dev != model_device and not (dev.type == model_device.type and dev.index is None):
        raise ValueError(
            f"device: got {str(dev)!r} but the model's parameters are on {str(model_device)!r}; "
            f"move the model first (model.to({str(dev)!r})) or pass device={str(model_device)!r}."
        )
    x = lr.to(device=dev, dtype=_model_dtype(model, lr.dtype))
    dr = float(data_range)
    with torch.inference_mode(), _eval_mode(model):
        if dr != 1.0:
            x = x * dr
        if tile == "auto":
            res = _run_auto(model, x, overlap, max_pixels, dev, lr.device)
        else:
            res = _run(model, x, tile, overlap, lr.device)
        # Out of place: a model may return a tensor it still holds (e.g. its input).
        sr = res.sr.clamp(0.0, dr)
        if dr != 1.0:
            sr = sr / dr
    # A copy made outside inference mode is an ordinary tensor the caller may modify in place.
    return _Forward(sr.clone(), res.tiles)


def sr_forward(
    model: nn.Module,
    lr: torch.Tensor,
    *,
    data_range: float,
    tile: Tile = None,
    overlap: int = 16,
    device: str | torch.device | None = None,
    max_pixels: int = AUTO_MAX_PIXELS,
) -> torch.Tensor:
    """Super-resolve one LR image with ``model`` in eval mode under ``torch.inference_mode``.

    Args:
        model: an SR net (e.g. :func:`search_space.build_model`); it must already be on
            ``device``. Its training/eval flag is restored afterwards.
        lr: ``1x3xhxw`` tensor in [0, 1].
        data_range: the range the net works in (``model.data_range``): the input is multiplied
            by it and the output divided by it.
        tile: ``None`` for the whole image; an int for ``tile x tile`` LR tiles with ``overlap``
            pixels of context per side, stitched from their centres (exact for nets whose
            receptive field reaches at most ``overlap`` LR pixels; see the module docstring);
            ``"auto"``: whole image, falling back to tiles of :data:`AUTO_TILES` on an
            out-of-memory error (``torch.cuda.OutOfMemoryError`` or a ``RuntimeError`` that says
            the allocator could not allocate), or straight to tiles above ``max_pixels``.
        overlap: LR pixels of context on each side of a tile.
        device: where to run; ``None`` for the device of the model's parameters.
        max_pixels: ``tile="auto"`` only: LR pixel count (``h * w``) above which the whole image
            is not tried.

    Returns:
        The SR image, ``1x3x(s*h)x(s*w)``, clamped to [0, 1], on ``lr``'s device.
    """
    return _forward(model, lr, data_range=data_range, tile=tile, overlap=overlap,
                    device=device, max_pixels=max_pixels).sr
