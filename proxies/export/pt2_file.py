"""Export a net as a standalone ``torch.export`` program (``.pt2``) and check it against PyTorch.

:func:`export_pt2` writes the second file of ``python -m results.export``: a ``torch.export``
program with batch, height and width dynamic, loadable with ``torch.export.load(path).module()``
in a process that has only torch (no code of this repository). It is a ``torch.export``
program rather than TorchScript because ``torch.jit.trace`` / ``torch.jit.load`` are deprecated
in torch 2.13 (they warn at every call); ``torch.export`` is their successor and keeps the input
size symbolic instead of baking the trace example in. Every net here is valid from 1x1 px (see
:mod:`proxies.export.onnx_file`); were a net's graph bounded below, the program would refuse
smaller inputs with its own size check.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from proxies.export.check import (
    DEFAULT_ATOL,
    _check_atol,
    _check_dynamic,
    _check_module,
    _checked_result,
    _data_range,
    _genotype_json,
    _hw_range,
    _inference,
)

logger = logging.getLogger(__name__)

__all__ = ["PROGRAM_META", "export_pt2"]

PROGRAM_META = "srnas_meta.json"
"""Name of the JSON metadata stored inside the ``.pt2`` archive (``extra_files``)."""


def _size_oblivious() -> contextlib.AbstractContextManager[Any]:
    """Let ``torch.export`` keep sizes 0/1 symbolic (what ``torch.onnx.export`` also does).

    Without it, a size of 1 in the example (a batch of one, a 1-px height or width) or in an
    intermediate map (ESA's pooled map below 21 px) would specialise the program to inputs
    with the same size-1-ness as the tracing example, or make the export fail.
    """
    cfg = getattr(getattr(torch.fx, "experimental", None), "_config", None)
    if cfg is not None and hasattr(cfg, "backed_size_oblivious") and hasattr(cfg, "patch"):
        return cfg.patch(backed_size_oblivious=True)
    logger.warning("this torch has no backed_size_oblivious option; the export may specialise "
                   "on size-1 feature maps")
    return contextlib.nullcontext()


def export_pt2(
    model: nn.Module,
    path: str | Path,
    *,
    example: torch.Tensor,
    atol: float = DEFAULT_ATOL,
) -> dict[str, Any]:
    """Export ``model`` as a standalone ``torch.export`` program (``.pt2``) and check it.

    The replacement of a TorchScript file (``torch.jit`` is deprecated in torch 2.13): batch,
    height and width stay symbolic (``torch.export.Dim.DYNAMIC``), so the program is not tied
    to the size of ``example``. Load it without this repository with
    ``torch.export.load(path).module()`` and call it on an (N, 3, H, W) float32 tensor in
    ``[0, data_range]``. The archive also holds ``srnas_meta.json`` (genotype, scale, data
    range, minimum input size), readable with ``torch.export.load(path, extra_files=...)``.

    The saved file is loaded back and checked against the eager net on ``example``, on a
    batch of two of a different height and width, and on a crop of ``example`` at the
    smallest size the program accepts (``min_input_hw``).

    Args:
        model: the net (exported in eval mode without autograd; its mode is restored).
        path: the file to write, conventionally ``*.pt2``.
        example: an (N, 3, H, W) float tensor in the net's range, of any size (1x1 px too;
            the program is not specialised to it).
        atol: allowed max abs difference, relative to the data range.

    Returns:
        ``path``, ``format``, ``exporter``, ``file_bytes``, ``min_input_hw``, ``data_range``,
        ``scale``, ``tolerance``, ``checks`` and ``max_abs_diff``, as
        :func:`proxies.export.onnx_file.export_onnx`.

    Raises:
        ExportCheckError: the loaded program's output differs from PyTorch's beyond the bound.
        ValueError: a bad argument, or an export that would only accept a bounded size range.
    """
    fn = "export_pt2"
    model = _check_module(fn, model)
    if (not isinstance(example, torch.Tensor) or example.dim() != 4 or example.shape[1] != 3
            or not example.is_floating_point()):
        got = (f"{example.dtype} tensor of shape {list(example.shape)}"
               if isinstance(example, torch.Tensor) else type(example).__name__)
        raise ValueError(
            f"{fn}: example: got {got}; allowed: a float tensor (N, 3, H, W) in "
            "[0, data_range], e.g. torch.rand(1, 3, 32, 32) * model.data_range"
        )
    data_range = _data_range(model)
    tol = _check_atol(fn, atol) * data_range
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = example.detach().to("cpu", torch.float32).contiguous()

    dyn = torch.export.Dim.DYNAMIC
    with _inference(model), _size_oblivious():
        program = torch.export.export(
            model, (example,), dynamic_shapes=({0: dyn, 2: dyn, 3: dyn},), strict=False
        )
    hw = _hw_range(program)
    _check_dynamic(fn, hw, list(example.shape))
    min_hw = [int(lo or 1) for lo, _ in hw]
    meta = {
        "input": f"float32 (N, 3, H, W) in [0, {data_range:g}]",
        "data_range": data_range,
        "scale": getattr(model, "scale", None),
        "min_input_hw": min_hw,
        "genotype": _genotype_json(model),
        "torch": torch.__version__,
    }
    torch.export.save(program, path, extra_files={PROGRAM_META: json.dumps(meta)})
    logger.info("wrote %s (inputs >= %dx%d px)", path, *min_hw)

    loaded = torch.export.load(path).module()

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x.clone()).numpy()

    return _checked_result(
        fn, "the loaded program's", model, run, example, hw, min_hw, tol, path,
        format="torch.export", exporter="torch.export.export(strict=False) + torch.export.save",
        torch=torch.__version__)
