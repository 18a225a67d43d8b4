"""The profile command: prints the NTIRE-style profile table (params, FLOPs, activations,
#conv, latency and peak memory) of zoo nets or genotype JSON files on the current device.

Run ``python -m proxies.profile [NAME_OR_GENOTYPE_JSON ...]``; with no names it profiles the
whole zoo. The rows are measured by :mod:`proxies.measure.profile_rows` and formatted by
:mod:`proxies.profile.table`. Latency is reported as measured milliseconds *and* as the ratio
to a reference net (``x ref``; default ``span_ntire2024``,
:data:`search_space.zoo.REFERENCE_NET`) timed interleaved with each net in the same process,
because ratios are what compare on a noisy machine. Next to it, ``x rlfn_ntire`` is the ratio
to the aim's net (:data:`search_space.zoo.AIM_NET`): not timed against each net a second time
but derived from two ratios measured in the same process, the net's ``x ref`` divided by
``rlfn_ntire``'s ``x ref`` (its own row when it is profiled, else one extra interleaved
measurement of it against the reference; exactly ``x ref`` when the reference is
``rlfn_ntire``). It has no p10-p90. ``--json`` prints machine-readable rows.

``--backend onnxruntime`` measures latency and peak memory on ONNX Runtime instead of torch
eager (:mod:`proxies.measure.runtime`; the reference net too, so ``x ref`` compares like with like);
``--backend openvino`` measures latency on OpenVINO's CPU plugin (the same ONNX export, its
output checked against PyTorch's first; peak memory ``n/a``, with the reason in the footer)
when the optional ``openvino`` package is installed.
``--backend torch onnxruntime`` profiles every net on each backend in this one process, prints
each table, then the eager-vs-runtime comparison
(:func:`proxies.profile.table.compare_backends`: each net's latency on both, their ratio, its
rank on each, and the Spearman and Kendall correlations of the two rankings); with three
(``--backend torch onnxruntime openvino``), one comparison per pair, in the order given. A
backend that is not installed or not implemented is skipped with the reason (exit status 2
when none is left). Where a backend cannot report peak memory (ONNX Runtime on CUDA,
OpenVINO) the column says ``n/a``. ``--protocol`` measures as a challenge does instead
(:mod:`proxies.protocol.ntire`).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import torch

from proxies.measure.profile_rows import ProfileRow, machine_info, profile_genotypes
from proxies.measure.settings import MeasureSettings, resolve_device
from proxies.profile.table import (
    backend_note,
    compare_backends,
    format_comparison,
    format_table,
    ratio_note,
)
from search_space.zoo import AIM_NET

if TYPE_CHECKING:
    from search_space import Genotype


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 16:
        raise argparse.ArgumentTypeError(
            f"got {text!r}; expected a size such as 256 or 180x320 (H x W, each >= 16)"
        )
    return parts[0], parts[1]


def build_parser() -> argparse.ArgumentParser:
    from search_space.zoo import REFERENCE_NET, ZOO

    p = argparse.ArgumentParser(
        prog="python -m proxies.profile",
        description="Print the NTIRE-style profile table (params, FLOPs, activations, #conv, "
        "latency, peak memory) of zoo nets or genotype JSON files on the current device.",
    )
    p.add_argument("nets", nargs="*", metavar="NAME_OR_JSON",
                   help=f"zoo names ({', '.join(ZOO)}) or genotype JSON files; "
                   "default: the whole zoo")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--size", type=_size, default=(256, 256),
                   help="LR input size for latency and memory, e.g. 256 or 180x320 (default 256)")
    p.add_argument("--scale", type=int, choices=(2, 3, 4),
                   help="profile every net at this scale instead of its own")
    p.add_argument("--reference", default=REFERENCE_NET,
                   help=f"reference net for latency ratios (default {REFERENCE_NET}); "
                   "'none' to skip the ratio")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--runs-per-round", type=int, default=2, help="timed runs per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's current setting)")
    p.add_argument("--backend", nargs="+", default=["torch"], metavar="BACKEND",
                   help="measurement backend(s): torch (eager), onnxruntime (the ONNX "
                   "export in ONNX Runtime; CUDA EP on CUDA) and/or openvino (the ONNX export "
                   "compiled by OpenVINO, CPU only); two give the eager-vs-runtime "
                   "comparison (default torch)")
    p.add_argument("--no-latency", action="store_true", help="skip latency")
    p.add_argument("--no-memory", action="store_true", help="skip peak memory")
    p.add_argument("--thop", action="store_true",
                   help="add thop's MAC count (cross-check; thop runs on a CPU copy)")
    proto = p.add_argument_group(
        "challenge protocol", "measure as a challenge does, beside our figures "
        "(proxies/protocol/ntire.py)")
    proto.add_argument("--protocol", metavar="NAME",
                       help="ntire2024: as NTIRE 2024-2026's test_demo.py (FP32, batch 1, "
                       "whole images, no warm-up, mean over the folder, max_memory_allocated); "
                       "needs --images")
    proto.add_argument("--images", metavar="DIR",
                       help="LR images to upscale; a folder named HR or *_HR, or hr:DIR, is "
                       "downscaled first with proxies.data.downsample's degradation "
                       "(lr:DIR forces LR)")
    proto.add_argument("--fp16", action="store_true", help="with --protocol: float16 inference")
    proto.add_argument("--channels-last", action="store_true",
                       help="with --protocol: channels-last weights and inputs")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from search_space.checks import GenotypeError
    from search_space.zoo import ZOO, at_scale, resolve_genotype

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.protocol is not None or args.images is not None or args.fp16 or args.channels_last:
        from proxies.protocol.command import run_cli

        return run_cli(args)
    try:
        named = [resolve_genotype(spec) for spec in (args.nets or list(ZOO))]
        if args.scale:
            named = [(name, at_scale(g, args.scale)) for name, g in named]
        ref_name, reference = None, None
        if args.reference != "none" and not args.no_latency:
            ref_name, reference = resolve_genotype(args.reference)
            if args.scale:
                reference = at_scale(reference, args.scale)
        device = resolve_device(args.device)
        backends, skipped = _backends(args.backend)
        if not backends:
            raise ValueError("--backend: no backend can measure here: " + "; ".join(
                f"{b}: {why}" for b, why in skipped.items()))
        settings = MeasureSettings(
            device=str(device), lr_size=args.size, rounds=args.rounds,
            runs_per_round=args.runs_per_round, warmup=args.warmup, threads=args.threads,
            latency=not args.no_latency, memory=not args.no_memory, thop=args.thop,
            backend=backends[0],
        )
        if settings.latency or settings.memory:
            nets = named + ([] if reference is None else [(str(ref_name), reference)])
            _check_memory(nets, args.size, device)
    except (GenotypeError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    aim = None if reference is None else at_scale(ZOO[AIM_NET], reference.scale)
    by_backend: dict[str, list[ProfileRow]] = {}
    for backend in backends:
        torch.manual_seed(0)
        by_backend[backend] = profile_genotypes(named, replace(settings, backend=backend),
                                                reference, aim)
    rows = by_backend[backends[0]]
    comparisons = ([compare_backends({a: by_backend[a], b: by_backend[b]})
                    for a, b in itertools.combinations(backends, 2)] if settings.latency else [])
    info = machine_info(device)
    if args.threads:
        info["threads"] = args.threads  # what the measurements used
    if args.json:
        payload = {
            "machine": info,
            "settings": asdict(settings),
            "reference": ref_name,
            "aim": None if aim is None else AIM_NET,
            "rows": [r.to_dict() for r in rows],
            "backends": {b: [r.to_dict() for r in rs] for b, rs in by_backend.items()},
            "skipped_backends": skipped,
            "comparison": comparisons[0] if comparisons else None,
            "comparisons": comparisons,
        }
        print(json.dumps(payload, indent=2))
        return 0
    for backend, why in skipped.items():
        print(f"skipped backend {backend}: {why}")
    for backend, backend_rows in by_backend.items():
        if len(by_backend) > 1:
            print(f"\n### {backend}\n")
        print(format_table(backend_rows, markdown=args.markdown))
        print(f"\n{info['date']}  torch {info['torch']}  {info.get('gpu', info['cpu'])}  "
              f"device={info['device']} threads={info['threads']}  LR "
              f"{args.size[0]}x{args.size[1]}  complexity at 256x256  {ratio_note(ref_name)}  "
              f"{backend_note(backend, device, args.threads)}")
    for comparison in comparisons:
        first, second = comparison["backends"]
        print(f"\n### {first} vs {second} (same process)\n")
        print(format_comparison(comparison))
    return 0


def _check_memory(nets: Sequence[tuple[str, Genotype]], size: tuple[int, int],
                  device: torch.device) -> None:
    """Refuse a ``--size`` at which a net's forward (its deployed form, the one measured)
    does not fit on ``device``, before anything is built at that size
    (:func:`search_space.memory.require_forward`)."""
    from search_space import build_model
    from search_space.memory import require_forward

    for name, g in nets:
        deployed = g.deployed()
        require_forward(functools.partial(build_model, deployed), size, device, scale=g.scale,
                        what=f"{name}'s forward at --size {size[0]}x{size[1]}",
                        fix="use a smaller --size (e.g. --size 256)")


def _backends(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(the backends that can measure, in order without repeats; skipped ones -> reason).

    Raises:
        ValueError: a name that is no backend at all (with the allowed names).
    """
    from proxies.measure.backends import backend_reason

    usable: list[str] = []
    skipped: dict[str, str] = {}
    for name in dict.fromkeys(names):
        why = backend_reason(name, "--backend")
        if why is None:
            usable.append(name)
        else:
            skipped[name] = why
    return usable, skipped
