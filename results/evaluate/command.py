"""Benchmark evaluation of a trained net: ``python -m results.evaluate GENOTYPE --weights CKPT``.

Runs a net of the search space (a zoo name or a genotype JSON file, with its weights) on the
standard SR benchmarks and reports Y-PSNR, Y-SSIM and RGB-PSNR per image and per set, with the
metric conventions of :mod:`proxies.quality` (border = scale, uint8-quantised outputs, BT.601
Y channel) and the LR images of :mod:`proxies.data.imageset` (HR mod-cropped to the scale,
antialiased
bicubic downsampling, quantised to 8 bit).

From Python: :func:`evaluate` (a genotype, a zoo name or file, or a built net, and its
weights), which returns an :class:`Evaluation`: the per-image table and the per-set summary.

The benchmark sets, the per-image table and :func:`summarise` are :mod:`results.evaluate.sets`;
the forward pass, whole or tiled, is :mod:`results.evaluate.inference`. This module reads the
weights (:func:`read_state_dict`, :func:`load_checkpoint`), evaluates (:func:`evaluate`) and is
the command.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from results.evaluate.inference import Tile, _brief
from results.evaluate.sets import (
    BENCHMARK_SETS,
    DATASETS_ENV,
    DEFAULT_SETS,
    evaluate_model,
    summarise,
    summary_markdown,
)
from results.safe_load import load_weights_only, refusal, refused_global
from search_space.files import error_line

if TYPE_CHECKING:
    import pandas as pd

    from search_space import Genotype

logger = logging.getLogger("results.evaluate")  # also when run as __main__

__all__ = [
    "CheckpointError",
    "Evaluation",
    "build_parser",
    "evaluate",
    "load_checkpoint",
    "main",
    "read_state_dict",
]


class CheckpointError(ValueError):
    """A weights file cannot be read or does not fit the genotype it is loaded into."""



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
        obj = load_weights_only(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        refused = refused_global(exc, path)
        if refused is not None:  # a crafted file, not a damaged one
            raise CheckpointError(refusal(path, refused, "weights:")) from None
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
# Evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` returns: the net's label and genotype, the weights entry used
    (``"ema"``, ``"model"`` or ``"state_dict"``; None for an untrained net), the per-image table
    (:data:`results.evaluate.sets.ROW_COLUMNS`) and the per-set summary
    (:data:`results.evaluate.sets.SUMMARY_COLUMNS`: the mean of the per-image metrics)."""

    label: str
    genotype: Genotype
    weights_entry: str | None
    per_image: pd.DataFrame
    summary: pd.DataFrame


def evaluate(
    net: Genotype | str | nn.Module,
    weights: str | os.PathLike[str] | None = None,
    *,
    sets: Sequence[str] = DEFAULT_SETS,
    datasets_root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    tile: Tile = None,
    overlap: int = 16,
    prefer_ema: bool = True,
    save_dir: str | os.PathLike[str] | None = None,
) -> Evaluation:
    """Y-PSNR, Y-SSIM and RGB-PSNR of ``net`` on ``sets`` (benchmark names or HR folders).

    ``net`` is a :class:`~search_space.Genotype`, a zoo name or genotype JSON file (built with
    :func:`search_space.build_model`), or a net already built from the search space (with its
    ``genotype``). ``weights`` (a state_dict or a training checkpoint, e.g. a retrain run's
    ``deployed.pt`` for its ``deployed_genotype.json``) are loaded strictly
    (:func:`load_checkpoint`); without them the net keeps the weights it has (a genotype's net:
    its random initialisation, a smoke test).
    ``tile`` runs the images in LR tiles of that side (``"auto"``: only where needed) with
    ``overlap`` LR pixels of context; ``save_dir`` receives the SR images.

    Raises ``FileNotFoundError`` for a missing set or weights file, :class:`CheckpointError` for
    weights that do not fit, and ``ValueError`` for other bad input.
    """
    from search_space import Genotype, build_model
    from search_space.zoo import resolve_genotype

    if overlap < 0:
        raise ValueError(f"overlap (--overlap): got {overlap}; allowed: an int >= 0, e.g. 16.")
    if isinstance(net, nn.Module):
        model, genotype = net, getattr(net, "genotype", None)
        if not isinstance(genotype, Genotype):
            raise ValueError(f"net: got a {type(net).__name__} without a genotype; pass a "
                             "genotype, a zoo name or file, or a net built with build_model")
        label = "net"
    else:
        if isinstance(net, Genotype):
            label, genotype = "genotype", net
        else:
            label, genotype = resolve_genotype(net)
        model = build_model(genotype)
    entry = None
    if weights is None and not isinstance(net, nn.Module):  # a built net may be trained
        logger.warning("no weights: evaluating the randomly initialised %s (smoke test only; "
                       "the numbers mean nothing)", label)
    elif weights is not None:
        entry = load_checkpoint(model, weights, genotype_name=str(net) if isinstance(net, str)
                                else label, prefer_ema=prefer_ema)
    per_image = evaluate_model(
        model, list(sets), scale=genotype.scale,
        data_range=float(getattr(model, "data_range", 1.0)),
        device=device, tile=tile, overlap=overlap, save_dir=save_dir,
        datasets_root=datasets_root,
    )
    return Evaluation(label=label, genotype=genotype, weights_entry=entry, per_image=per_image,
                      summary=summarise(per_image))


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
    """Run the command (:func:`evaluate`); returns the exit status (2 for bad inputs)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        result = evaluate(
            args.genotype, args.weights, sets=args.sets, datasets_root=args.datasets_root,
            device=_device(args.device), tile=args.tile, overlap=args.overlap,
            prefer_ema=not args.no_ema, save_dir=args.save_images,
        )
    except (OSError, ValueError) as err:
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result.per_image.to_csv(args.out, index=False)
        logger.info("per-image results written to %s", args.out)
    print(f"{result.label} (x{result.genotype.scale}"
          + (f", {args.weights}" if args.weights else ", random") + ")\n")
    print(summary_markdown(result.summary))
    return 0
