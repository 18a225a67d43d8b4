"""Benchmark evaluation of a trained net: ``python -m results.evaluate GENOTYPE --weights CKPT``.

Runs a net of the search space (a zoo name or a genotype JSON file, with its weights) on the
standard SR benchmarks and reports Y-PSNR, Y-SSIM and RGB-PSNR per image and per set, with the
metric conventions of :mod:`proxies.quality` (border = scale, uint8-quantised outputs, BT.601
Y channel) and the LR images of :mod:`proxies.data` (HR mod-cropped to the scale, antialiased
bicubic downsampling, quantised to 8 bit).

Benchmark sets
    A set name (one of :data:`BENCHMARK_SETS`, e.g. ``Set5``) resolves to
    ``<datasets root>/<name>/HR``. The datasets root is ``$SRNAS_DATASETS`` when set, else
    ``shared/datasets`` beside the repository (:func:`default_datasets_root`); ``--datasets-root``
    overrides both. Any other string is a folder of HR images.

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

Per-image table columns (:data:`ROW_COLUMNS`)
    ``set``, ``image`` (file stem), ``psnr_y_db``, ``ssim_y``, ``psnr_rgb_db``, ``lr_h``,
    ``lr_w``, ``seconds`` (wall time of the forward pass, incl. transfers; the first image also
    pays any warm-up), ``tiled`` (the image was run in more than one tile).

:func:`summarise` averages the per-image metrics per set (the mean of per-image PSNRs, as
published tables do).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import pickle
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pandas as pd
import torch
from PIL import Image
from torch import nn

from proxies.data import SRImageSet
from proxies.quality import evaluate_pair, tensor_to_uint8

logger = logging.getLogger("results.evaluate")  # also when run as __main__

__all__ = [
    "AUTO_MAX_PIXELS",
    "AUTO_TILES",
    "BENCHMARK_SETS",
    "DATASETS_ENV",
    "DEFAULT_SETS",
    "ROW_COLUMNS",
    "SUMMARY_COLUMNS",
    "CheckpointError",
    "build_parser",
    "default_datasets_root",
    "evaluate_model",
    "load_checkpoint",
    "main",
    "read_state_dict",
    "resolve_set",
    "sr_forward",
    "summarise",
    "summary_markdown",
]

#: The sets evaluated when none are named.
DEFAULT_SETS: tuple[str, ...] = ("Set5", "Set14", "B100")
#: Names that resolve to ``<datasets root>/<name>/HR``; any other string is a folder path.
BENCHMARK_SETS: tuple[str, ...] = ("Set5", "Set14", "B100", "Urban100", "Manga109", "T91")
#: Environment variable that overrides the default datasets root.
DATASETS_ENV = "SRNAS_DATASETS"
#: ``tile="auto"``: images with more LR pixels than this are run in tiles straight away.
AUTO_MAX_PIXELS = 1024 * 1024
#: ``tile="auto"``: tile sides (LR pixels) tried in turn after an out-of-memory error.
AUTO_TILES: tuple[int, ...] = (256, 128, 64)

#: Columns of :func:`evaluate_model`'s per-image table, in order.
ROW_COLUMNS: tuple[str, ...] = (
    "set", "image", "psnr_y_db", "ssim_y", "psnr_rgb_db", "lr_h", "lr_w", "seconds", "tiled",
)  # fmt: skip
#: Columns of :func:`summarise`'s per-set table, in order.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "set", "images", "psnr_y_db", "ssim_y", "psnr_rgb_db", "seconds",
)  # fmt: skip
_METRICS = ("psnr_y_db", "ssim_y", "psnr_rgb_db", "seconds")

Tile = int | Literal["auto"] | None

# Messages of allocation failures that are not torch.cuda.OutOfMemoryError: the CPU allocator
# ("DefaultCPUAllocator: not enough memory: you tried to allocate ..."), MPS, oneDNN, HIP.
_OOM_MESSAGE = re.compile(
    r"out of memory|not enough memory|can(?:'|no)t allocate|could not allocate|"
    r"failed to allocate|unable to allocate|allocation failed",
    re.IGNORECASE,
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class CheckpointError(ValueError):
    """A weights file cannot be read or does not fit the genotype it is loaded into."""


class _Forward(NamedTuple):
    sr: torch.Tensor
    tiles: int  # number of tiles the image was run in (1 = whole image)


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------


def default_datasets_root() -> Path:
    """``$SRNAS_DATASETS`` if set, else ``shared/datasets`` beside the repository."""
    env = os.environ.get(DATASETS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "datasets"


def resolve_set(spec: str, datasets_root: str | os.PathLike[str] | None = None) -> Path:
    """The HR folder of a set: ``<root>/<spec>/HR`` for a benchmark name, else ``spec`` itself.

    Raises:
        FileNotFoundError: the folder does not exist; the message names it and the fix.
    """
    if not isinstance(spec, str | os.PathLike) or not os.fspath(spec):
        raise TypeError(
            f"sets: got {spec!r}; each entry must be a benchmark name ({', '.join(BENCHMARK_SETS)})"
            " or a folder path string."
        )
    spec = os.fspath(spec)
    if spec in BENCHMARK_SETS:
        root = Path(datasets_root).expanduser() if datasets_root else default_datasets_root()
        folder = root / spec / "HR"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"sets: benchmark {spec!r} resolves to {str(folder)!r}, which does not exist "
                f"(datasets root {str(root)!r}). Point --datasets-root (datasets_root=) or "
                f"${DATASETS_ENV} at the folder that holds {spec}/HR, or pass the folder of HR "
                "images itself."
            )
        return folder
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"sets: {spec!r} is not a benchmark name ({', '.join(BENCHMARK_SETS)}) and folder "
            f"{str(folder)!r} does not exist; pass an existing folder of HR images or a "
            "benchmark name."
        )
    return folder


def _set_label(spec: str, folder: Path) -> str:
    if spec in BENCHMARK_SETS:
        return spec
    folder = folder.resolve()
    return folder.parent.name if folder.name == "HR" and folder.parent.name else folder.name


def _resolve_sets(
    sets: Sequence[str], datasets_root: str | os.PathLike[str] | None
) -> list[tuple[str, Path]]:
    if isinstance(sets, str | os.PathLike):
        raise TypeError(
            f"sets: got the single string {os.fspath(sets)!r}; pass a sequence of set names or "
            f"folders, e.g. [{os.fspath(sets)!r}]."
        )
    if not sets:
        raise ValueError(f"sets: got an empty sequence; pass e.g. {list(DEFAULT_SETS)}.")
    out: list[tuple[str, Path]] = []
    seen: dict[Path, str] = {}
    labels: set[str] = set()
    for spec in sets:
        folder = resolve_set(spec, datasets_root)
        key = folder.resolve()
        if key in seen:
            raise ValueError(
                f"sets: {spec!r} names folder {str(folder)!r}, already given as {seen[key]!r}; "
                "list each set once."
            )
        seen[key] = os.fspath(spec)
        label = _set_label(os.fspath(spec), folder)
        if label in labels:  # two different folders with the same name: keep them apart
            label = str(key)
        labels.add(label)
        out.append((label, folder))
    return out


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


# --------------------------------------------------------------------------------------------
# Evaluation over sets
# --------------------------------------------------------------------------------------------


def _check_model_attr(model: nn.Module, name: str, given: float, fix: str) -> None:
    theirs = getattr(model, name, None)
    if isinstance(theirs, int | float) and not isinstance(theirs, bool) and theirs != given:
        raise ValueError(
            f"{name}: got {given!r} but the model's {name} is {theirs!r}; {fix}"
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate_model(
    model: nn.Module,
    sets: Sequence[str],
    *,
    scale: int,
    data_range: float,
    device: str | torch.device = "cpu",
    tile: Tile = None,
    overlap: int = 16,
    save_dir: str | os.PathLike[str] | None = None,
    datasets_root: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Evaluate ``model`` on every image of ``sets``; one row per image (:data:`ROW_COLUMNS`).

    Args:
        model: the SR net; it is moved to ``device`` and put in eval mode.
        sets: benchmark names (:data:`BENCHMARK_SETS`) and/or folders of HR images.
        scale: the upscaling factor; must equal ``model.scale`` where the model has one. The LR
            images are made by downsampling the mod-cropped HR by it, and it is the border crop
            of the metrics.
        data_range: the range the net works in; must equal ``model.data_range`` where it has one.
        device: where to run the net.
        tile, overlap: as in :func:`sr_forward`.
        save_dir: if given, each SR output is written as ``save_dir/<set>/<image>.png`` (8-bit,
            quantised as the metrics see it).
        datasets_root: folder holding ``<name>/HR`` for benchmark names (default
            :func:`default_datasets_root`).

    Raises:
        ValueError: scale or data_range differ from the model's, or the net's output does not
            have the HR image's size.
        FileNotFoundError: a set's folder does not exist (checked for all sets before any runs).
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale: got {scale!r}; allowed: an int >= 1 (2, 3 or 4). Use e.g. 4.")
    _check_model_attr(model, "scale", scale,
                      "pass the model's scale (the genotype's) or a model built for this scale.")
    _check_model_attr(model, "data_range", data_range,
                      "pass the model's data_range (genotype.data_range).")
    tile = _check_tile(tile)
    resolved = _resolve_sets(sets, datasets_root)
    dev = torch.device(device)
    model.to(dev)
    out_root = None if save_dir is None else Path(save_dir)
    rows: list[dict[str, Any]] = []
    for label, folder in resolved:
        images = SRImageSet.from_folder(folder, scale)
        set_dir = None
        if out_root is not None:
            set_dir = out_root / (_UNSAFE.sub("_", label).strip("._") or "set")
            set_dir.mkdir(parents=True, exist_ok=True)
        for name, lr, hr in images:
            _sync(dev)
            t0 = time.perf_counter()
            res = _forward(model, lr, data_range=data_range, tile=tile, overlap=overlap,
                           device=dev, max_pixels=AUTO_MAX_PIXELS)
            _sync(dev)
            seconds = time.perf_counter() - t0
            if res.sr.shape != hr.shape:
                raise ValueError(
                    f"set {label!r}, image {name!r}: the net turned a {tuple(lr.shape)} LR image "
                    f"into {tuple(res.sr.shape)}, but the HR image is {tuple(hr.shape)} "
                    f"(scale={scale}); check that the model is built for scale {scale}."
                )
            try:
                q = evaluate_pair(res.sr, hr, scale=scale, data_range=1.0)
            except ValueError as exc:
                raise ValueError(f"set {label!r}, image {name!r}: {exc}") from exc
            if set_dir is not None:
                Image.fromarray(tensor_to_uint8(res.sr, 1.0)).save(set_dir / f"{name}.png")
            lr_h, lr_w = int(lr.shape[-2]), int(lr.shape[-1])
            logger.info(
                "%s/%s: LR %dx%d, PSNR-Y %.2f dB, SSIM-Y %.4f, %.3f s%s", label, name, lr_h,
                lr_w, q.psnr_y_db, q.ssim_y, seconds, f", {res.tiles} tiles" if res.tiles > 1
                else "",
            )
            rows.append({
                "set": label, "image": name, "psnr_y_db": q.psnr_y_db, "ssim_y": q.ssim_y,
                "psnr_rgb_db": q.psnr_rgb_db, "lr_h": lr_h, "lr_w": lr_w, "seconds": seconds,
                "tiled": res.tiles > 1,
            })
    df = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    return df.astype({"lr_h": "int64", "lr_w": "int64", "tiled": "bool",
                      "psnr_y_db": "float64", "ssim_y": "float64", "psnr_rgb_db": "float64",
                      "seconds": "float64"})


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per-set means of the per-image metrics, in order of first appearance.

    Columns :data:`SUMMARY_COLUMNS`: ``set``, ``images`` (count), and the means of
    ``psnr_y_db``, ``ssim_y``, ``psnr_rgb_db`` and ``seconds`` (a set with an identical image
    has an infinite mean PSNR).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: got {type(df).__name__}; expected the DataFrame of evaluate_model.")
    missing = [c for c in ("set", *_METRICS) if c not in df.columns]
    if missing:
        raise ValueError(
            f"df: missing columns {missing} (has {list(df.columns)}); pass the per-image table "
            "of evaluate_model."
        )
    grouped = df.groupby("set", sort=False)
    out = grouped[list(_METRICS)].mean()
    out.insert(0, "images", grouped.size().astype("int64"))
    return out.reset_index()[list(SUMMARY_COLUMNS)]


def summary_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table of :func:`summarise`'s output (PSNR in dB to 2 decimals, SSIM to 4)."""
    lines = [
        "| set | images | PSNR-Y [dB] | SSIM-Y | PSNR-RGB [dB] | s / image |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples(index=False):
        lines.append(
            f"| {r.set} | {r.images} | {r.psnr_y_db:.2f} | {r.ssim_y:.4f} | "
            f"{r.psnr_rgb_db:.2f} | {r.seconds:.3f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping) and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def read_state_dict(
    path: str | os.PathLike[str], *, prefer_ema: bool = True
) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """The weights in a file: a plain ``state_dict`` or a training checkpoint.

    A checkpoint is a dict with ``"model"`` and/or ``"ema"`` (a state_dict, or None when EMA
    was off); ``"ema"`` is taken when present and not None unless ``prefer_ema`` is False.
    The file is read with ``torch.load(weights_only=True)`` (no arbitrary code runs).

    Returns:
        ``(state_dict, entry, checkpoint)``: the weights, which entry they came from
        (``"ema"``, ``"model"`` or ``"state_dict"`` for a plain file) and the whole checkpoint
        dict (empty for a plain state_dict), e.g. to read its ``"genotype"``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file cannot be read, or holds none of the forms above.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights: file {str(path)!r} does not exist; pass a state_dict or training "
            "checkpoint saved with torch.save (e.g. a retrain run's checkpoint.pt or model.pt)."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"weights: cannot read {str(path)!r} with torch.load(weights_only=True): "
            f"{type(exc).__name__}: {_brief(exc)}. Pass a file "
            "written by torch.save holding a state_dict or a dict with 'model'/'ema' "
            "state_dicts (re-save just the state_dict if it holds other Python objects)."
        ) from exc
    if _is_state_dict(obj):
        return dict(obj), "state_dict", {}
    if isinstance(obj, Mapping):
        ckpt = dict(obj)
        order = ("ema", "model") if prefer_ema else ("model",)
        for entry in order:
            sd = ckpt.get(entry)
            if sd is None:
                continue
            if not _is_state_dict(sd):
                raise CheckpointError(
                    f"weights: {str(path)!r}[{entry!r}] is a {type(sd).__name__}, not a "
                    "state_dict (a dict of name -> tensor); save module.state_dict() there."
                )
            return dict(sd), entry, ckpt
        if not prefer_ema and ckpt.get("ema") is not None:
            raise CheckpointError(
                f"weights: {str(path)!r} has EMA weights but no 'model' entry, and --no-ema "
                "(prefer_ema=False) asks for 'model'; drop --no-ema to use the EMA weights."
            )
        keys = sorted(map(str, ckpt))[:12]
        raise CheckpointError(
            f"weights: {str(path)!r} is a dict with keys {keys}, neither a state_dict nor a "
            "checkpoint with a 'model' or 'ema' state_dict; pass model.state_dict() saved with "
            "torch.save, or a training checkpoint."
        )
    raise CheckpointError(
        f"weights: {str(path)!r} holds a {type(obj).__name__}; expected a state_dict or a dict "
        "with 'model'/'ema' state_dicts. Save model.state_dict(), not the module."
    )


def _listing(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return f"[{shown}{more}]"


def load_checkpoint(
    model: nn.Module,
    weights: str | os.PathLike[str],
    *,
    genotype_name: str,
    prefer_ema: bool = True,
) -> str:
    """Load a weights file into ``model`` strictly; returns the entry used (see
    :func:`read_state_dict`).

    Args:
        model: the net built from the genotype (``build_model(genotype)``).
        weights: a state_dict file or a training checkpoint.
        genotype_name: how to name the genotype in errors (its file path or zoo name).
        prefer_ema: take the checkpoint's ``"ema"`` weights when it has them.

    Raises:
        CheckpointError: the keys or shapes differ from the model's, or the checkpoint records
            (under ``"genotype"``) a different genotype than ``model.genotype``. The message names
            both the checkpoint and the genotype.
    """
    sd, entry, ckpt = read_state_dict(weights, prefer_ema=prefer_ema)
    where = f"checkpoint {os.fspath(weights)!r} does not fit genotype {genotype_name!r}"
    ours = getattr(model, "genotype", None)
    recorded = ckpt.get("genotype")
    if ours is not None and isinstance(recorded, str):
        from search_space import Genotype, GenotypeError

        try:
            theirs = Genotype.from_json(recorded)
        except GenotypeError as exc:
            logger.warning("checkpoint %s: cannot parse its 'genotype' entry (%s); not compared",
                           os.fspath(weights), exc)
        else:
            if theirs != ours:
                raise CheckpointError(
                    f"{where}: the checkpoint was trained for genotype {recorded}, not "
                    f"{ours.to_json(indent=None)}. Pass the genotype file the checkpoint was "
                    "trained with (the run folder's genotype.json)."
                )
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_listing(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches {_listing(shapes, 3)}")
        raise CheckpointError(
            f"{where} ({entry!r} weights): {'; '.join(parts)}. Pass the genotype the checkpoint "
            "was trained with, or the checkpoint trained for this genotype (a deployed.pt goes "
            "with deployed_genotype.json)."
        )
    model.load_state_dict(sd, strict=True)
    logger.info("loaded %r weights from %s", entry, os.fspath(weights))
    return entry


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _tile_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"got {text!r}; allowed: an LR tile side >= 1 (e.g. 128) or 'auto'"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m results.evaluate``."""
    parser = argparse.ArgumentParser(
        prog="python -m results.evaluate",
        description="Y-PSNR, Y-SSIM and RGB-PSNR of a trained net on SR benchmark sets.",
    )
    parser.add_argument("genotype", help="zoo name (e.g. rlfn_ntire) or genotype JSON file")
    parser.add_argument("--weights", type=Path,
                        help="state_dict or training checkpoint (.pt); without it the net is "
                             "randomly initialised (smoke tests only)")
    parser.add_argument("--no-ema", action="store_true",
                        help="use the checkpoint's 'model' weights even if it has 'ema' weights")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS),
                        help=f"benchmark names ({', '.join(BENCHMARK_SETS)}) or HR folders "
                             f"(default: {' '.join(DEFAULT_SETS)})")
    parser.add_argument("--datasets-root", type=Path,
                        help=f"folder holding <set>/HR (default: ${DATASETS_ENV} or "
                             "shared/datasets beside the repository)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--tile", type=_tile_arg, default=None,
                        help="LR tile side in pixels, or 'auto' (default: whole images)")
    parser.add_argument("--overlap", type=int, default=16,
                        help="LR pixels of context around each tile (default 16)")
    parser.add_argument("--save-images", type=Path, help="write SR PNGs to DIR/<set>/<image>.png")
    parser.add_argument("--out", type=Path, help="write the per-image table to this CSV file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _device(text: str) -> torch.device:
    try:
        dev = torch.device(text)
    except RuntimeError as exc:
        raise ValueError(f"--device: got {text!r}; allowed: a torch device such as cpu, cuda, "
                         f"cuda:1 ({exc}).") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: got {text!r} but CUDA is not available here; use cpu.")
    return dev


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for bad inputs)."""
    from search_space import build_model
    from search_space.zoo import resolve_genotype

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        dev = _device(args.device)
        if args.overlap < 0:
            raise ValueError(f"--overlap: got {args.overlap}; allowed: an int >= 0, e.g. 16.")
        label, genotype = resolve_genotype(args.genotype)
        model = build_model(genotype)
        if args.weights is None:
            logger.warning(
                "no --weights: evaluating the randomly initialised %s (smoke test only; the "
                "numbers mean nothing)", label,
            )
        else:
            load_checkpoint(model, args.weights, genotype_name=args.genotype,
                            prefer_ema=not args.no_ema)
        df = evaluate_model(
            model, args.sets, scale=genotype.scale, data_range=model.data_range, device=dev,
            tile=args.tile, overlap=args.overlap, save_dir=args.save_images,
            datasets_root=args.datasets_root,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
        logger.info("per-image results written to %s", args.out)
    print(f"{label} (x{genotype.scale}" + (f", {args.weights}" if args.weights else ", random")
          + ")\n")
    print(summary_markdown(summarise(df)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
