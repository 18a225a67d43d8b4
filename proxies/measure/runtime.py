"""Measurement backends: run the deployed net on the runtime it is deployed with.

The latency and memory proxies (:mod:`proxies.measure.latency`, :mod:`proxies.measure.memory`)
measure on ``MeasureSettings.backend``; this module holds what differs between backends, not a
second measurement stack (timing, interleaving, statistics and the host-wide lock stay in
:mod:`proxies.measure.latency`). Its runners take the
:class:`proxies.measure.settings.MeasureSettings` whole; the backend's name, and that
onnxruntime and openvino measure float32 only (openvino on the CPU only), were checked when the
settings were built (:mod:`proxies.measure.backends`).

=============== ============================================================================
``torch``       PyTorch eager (the default): the deployed module is called directly.
``onnxruntime`` the deployed net's ONNX export (:func:`proxies.export.onnx_file.export_onnx`,
                checked against PyTorch with ONNX Runtime) run by an ONNX Runtime session with
                ``CUDAExecutionProvider`` on a CUDA device (CPU fallback for unsupported
                nodes, as deployed) and ``CPUExecutionProvider`` on the CPU; all graph
                optimisations on (conv + activation fusion), sequential execution,
                ``intra_op_num_threads`` fixed to ``settings.threads`` (default
                :func:`torch.get_num_threads`), one inter-op thread.
``openvino``    the same checked ONNX export (one export, cached, serves both runtimes), its
                input reshaped to the measured input (static, as OpenVINO deploys a fixed
                size) and compiled by OpenVINO for the ``CPU`` device with
                ``INFERENCE_NUM_THREADS`` fixed to ``settings.threads`` (default
                :func:`torch.get_num_threads`), ``NUM_STREAMS=1``,
                ``PERFORMANCE_HINT=LATENCY`` and ``INFERENCE_PRECISION_HINT=f32`` (the plugin
                would pick bf16 on a CPU with AMX or AVX512-BF16); one synchronous
                ``InferRequest``. Before timing, its output on the measured input is compared
                with PyTorch's on the same input: max abs difference at most
                :data:`proxies.export.check.DEFAULT_ATOL` times the net's data range (the ONNX
                export check's bound), else :class:`proxies.export.check.ExportCheckError`.
                CPU only: OpenVINO's GPU plugin is for Intel GPUs, so a CUDA device is
                refused.
=============== ============================================================================

``tensorrt`` is named but not implemented
(:data:`proxies.measure.backends.NOT_IMPLEMENTED`): settings asking for it are refused with a
:class:`ValueError` that says whether the package is installed.

Clock. ONNX Runtime's ``run`` and OpenVINO's synchronous ``infer`` return once the outputs are
ready, so their runs are timed with the host clock (:func:`time.perf_counter_ns`) on both
devices; on CUDA the input and output stay on the GPU (I/O binding), as in the torch path, so
no host-device copy is timed.

Memory. ONNX Runtime reports no peak-memory figure. On the CPU (Linux) the peak is measured
as the rise of the process's resident-set high-water mark over one run of a session with the
CPU memory arena and the memory pattern off (so every tensor of the run is allocated afresh
and freed after its last use), after ``malloc_trim``; method ``onnxruntime_rss_hwm``, page
granular. On CUDA no figure is taken: :func:`ort_peak_memory` returns ``None`` with the reason
(say so in a table instead of guessing).

OpenVINO gives no figure (:func:`ov_peak_memory` returns ``None`` with the reason, ``n/a`` in
the tables): the resident-set method is not honest for it. Its CPU plugin allocates a compiled
model's intermediate buffers on the first inference and keeps them, so one inference after
that raises the high-water mark by the same ~0.2 MiB whatever the net (measured here: a
3-conv net at 128x128 px with 0.25 to 6 MiB per activation); and the rise over a freshly
compiled model's first inference depends on what the process ran before (the plugin reuses
memory across compiled models: 6.0 MiB of activations read 12.2 MiB once and 0.2 MiB when the
same net was compiled again), so it is no figure of the net either. OpenVINO has no
peak-memory counter to read instead.

The export of a module is cached while the module lives and its weights are unchanged (one
export serves the latency, the interleaved ratio and the memory of a trial, on either
runtime).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from proxies.export.check import DEFAULT_ATOL, ExportCheckError, _data_range
from proxies.export.onnx_file import INPUT_NAME, OUTPUT_NAME, export_onnx
from proxies.measure.rss import rss_peak_delta_mib
from proxies.measure.settings import (
    DeviceUnavailable,
    MeasureSettings,
    make_input,
    model_for_measurement,
)

__all__ = [
    "OV_PEAK_MEMORY_REASON",
    "exported_onnx",
    "ort_peak_memory",
    "ort_providers",
    "ort_runner",
    "ov_peak_memory",
    "ov_runner",
    "ov_settings",
    "peak_memory",
    "runner",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Export (proxies.export.onnx_file.export_onnx), cached by content
# --------------------------------------------------------------------------------------------

_EXPORTS: collections.OrderedDict[str, bytes] = collections.OrderedDict()
_EXPORTS_KEPT = 16  # files kept (each a net's ONNX, well under 10 MB for the zoo)


def _fingerprint(model: nn.Module, channels: int) -> str:
    """The net's content: its structure (``repr``, which names every module and its settings)
    and the bytes of every tensor. Two live copies of one net share an export; a tensor
    replaced or modified in place gives a new one."""
    digest = hashlib.sha256(f"{channels}|{model!r}".encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def exported_onnx(model: nn.Module, channels: int = 3) -> bytes:
    """The ONNX file (bytes) of ``model``'s deployed form, on the CPU in float32, exported and
    checked against PyTorch by :func:`proxies.export.onnx_file.export_onnx` (input ``lr`` with
    ``channels`` channels, output ``sr``; batch, height and width dynamic). Cached by content
    (:func:`_fingerprint` of the deployed form, so a net's training and deployed forms share
    one): the last few nets exported in this process are not exported again."""
    with model_for_measurement(model, torch.device("cpu"), torch.float32) as net:
        key = _fingerprint(net, channels)
        cached = _EXPORTS.get(key)
        if cached is not None:
            _EXPORTS.move_to_end(key)
            return cached
        with tempfile.TemporaryDirectory(prefix="srnas_onnx_") as tmp:
            path = Path(tmp) / "model.onnx"
            info = export_onnx(net, path, channels=channels)
            data = path.read_bytes()
    logger.debug("exported %s to ONNX (%d bytes, max abs diff %.3g from PyTorch)",
                 type(model).__name__, len(data), info["max_abs_diff"])
    _EXPORTS[key] = data
    while len(_EXPORTS) > _EXPORTS_KEPT:
        _EXPORTS.popitem(last=False)
    return data


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


def _backend_package(name: str, fix: str) -> Any:
    """The optional package of backend ``name`` (its import name too), or a ValueError that
    says it is not installed and ``fix``."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"backend: got {name!r}; the {name} package is not installed ({exc}); "
                         f"{fix}") from exc


