"""The NTIRE protocol beside ours: every net measured both ways, and why the figures differ.

:func:`compare` measures every net with the challenge protocol first
(:func:`proxies.protocol.ntire.measure_ntire`), then our steady-state figures (:func:`steady_rows`:
warm-up, median, ratio to a reference timed interleaved) at the images' most common LR size;
:func:`explain` writes down, with the run's numbers, what makes the two differ.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from proxies.measure.latency import measure_latency, measure_latency_ratio
from proxies.measure.memory import measure_peak_memory
from proxies.measure.profile_rows import (
    ProfileRow,
    machine_info,
    profile_genotypes,
    profile_model,
    with_aim_ratio,
)
from proxies.measure.settings import MeasureSettings, resolve_device
from proxies.protocol.images import ImageSource
from proxies.protocol.ntire import (
    FLOPS_NOTE,
    PROTOCOLS,
    NtireResult,
    ProtocolError,
    check_dtype_supported,
    check_protocol,
    measure_ntire,
    prepare,
)

if TYPE_CHECKING:
    from search_space.genotype import Genotype

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ steady state


def steady_rows(nets: Sequence[tuple[str, Genotype]], settings: MeasureSettings,
                reference: Genotype | None, aim: Genotype | None, *,
                channels_last: bool = False) -> list[ProfileRow]:
    """Our steady-state figures (warm-up, median, ratio to the reference timed interleaved),
    measured as ``settings`` say (``settings.dtype`` included).

    FP32 in the default layout is exactly :func:`proxies.measure.profile_rows.profile_genotypes`.
    With ``channels_last`` the nets (and the reference) are timed in the channels-last format
    (the random input is NCHW; the first conv emits channels-last, so the input conversion
    happens in the net); in another dtype the complexity columns come from the FP32 build.
    """
    from search_space import build_model

    if settings.dtype == "float32" and not channels_last:
        return profile_genotypes(nets, settings, reference, aim)
    dev = resolve_device(settings.device)

    def ready(g: Genotype) -> nn.Module:
        return prepare(build_model(g).eval(), dev, settings.torch_dtype, channels_last)

    ref = None if reference is None or not settings.latency else ready(reference)
    rows = [_row(name, g, ready(g), settings, ref) for name, g in nets]
    if aim is None or ref is None or reference is None:
        return rows
    target = aim.deployed()
    same = [r for r, (_, g) in zip(rows, nets, strict=True) if g.deployed() == target]
    if target == reference.deployed():
        aim_ratio: float | None = 1.0
    elif same:
        aim_ratio = same[0].latency_ratio
    else:
        aim_ratio = _row("aim", aim, ready(aim), settings, ref).latency_ratio
    return with_aim_ratio(rows, aim_ratio)


def _row(name: str, genotype: Genotype, model: nn.Module, settings: MeasureSettings,
         ref: nn.Module | None) -> ProfileRow:
    from search_space import build_model

    if settings.dtype == "float32":
        return profile_model(name, model, settings, ref)
    # complexity columns from the FP32 build (the counters run on a float32 meta copy)
    row = profile_model(name, build_model(genotype).eval(), replace_settings(settings), None)
    values: dict[str, Any] = {}
    if settings.latency and ref is None:
        lat = measure_latency(model, settings)
        values.update(latency_ms=lat.median_ms, latency_p10_ms=lat.p10_ms,
                      latency_p90_ms=lat.p90_ms)
    elif settings.latency and ref is not None:
        r = measure_latency_ratio(model, ref, settings)
        values.update(latency_ms=r.model.median_ms, latency_p10_ms=r.model.p10_ms,
                      latency_p90_ms=r.model.p90_ms, latency_ratio=r.ratio_median,
                      latency_ratio_p10=r.ratio_p10, latency_ratio_p90=r.ratio_p90)
    if settings.memory:
        mem = measure_peak_memory(model, settings)
        values.update(peak_memory_mib=mem.peak_memory_mib, weights_mib=mem.weights_mib)
    return ProfileRow(**{**row.to_dict(), **values})


def replace_settings(settings: MeasureSettings) -> MeasureSettings:
    """``settings`` without any measurement (complexity columns only)."""
    from dataclasses import replace

    return replace(settings, latency=False, memory=False, thop=False)


# ------------------------------------------------------------------------------ comparison


@dataclass
class Comparison:
    """The challenge's figures and ours for the same nets, with what explains the gap."""

    protocol: str
    images: str
    steady_size: tuple[int, int]
    ntire: list[NtireResult]
    steady: list[ProfileRow]
    machine: dict[str, Any]
    settings: dict[str, Any]
    reference: str | None
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "protocol_description": PROTOCOLS[self.protocol],
                "images": self.images, "steady_lr_size": list(self.steady_size),
                "machine": self.machine, "settings": self.settings,
                "reference": self.reference, "flops": FLOPS_NOTE,
                "ntire": [r.to_dict() for r in self.ntire],
                "steady": [r.to_dict() for r in self.steady], "notes": self.notes}


