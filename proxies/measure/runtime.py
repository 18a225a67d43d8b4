"""Measurement backends: run the deployed net on the runtime it is deployed with.

The latency and memory proxies (:mod:`proxies.measure.latency`, :mod:`proxies.measure.memory`) take
``backend=``; this module holds what differs between backends, not a second measurement stack
(timing, interleaving, statistics and the host-wide lock stay in :mod:`proxies.measure.latency`).

=============== ============================================================================
``torch``       PyTorch eager (the default): the deployed module is called directly.
``onnxruntime`` the deployed net's ONNX export (:func:`proxies.export.onnx_file.export_onnx`,
checked
                against PyTorch with ONNX Runtime) run by an ONNX Runtime session with
                ``CUDAExecutionProvider`` on a CUDA device (CPU fallback for unsupported
                nodes, as deployed) and ``CPUExecutionProvider`` on the CPU; all graph
                optimisations on (conv + activation fusion), sequential execution,
                ``intra_op_num_threads`` fixed to ``threads`` (default
                :func:`torch.get_num_threads`), one inter-op thread.
=============== ============================================================================

``tensorrt`` and ``openvino`` are named but not implemented: asking for them raises a
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
import importlib.util
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

__all__ = [
    "BACKENDS",
    "backend_reasons",
    "check_backend",
    "check_float32",
    "exported_onnx",
    "ort_peak_memory",
    "ort_providers",
    "ort_runner",
]

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
"""The measurement backends implemented here."""
NOT_IMPLEMENTED: dict[str, str] = {"tensorrt": "tensorrt", "openvino": "openvino"}
"""Backends the issue names that are not implemented: name -> Python package."""


def _package_installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def backend_reasons() -> dict[str, str | None]:
    """Every backend name -> ``None`` if it can measure in this environment, else the reason."""
    out: dict[str, str | None] = {"torch": None}
    out["onnxruntime"] = None if _package_installed("onnxruntime") else (
        "the onnxruntime package is not installed (pip install onnxruntime, or onnxruntime-gpu "
        "for CUDA)")
    for name, package in NOT_IMPLEMENTED.items():
        out[name] = (f"the {name} backend is not implemented in srnas yet (the {package} "
                     "package is installed)" if _package_installed(package) else
                     f"the {package} package is not installed (pip install {package}), and the "
                     f"{name} backend is not implemented in srnas yet")
    return out


def check_backend(backend: object, where: str = "backend") -> str:
    """``backend`` if it names a backend that can measure here; else a ValueError naming
    ``where``, the value, why and what is allowed."""
    allowed = ", ".join(BACKENDS)
    if not isinstance(backend, str) or backend not in (*BACKENDS, *NOT_IMPLEMENTED):
        raise ValueError(f"{where}: got {backend!r}; allowed: {allowed} (torch is PyTorch "
                         "eager, onnxruntime the ONNX export run by ONNX Runtime)")
    reason = backend_reasons()[backend]
    if reason is not None:
        raise ValueError(f"{where}: got {backend!r}; {reason}; allowed: {allowed}")
    return backend


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
    from proxies.measure.settings import model_for_measurement

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


def check_float32(dtype: torch.dtype) -> None:
    """The onnxruntime backend measures the float32 export only."""
    if dtype != torch.float32:
        raise ValueError(f"dtype: got {dtype}; backend onnxruntime runs the float32 ONNX "
                         "export; allowed: torch.float32 (or backend='torch' for other dtypes)")


@contextlib.contextmanager
def ort_runner(
    model: nn.Module,
    shape: tuple[int, int, int, int],
    device: torch.device,
    dtype: torch.dtype,
    threads: int | None,
) -> Iterator[tuple[Callable[[], object], int | None]]:
    """Yield ``(run, threads_used)``: ``run()`` does one ONNX Runtime inference of ``model``'s
    export on a seeded random input of ``shape`` on ``device``. ``threads_used`` is the
    intra-op thread count on the CPU, ``None`` on CUDA (as the torch path reports)."""
    from proxies.measure.settings import make_input

    check_float32(dtype)
    data = exported_onnx(model, shape[1])
    used = threads or torch.get_num_threads()
    session = _session(data, device, used)
    x = make_input(shape, device, torch.float32)
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
    model: nn.Module, shape: tuple[int, int, int, int], device: torch.device, threads: int = 1
) -> tuple[float | None, float, str]:
    """``(peak MiB or None, output MiB, method or the reason there is no figure)`` of one ONNX
    Runtime inference (see the module docstring). ``None``: ONNX Runtime cannot report it on
    ``device``."""
    import sys

    from proxies.measure.settings import make_input

    out_mib = 0.0
    if device.type == "cuda":
        return None, out_mib, ("unavailable: ONNX Runtime's CUDA execution provider reports no "
                               "peak memory (its arena is invisible to torch.cuda)")
    if not sys.platform.startswith("linux"):
        return None, out_mib, (f"unavailable: the ONNX Runtime CPU peak is read from Linux "
                               f"/proc (platform {sys.platform})")
    data = exported_onnx(model, shape[1])
    session = _session(data, device, threads, arena=False)
    feed = {INPUT_NAME: make_input(shape, device, torch.float32).numpy()}
    out = session.run([OUTPUT_NAME], feed)  # warm-up: kernels' one-time buffers
    out_mib = float(out[0].nbytes) / 2**20
    del out
    peak = rss_peak_delta_mib(lambda: session.run([OUTPUT_NAME], feed))
    if peak is None:
        return None, out_mib, "unavailable: the resident-set high-water mark cannot be reset"
    return max(peak, 0.0), out_mib, "onnxruntime_rss_hwm"
