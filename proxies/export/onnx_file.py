"""Export a net to ONNX and check the file against PyTorch with ONNX Runtime.

:func:`export_onnx` writes an ONNX graph with input ``lr`` (N, C, H, W) and output ``sr``
(N, C, scale*H, scale*W), batch, height and width dynamic, float32 in
``[0, genotype.data_range]``, checked with ``onnx.checker`` and against the eager net with
ONNX Runtime (CPU) at two input sizes and at the smallest one the graph records (1x1 px). It is
the deployment export of ``python -m results.export`` and the graph the ONNX Runtime
measurement backend (:mod:`proxies.measure.runtime`) times.

Exporter. The default exporter of torch 2.13 (``torch.onnx.export(dynamo=True)``, which needs
``onnxscript``): it exports these nets with dynamic height and width, including ESA's pooling,
and reports the sizes the graph is valid for.

Input size. Every net, ESA and ESA-lite included, is exported valid for any input from 1x1 px
(``min_input_hw`` in the results, also written into the ONNX metadata as
``srnas.min_input_height`` / ``srnas.min_input_width``). ESA pools with a fixed 7x7 window,
stride 3, after a stride-2 3x3 conv; a dimension of the conv's output under 7 px is padded
with the dtype's lowest value up to 7 (the window takes the global max over it), and the
conv's input is edge-padded up to 3 px (see ``_pool`` and ``_reduce`` in
``search_space.attention``). The pad amounts are symbolic (``torch.sym_max``), so the exporter
keeps height and width dynamic and ONNX's fixed-window MaxPool computes what PyTorch does at
every size; from 15 px on each side nothing is padded (the official RFDN/RLFN computation).
The minimum is read from the exported program's range constraints (1x1 for every net here),
and the file is checked at exactly that size too. ONNX Runtime reads no metadata, so were a
net's graph bounded below, a caller of the ``.onnx`` file would have to check
``srnas.min_input_height`` / ``_width`` itself.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from proxies.export.check import (
    DEFAULT_ATOL,
    ExportCheckError,
    _check_atol,
    _check_dynamic,
    _check_module,
    _checked_result,
    _data_range,
    _genotype_json,
    _hw_range,
    _image_tensor,
    _inference,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_OPSET", "INPUT_NAME", "MIN_OPSET", "OUTPUT_NAME", "export_onnx"]

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"

DEFAULT_OPSET = 18
"""The lowest opset torch 2.13's ONNX exporter implements natively (17 needs a conversion)."""
MIN_OPSET = 17

_EXPORT_HW = (32, 40)
"""Height and width of the tracing input of :func:`export_onnx` (any size works, 1x1 too: the
exporter keeps both symbolic)."""


@contextlib.contextmanager
def _quiet_onnx_registry() -> Iterator[None]:
    """Mute the exporter's 'torchvision is not installed' warnings (one per torchvision op)."""
    registry_logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_logger.level
    registry_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        registry_logger.setLevel(level)


def _in_range(hw: list[list[int | None]], h: int, w: int) -> bool:
    return all(lo is not None and lo <= s and (hi is None or s <= hi)
               for (lo, hi), s in zip(hw, (h, w), strict=True))


def _synthetic(shape: Sequence[int], data_range: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=gen) * data_range


