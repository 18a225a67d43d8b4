"""The ``--protocol`` command line of ``python -m proxies.profile``, and its output.

:func:`run_cli` checks the options, resolves the nets and the images and runs
:func:`proxies.protocol.compare.compare`; :func:`format_comparison` prints the result as a
table (plain or Markdown) with the notes on why the columns differ; ``--json`` prints
:meth:`proxies.protocol.compare.Comparison.to_dict`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import torch

from proxies.measure.settings import resolve_device
from proxies.protocol.compare import Comparison, compare
from proxies.protocol.images import HINT, open_images
from proxies.protocol.ntire import FLOPS_NOTE, PROTOCOLS, ProtocolError, check_protocol

logger = logging.getLogger(__name__)

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
           else ", no reference (--reference none)") + " (proxies.profile.command)",
        FLOPS_NOTE,
        f"{m['date']}  torch {m['torch']}  {m.get('gpu', m['cpu'])}  device={m['device']} "
        f"threads={m['threads']}",
        "",
        "Why the columns differ:",
    ]
    lines += [f"- {n}" for n in cmp.notes]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI


def run_cli(args: argparse.Namespace) -> int:
    """``python -m proxies.profile --protocol ...``, dispatched from
    :func:`proxies.profile.command.main`. Bad input prints ``error: ...`` and returns 2."""
    from search_space.checks import GenotypeError
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
