"""The checks both exporters share: argument validation, the input-size range an exported
program accepts, and the comparison of an exported file's output with the eager net's.

Used by :func:`proxies.export.onnx_file.export_onnx` and :func:`proxies.export.pt2_file.export_pt2`.

In-place ops. Exports run under ``torch.no_grad()`` (:func:`_inference`), so ``add_residual``
/ ``sigmoid_gate`` take their in-place inference path (as deployed PyTorch inference does);
``torch.export`` functionalises them, and the checks compare against the same eager net.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_ATOL", "ExportCheckError"]

DEFAULT_ATOL = 1e-4
"""Allowed max abs difference from PyTorch, relative to the net's data range."""


class ExportCheckError(RuntimeError):
    """An exported file does not reproduce the PyTorch net within the tolerance."""


def _check_module(fn: str, model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{fn}: model: got {type(model).__name__}; expected a torch.nn.Module "
            "(build one with search_space.build_model(genotype), then reparameterize it)"
        )
    return model


def _check_atol(fn: str, atol: object) -> float:
    if isinstance(atol, bool) or not isinstance(atol, int | float) or not atol > 0:
        raise ValueError(
            f"{fn}: atol: got {atol!r}; allowed: a number > 0 (relative to the data range, "
            f"default {DEFAULT_ATOL})"
        )
    return float(atol)


def _data_range(model: nn.Module) -> float:
    value = getattr(model, "data_range", None)
    if value is None:
        logger.info("%s has no data_range; checking with inputs in [0, 1]", type(model).__name__)
        return 1.0
    return float(value)


def _scale(model: nn.Module, check: Mapping[str, Any]) -> int:
    scale = getattr(model, "scale", None)
    if scale is not None:
        return int(scale)
    return int(check["output_shape"][-1] // check["input_shape"][-1])


def _genotype_json(model: nn.Module) -> str | None:
    genotype = getattr(model, "genotype", None)
    to_json = getattr(genotype, "to_json", None)
    return to_json(indent=None) if callable(to_json) else None


@contextlib.contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd (the in-place inference path); the mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)

def _hw_range(program: torch.export.ExportedProgram) -> list[list[int | None]]:
    """``[[min_h, max_h], [min_w, max_w]]`` the program's input accepts (``None``: unbounded)."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        shape = node.meta["val"].shape
        out: list[list[int | None]] = []
        for dim in (2, 3):
            size = shape[dim]
            if isinstance(size, int):
                out.append([size, size])
                continue
            vr = program.range_constraints.get(size.node.expr)
            if vr is None:
                out.append([1, None])
                continue
            lower = max(1, int(vr.lower)) if vr.lower.is_Integer else 1
            out.append([lower, int(vr.upper) if vr.upper.is_Integer else None])
        return out
    raise RuntimeError("the exported program has no user input; cannot read its size range")


def _check_dynamic(fn: str, hw: list[list[int | None]], example: Sequence[int]) -> None:
    for (lo, hi), name, size in zip(hw, ("height", "width"), example[2:], strict=True):
        if hi is not None:
            raise ValueError(
                f"{fn}: example: got shape {list(example)}; the graph traced from it accepts "
                f"input {name}s in [{lo}, {hi}] only; allowed: a tracing input that leaves the "
                f"{name} unbounded (the {name} was {size}). The net's forward branches on the "
                "input size; trace with another size, or make the branch symbolic "
                "(torch.sym_max / torch.cond)."
            )


def _second_input(x: torch.Tensor, hw: list[list[int | None]]) -> torch.Tensor:
    """A batch of 2 of another height and width than ``x`` (crop or edge-pad, and a flip)."""
    h, w = x.shape[-2:]
    (lo_h, _), (lo_w, _) = hw
    h2 = h - 3 if h - 3 >= (lo_h or 1) else h + 5
    w2 = w - 5 if w - 5 >= (lo_w or 1) else w + 3
    y = x[:1, :, : min(h, h2), : min(w, w2)]
    y = torch.nn.functional.pad(y, (0, max(0, w2 - w), 0, max(0, h2 - h)), mode="replicate")
    return torch.cat([y, y.flip(-1)], dim=0).contiguous()


def _smallest_input(x: torch.Tensor, min_hw: Sequence[int]) -> torch.Tensor | None:
    """The top-left ``min_hw`` crop of ``x``'s first image (None: ``x`` is that size)."""
    h, w = min_hw
    if tuple(x.shape[-2:]) == (h, w):
        return None
    return x[:1, :, :h, :w].contiguous()


def _image_tensor(fn: str, image: object, data_range: float) -> torch.Tensor:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        got = image.shape if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(
            f"{fn}: check_image: got {got}; allowed: a numpy array HxWx3 in [0, 1] "
            "(read one with proxies.data.images.load_image(path))"
        )
    arr = np.asarray(image, dtype=np.float32)
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            f"{fn}: check_image: values span [{arr.min():.4g}, {arr.max():.4g}]; allowed: "
            "finite values in [0, 1]. Divide 8-bit images by 255."
        )
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    return x * data_range


def _compare(
    fn: str, what: str, x: torch.Tensor, expected: np.ndarray, got: np.ndarray, tol: float
) -> dict[str, Any]:
    if got.shape != expected.shape:
        raise ExportCheckError(
            f"{fn}: {what} output shape {list(got.shape)} differs from PyTorch's "
            f"{list(expected.shape)} for input {list(x.shape)}"
        )
    if not np.isfinite(got).all():
        raise ExportCheckError(f"{fn}: {what} output for input {list(x.shape)} is not finite")
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    if not diff <= tol:
        raise ExportCheckError(
            f"{fn}: {what} output differs from PyTorch by max abs {diff:.4g} for input "
            f"{list(x.shape)}; allowed: <= {tol:.4g} (atol * data_range). The file was written "
            "but does not reproduce the net: check the ops it uses, or raise atol if the "
            "difference is float rounding."
        )
    return {"input_shape": list(x.shape), "output_shape": list(got.shape), "max_abs_diff": diff}


def _eager(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with _inference(model):
        return model(x.clone()).numpy()


def _checked_result(fn: str, what: str, model: nn.Module, run: Callable[[torch.Tensor], np.ndarray],
                    first: torch.Tensor, hw: list[list[int | None]], min_hw: list[int],
                    tol: float, path: Path, **fields: Any) -> dict[str, Any]:
    """Run the exported file (``run``) on ``first``, on a second size inside the accepted
    range and on the smallest accepted input, compare each with the eager net, and return an
    exporter's result: ``path``, ``fields`` (what only that exporter records) and the fields
    both record (size, input range, data range, scale, tolerance, the checks)."""
    checks = [_compare(fn, what, x, _eager(model, x), run(x), tol)
              for x in (first, _second_input(first, hw), _smallest_input(first, min_hw))
              if x is not None]
    result = {"path": str(path), **fields, "file_bytes": path.stat().st_size,
              "min_input_hw": min_hw, "data_range": _data_range(model),
              "scale": _scale(model, checks[0]), "tolerance": tol, "checks": checks,
              "max_abs_diff": max(c["max_abs_diff"] for c in checks)}
    logger.info("%s output matches PyTorch: max abs diff %.3g", what, result["max_abs_diff"])
    return result
