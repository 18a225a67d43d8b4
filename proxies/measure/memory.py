"""Measured peak memory of one forward pass (eval mode, :func:`torch.inference_mode`).

``peak_memory_mib`` is the peak of memory allocated *during* one forward pass above what was
allocated just before it: activations, the output and any workspace, but not the weights or the
input (reported separately as ``weights_mib`` and ``input_mib``).

* CUDA (``method="cuda_max_allocated"``): one untimed warm-up forward first, so that one-time
  allocations (cuDNN/cuBLAS handles and the persistent cuBLAS workspace, and the algorithm search
  if ``torch.backends.cudnn.benchmark`` is on) are not counted; then synchronize,
  :func:`torch.cuda.empty_cache`, :func:`torch.cuda.reset_peak_memory_stats`,
  ``baseline = memory_allocated()``, forward, synchronize,
  ``peak = max_memory_allocated() - baseline``. Per-call cuDNN workspace is counted. Sizes are
  as the caching allocator sees them (rounded up to 512-byte blocks).
* CPU (``method="cpu_profiler"``): one warm-up forward, then one forward under
  :class:`torch.profiler.profile` with ``profile_memory=True``; the CPU ``[memory]`` events
  (+bytes on allocation, -bytes on free) are sorted by time and the peak of their running sum is
  taken. This is deterministic, but sees only allocations made through PyTorch's allocator
  (scratch memory that oneDNN or OpenMP allocate themselves is invisible to it).
* CPU cross-check (``rss_check=True``, Linux only): the process resident-set high-water mark.
  Freed heap memory is returned to the OS (``malloc_trim``), the peak RSS is reset by writing
  ``5`` to ``/proc/self/clear_refs``, and ``VmHWM`` from ``/proc/self/status`` is read before and
  after one forward. This is coarse: allocator caching, page granularity, thread stacks and
  anything else the process does at the same time all show up in it.

The caller's model is never moved or cast (a deep copy is measured if needed; see
:func:`proxies.measure.settings.model_for_measurement`). The measured work holds the host-wide
:func:`proxies.measure.isolation.measuring` lock, like the latency proxy.

Every entry point takes one :class:`proxies.measure.settings.MeasureSettings` passed whole
(device, LR size, dtype, backend, threads; validated when it was built).

Backend ``onnxruntime`` (``settings.backend``, :mod:`proxies.measure.runtime`): ONNX Runtime
reports no peak.
On the CPU (Linux) the peak is the resident-set high-water-mark rise over one run of a session
with its memory arena and memory pattern off (``method="onnxruntime_rss_hwm"``, page
granular). On CUDA there is no figure: ``peak_memory_mib`` is NaN and ``method`` starts with
``unavailable:`` and gives the reason. :func:`measure_peak_memory_or_torch` is for callers that
need a number (a lookup table, a trial's objective): it falls back to torch eager there and
says so in ``backend``.

Backend ``openvino``: no figure on any device (``method`` starts with ``unavailable:``; the
resident-set rise is not the net's peak under OpenVINO, :mod:`proxies.measure.runtime` says
why); :func:`measure_peak_memory_or_torch` falls back to torch eager as above.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from proxies.measure.isolation import measuring
from proxies.measure.rss import rss_peak_delta_mib
from proxies.measure.settings import (
    MeasureSettings,
    make_input,
    model_for_measurement,
    resolve_device,
)

__all__ = [
    "MemoryResult",
    "measure_callable_peak_mib",
    "measure_peak_memory",
    "measure_peak_memory_or_torch",
]

logger = logging.getLogger(__name__)

MIB = float(2**20)
# Kineto's own lines: session start/stop, and its complaint when a session starts in another
# thread than the first one (harmless: the memory events are recorded all the same)
_KINETO_NOISE = ("USDT:", "STAGE:", "INFO:",
                 "ERROR: External init callback must run in same thread as registerClient")


@dataclass(frozen=True)
class MemoryResult:
    """Memory figures of one forward pass, in MiB (2**20 bytes).

    ``peak_memory_mib``: peak allocated during the pass above the level before it (activations,
    output, workspace; excludes weights and input). ``weights_mib``: parameters + buffers.
    ``rss_peak_delta_mib``: CPU resident-set cross-check, ``None`` unless requested and possible.
    ``backend``: what ran the net; a backend that cannot report its peak gives NaN with
    ``method`` ``"unavailable: <reason>"``.
    """

    peak_memory_mib: float
    weights_mib: float
    input_mib: float
    output_mib: float
    method: str
    device: str
    input_shape: tuple[int, ...]
    rss_peak_delta_mib: float | None = None
    backend: str = "torch"

    @property
    def available(self) -> bool:
        """False when the backend could not report a peak (``peak_memory_mib`` is NaN)."""
        return math.isfinite(self.peak_memory_mib)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-serialisable)."""
        return asdict(self)


