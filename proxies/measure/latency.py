"""Measured forward latency of a model at a given low-resolution input size on a device.

Two entry points, each taking one :class:`proxies.measure.settings.MeasureSettings` passed
whole (validated when it was built; nothing here checks its fields again):

* :func:`measure_latency` times one model and returns a :class:`LatencyResult`.
* :func:`measure_latency_ratio` times a model interleaved with a fixed reference net in the
  same process and reports the latency *ratio*, which is far more stable than absolute
  milliseconds on a noisy or shared machine.

Timing protocol (both entry points share one timing helper, :func:`_time_runs`):

* The model runs in eval mode under :func:`torch.inference_mode`; the caller's train/eval flags
  (of every submodule) are restored afterwards.
* The caller's model is never moved or cast: if all its parameters and buffers already live on
  the target device (floating-point ones in the requested ``dtype``) it is timed as given,
  otherwise a deep copy is moved/cast and timed
  (:func:`proxies.measure.settings.model_for_measurement`, shared with the other proxies).
* The input is created and copied to the device before timing starts.
* CPU: the intra-op thread count is fixed (``settings.threads``, default the current
  :func:`torch.get_num_threads`) with :func:`torch.set_num_threads` and restored afterwards;
  each run is timed with :func:`time.perf_counter_ns`.
* CUDA: each run is timed with CUDA events (record start, forward, record end,
  :func:`torch.cuda.synchronize`), which also captures kernel-launch overhead.
  ``torch.backends.cudnn.benchmark`` is left as the caller set it: with ``True`` cuDNN picks
  its algorithms during the warm-up runs (give enough ``settings.warmup``); with ``False`` it
  uses its
  heuristics. Either way the setting applies to every model timed in the process.
* Host-wide: the measured work holds :func:`proxies.measure.isolation.measuring`, so no other srnas
  process on the host measures or runs a training section meanwhile (``SRNAS_ISOLATION=off``
  switches this off).
* Backend (``settings.backend``, :mod:`proxies.measure.runtime`): ``"torch"`` (eager, the
  default); ``"onnxruntime"``, the deployed net's checked ONNX export run by an ONNX Runtime
  session (CUDA execution provider on CUDA, CPU on the CPU, intra-op threads fixed); or
  ``"openvino"``, the same export compiled by OpenVINO for the CPU (inference threads fixed,
  one stream, latency hint, float32; its output checked against PyTorch's on the timed input
  first). Both are timed with the host clock (``run``/``infer`` return when the outputs are
  ready). Warm-up, the statistics and the interleaving are the same for every backend; the
  export is done before the host-wide lock is taken.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from proxies.measure.isolation import measuring
from proxies.measure.settings import (
    MeasureSettings,
    make_input,
    model_for_measurement,
    resolve_device,
)

__all__ = [
    "LatencyRatioResult",
    "LatencyResult",
    "measure_latency",
    "measure_latency_ratio",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyResult:
    """Statistics of the timed forward passes (warm-up runs excluded), all in milliseconds.

    ``std_ms`` is the population standard deviation (0.0 for a single run). ``runs`` is the
    number of timed runs actually done (``max_seconds`` may stop early). ``threads`` is the CPU
    intra-op thread count used, or ``None`` on CUDA. ``backend``: what ran the net
    (:data:`proxies.measure.backends.BACKENDS`).
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    runs: int
    warmup: int
    device: str
    threads: int | None
    input_shape: tuple[int, ...]
    backend: str = "torch"

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-serialisable)."""
        return asdict(self)


@dataclass(frozen=True)
class LatencyRatioResult:
    """Latency of a model relative to a reference timed interleaved in the same process.

    ``round_ratios`` holds, per round, median(model) / median(reference) over that round's
    runs; ``ratio_median``, ``ratio_p10`` and ``ratio_p90`` summarise them. ``model`` and
    ``reference`` are each one's own statistics over all their timed runs.
    """

    ratio_median: float
    ratio_p10: float
    ratio_p90: float
    rounds: int
    runs_per_round: int
    round_ratios: tuple[float, ...]
    model: LatencyResult
    reference: LatencyResult

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-serialisable); ``model``/``reference`` become nested dicts."""
        return asdict(self)



