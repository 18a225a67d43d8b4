"""A trained net's metrics on SR benchmark sets: :func:`evaluate_model` and :func:`summarise`.

Reports Y-PSNR, Y-SSIM and RGB-PSNR per image and per set, with the metric conventions of
:mod:`proxies.quality` (border = scale, uint8-quantised outputs, BT.601 Y channel) and the LR
images of :mod:`proxies.data.imageset` (HR mod-cropped to the scale, antialiased bicubic
downsampling,
quantised to 8 bit); the forward pass, whole or tiled, is
:func:`results.evaluate.inference.sr_forward`.

Benchmark sets
    A set name (one of :data:`BENCHMARK_SETS`, e.g. ``Set5``) resolves to
    ``<datasets root>/<name>/HR``. The datasets root is ``$SRNAS_DATASETS`` when set, else
    ``shared/datasets`` beside the repository (:func:`default_datasets_root`); ``--datasets-root``
    overrides both. Any other string is a folder of HR images.

Per-image table columns (:data:`ROW_COLUMNS`)
    ``set``, ``image`` (file stem), ``psnr_y_db``, ``ssim_y``, ``psnr_rgb_db``, ``lr_h``,
    ``lr_w``, ``seconds`` (wall time of the forward pass, incl. transfers; the first image also
    pays any warm-up), ``tiled`` (the image was run in more than one tile).

:func:`summarise` averages the per-image metrics per set (the mean of per-image PSNRs, as
published tables do).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from PIL import Image
from torch import nn

from proxies.data.imageset import SRImageSet
from proxies.quality import evaluate_pair, tensor_to_uint8
from results.evaluate.inference import AUTO_MAX_PIXELS, Tile, _check_tile, _forward

logger = logging.getLogger("results.evaluate")  # the evaluation's logger, named for its command

__all__ = [
    "BENCHMARK_SETS",
    "DATASETS_ENV",
    "DEFAULT_SETS",
    "ROW_COLUMNS",
    "SUMMARY_COLUMNS",
    "default_datasets_root",
    "evaluate_model",
    "resolve_set",
    "summarise",
    "summary_markdown",
]

#: The sets evaluated when none are named.
DEFAULT_SETS: tuple[str, ...] = ("Set5", "Set14", "B100")
#: Names that resolve to ``<datasets root>/<name>/HR``; any other string is a folder path.
BENCHMARK_SETS: tuple[str, ...] = ("Set5", "Set14", "B100", "Urban100", "Manga109", "T91")
#: Environment variable that overrides the default datasets root.
DATASETS_ENV = "SRNAS_DATASETS"
#: Columns of :func:`evaluate_model`'s per-image table, in order.
ROW_COLUMNS: tuple[str, ...] = (
    "set", "image", "psnr_y_db", "ssim_y", "psnr_rgb_db", "lr_h", "lr_w", "seconds", "tiled",
)  # fmt: skip
#: Columns of :func:`summarise`'s per-set table, in order.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "set", "images", "psnr_y_db", "ssim_y", "psnr_rgb_db", "seconds",
)  # fmt: skip
_METRICS = ("psnr_y_db", "ssim_y", "psnr_rgb_db", "seconds")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")



# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------


def default_datasets_root() -> Path:
    """``$SRNAS_DATASETS`` if set, else ``shared/datasets`` beside the repository."""
    env = os.environ.get(DATASETS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "shared" / "datasets"


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