def measure_peak_memory(
    model: nn.Module,
    settings: MeasureSettings,
    *,
    channels: int = 3,
    rss_check: bool = False,
) -> MemoryResult:
    """Peak memory of one forward pass of ``model`` on a random ``settings.input_shape(channels)``
    input on ``settings.device`` in ``settings.dtype``, on ``settings.backend`` (the
    onnxruntime session gets ``settings.threads`` intra-op threads, default 1; torch ignores
    them).

    Args:
        model: the network; never moved or cast (a deep copy is measured if needed).
        settings: how to measure (validated when built).
        channels: the net's input channels (3 for a whole net; an op's width for one op).
        rss_check: on CPU, also report the resident-set high-water-mark delta of one forward.

    Raises:
        ValueError: ``channels`` out of range.
        RuntimeError: CUDA requested but not available, or the profiler gave no results.
    """
    dev = resolve_device(settings.device)
    shape = settings.input_shape(channels)
    if settings.backend != "torch":
        return _runtime_memory(model, settings, dev, channels)
    dtype = settings.torch_dtype
    rss_delta_mib: float | None = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(measuring())  # no other srnas process trains or measures meanwhile
        net = stack.enter_context(model_for_measurement(model, dev, dtype))
        stack.enter_context(torch.inference_mode())
        if dev.type == "cuda":
            stack.enter_context(torch.cuda.device(dev))
        x = make_input(shape, dev, dtype)
        if dev.type == "cuda":
            method, (peak_bytes, output_bytes) = "cuda_max_allocated", _cuda_peak(net, x, dev)
        else:
            method, (peak_bytes, output_bytes) = "cpu_profiler", _cpu_profiler_peak(net, x)
        if rss_check and dev.type == "cuda":
            logger.info("rss_check measures host memory only; rss_peak_delta_mib=None on %s", dev)
        elif rss_check:
            rss_delta_mib = rss_peak_delta_mib(lambda: net(x))
        weights_bytes = sum(
            t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers())
        )
        input_bytes = x.numel() * x.element_size()
    result = MemoryResult(
        peak_memory_mib=peak_bytes / MIB,
        weights_mib=weights_bytes / MIB,
        input_mib=input_bytes / MIB,
        output_mib=output_bytes / MIB,
        method=method,
        device=str(dev),
        input_shape=shape,
        rss_peak_delta_mib=rss_delta_mib,
    )
    logger.debug("peak memory %s: %s", type(model).__name__, result)
    return result


def _runtime_memory(model: nn.Module, settings: MeasureSettings, dev: torch.device,
                    channels: int) -> MemoryResult:
    """The memory figure of ``settings.backend`` (onnxruntime or openvino)."""
    from proxies.measure.runtime import exported_onnx, peak_memory

    shape = settings.input_shape(channels)
    if settings.backend == "onnxruntime":
        exported_onnx(model, channels)  # outside the lock
    with measuring(), model_for_measurement(model, torch.device("cpu"), torch.float32) as net:
        weights_bytes = sum(
            t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))
        peak, output_mib, method = peak_memory(model, settings, dev, channels)
    if peak is None:
        logger.info("%s peak memory on %s: %s", settings.backend, dev, method)
    return MemoryResult(
        peak_memory_mib=math.nan if peak is None else peak,
        weights_mib=weights_bytes / MIB,
        input_mib=math.prod(shape) * 4 / MIB,
        output_mib=output_mib,
        method=method,
        device=str(dev),
        input_shape=shape,
        backend=settings.backend,
    )


_FALLBACK_WARNED: set[tuple[str, str]] = set()  # (backend, device) warned of in this process


def measure_peak_memory_or_torch(
    model: nn.Module, settings: MeasureSettings, *, channels: int = 3
) -> MemoryResult:
    """:func:`measure_peak_memory` on ``settings.backend``; where that backend cannot report a
    peak (onnxruntime on CUDA, openvino), the torch-eager figure, with ``backend="torch"`` and
    ``method`` naming the fallback. For callers that need a number. The fallback is logged as a
    warning once per backend and device in a process (a lookup table measures many ops), then
    at DEBUG."""
    mem = measure_peak_memory(model, settings, channels=channels)
    if mem.available:
        return mem
    once = (settings.backend, mem.device)
    level = logging.DEBUG if once in _FALLBACK_WARNED else logging.WARNING
    _FALLBACK_WARNED.add(once)
    logger.log(level, "%s cannot report peak memory (%s); using torch eager's figure",
               settings.backend, mem.method)
    fallback = measure_peak_memory(model, replace(settings, backend="torch"), channels=channels)
    return replace(fallback, method=f"{fallback.method} (fallback: {mem.method})")


