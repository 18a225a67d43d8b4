"""The NTIRE 2024-2026 efficient-SR challenges' measurement protocol, beside ours.

``python -m proxies.profile --protocol ntire2024 --images DIR [NAME_OR_JSON ...]`` measures
each net the way the challenges' ``test_demo.py`` does (NTIRE2024_ESR, NTIRE2025_ESR and
NTIRE2026_ESR share it), so our nets can be put next to the challenge table, and prints our
steady-state figures (the :mod:`proxies.profile` path) beside it.

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
  installed here; this column is :func:`proxies.complexity.count_macs` (torch's
  ``FlopCounterMode``: conv and matmul multiply-accumulates). fvcore counts the same convs (one
  "flop" per MAC) and also interpolations, so the two agree for plain conv nets and fvcore is
  slightly higher for nets that upsample inside (DIPNet 14.8864 vs 14.8696 G).
  Activations and #conv are the NTIRE counter's (:func:`proxies.complexity.count_ntire2022`).

What the protocol does not reproduce: ``test_demo.py`` runs each net in a fresh process, so its
first image also pays the CUDA context, cuDNN/cuBLAS handles and kernel loading; here only the
first net of the process meets that cold start, later nets' first images are warmer. PSNR is not
computed (the zoo nets carry no trained weights here; use ``python -m results.evaluate``).

Images: ``--images DIR`` is a folder of **LR** images, forwarded as they are. A folder of
**HR** images is downscaled first with the project's degradation (:mod:`proxies.data`:
mod-crop to the scale, antialiased bicubic ``torch`` interpolation, 8-bit quantisation): a
folder named ``HR`` or ``*_HR`` (e.g. ``../shared/datasets/Set5/HR``) or any folder given as
``hr:DIR``; ``lr:DIR`` forces LR; ``default:val`` / ``default:train`` are the embedded HR sets.
The output says which.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import gc
import json
import logging
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from proxies.complexity import measure_complexity
from proxies.data import IMAGE_EXTENSIONS, ImageReadError, dataset_from_spec, load_image
from proxies.isolation import measuring
from proxies.latency import measure_latency, measure_latency_ratio, resolve_device
from proxies.memory import measure_peak_memory
from proxies.profile import (
    ProfileRow,
    ProfileSettings,
    machine_info,
    profile_genotypes,
    profile_model,
    with_aim_ratio,
)

if TYPE_CHECKING:
    from search_space.genotype import Genotype

logger = logging.getLogger(__name__)

PROTOCOLS: dict[str, str] = {
    "ntire2024": "NTIRE 2024-2026 efficient SR, test_demo.py (batch 1, whole images, no "
                 "warm-up, mean over the images, cudnn.benchmark=False, max_memory_allocated "
                 "over the folder; the challenge runs FP32)",
}
"""Known ``--protocol`` values and what each reproduces."""

DEGRADATION = ("proxies.data: mod-crop to the scale, antialiased bicubic (torch "
               "F.interpolate), 8-bit quantisation")
FLOPS_NOTE = ("FLOPs [G] at 1x3x256x256 = proxies.complexity.count_macs (torch FlopCounterMode, "
              "conv+matmul MACs), standing in for fvcore's FlopCountAnalysis (not installed): "
              "fvcore counts the same convs and also interpolations (DIPNet 14.8864 vs 14.8696 G)")
HINT = "e.g. --images ../shared/datasets/Set5/HR (HR, downscaled) or --images lr:DIR (LR as is)"


class ProtocolError(ValueError):
    """Bad protocol input: the message names the option, the value and the fix."""


# ------------------------------------------------------------------------------ images


@dataclass(frozen=True)
class ImageSource:
    """Where the protocol's images come from. ``kind`` is ``"lr"`` (forwarded as they are)
    or ``"hr"`` (downscaled per net scale with the project's degradation)."""

    spec: str
    kind: str
    path: str
    names: tuple[str, ...]
    lr_cache: dict[int, tuple[tuple[str, np.ndarray], ...]] = field(
        default_factory=dict, compare=False, repr=False)

    def describe(self, scale: int) -> str:
        images = self.lr_images(scale)
        sizes = collections.Counter(f"{a.shape[0]}x{a.shape[1]}" for _, a in images)
        shown = ", ".join(f"{s} ({n})" if n > 1 else s for s, n in sizes.most_common(4))
        extra = len(sizes) - 4
        more = f", +{extra} other size{'s' if extra > 1 else ''}" if extra > 0 else ""
        if self.kind == "lr":
            what = f"{len(images)} LR images from {self.path}, forwarded as given"
        else:
            what = (f"{len(images)} HR images from {self.path}, downscaled x{scale} with "
                    f"{DEGRADATION}")
        return f"{what}; LR sizes HxW: {shown}{more}"

    def lr_images(self, scale: int) -> tuple[tuple[str, np.ndarray], ...]:
        """``(name, HxWx3 float32 in [0, 1])`` LR images for a net of ``scale``."""
        if self.kind == "lr":
            if 0 not in self.lr_cache:
                folder = Path(self.path)
                self.lr_cache[0] = tuple((Path(n).stem, _read(folder / n)) for n in self.names)
            return self.lr_cache[0]
        if scale not in self.lr_cache:
            data = dataset_from_spec(self.path, scale)
            self.lr_cache[scale] = tuple((im.name, im.lr) for im in data.images)
        return self.lr_cache[scale]


def _read(path: Path) -> np.ndarray:
    try:
        return load_image(path)
    except ImageReadError as exc:
        raise ProtocolError(f"--images: {exc}") from exc


def open_images(spec: str) -> ImageSource:
    """Resolve ``--images``: ``lr:DIR``, ``hr:DIR``, ``default:val|train`` (embedded HR), or a
    folder (HR when named ``HR`` or ``*_HR``, else LR). Every non-hidden file in the folder
    must be an image; each image is decoded once here, so a broken one is named up front.

    Raises:
        ProtocolError: missing, empty or not a folder; a non-image or undecodable file.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ProtocolError(f"--images: got {spec!r}; pass a folder of LR images, {HINT}")
    if spec.startswith("default:"):
        if spec not in ("default:val", "default:train"):
            raise ProtocolError(f"--images: got {spec!r}; the embedded HR sets are "
                                "default:val and default:train")
        names = tuple(im.name for im in dataset_from_spec(spec, 1).images)
        return ImageSource(spec, "hr", spec, names)
    kind = None
    path_text = spec
    for prefix in ("lr:", "hr:"):
        if spec.lower().startswith(prefix):
            kind, path_text = prefix[:2], spec[3:]
    folder = Path(path_text).expanduser()
    if kind is None:
        name = folder.resolve().name if folder.exists() else folder.name
        kind = "hr" if name.upper() == "HR" or name.upper().endswith("_HR") else "lr"
    if not folder.exists():
        raise ProtocolError(f"--images: folder {str(folder)!r} does not exist; pass an "
                            f"existing folder of images, {HINT}")
    if not folder.is_dir():
        raise ProtocolError(f"--images: {str(folder)!r} is a file, not a folder; pass the "
                            f"folder that holds the images, {HINT}")
    files = sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                   key=lambda p: p.name)
    others = [p.name for p in files if not p.is_file()
              or p.suffix.lower() not in IMAGE_EXTENSIONS]
    if others:
        one = len(others) == 1
        raise ProtocolError(
            f"--images: folder {str(folder)!r} holds {'an entry' if one else 'entries'} that "
            f"{'is' if one else 'are'} not an image file: {', '.join(others[:5])}"
            f"{' ...' if len(others) > 5 else ''} (images end in "
            f"{', '.join(IMAGE_EXTENSIONS)}); move {'it' if one else 'them'} out, or point "
            "--images at a folder of images only")
    if not files:
        raise ProtocolError(f"--images: folder {str(folder)!r} is empty; put the images to "
                            f"upscale in it, {HINT}")
    arrays = tuple((p.stem, _read(p)) for p in files)  # a broken file is named up front
    source = ImageSource(spec, kind, str(folder), tuple(p.name for p in files))
    if kind == "lr":
        source.lr_cache[0] = arrays  # LR images do not depend on the net's scale
    return source


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
    (see the module docstring). Holds :func:`proxies.isolation.measuring`.

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


def steady_rows(nets: Sequence[tuple[str, Genotype]], settings: ProfileSettings,
                reference: Genotype | None, aim: Genotype | None, *,
                dtype: torch.dtype = torch.float32,
                channels_last: bool = False) -> list[ProfileRow]:
    """Our steady-state figures (warm-up, median, ratio to the reference timed interleaved).

    FP32 in the default layout is exactly :func:`proxies.profile.profile_genotypes`. With
    ``channels_last`` the nets (and the reference) are timed by
    :func:`proxies.profile.profile_model` in the channels-last format (the random input is
    NCHW; the first conv emits channels-last, so the input conversion happens in the net);
    with float16 the same measure functions run with ``dtype`` (the profile path has no dtype).
    """
    from search_space import build_model

    if dtype == torch.float32 and not channels_last:
        return profile_genotypes(nets, settings, reference, aim)
    dev = resolve_device(settings.device)

    def ready(g: Genotype) -> nn.Module:
        return prepare(build_model(g).eval(), dev, dtype, channels_last)

    ref = None if reference is None or not settings.latency else ready(reference)
    rows = [_row(name, g, ready(g), settings, ref, dtype) for name, g in nets]
    if aim is None or ref is None or reference is None:
        return rows
    target = aim.deployed()
    same = [r for r, (_, g) in zip(rows, nets, strict=True) if g.deployed() == target]
    if target == reference.deployed():
        aim_ratio: float | None = 1.0
    elif same:
        aim_ratio = same[0].latency_ratio
    else:
        aim_ratio = _row("aim", aim, ready(aim), settings, ref, dtype).latency_ratio
    return with_aim_ratio(rows, aim_ratio)


def _row(name: str, genotype: Genotype, model: nn.Module, settings: ProfileSettings,
         ref: nn.Module | None, dtype: torch.dtype) -> ProfileRow:
    from search_space import build_model

    if dtype == torch.float32:
        return profile_model(name, model, settings, ref)
    # complexity columns from the FP32 build (the counters run on a float32 meta copy)
    row = profile_model(name, build_model(genotype).eval(), replace_settings(settings), None)
    shape = (1, 3, *settings.lr_size)
    values: dict[str, Any] = {}
    if settings.latency and ref is None:
        lat = measure_latency(model, shape, device=settings.device,
                              runs=settings.rounds * settings.runs_per_round,
                              warmup=settings.warmup, threads=settings.threads, dtype=dtype)
        values.update(latency_ms=lat.median_ms, latency_p10_ms=lat.p10_ms,
                      latency_p90_ms=lat.p90_ms)
    elif settings.latency and ref is not None:
        r = measure_latency_ratio(model, ref, shape, device=settings.device,
                                  rounds=settings.rounds, runs_per_round=settings.runs_per_round,
                                  warmup=settings.warmup, threads=settings.threads, dtype=dtype)
        values.update(latency_ms=r.model.median_ms, latency_p10_ms=r.model.p10_ms,
                      latency_p90_ms=r.model.p90_ms, latency_ratio=r.ratio_median,
                      latency_ratio_p10=r.ratio_p10, latency_ratio_p90=r.ratio_p90)
    if settings.memory:
        mem = measure_peak_memory(model, shape, device=settings.device, dtype=dtype)
        values.update(peak_memory_mib=mem.peak_memory_mib, weights_mib=mem.weights_mib)
    return ProfileRow(**{**row.to_dict(), **values})


def replace_settings(settings: ProfileSettings) -> ProfileSettings:
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
    any warm-up of ours), then our steady-state figures at the images' most common LR size.

    Raises:
        ProtocolError: unknown protocol, a dtype the device cannot run, an image too small.
    """
    from search_space import build_model

    check_protocol(protocol)
    dev = resolve_device(device)
    if not nets:
        raise ProtocolError("no nets to measure; name zoo nets or genotype JSON files")
    first_scale = nets[0][1].scale
    check_dtype_supported(build_model(nets[0][1]).eval(), dev, dtype, channels_last, nets[0][0])
    ntire = []
    for name, g in nets:
        logger.info("%s protocol: %s", protocol, name)
        ntire.append(measure_ntire(name, build_model(g).eval(), source.lr_images(g.scale),
                                   device=dev, dtype=dtype, channels_last=channels_last,
                                   threads=threads))
    size = steady_size(source.lr_images(first_scale))
    settings = ProfileSettings(device=str(dev), lr_size=size, rounds=rounds,
                               runs_per_round=runs_per_round, warmup=warmup, threads=threads,
                               latency=True, memory=memory)
    rows: list[ProfileRow] = []
    if steady:
        rows = steady_rows(nets, settings, None if reference is None else reference[1], aim,
                           dtype=dtype, channels_last=channels_last)
    info = machine_info(dev)
    if threads:
        info["threads"] = threads
    setting_dict = asdict(settings) | {"dtype": str(dtype).removeprefix("torch."),
                                       "channels_last": channels_last}
    cmp = Comparison(protocol, source.describe(first_scale), size, ntire, rows, info,
                     setting_dict, None if reference is None else reference[0], [])
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


# ------------------------------------------------------------------------------ output


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = ("Model", "Params [M]", "FLOPs [G]", "Acts [M]", "#Conv",
          "NTIRE mean [ms]", "NTIRE 1st img [ms]", "NTIRE rest [ms]", "NTIRE mem [MiB]",
          "ours median [ms] (p10-p90)", "ours x ref", "ours x rlfn_ntire", "ours mem [MiB]")


def table_rows(cmp: Comparison) -> list[list[str]]:
    steady = {r.name: r for r in cmp.steady}
    body = []
    for n in cmp.ntire:
        s = steady.get(n.name)
        lat = ("-" if s is None or s.latency_ms is None else
               f"{s.latency_ms:.2f} ({_f(s.latency_p10_ms, '.2f')}-{_f(s.latency_p90_ms, '.2f')})")
        body.append([n.name, f"{n.params_m:.3f}", f"{n.flops_g:.4f}", f"{n.activations_m:.2f}",
                     str(n.num_conv), f"{n.mean_ms:.2f}", f"{n.first_ms:.2f}",
                     _f(n.rest_mean_ms, ".2f"), _f(n.memory_mib, ".1f"), lat,
                     _f(None if s is None else s.latency_ratio, ".2f"),
                     _f(None if s is None else s.latency_ratio_aim, ".2f"),
                     _f(None if s is None else s.peak_memory_mib, ".1f")])
    return body


def format_comparison(cmp: Comparison, markdown: bool = False) -> str:
    body = table_rows(cmp)
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(c) + " |" for c in body]
    else:
        widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(HEADER)]
        fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*HEADER), "  ".join("-" * w for w in widths)]
        lines += [fmt.format(*c) for c in body]
    m, st = cmp.machine, cmp.settings
    precision = st["dtype"] + (" channels-last" if st["channels_last"] else "")
    lines += [
        "",
        f"protocol {cmp.protocol}: {PROTOCOLS[cmp.protocol]}; run here in {precision}",
        f"images: {cmp.images}",
        f"ours: warm-up {st['warmup']}, median of {st['rounds']} x {st['runs_per_round']} runs "
        f"at {cmp.steady_size[0]}x{cmp.steady_size[1]}"
        + (f", x ref = latency / {cmp.reference}'s timed interleaved" if cmp.reference
           else ", no reference (--reference none)") + " (proxies.profile)",
        FLOPS_NOTE,
        f"{m['date']}  torch {m['torch']}  {m.get('gpu', m['cpu'])}  device={m['device']} "
        f"threads={m['threads']}",
        "",
        "Why the columns differ:",
    ]
    lines += [f"- {n}" for n in cmp.notes]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI


