"""Measurement backends: run the deployed net on the runtime it is deployed with.

The latency and memory proxies (:mod:`proxies.measure.latency`, :mod:`proxies.measure.memory`)
measure on ``MeasureSettings.backend``; this module holds what differs between backends, not a
second measurement stack (timing, interleaving, statistics and the host-wide lock stay in
:mod:`proxies.measure.latency`). Its runners take the
:class:`proxies.measure.settings.MeasureSettings` whole; the backend's name, and that
onnxruntime measures float32 only, were checked when the settings were built
(:mod:`proxies.measure.backends`).

=============== ============================================================================
``torch``       PyTorch eager (the default): the deployed module is called directly.
``onnxruntime`` the deployed net's ONNX export (:func:`proxies.export.onnx_file.export_onnx`,
                checked against PyTorch with ONNX Runtime) run by an ONNX Runtime session with
                ``CUDAExecutionProvider`` on a CUDA device (CPU fallback for unsupported
                nodes, as deployed) and ``CPUExecutionProvider`` on the CPU; all graph
                optimisations on (conv + activation fusion), sequential execution,
                ``intra_op_num_threads`` fixed to ``settings.threads`` (default
                :func:`torch.get_num_threads`), one inter-op thread.
=============== ============================================================================

``tensorrt`` and ``openvino`` are named but not implemented
(:data:`proxies.measure.backends.NOT_IMPLEMENTED`): settings asking for them are refused with a
:class:`ValueError` that says whether the package is installed.

Clock. ONNX Runtime's ``run`` returns once the outputs are ready, so ORT runs are timed with
the host clock (:func:`time.perf_counter_ns`) on both devices; on CUDA the input and output
stay on the GPU (I/O binding), as in the torch path, so no host-device copy is timed.

Memory. ONNX Runtime reports no peak-memory figure. On the CPU (Linux) the peak is measured
as the rise of the process's resident-set high-water mark over one run of a session with the
CPU memory arena and the memory pattern off (so every tensor of the run is allocated afresh
and freed after its last use), after ``malloc_trim``; method ``onnxruntime_rss_hwm``, page
granular. On CUDA no figure is taken: :func:`ort_peak_memory` returns ``None`` with the reason
(say so in a table instead of guessing).

The export of a module is cached while the module lives and its weights are unchanged (one
export serves the latency, the interleaved ratio and the memory of a trial).
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

from proxies.export.onnx_file import INPUT_NAME, OUTPUT_NAME, export_onnx
from proxies.measure.rss import rss_peak_delta_mib
from proxies.measure.settings import MeasureSettings, make_input, model_for_measurement

__all__ = [
    "exported_onnx",
    "ort_peak_memory",
    "ort_providers",
    "ort_runner",
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
        with tempfile.TemporaryDirectory(prefix="srnas_ort_") as tmp:
            path = Path(tmp) / "model.onnx"
            info = export_onnx(net, path, channels=channels)
            data = path.read_bytes()
    logger.debug("exported %s for onnxruntime (%d bytes, max abs diff %.3g)",
                 type(model).__name__, len(data), info["max_abs_diff"])
    _EXPORTS[key] = data
    while len(_EXPORTS) > _EXPORTS_KEPT:
        _EXPORTS.popitem(last=False)
    return data


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ValueError(f"backend: got 'onnxruntime'; the onnxruntime package is not "
                         f"installed ({exc}); pip install onnxruntime (onnxruntime-gpu for "
                         "CUDA), or use backend='torch'") from exc
    return onnxruntime


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
