"""Export a trained, re-parameterised SR net for deployment: ONNX and a ``torch.export`` program.

``python -m results.export GENOTYPE_OR_ZOO --weights CKPT.pt --out DIR [--image PATH]``
loads the weights, re-parameterises the net (:func:`search_space.reparameterize`), and writes

* ``DIR/model.onnx``: :func:`export_onnx`, input ``lr`` (N, 3, H, W) and output ``sr``
  (N, 3, scale*H, scale*W), batch, height and width dynamic, float32 in
  ``[0, genotype.data_range]``; checked with ``onnx.checker`` and against PyTorch with ONNX
  Runtime (CPU) at two input sizes and at the smallest one the graph records (1x1 px);
* ``DIR/model.pt2``: :func:`export_pt2`, a ``torch.export`` program with the same dynamic
  dimensions, loadable with ``torch.export.load(path).module()`` in a process that has only
  torch (no code of this repository);
* ``DIR/export.json``: the checks (max abs differences, input sizes, file sizes).

Exporters. ONNX uses the default exporter of torch 2.13 (``torch.onnx.export(dynamo=True)``,
which needs ``onnxscript``): it exports these nets with dynamic height and width, including
ESA's pooling, and reports the sizes the graph is valid for. The second file
is a ``torch.export`` program rather than TorchScript because ``torch.jit.trace`` /
``torch.jit.load`` are deprecated in torch 2.13 (they warn at every call); ``torch.export``
is their successor and keeps the input size symbolic instead of baking the trace example in.

Input size. Every net, ESA and ESA-lite included, is exported valid for any input from 1x1 px
(``min_input_hw`` in the results, also written into the ONNX metadata as
``srnas.min_input_height`` / ``srnas.min_input_width`` and into the ``.pt2`` archive). ESA
pools with a fixed 7x7 window, stride 3, after a stride-2 3x3 conv; a dimension of the conv's
output under 7 px is padded with the dtype's lowest value up to 7 (the window takes the
global max over it), and the conv's input is edge-padded up to 3 px (see ``_pool`` and
``_reduce`` in ``search_space.attention``). The pad amounts are symbolic (``torch.sym_max``),
so both exporters keep height and width dynamic and ONNX's fixed-window MaxPool computes what
PyTorch does at every size; from 15 px on each side nothing is padded (the official RFDN/RLFN
computation). The minimum is read from the exported program's range constraints (1x1 for
every net here), and both export functions check their file at exactly that size too. Were a
net's graph bounded below, the ``.pt2`` program would refuse smaller inputs with its own size
check; ONNX Runtime reads no metadata, so a caller of the ``.onnx`` file would have to check
``srnas.min_input_height`` / ``_width`` itself.

In-place ops. Exports run under ``torch.no_grad()``, so ``add_residual`` / ``sigmoid_gate``
take their in-place inference path (as deployed PyTorch inference does); ``torch.export``
functionalises them, and the checks compare against the same eager net.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from search_space import Genotype, SRNet

logger = logging.getLogger("results.export")

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_OPSET",
    "ExportCheckError",
    "build_from_checkpoint",
    "default_check_image",
    "export_onnx",
    "export_pt2",
    "load_state_dict",
    "main",
]

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
ONNX_FILE = "model.onnx"
PROGRAM_FILE = "model.pt2"
REPORT_FILE = "export.json"
PROGRAM_META = "srnas_meta.json"
"""Name of the JSON metadata stored inside the ``.pt2`` archive (``extra_files``)."""

DEFAULT_OPSET = 18
"""The lowest opset torch 2.13's ONNX exporter implements natively (17 needs a conversion)."""
MIN_OPSET = 17
DEFAULT_ATOL = 1e-4
"""Allowed max abs difference from PyTorch, relative to the net's data range."""
DEFAULT_CROP = 128

_EXPORT_HW = (32, 40)
"""Height and width of the tracing input of :func:`export_onnx` (any size works, 1x1 too: the
graph keeps both symbolic, see :func:`_size_oblivious`)."""
_REPO_PACKAGES = ("search_space", "proxies", "results", "searchers")


class ExportCheckError(RuntimeError):
    """An exported file does not reproduce the PyTorch net within the tolerance."""


# --------------------------------------------------------------------------------------------
# Validation and small helpers
# --------------------------------------------------------------------------------------------


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


def _in_range(hw: list[list[int | None]], h: int, w: int) -> bool:
    return all(lo is not None and lo <= s and (hi is None or s <= hi)
               for (lo, hi), s in zip(hw, (h, w), strict=True))


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


def _synthetic(shape: Sequence[int], data_range: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=gen) * data_range


def _image_tensor(fn: str, image: object, data_range: float) -> torch.Tensor:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        got = image.shape if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(
            f"{fn}: check_image: got {got}; allowed: a numpy array HxWx3 in [0, 1] "
            "(read one with proxies.data.load_image(path))"
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


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


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
            :mod:`proxies.runtime`); ``check_image`` needs 3.

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
    checks = []
    for x in (first, _second_input(first, hw), _smallest_input(first, min_hw)):
        if x is None:
            continue
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        checks.append(_compare(fn, "ONNX Runtime", x, _eager(model, x), got, tol))
    result = {
        "path": str(path),
        "format": "onnx",
        "exporter": "torch.onnx.export(dynamo=True)",
        "opset": opset,
        "file_bytes": path.stat().st_size,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "min_input_hw": min_hw,
        "data_range": data_range,
        "scale": _scale(model, checks[0]),
        "tolerance": tol,
        "checks": checks,
        "max_abs_diff": max(c["max_abs_diff"] for c in checks),
        "onnxruntime": ort.__version__,
    }
    logger.info("ONNX Runtime matches PyTorch: max abs diff %.3g", result["max_abs_diff"])
    return result


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


# --------------------------------------------------------------------------------------------
# torch.export program
# --------------------------------------------------------------------------------------------


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
        ``scale``, ``tolerance``, ``checks`` and ``max_abs_diff``, as :func:`export_onnx`.

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
    checks = []
    for x in (example, _second_input(example, hw), _smallest_input(example, min_hw)):
        if x is None:
            continue
        with torch.no_grad():
            got = loaded(x.clone()).numpy()
        checks.append(_compare(fn, "the loaded program's", x, _eager(model, x), got, tol))
    result = {
        "path": str(path),
        "format": "torch.export",
        "exporter": "torch.export.export(strict=False) + torch.export.save",
        "file_bytes": path.stat().st_size,
        "min_input_hw": min_hw,
        "data_range": data_range,
        "scale": _scale(model, checks[0]),
        "tolerance": tol,
        "checks": checks,
        "max_abs_diff": max(c["max_abs_diff"] for c in checks),
        "torch": torch.__version__,
    }
    logger.info("the loaded program matches PyTorch: max abs diff %.3g", result["max_abs_diff"])
    return result


# --------------------------------------------------------------------------------------------
# Weights and check image
# --------------------------------------------------------------------------------------------


def load_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str, str | None]:
    """The weights in a checkpoint: ``(state_dict, where, genotype_json)``.

    Read with :func:`results.evaluate.read_state_dict` (a plain state_dict, or a training
    checkpoint's ``"ema"``, else ``"model"``); ``genotype_json`` is the checkpoint's
    ``"genotype"`` when it records one. A ``module.`` prefix
    (``torch.optim.swa_utils.AveragedModel``) is stripped.
    """
    from results.evaluate import read_state_dict

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
    from proxies.data import bicubic_downsample, default_images

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
    from proxies.data import load_image

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


if __name__ == "__main__":
    sys.exit(main())
