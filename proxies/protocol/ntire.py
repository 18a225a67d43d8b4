"""The NTIRE 2024-2026 efficient-SR challenges' measurement protocol (:func:`measure_ntire`).

``python -m proxies.profile --protocol ntire2024 --images DIR [NAME_OR_JSON ...]`` measures
each net the way the challenges' ``test_demo.py`` does (NTIRE2024_ESR, NTIRE2025_ESR and
NTIRE2026_ESR share it), so our nets can be put next to the challenge table, and prints our
steady-state figures (the :mod:`proxies.profile.command` path) beside it. This module measures one
net;
the images come from :mod:`proxies.protocol.images`, the run beside our figures from
:mod:`proxies.protocol.compare`, the command line and its table from
:mod:`proxies.protocol.command`.

The challenge protocol (:func:`measure_ntire`), as ``test_demo.py`` runs it:

* FP32 (``--fp16``: half precision; ``--channels-last``: weights and inputs channels-last),
  batch 1, eval mode, parameters with ``requires_grad=False`` and no ``no_grad`` or
  ``inference_mode`` around the forward (nothing requires a gradient, so no graph is built).
* ``torch.backends.cudnn.benchmark = False``, ``torch.cuda.empty_cache()`` before the net is
  moved to the device.
* Every image of the folder, sorted by name, is read on the host, scaled to the net's value
  range (``data_range``), copied to the device and forwarded *whole* (no tiles); no warm-up.
  On CUDA each forward is timed with CUDA events (record, forward, record, synchronize); on
  the CPU with :func:`time.perf_counter_ns`. The output is copied back to the host.
* The runtime is the **mean over the images**; the first image is kept in it, cold.
* Memory: ``torch.cuda.max_memory_allocated()`` read once after the whole folder and never
  reset during it, so it holds the weights, every input and output and the largest forward's
  activations. ``test_demo.py`` runs one net per process; here the peak counter is reset once
  before each net is moved to the GPU (what a fresh process would start from) and never again,
  and everything allocated before that is subtracted. CUDA only (``-`` on the CPU).
* FLOPs at 1x3x256x256: the challenges use fvcore's ``FlopCountAnalysis``, which is not
  installed here; this column is :func:`proxies.measure.complexity.count_macs` (torch's
  ``FlopCounterMode``: conv and matmul multiply-accumulates). fvcore counts the same convs (one
  "flop" per MAC) and also interpolations, so the two agree for plain conv nets and fvcore is
  slightly higher for nets that upsample inside (DIPNet 14.8864 vs 14.8696 G).
  Activations and #conv are the NTIRE counter's
  (:func:`proxies.measure.complexity.count_ntire2022`).

What the protocol does not reproduce: ``test_demo.py`` runs each net in a fresh process, so its
first image also pays the CUDA context, cuDNN/cuBLAS handles and kernel loading; here only the
first net of the process meets that cold start, later nets' first images are warmer. PSNR is not
computed (the zoo nets carry no trained weights here; use ``python -m results.evaluate``).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from proxies.measure.complexity import measure_complexity
from proxies.measure.isolation import measuring
from proxies.measure.settings import resolve_device

PROTOCOLS: dict[str, str] = {
    "ntire2024": "NTIRE 2024-2026 efficient SR, test_demo.py (batch 1, whole images, no "
                 "warm-up, mean over the images, cudnn.benchmark=False, max_memory_allocated "
                 "over the folder; the challenge runs FP32)",
}
"""Known ``--protocol`` values and what each reproduces."""

FLOPS_NOTE = ("FLOPs [G] at 1x3x256x256 = proxies.measure.complexity.count_macs "
              "(torch FlopCounterMode, conv+matmul MACs), standing in for fvcore's "
              "FlopCountAnalysis (not installed): "
              "fvcore counts the same convs and also interpolations (DIPNet 14.8864 vs 14.8696 G)")


class ProtocolError(ValueError):
    """Bad protocol input: the message names the option, the value and the fix."""


def check_protocol(protocol: object) -> str:
    """``protocol`` as a str; a :class:`ProtocolError` unless it is one of :data:`PROTOCOLS`."""
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"--protocol: got {protocol!r}; known: "
                            + "; ".join(f"{k} ({v})" for k, v in PROTOCOLS.items())
                            + ". Pass --protocol ntire2024 --images DIR")
    return str(protocol)


# ------------------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class NtireResult:
    """One net measured as ``test_demo.py`` measures it. Times in ms, memory in MiB."""

    name: str
    scale: int
    images: int
    mean_ms: float
    first_ms: float
    rest_mean_ms: float | None
    median_ms: float
    times_ms: tuple[float, ...]
    memory_mib: float | None
    params_m: float
    flops_g: float
    activations_m: float
    num_conv: int
    device: str
    dtype: str
    channels_last: bool
    threads: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _protocol_runtime(device: torch.device, threads: int | None) -> Iterator[int | None]:
    """cudnn.benchmark=False on CUDA (restored after); the CPU thread count (restored)."""
    if device.type == "cuda":
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False
        try:
            with torch.cuda.device(device):
                yield None
        finally:
            torch.backends.cudnn.benchmark = previous
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def prepare(model: nn.Module, device: torch.device, dtype: torch.dtype,
            channels_last: bool) -> nn.Module:
    """A deployed, frozen, eval-mode copy of ``model`` on ``device`` in ``dtype`` (and in the
    channels-last memory format)."""
    from search_space.network import deployed_form

    net = copy.deepcopy(deployed_form(model)).eval().requires_grad_(False)
    net = net.to(device=device, dtype=dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return net


def measure_ntire(name: str, model: nn.Module, images: Sequence[tuple[str, np.ndarray]], *,
                  device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                  channels_last: bool = False, threads: int | None = None) -> NtireResult:
    """``model`` measured over ``images`` (LR, ``HxWx3`` in [0, 1]) as ``test_demo.py`` does
    (see the module docstring). Holds :func:`proxies.measure.isolation.measuring`.

    Raises:
        ProtocolError: an image is too small for the net (the forward fails on it).
    """
    from search_space.network import deployed_form

    dev = resolve_device(device)
    if not images:
        raise ProtocolError("measure_ntire: images is empty; pass at least one LR image")
    deployed = deployed_form(model)
    cplx = measure_complexity(deployed)
    value_range = float(getattr(deployed, "data_range", 1.0))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    times: list[float] = []
    memory: float | None = None
    with measuring(), _protocol_runtime(dev, threads) as used:
        base = 0
        if dev.type == "cuda":
            gc.collect()
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)  # a fresh process's counter, once per net
            base = torch.cuda.memory_allocated(dev)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
        net = prepare(deployed, dev, dtype, channels_last)
        for img_name, lr in images:
            x = torch.from_numpy(np.array(lr.transpose(2, 0, 1), dtype=np.float32))[None]
            x = (x * value_range).to(dev, dtype).contiguous(memory_format=fmt)
            try:
                if dev.type == "cuda":
                    start.record()
                    out = net(x)
                    end.record()
                    torch.cuda.synchronize(dev)
                    times.append(start.elapsed_time(end))
                else:
                    t0 = time.perf_counter_ns()
                    out = net(x)
                    times.append((time.perf_counter_ns() - t0) / 1e6)
            except RuntimeError as exc:
                raise ProtocolError(
                    f"--images: {name} cannot upscale image {img_name!r} (LR {lr.shape[0]}x"
                    f"{lr.shape[1]}): {str(exc).splitlines()[0]}; use larger images, or leave "
                    "this net out") from exc
            out.float().clamp_(0, value_range).cpu()  # the host copy test_demo.py makes
            del out, x
        if dev.type == "cuda":
            memory = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
        del net
    rest = times[1:]
    return NtireResult(
        name=name, scale=int(getattr(deployed, "scale", 0)), images=len(times),
        mean_ms=statistics.fmean(times), first_ms=times[0],
        rest_mean_ms=statistics.fmean(rest) if rest else None,
        median_ms=statistics.median(times), times_ms=tuple(times), memory_mib=memory,
        params_m=cplx.params_m, flops_g=cplx.macs_g, activations_m=cplx.ntire_activations_m,
        num_conv=cplx.ntire_num_conv, device=str(dev), dtype=str(dtype).removeprefix("torch."),
        channels_last=channels_last, threads=used)


def check_dtype_supported(model: nn.Module, device: torch.device, dtype: torch.dtype,
                          channels_last: bool, label: str) -> None:
    """Run ``model`` once on a small input in ``dtype``; a failure (e.g. float16 kernels
    missing on this CPU) becomes a :class:`ProtocolError` that says what to do instead."""
    if dtype == torch.float32 and not channels_last:
        return
    net = prepare(model, device, dtype, channels_last)
    x = torch.rand(1, 3, 32, 32).to(device, dtype)
    try:
        with torch.inference_mode():
            net(x)
    except (RuntimeError, NotImplementedError) as exc:
        flag = "--fp16" if dtype == torch.float16 else "--channels-last"
        raise ProtocolError(
            f"{flag}: {label} does not run in {str(dtype).removeprefix('torch.')}"
            f"{' channels-last' if channels_last else ''} on {device} "
            f"({str(exc).splitlines()[0]}); drop {flag}, or run on a CUDA GPU with "
            "--device cuda") from exc