def check_protocol(protocol: object) -> str:
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"--protocol: got {protocol!r}; known: "
                            + "; ".join(f"{k} ({v})" for k, v in PROTOCOLS.items())
                            + ". Pass --protocol ntire2024 --images DIR")
    return str(protocol)


def run_cli(args: argparse.Namespace) -> int:
    """``python -m proxies.profile --protocol ...``: the dispatch from :func:`proxies.profile.
    main`. Bad input prints ``error: ...`` and returns 2."""
    from search_space.genotype import GenotypeError
    from search_space.zoo import AIM_NET, ZOO, at_scale, resolve_genotype

    try:
        if args.protocol is None:
            used = [f for f, on in (("--images", args.images is not None), ("--fp16", args.fp16),
                                    ("--channels-last", args.channels_last)) if on]
            raise ProtocolError(f"{', '.join(used)} given without --protocol; these options "
                                "belong to the challenge-protocol run: add --protocol ntire2024 "
                                "--images DIR")
        protocol = check_protocol(args.protocol)
        if args.images is None:
            raise ProtocolError(f"--protocol {protocol} needs --images DIR: a folder of LR "
                                f"images, or of HR images to downscale ({HINT})")
        backends = getattr(args, "backend", None) or ["torch"]
        if list(backends) != ["torch"]:
            raise ProtocolError(f"--backend: got {' '.join(backends)}; --protocol {protocol} "
                                "measures PyTorch eager, as test_demo.py does: drop --backend")
        if args.no_latency:
            raise ProtocolError(f"--no-latency: --protocol {protocol} is a latency "
                                "measurement; drop --no-latency")
        device = resolve_device(args.device)
        if args.fp16 and device.type == "cpu":
            logger.info("--fp16 on the CPU: timing float16 CPU kernels (rarely deployed)")
        named = [resolve_genotype(spec) for spec in (args.nets or list(ZOO))]
        if args.scale:
            named = [(n, at_scale(g, args.scale)) for n, g in named]
        reference = None
        if args.reference != "none":
            reference = resolve_genotype(args.reference)
            if args.scale:
                reference = (reference[0], at_scale(reference[1], args.scale))
        aim = None if reference is None else at_scale(ZOO[AIM_NET], reference[1].scale)
        source = open_images(args.images)
        torch.manual_seed(0)
        cmp = compare(named, source, protocol=protocol, device=str(device),
                      dtype=torch.float16 if args.fp16 else torch.float32,
                      channels_last=args.channels_last, reference=reference, aim=aim,
                      rounds=args.rounds, runs_per_round=args.runs_per_round,
                      warmup=args.warmup, threads=args.threads, memory=not args.no_memory)
    except (ProtocolError, GenotypeError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(cmp.to_dict(), indent=2))
    else:
        print(format_comparison(cmp, markdown=args.markdown))
    return 0