@contextlib.contextmanager
def _runtime(device: torch.device, threads: int | None) -> Iterator[int | None]:
    """Inference mode plus CPU thread count or current CUDA device; yields the threads used."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        if device.type == "cuda":
            stack.enter_context(torch.cuda.device(device))
            if threads is not None:
                logger.warning("threads=%d is ignored on %s (CPU timing only)", threads, device)
            yield None
            return
        previous = torch.get_num_threads()
        used = previous if threads is None else threads
        torch.set_num_threads(used)
        stack.callback(torch.set_num_threads, previous)
        yield used


@contextlib.contextmanager
def _runner(
    model: nn.Module, settings: MeasureSettings, device: torch.device, channels: int
) -> Iterator[tuple[Callable[[], object], torch.device, int | None]]:
    """Yield ``(run, clock_device, threads_used)`` for one net on ``settings.backend``:
    ``run()`` is one inference on a seeded random input; ``clock_device`` tells
    :func:`_time_runs` how to time it (CUDA events for torch on CUDA, else the host clock)."""
    if settings.backend == "torch":
        dtype = settings.torch_dtype
        with model_for_measurement(model, device, dtype) as net, \
                _runtime(device, settings.threads) as used:
            x = make_input(settings.input_shape(channels), device, dtype)
            yield (lambda: net(x)), device, used
        return
    from proxies.measure.runtime import runner

    with runner(model, settings, device, channels) as (run, used):
        yield run, torch.device("cpu"), used


def _export_first(settings: MeasureSettings, models: Sequence[nn.Module], channels: int) -> None:
    """For onnxruntime and openvino, export every model now (outside the host-wide lock)."""
    if settings.backend != "torch":
        from proxies.measure.runtime import exported_onnx

        for m in models:
            exported_onnx(m, channels)


def _time_runs(
    fn: Callable[[], object], device: torch.device, runs: int, max_seconds: float | None = None
) -> list[float]:
    """Run ``fn`` up to ``runs`` times and return each run's time in ms.

    Stops early once ``max_seconds`` of wall time have passed (after at least one run).
    """
    times_ms: list[float] = []
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
    for _ in range(runs):
        if device.type == "cuda":
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize(device)
            times_ms.append(start.elapsed_time(end))
        else:
            t0_ns = time.perf_counter_ns()
            out = fn()
            times_ms.append((time.perf_counter_ns() - t0_ns) / 1e6)
        del out
        if deadline is not None and time.perf_counter() >= deadline:
            break
    return times_ms


def _summarise(
    times_ms: Sequence[float],
    *,
    warmup: int,
    device: torch.device,
    threads: int | None,
    input_shape: tuple[int, ...],
    backend: str = "torch",
) -> LatencyResult:
    t = np.asarray(times_ms, dtype=np.float64)
    p10, median, p90 = np.percentile(t, [10, 50, 90])
    return LatencyResult(
        median_ms=float(median),
        p10_ms=float(p10),
        p90_ms=float(p90),
        mean_ms=float(t.mean()),
        std_ms=float(t.std()),
        min_ms=float(t.min()),
        runs=int(t.size),
        warmup=warmup,
        device=str(device),
        threads=threads,
        input_shape=input_shape,
        backend=backend,
    )


def measure_latency(
    model: nn.Module,
    settings: MeasureSettings,
    *,
    channels: int = 3,
    max_seconds: float | None = None,
) -> LatencyResult:
    """Time ``model`` as ``settings`` say: ``settings.warmup`` untimed runs, then
    ``settings.runs`` timed ones on a random ``settings.input_shape(channels)`` input on
    ``settings.device``, with ``settings.threads``, in ``settings.dtype``, on
    ``settings.backend`` (see :mod:`proxies.measure.runtime`).

    Args:
        model: the network; never moved or cast (a deep copy is timed if needed).
        settings: how to measure (validated when built).
        channels: the net's input channels (3 for a whole net; an op's width for one op).
        max_seconds: cap on the wall time of the timed loop; at least one run is always done
            and ``LatencyResult.runs`` records how many were.

    Raises:
        ValueError: ``channels`` or ``max_seconds`` out of range (the message names it).
        RuntimeError: CUDA requested but not available (or, for onnxruntime, without its
            CUDA execution provider; for openvino, CUDA at all: ``DeviceUnavailable``), or
            openvino's output differs from PyTorch's (``ExportCheckError``).
    """
    dev = resolve_device(settings.device)
    shape = settings.input_shape(channels)
    if max_seconds is not None and (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float))
        or not (0 < max_seconds < float("inf"))
    ):
        raise ValueError(
            f"max_seconds must be a finite number > 0 or None, got {max_seconds!r}; "
            "pass e.g. max_seconds=10.0, or None for no cap."
        )
    _export_first(settings, [model], channels)
    with (
        measuring(),  # no other srnas process on the host trains or measures meanwhile
        _runner(model, settings, dev, channels) as (run, clock, used),
    ):
        _time_runs(run, clock, settings.warmup)
        times_ms = _time_runs(run, clock, settings.runs, max_seconds)
    result = _summarise(times_ms, warmup=settings.warmup, device=dev, threads=used,
                        input_shape=shape, backend=settings.backend)
    logger.debug("latency %s: %s", type(model).__name__, result)
    return result


def measure_latency_ratio(
    model: nn.Module,
    reference: nn.Module,
    settings: MeasureSettings,
    *,
    channels: int = 3,
) -> LatencyRatioResult:
    """Latency of ``model`` relative to ``reference``, timed interleaved on the same input.

    After ``settings.warmup`` untimed runs of each, round ``r`` of ``settings.rounds`` times
    the reference ``settings.runs_per_round`` times then the model as often (the model first
    on odd rounds), so slow drifts of the machine affect both alike. The ratio of each round's
    medians is reported. ``settings.backend`` runs both nets.

    Args: as :func:`measure_latency`, plus ``reference`` (the fixed yardstick net).

    Raises:
        ValueError: ``channels`` out of range.
        RuntimeError: CUDA requested but not available, or the reference is too fast to time.
    """
    dev = resolve_device(settings.device)
    shape = settings.input_shape(channels)
    rounds, runs_per_round, warmup = settings.rounds, settings.runs_per_round, settings.warmup
    _export_first(settings, [model, reference], channels)
    times_ms: dict[str, list[float]] = {"model": [], "reference": []}
    round_ratios: list[float] = []
    with (
        measuring(),  # no other srnas process on the host trains or measures meanwhile
        _runner(model, settings, dev, channels) as (run_model, clock, used),
        _runner(reference, settings, dev, channels) as (run_ref, _, _),
    ):
        fns = {"model": run_model, "reference": run_ref}
        for fn in fns.values():
            _time_runs(fn, clock, warmup)
        for r in range(rounds):
            medians: dict[str, float] = {}
            for name in ("reference", "model") if r % 2 == 0 else ("model", "reference"):
                t = _time_runs(fns[name], clock, runs_per_round)
                times_ms[name].extend(t)
                medians[name] = float(np.median(t))
            if medians["reference"] <= 0.0:
                raise RuntimeError(
                    f"reference median time is {medians['reference']} ms in round {r}: too fast "
                    "to time on this device; use a larger reference net or lr_size."
                )
            round_ratios.append(medians["model"] / medians["reference"])
    p10, median, p90 = np.percentile(np.asarray(round_ratios), [10, 50, 90])
    summary: dict[str, Any] = {
        "warmup": warmup,
        "device": dev,
        "threads": used,
        "input_shape": shape,
        "backend": settings.backend,
    }
    result = LatencyRatioResult(
        ratio_median=float(median),
        ratio_p10=float(p10),
        ratio_p90=float(p90),
        rounds=rounds,
        runs_per_round=runs_per_round,
        round_ratios=tuple(round_ratios),
        model=_summarise(times_ms["model"], **summary),
        reference=_summarise(times_ms["reference"], **summary),
    )
    logger.debug("latency ratio %s: %.4f", type(model).__name__, result.ratio_median)
    return result