def steady_size(images: Sequence[tuple[str, np.ndarray]]) -> tuple[int, int]:
    """The most common LR size of ``images`` (the first in name order on a tie)."""
    counts = collections.Counter((int(a.shape[0]), int(a.shape[1])) for _, a in images)
    best = max(counts.values())
    return next(s for s in ((int(a.shape[0]), int(a.shape[1])) for _, a in images)
                if counts[s] == best)


def compare(nets: Sequence[tuple[str, Genotype]], source: ImageSource, *,
            protocol: str = "ntire2024", device: str = "auto",
            dtype: torch.dtype = torch.float32, channels_last: bool = False,
            reference: tuple[str, Genotype] | None = None, aim: Genotype | None = None,
            rounds: int = 5, runs_per_round: int = 2, warmup: int = 2,
            threads: int | None = None, memory: bool = True, steady: bool = True
            ) -> Comparison:
    """Every net measured with ``protocol`` over ``source``'s images (all nets first, before
    any warm-up of ours), then our steady-state figures at the images' most common LR size
    (one :class:`proxies.measure.settings.MeasureSettings`, built here from the arguments).

    Raises:
        ProtocolError: unknown protocol, a dtype the device cannot run, an image too small.
        ValueError: a measurement setting out of range (rounds, runs_per_round, ...).
    """
    from search_space import build_model

    check_protocol(protocol)
    dev = resolve_device(device)
    if not nets:
        raise ProtocolError("no nets to measure; name zoo nets or genotype JSON files")
    first_scale = nets[0][1].scale
    settings = MeasureSettings(device=str(dev), lr_size=steady_size(source.lr_images(first_scale)),
                               rounds=rounds, runs_per_round=runs_per_round, warmup=warmup,
                               threads=threads, dtype=str(dtype).removeprefix("torch."),
                               latency=True, memory=memory)
    check_dtype_supported(build_model(nets[0][1]).eval(), dev, dtype, channels_last, nets[0][0])
    ntire = []
    for name, g in nets:
        logger.info("%s protocol: %s", protocol, name)
        ntire.append(measure_ntire(name, build_model(g).eval(), source.lr_images(g.scale),
                                   device=dev, dtype=dtype, channels_last=channels_last,
                                   threads=threads))
    rows: list[ProfileRow] = []
    if steady:
        rows = steady_rows(nets, settings, None if reference is None else reference[1], aim,
                           channels_last=channels_last)
    info = machine_info(dev)
    if threads:
        info["threads"] = threads
    setting_dict = asdict(settings) | {"channels_last": channels_last}
    cmp = Comparison(protocol, source.describe(first_scale), settings.lr_size, ntire, rows,
                     info, setting_dict, None if reference is None else reference[0], [])
    cmp.notes = explain(cmp, dev)
    return cmp


def explain(cmp: Comparison, device: torch.device) -> list[str]:
    """Why the challenge's figures and ours differ, with this run's numbers."""
    notes = []
    cold = max(cmp.ntire, key=lambda r: r.first_ms - (r.rest_mean_ms or r.first_ms))
    if cold.rest_mean_ms is not None:
        share = (cold.first_ms - cold.rest_mean_ms) / cold.images
        notes.append(
            f"No warm-up: the first image is timed cold. {cold.name}'s first image took "
            f"{cold.first_ms:.1f} ms against {cold.rest_mean_ms:.1f} ms for the others, adding "
            f"{share:.1f} ms ({share / cold.mean_ms:.0%}) to its mean over {cold.images} "
            "images. The first forward pays "
            + ("the CUDA context, cuDNN/cuBLAS handles and kernel loading (on a fresh GPU "
               "process this alone can take over 100 ms)" if device.type == "cuda" else
               "oneDNN primitive creation and first-touch allocation")
            + "; the fewer the images, the more of the mean it is. Ours drops warm-up runs "
            "and takes the median.")
    else:
        notes.append("One image only: the protocol's mean is one cold forward, ours the median "
                     "of warm ones.")
    notes.append(
        f"Sizes: the protocol averages over every image's own size; ours times one size, "
        f"{cmp.steady_size[0]}x{cmp.steady_size[1]} (the images' most common LR size), "
        "interleaved with the reference so that machine drift cancels in the ratio.")
    if device.type == "cuda":
        notes.append(
            "Memory: the protocol's max_memory_allocated is never reset during the folder, so "
            "it holds the weights, the inputs and outputs and the largest image's forward; "
            "ours is one forward's activations above the weights and the input, after a "
            "warm-up, at the steady size.")
    else:
        notes.append("Memory: the protocol reads torch.cuda.max_memory_allocated, which exists "
                     "on CUDA only, so its column is empty here; ours is the CPU profiler's "
                     "peak of one forward.")
    notes.append("test_demo.py runs one net per process; here only the first net measured "
                 "met a cold process, later nets' first images are warmer than the "
                 "challenge's.")
    return notes
