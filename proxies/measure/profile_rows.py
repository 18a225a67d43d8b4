"""Measure NTIRE-style profile rows: params, FLOPs, activations, #conv, latency and peak memory.

:func:`profile_model` measures the deployed form of one net into a :class:`ProfileRow`;
:func:`profile_genotypes` does so for several genotypes. Latency is reported as measured
milliseconds *and* as the ratio to a reference net timed interleaved with each net in the same
process, because ratios are what compare on a noisy machine. :func:`with_aim_ratio` adds the
ratio to the aim's net (:data:`search_space.zoo.AIM_NET`): not timed against each net a second
time but derived from two ratios measured in the same process, the net's ratio divided by the
aim net's. :func:`machine_info` records where the figures were measured. Tables of the rows:
:mod:`proxies.profile.table`; the command: :mod:`proxies.profile.command`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from proxies.measure.complexity import count_thop_macs, measure_complexity
from proxies.measure.latency import measure_latency, measure_latency_ratio
from proxies.measure.memory import measure_peak_memory
from proxies.measure.settings import MeasureSettings

if TYPE_CHECKING:
    from search_space.genotype import Genotype

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileRow:
    """One net's NTIRE-style row. Units are in the names. ``latency_ratio*`` are to the
    reference net (timed interleaved); ``latency_ratio_aim`` is to the aim's net, derived
    (:func:`with_aim_ratio`)."""

    name: str
    scale: int
    params_m: float
    ntire_flops_g: float
    macs_g: float
    ntire_activations_m: float
    ntire_num_conv: int
    latency_ms: float | None = None
    latency_p10_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_ratio: float | None = None
    latency_ratio_p10: float | None = None
    latency_ratio_p90: float | None = None
    latency_ratio_aim: float | None = None
    peak_memory_mib: float | None = None
    weights_mib: float | None = None
    thop_macs_g: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where the figures were measured."""
    info: dict[str, Any] = {
        "date": _dt.date.today().isoformat(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_name() -> str:
    """The CPU model name (Linux /proc/cpuinfo, else platform)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def profile_model(
    name: str,
    model: nn.Module,
    settings: MeasureSettings,
    reference: nn.Module | None = None,
) -> ProfileRow:
    """Measure the deployed form of one model as ``settings`` say (passed whole to the latency
    and memory proxies). ``reference`` (timed interleaved) gives the latency ratio."""
    from search_space.network import deployed_form

    model, reference = deployed_form(model), None if reference is None else deployed_form(
        reference)
    scale = int(getattr(model, "scale", 0))
    cplx = measure_complexity(model, (1, 3, *settings.complexity_size))
    row: dict[str, Any] = dict(
        name=name,
        scale=scale,
        params_m=cplx.params_m,
        ntire_flops_g=cplx.ntire_flops_g,
        macs_g=cplx.macs_g,
        ntire_activations_m=cplx.ntire_activations_m,
        ntire_num_conv=cplx.ntire_num_conv,
    )
    if settings.thop:
        row["thop_macs_g"] = count_thop_macs(model, (1, 3, *settings.complexity_size)) / 1e9
    if settings.latency:
        if reference is not None:
            ratio = measure_latency_ratio(model, reference, settings)
            lat = ratio.model
            row.update(latency_ratio=ratio.ratio_median, latency_ratio_p10=ratio.ratio_p10,
                       latency_ratio_p90=ratio.ratio_p90)
        else:
            lat = measure_latency(model, settings)
        row.update(latency_ms=lat.median_ms, latency_p10_ms=lat.p10_ms,
                   latency_p90_ms=lat.p90_ms)
    if settings.memory:
        mem = measure_peak_memory(model, settings)
        row.update(peak_memory_mib=mem.peak_memory_mib, weights_mib=mem.weights_mib)
    return ProfileRow(**row)


def with_aim_ratio(rows: Sequence[ProfileRow], aim_ratio: float | None) -> list[ProfileRow]:
    """``rows`` with ``latency_ratio_aim = latency_ratio / aim_ratio``, where ``aim_ratio`` is
    the aim net's ``latency_ratio`` to the same reference, measured in the same process: the
    latency ratio to the aim net, derived from two interleaved ratios. ``None`` leaves the
    column empty, as does a row without ``latency_ratio``.

    Raises:
        ValueError: ``aim_ratio`` is not a finite number > 0.
    """
    if aim_ratio is None:
        return [replace(r, latency_ratio_aim=None) for r in rows]
    if not (isinstance(aim_ratio, (int, float)) and math.isfinite(aim_ratio) and aim_ratio > 0):
        raise ValueError(f"aim_ratio: got {aim_ratio!r}; expected the aim net's latency ratio "
                         "to the reference, a finite number > 0 (measure it with the reference "
                         "in the same process)")
    return [replace(r, latency_ratio_aim=None if r.latency_ratio is None
                    else r.latency_ratio / aim_ratio) for r in rows]


def profile_genotypes(
    nets: Sequence[tuple[str, Genotype]],
    settings: MeasureSettings,
    reference: Genotype | None = None,
    aim: Genotype | None = None,
) -> list[ProfileRow]:
    """Profile each ``(name, genotype)`` (:func:`profile_model`, latency ratios to
    ``reference`` timed interleaved), then, given ``aim``, add the ratio to it
    (:func:`with_aim_ratio`). The aim net's ratio to the reference is that of the first net
    whose deployed genotype equals ``aim``'s, else measured once here against the same
    reference with the same settings (no row); 1 when ``aim`` is ``reference``. Give
    ``reference`` and ``aim`` at the nets' scale."""
    from search_space import build_model

    ref = None if reference is None else build_model(reference).eval()
    rows = []
    for name, g in nets:
        logger.info("profiling %s", name)
        rows.append(profile_model(name, build_model(g).eval(), settings, ref))
    if aim is None or reference is None or ref is None or not settings.latency:
        return rows
    aim_ratio: float | None
    target = aim.deployed()
    if target == reference.deployed():
        aim_ratio = 1.0
    else:
        same = [r for r, (_, g) in zip(rows, nets, strict=True) if g.deployed() == target]
        if same:
            aim_ratio = same[0].latency_ratio
        else:
            from search_space.network import deployed_form

            aim_model = deployed_form(build_model(aim).eval())
            aim_ratio = measure_latency_ratio(aim_model, deployed_form(ref),
                                              settings).ratio_median
    return with_aim_ratio(rows, aim_ratio)