def _ort() -> Any:
    return _backend_package("onnxruntime", "pip install onnxruntime (onnxruntime-gpu for "
                            "CUDA), or use backend='torch'")


def ort_providers(device: torch.device) -> list[Any]:
    """ONNX Runtime execution providers for ``device``: CUDA (with CPU fallback) on a CUDA
    device, CPU on the CPU.

    Raises:
        RuntimeError: a CUDA device, but this onnxruntime has no CUDAExecutionProvider.
    """
    ort = _ort()
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    available = list(ort.get_available_providers())
    if "CUDAExecutionProvider" not in available:
        raise RuntimeError(
            f"device={device}: backend onnxruntime needs CUDAExecutionProvider on a CUDA "
            f"device, but onnxruntime {ort.__version__} has only {', '.join(available)}; "
            "install onnxruntime-gpu matching the CUDA version, or measure with device='cpu'")
    index = 0 if device.index is None else device.index
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def _session(data: bytes, device: torch.device, threads: int, arena: bool = True) -> Any:
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not arena:
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    return ort.InferenceSession(data, sess_options=options, providers=ort_providers(device))


@contextlib.contextmanager
def ort_runner(
    model: nn.Module, settings: MeasureSettings, device: torch.device, channels: int = 3
) -> Iterator[tuple[Callable[[], object], int | None]]:
    """Yield ``(run, threads_used)``: ``run()`` does one ONNX Runtime inference of ``model``'s
    export on a seeded random ``settings.input_shape(channels)`` input on ``device`` (the
    settings' device, resolved by the caller). ``threads_used`` is the intra-op thread count on
    the CPU (``settings.threads``, default :func:`torch.get_num_threads`), ``None`` on CUDA (as
    the torch path reports)."""
    data = exported_onnx(model, channels)
    used = settings.threads or torch.get_num_threads()
    session = _session(data, device, used)
    x = make_input(settings.input_shape(channels), device, torch.float32)
    if device.type == "cuda":
        binding = session.io_binding()
        index = 0 if device.index is None else device.index
        binding.bind_input(name=INPUT_NAME, device_type="cuda", device_id=index,
                           element_type=np.float32, shape=tuple(x.shape),
                           buffer_ptr=x.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", index)

        def run() -> object:
            session.run_with_iobinding(binding)
            return None

        yield run, None
        return
    feed = {INPUT_NAME: x.numpy()}
    yield (lambda: session.run([OUTPUT_NAME], feed)), used


def ort_peak_memory(
    model: nn.Module, settings: MeasureSettings, device: torch.device, channels: int = 3
) -> tuple[float | None, float, str]:
    """``(peak MiB or None, output MiB, method or the reason there is no figure)`` of one ONNX
    Runtime inference of ``model`` on a ``settings.input_shape(channels)`` input, in a session
    with ``settings.threads`` intra-op threads (default 1), on ``device`` (the settings'
    device, resolved by the caller); see the module docstring. ``None``: ONNX Runtime cannot
    report it on ``device``."""
    import sys

    out_mib = 0.0
    if device.type == "cuda":
        return None, out_mib, ("unavailable: ONNX Runtime's CUDA execution provider reports no "
                               "peak memory (its arena is invisible to torch.cuda)")
    if not sys.platform.startswith("linux"):
        return None, out_mib, (f"unavailable: the ONNX Runtime CPU peak is read from Linux "
                               f"/proc (platform {sys.platform})")
    data = exported_onnx(model, channels)
    session = _session(data, device, settings.threads or 1, arena=False)
    feed = {INPUT_NAME: make_input(settings.input_shape(channels), device,
                                   torch.float32).numpy()}
    out = session.run([OUTPUT_NAME], feed)  # warm-up: kernels' one-time buffers
    out_mib = float(out[0].nbytes) / 2**20
    del out
    peak = rss_peak_delta_mib(lambda: session.run([OUTPUT_NAME], feed))
    if peak is None:
        return None, out_mib, "unavailable: the resident-set high-water mark cannot be reset"
    return max(peak, 0.0), out_mib, "onnxruntime_rss_hwm"


# --------------------------------------------------------------------------------------------
# OpenVINO
# --------------------------------------------------------------------------------------------

OV_PEAK_MEMORY_REASON = (
    "unavailable: OpenVINO's CPU plugin allocates a compiled model's buffers on its first "
    "inference, keeps them and reuses memory across compiled models, so no resident-set rise "
    "is the net's peak, and OpenVINO reports none")
"""The ``method`` of an OpenVINO memory figure: why there is none (see the module docstring)."""

_OV_CORE: list[Any] = []  # the one openvino.Core of the process, made on first use


def _openvino() -> Any:
    return _backend_package("openvino", 'pip install -e ".[openvino]", or use '
                            "backend='torch' or 'onnxruntime'")


def _ov_core() -> Any:
    if not _OV_CORE:
        _OV_CORE.append(_openvino().Core())
    return _OV_CORE[0]


def _ov_cpu_only(device: torch.device) -> None:
    if device.type != "cpu":
        raise DeviceUnavailable(
            f"device={device}: backend openvino measures on the CPU only (OpenVINO's GPU plugin "
            "is for Intel GPUs, not CUDA); measure with device='cpu', or with "
            f"backend='onnxruntime' or 'torch' on {device}")


def ov_settings(threads: int) -> dict[str, Any]:
    """The OpenVINO CPU plugin's compile settings: ``threads`` inference threads, one stream,
    the latency hint, float32 inference (the plugin's default is bf16 on CPUs with AMX or
    AVX512-BF16)."""
    return {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def _ov_compiled(data: bytes, shape: tuple[int, ...], threads: int) -> Any:
    """``data`` (an ONNX file) read by OpenVINO, its input reshaped to ``shape`` and compiled
    for the CPU with :func:`ov_settings`."""
    core = _ov_core()
    net = core.read_model(data)
    net.reshape({INPUT_NAME: list(shape)})
    return core.compile_model(net, "CPU", ov_settings(threads))


def _check_ov_output(model: nn.Module, x: torch.Tensor, got: np.ndarray) -> float:
    """Max abs difference of OpenVINO's output ``got`` from PyTorch's on ``x``.

    Raises:
        ExportCheckError: another shape, a value that is not finite, or a difference above
            :data:`proxies.export.check.DEFAULT_ATOL` times the net's data range.
    """
    with model_for_measurement(model, torch.device("cpu"), torch.float32) as net, \
            torch.inference_mode():
        expected = net(x).numpy()
        tol = DEFAULT_ATOL * _data_range(net)
    what = f"backend openvino: {type(model).__name__}'s OpenVINO output for input {list(x.shape)}"
    if got.shape != expected.shape:
        raise ExportCheckError(f"{what} has shape {list(got.shape)}, PyTorch's "
                               f"{list(expected.shape)}; the compiled net is not the net")
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    if not np.isfinite(got).all() or not diff <= tol:
        raise ExportCheckError(
            f"{what} differs from PyTorch's on the same input by max abs {diff:.4g}; allowed: "
            f"<= {tol:.4g} ({DEFAULT_ATOL:g} x data range); its latency would not be the net's. "
            "Measure this net with backend='onnxruntime' or 'torch'")
    return diff


@contextlib.contextmanager
def ov_runner(
    model: nn.Module, settings: MeasureSettings, device: torch.device, channels: int = 3
) -> Iterator[tuple[Callable[[], object], int | None]]:
    """Yield ``(run, threads_used)``: ``run()`` does one synchronous OpenVINO inference of
    ``model``'s export, compiled for a ``settings.input_shape(channels)`` input with
    :func:`ov_settings` (``settings.threads``, default :func:`torch.get_num_threads`), on a
    seeded random input set once; its output on that input is checked against PyTorch's first
    (:func:`_check_ov_output`).

    Raises:
        DeviceUnavailable: ``device`` is not the CPU.
        ExportCheckError: OpenVINO's output differs from PyTorch's.
    """
    _ov_cpu_only(device)
    ov = _openvino()
    used = settings.threads or torch.get_num_threads()
    shape = settings.input_shape(channels)
    compiled = _ov_compiled(exported_onnx(model, channels), shape, used)
    request = compiled.create_infer_request()
    x = make_input(shape, device, torch.float32)
    request.set_tensor(INPUT_NAME, ov.Tensor(x.numpy(), shared_memory=True))
    request.infer()
    diff = _check_ov_output(model, x, np.array(request.get_tensor(OUTPUT_NAME).data))
    logger.debug("OpenVINO output of %s matches PyTorch (max abs diff %.3g)",
                 type(model).__name__, diff)
    yield (lambda: request.infer(share_outputs=True)), used


def ov_peak_memory(
    model: nn.Module, settings: MeasureSettings, device: torch.device, channels: int = 3
) -> tuple[float | None, float, str]:
    """As :func:`ort_peak_memory`, for OpenVINO: always ``(None, 0.0,``
    :data:`OV_PEAK_MEMORY_REASON` ``)``, no figure (the module docstring says why).

    Raises:
        DeviceUnavailable: ``device`` is not the CPU.
    """
    _ov_cpu_only(device)
    return None, 0.0, OV_PEAK_MEMORY_REASON


# --------------------------------------------------------------------------------------------
# The backend of the settings
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def runner(
    model: nn.Module, settings: MeasureSettings, device: torch.device, channels: int = 3
) -> Iterator[tuple[Callable[[], object], int | None]]:
    """:func:`ort_runner` or :func:`ov_runner`, as ``settings.backend`` says."""
    make = ov_runner if settings.backend == "openvino" else ort_runner
    with make(model, settings, device, channels) as run_used:
        yield run_used


def peak_memory(
    model: nn.Module, settings: MeasureSettings, device: torch.device, channels: int = 3
) -> tuple[float | None, float, str]:
    """:func:`ort_peak_memory` or :func:`ov_peak_memory`, as ``settings.backend`` says."""
    measure = ov_peak_memory if settings.backend == "openvino" else ort_peak_memory
    return measure(model, settings, device, channels)