def _onnx_modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            f"export_onnx needs onnx, onnxruntime and onnxscript ({err}); install them with "
            "'pip install onnx onnxruntime onnxscript' (they are dependencies of this project)"
        ) from err
    return onnx, onnxruntime


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    check_image: np.ndarray | None = None,
    atol: float = DEFAULT_ATOL,
    channels: int = 3,
) -> dict[str, Any]:
    """Export ``model`` to ONNX and check the file against PyTorch with ONNX Runtime.

    The graph has one input ``lr`` (N, 3, H, W) and one output ``sr``, with batch, height and
    width dynamic; it is exported in eval mode without autograd (the module's mode is restored
    afterwards). The file is checked with ``onnx.checker.check_model(full_check=True)`` and run
    with ONNX Runtime's CPU provider on three inputs: ``check_image`` (HxWx3 in [0, 1], scaled
    to the model's ``data_range``; a seeded random 20x24 input when None), a batch of two of a
    different height and width (a crop or edge-padded copy, and its mirror), and a crop of the
    first at the smallest size the graph records (``min_input_hw``, 1x1 px for these nets).

    Args:
        model: the net, typically ``reparameterize(build_model(genotype))`` with trained weights.
        path: the ``.onnx`` file to write (parent folders are created).
        opset: ONNX opset, >= 17 (18, the default, is the lowest torch 2.13 exports natively;
            17 goes through the ONNX version converter).
        check_image: a real image to check on, of any size the graph accepts (every size from
            1x1 px for the nets of this repository, ESA included).
        atol: allowed max abs difference, relative to the data range (the bound applied is
            ``atol * data_range``).
        channels: input channels (3 for a net; the width for one op or cell alone, as the
            ONNX Runtime measurement backend exports a lookup-table candidate, see
            :mod:`proxies.measure.runtime`); ``check_image`` needs 3.

    Returns:
        ``path``, ``format``, ``exporter``, ``opset``, ``file_bytes``, ``input_name``,
        ``output_name``, ``min_input_hw`` (the smallest height and width the graph is valid
        for), ``data_range``, ``scale``, ``tolerance``, ``checks`` (input and output shape and
        max abs difference of each check) and ``max_abs_diff`` (the largest of them).

    Raises:
        ExportCheckError: ONNX Runtime's output differs from PyTorch's by more than the bound.
        ValueError: a bad argument, a graph that accepts only a bounded size range, or a
            ``check_image`` outside the sizes the graph accepts.
    """
    fn = "export_onnx"
    onnx, ort = _onnx_modules()
    model = _check_module(fn, model)
    max_opset = int(onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, int) or not (
        MIN_OPSET <= opset <= max_opset
    ):
        raise ValueError(
            f"{fn}: opset: got {opset!r}; allowed: an integer in [{MIN_OPSET}, {max_opset}] "
            f"(default {DEFAULT_OPSET})"
        )
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1 or (
        check_image is not None and channels != 3
    ):
        raise ValueError(
            f"{fn}: channels: got {channels!r}; allowed: an integer >= 1 (3 with check_image)"
        )
    data_range = _data_range(model)
    tol = _check_atol(fn, atol) * data_range
    first = None if check_image is None else _image_tensor(fn, check_image, data_range)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    example = _synthetic((2, channels, *_EXPORT_HW), data_range, seed=0)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"),
            3: torch.export.Dim("width")}
    with _inference(model), _quiet_onnx_registry():
        program = torch.onnx.export(
            model, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=opset, dynamic_shapes=(dims,), dynamo=True, verbose=False,
        )
    if program is None or program.exported_program is None:
        raise RuntimeError(f"{fn}: torch.onnx.export returned no program for {path}")
    hw = _hw_range(program.exported_program)
    _check_dynamic(fn, hw, list(example.shape))
    min_hw = [int(lo or 1) for lo, _ in hw]
    meta = {
        "srnas.input": f"{INPUT_NAME}: float32 (N, 3, H, W) in [0, {data_range:g}]",
        "srnas.data_range": f"{data_range:g}",
        "srnas.min_input_height": str(min_hw[0]),
        "srnas.min_input_width": str(min_hw[1]),
    }
    genotype = _genotype_json(model)
    if genotype is not None:
        meta["srnas.genotype"] = genotype
    for key, value in meta.items():
        program.model.metadata_props[key] = value
    program.save(path, external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    _check_onnx_io(fn, onnx.load(str(path)), path)
    logger.info("wrote %s (opset %d, inputs >= %dx%d px)", path, opset, *min_hw)

    if first is None:
        first = _synthetic((1, channels, max(20, min_hw[0]), max(24, min_hw[1])), data_range,
                           seed=1)
    if not _in_range(hw, *first.shape[-2:]):
        raise ValueError(
            f"{fn}: check_image: got {first.shape[-2]}x{first.shape[-1]} px; allowed: at least "
            f"{min_hw[0]}x{min_hw[1]} px, the smallest input the exported graph of this net "
            "accepts. Pass a larger image."
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _checked_result(
        fn, "ONNX Runtime", model, lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0],
        first, hw, min_hw, tol, path, format="onnx",
        exporter="torch.onnx.export(dynamo=True)", opset=opset, input_name=INPUT_NAME,
        output_name=OUTPUT_NAME, onnxruntime=ort.__version__)


def _check_onnx_io(fn: str, proto: Any, path: Path) -> None:
    """The file has one input ``lr`` and one output ``sr``, batch/height/width symbolic."""
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportCheckError(
            f"{fn}: {path} has inputs {inputs} and outputs {outputs}; expected "
            f"[{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]"
        )
    for value in (proto.graph.input[0], proto.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        static = [i for i in (0, 2, 3) if not dims[i].dim_param]
        if len(dims) != 4 or static:
            raise ExportCheckError(
                f"{fn}: {path}: {value.name} has static dimensions {static} "
                f"({[d.dim_value or d.dim_param for d in dims]}); batch, height and width must "
                "be dynamic"
            )
