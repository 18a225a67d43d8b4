"""Export a trained, re-parameterised SR net for deployment: ONNX and a ``torch.export`` program.

``python -m results.export GENOTYPE_OR_ZOO --weights CKPT.pt --out DIR [--image PATH]``
loads the weights, re-parameterises the net (:func:`search_space.reparameterize`), and writes

* ``DIR/model.onnx``: :func:`proxies.export.onnx_file.export_onnx`, input ``lr`` (N, 3, H, W) and
  output ``sr`` (N, 3, scale*H, scale*W), batch, height and width dynamic, float32 in
  ``[0, genotype.data_range]``; checked with ``onnx.checker`` and against PyTorch with ONNX
  Runtime (CPU) at two input sizes and at the smallest one the graph records (1x1 px);
* ``DIR/model.pt2``: :func:`proxies.export.pt2_file.export_pt2`, a ``torch.export`` program with
  the same dynamic dimensions, loadable with ``torch.export.load(path).module()`` in a process
  that has only torch (no code of this repository);
* ``DIR/export.json``: the checks (max abs differences, input sizes, file sizes).

The exporters, the input sizes the files accept and the checks they pass are described in
:mod:`proxies.export.onnx_file`, :mod:`proxies.export.pt2_file` and :mod:`proxies.export.check`;
this
module is the command and the loading of its weights and check image.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from proxies.export.check import DEFAULT_ATOL, ExportCheckError, _data_range, _image_tensor
from proxies.export.onnx_file import DEFAULT_OPSET, export_onnx
from proxies.export.pt2_file import export_pt2

if TYPE_CHECKING:
    from search_space import Genotype, SRNet

logger = logging.getLogger("results.export")

__all__ = [
    "build_from_checkpoint",
    "default_check_image",
    "load_state_dict",
    "main",
]

ONNX_FILE = "model.onnx"
PROGRAM_FILE = "model.pt2"
REPORT_FILE = "export.json"
DEFAULT_CROP = 128


# --------------------------------------------------------------------------------------------
# Weights and check image
# --------------------------------------------------------------------------------------------


def load_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str, str | None]:
    """The weights in a checkpoint: ``(state_dict, where, genotype_json)``.

    Read with :func:`results.evaluate.command.read_state_dict` (a plain state_dict, or a training
    checkpoint's ``"ema"``, else ``"model"``); ``genotype_json`` is the checkpoint's
    ``"genotype"`` when it records one. A ``module.`` prefix
    (``torch.optim.swa_utils.AveragedModel``) is stripped.
    """
    from results.evaluate.command import read_state_dict

    state, where, ckpt = read_state_dict(path)
    if state and all(k.startswith("module.") or k == "n_averaged" for k in state):
        state = {k[len("module."):]: v for k, v in state.items() if k != "n_averaged"}
    genotype = ckpt.get("genotype")
    return state, where, genotype if isinstance(genotype, str) else None


def build_from_checkpoint(genotype: Genotype, state: Mapping[str, torch.Tensor]) -> SRNet:
    """``build_model(genotype)`` with ``state`` loaded (strict).

    Weights of the deployed form (``deployed.pt``) of a training-form genotype are loaded into
    ``build_model(genotype.deployed())`` instead.
    """
    from search_space import build_model

    model = build_model(genotype)
    errors = []
    for candidate in ([model] if genotype.is_deployed
                      else [model, build_model(genotype.deployed())]):
        try:
            candidate.load_state_dict(state, strict=True)
        except RuntimeError as err:
            errors.append(str(err).splitlines()[0])
            continue
        return candidate
    missing = sorted(set(model.state_dict()) - set(state))[:5]
    extra = sorted(set(state) - set(model.state_dict()))[:5]
    raise ValueError(
        f"weights: the checkpoint does not fit the genotype ({'; '.join(errors)}; missing keys "
        f"e.g. {missing}, unexpected keys e.g. {extra}); pass the genotype the weights were "
        "trained for"
    )


def default_check_image(scale: int, crop: int = DEFAULT_CROP) -> tuple[str, np.ndarray]:
    """A real LR input: the first bundled scikit-image photo, bicubic-downscaled by ``scale``
    and centre-cropped to at most ``crop`` x ``crop`` px. Returns ``(name, HxWx3 in [0, 1])``.
    """
    from proxies.data.downsample import bicubic_downsample
    from proxies.data.specs import default_images

    name, hr = default_images()[0]
    return f"default:{name}", _centre_crop(bicubic_downsample(hr, scale), crop)


def _centre_crop(img: np.ndarray, crop: int) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = min(h, crop), min(w, crop)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[top : top + ch, left : left + cw])


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m results.export``."""
    parser = argparse.ArgumentParser(
        prog="python -m results.export",
        description="Export a trained net to ONNX and a torch.export program, checked against "
                    "PyTorch.",
    )
    parser.add_argument("genotype", help="zoo name (e.g. rlfn_ntire) or genotype JSON file")
    parser.add_argument("--weights", type=Path,
                        help="checkpoint: a state_dict or a dict with 'ema' / 'model' "
                             "(without it the freshly initialised net is exported)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--image", type=Path,
                        help="LR image to check on (default: a bundled photo, bicubic-downscaled)")
    parser.add_argument("--crop", type=int, default=DEFAULT_CROP,
                        help=f"centre-crop the check image to at most this side "
                             f"(default {DEFAULT_CROP})")
    parser.add_argument("--no-reparameterize", action="store_true",
                        help="export the training form as it is (rep/ECB branches, batch norms)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                        help=f"allowed max abs difference relative to the data range "
                             f"(default {DEFAULT_ATOL})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _prepare(args: argparse.Namespace) -> tuple[str, nn.Module, dict[str, Any]]:
    """Resolve the genotype, load the weights, re-parameterise. Returns (label, net, info)."""
    from search_space import Genotype, build_model, reparameterize
    from search_space.zoo import resolve_genotype

    label, genotype = resolve_genotype(args.genotype)
    info: dict[str, Any] = {"genotype_spec": args.genotype, "weights": None}
    if args.weights is None:
        logger.warning("no --weights: exporting the freshly initialised %s (for testing the "
                       "export only)", label)
        model = build_model(genotype)
    else:
        state, where, ckpt_genotype = load_state_dict(args.weights)
        if ckpt_genotype is not None:
            theirs = Genotype.from_json(ckpt_genotype)
            if theirs.deployed() != genotype.deployed():
                raise ValueError(
                    f"weights: {str(args.weights)!r} was trained for genotype {ckpt_genotype}, "
                    f"not for {args.genotype!r}; pass the genotype it was trained for"
                )
        model = build_from_checkpoint(genotype, state)
        info.update(weights=str(args.weights), weights_entry=where)
        logger.info("loaded %s['%s'] into %s", args.weights, where, label)
    if args.no_reparameterize:
        info["reparameterized"] = False
    else:
        model = reparameterize(model)
        info["reparameterized"] = True
    info["genotype"] = model.genotype.to_dict()
    info["params"] = sum(p.numel() for p in model.parameters())
    return label, model.eval(), info


def _check_image(args: argparse.Namespace, scale: int) -> tuple[str, np.ndarray]:
    from proxies.data.images import load_image

    if args.crop < 1:
        raise ValueError(f"--crop: got {args.crop}; allowed: an integer >= 1 (default "
                         f"{DEFAULT_CROP})")
    if args.image is None:
        return default_check_image(scale, args.crop)
    return str(args.image), _centre_crop(load_image(args.image), args.crop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2: bad input, 1: a check failed)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        label, model, info = _prepare(args)
        image_name, image = _check_image(args, int(getattr(model, "scale", 1)))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data_range = _data_range(model)
    report: dict[str, Any] = {
        "name": label, **info,
        "image": {"source": image_name, "shape": list(image.shape)},
        "torch": torch.__version__,
    }
    try:
        report["onnx"] = export_onnx(model, out / ONNX_FILE, opset=args.opset,
                                     check_image=image, atol=args.atol)
        example = _image_tensor("main", image, data_range)
        report["pt2"] = export_pt2(model, out / PROGRAM_FILE, example=example, atol=args.atol)
    except ValueError as err:
        report["error"] = str(err)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ExportCheckError as err:
        report["error"] = str(err)
        print(f"check failed: {err}", file=sys.stderr)
        return 1
    finally:
        (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _print_summary(report, out)
    return 0


def _print_summary(report: dict[str, Any], out: Path) -> None:
    reparam = "re-parameterised" if report["reparameterized"] else "training form"
    weights = report["weights"] or "fresh initialisation (no --weights)"
    print(f"{report['name']}: {report['params']:,} params, {reparam}, weights: {weights}")
    print(f"checked on {report['image']['source']} {report['image']['shape'][:2]}")
    for key in ("onnx", "pt2"):
        r = report[key]
        shapes = ", ".join("x".join(map(str, c["input_shape"])) for c in r["checks"])
        print(f"  {Path(r['path']).name}: {r['file_bytes'] / 1024:.1f} KiB, max abs diff "
              f"{r['max_abs_diff']:.3g} (<= {r['tolerance']:.3g}) at {shapes}; inputs >= "
              f"{r['min_input_hw'][0]}x{r['min_input_hw'][1]} px")
    print(f"written to {out}")