def measure_callable_peak_mib(fn: Callable[[], object],
                              device: str | torch.device | None = "cpu") -> float:
    """Peak memory (MiB) allocated while ``fn()`` runs, above what was allocated before.

    For work other than one inference forward, e.g. a training step (forward + backward): the
    same methods as :func:`measure_peak_memory` (CUDA max-allocated over a reset baseline; CPU
    profiler allocation events). ``fn`` runs twice; the first call is an unmeasured warm-up.
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        with torch.cuda.device(dev):
            peak, _ = _cuda_peak_of(fn, dev)
    else:
        peak, _ = _cpu_profiler_peak_of(fn)
    return peak / MIB


def _tensor_bytes(obj: object) -> int:
    """Bytes of the distinct tensors in a (nested tuple/list/dict) model output."""
    sizes: dict[int, int] = {}
    seen: set[int] = set()
    stack = [obj]
    while stack:  # each object is expanded at most once, so cycles terminate
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            sizes[id(item)] = item.numel() * item.element_size()
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return sum(sizes.values())


def _cuda_peak(net: nn.Module, x: torch.Tensor, device: torch.device) -> tuple[int, int]:
    """(peak bytes above baseline, output bytes) of one forward on CUDA, after a warm-up."""
    return _cuda_peak_of(lambda: net(x), device)


def _cuda_peak_of(fn: Callable[[], object], device: torch.device) -> tuple[int, int]:
    out = fn()  # warm-up: handles, persistent workspaces, cudnn.benchmark search
    del out
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - baseline
    return max(peak, 0), _tensor_bytes(out)


def _cpu_profiler_peak(net: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(peak bytes of the running allocation sum, output bytes) of one profiled CPU forward."""
    return _cpu_profiler_peak_of(lambda: net(x))


_PROFILER_LOCK = threading.RLock()


def _new_profiler_lock() -> None:  # a child forked while another thread profiled
    global _PROFILER_LOCK
    _PROFILER_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_profiler_lock)


def _cpu_profiler_peak_of(fn: Callable[[], object]) -> tuple[int, int]:
    """:func:`_profile_cpu_peak` in the calling thread, one session at a time per process.

    Each Ray Tune trial runs in a thread of its own. Running every session in one profiler
    thread instead (as from ``10b76c1`` to ``2a1591a``) made the training that follows slower,
    in any thread: an idle thread that has run torch ops keeps its OpenMP team (the quick
    start's DARTS steps 2.3x slower; a Ray-like trial in a thread 1.35x; BENCHMARKS.md).
    Kineto prints "External init callback must run in same thread as registerClient" when a
    session starts outside the thread that first profiled; it is logged at DEBUG. The lock
    keeps sessions of one process from overlapping: two at once in two threads crash the
    process (a segmentation fault, tests/test_memory.py without the lock), and once in about
    ten runs of tests/test_ray_cluster.py, before sessions were serialised, a trial failed
    inside one with torch's ``INTERNAL ASSERT FAILED ... schema_.has_value()``."""
    with _PROFILER_LOCK:
        return _profile_cpu_peak(fn)


def _profile_cpu_peak(fn: Callable[[], object]) -> tuple[int, int]:
    out = fn()  # warm-up outside the profiler: lazy init, oneDNN primitive cache
    del out
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no collection may free pre-existing tensors inside the window
    try:
        with _stderr_to_log(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
            out = fn()
    finally:
        if gc_was_enabled:
            gc.enable()
    output_bytes = _tensor_bytes(out)
    del out
    results = getattr(p.profiler, "kineto_results", None)
    if results is None:
        raise RuntimeError(
            "torch.profiler returned no kineto results, so the CPU peak cannot be computed "
            f"(torch {torch.__version__}); use a torch build with kineto or measure on CUDA."
        )
    events = [
        e for e in results.events() if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
    ]
    events.sort(key=lambda e: e.start_ns())  # stable: ties keep the recorded order
    running = peak = 0
    for event in events:
        running += event.nbytes()
        peak = max(peak, running)
    return peak, output_bytes


@contextlib.contextmanager
def _stderr_to_log() -> Iterator[None]:
    """Route file descriptor 2 to this module's logger while the block runs.

    Kineto writes ``profiler_start``/``profiler_stop`` lines straight to fd 2 on every profiling
    session; they are logged at DEBUG, any other line at WARNING, so nothing is lost. The
    redirection is process-wide while the block (one profiled forward) runs. Runs the block
    unchanged if fd 2 cannot be duplicated.
    """
    try:
        sys.stderr.flush()
        saved_fd = os.dup(2)
    except (OSError, ValueError, AttributeError):
        saved_fd = None
    if saved_fd is None:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                level = logging.DEBUG if line.startswith(_KINETO_NOISE) else logging.WARNING
                logger.log(level, "profiler stderr: %s", line)
