"""NTIRE-style profile table: params, FLOPs, activations, #conv, latency and peak memory.

Run ``python -m proxies.profile [NAME_OR_GENOTYPE_JSON ...]``; with no names it profiles the
whole zoo. Latency is reported as measured milliseconds *and* as the ratio to a reference net
(``x ref``; default ``span_ntire2024``, :data:`search_space.zoo.REFERENCE_NET`) timed
interleaved with each net in the same process, because ratios are what compare on a noisy
machine. Next to it, ``x rlfn_ntire`` is the ratio to the aim's net
(:data:`search_space.zoo.AIM_NET`): not timed against each net a second time but derived from
two ratios measured in the same process, the net's ``x ref`` divided by ``rlfn_ntire``'s
``x ref`` (its own row when it is profiled, else one extra interleaved measurement of it
against the reference; exactly ``x ref`` when the reference is ``rlfn_ntire``). It has no
p10-p90. ``--json`` prints machine-readable rows.

``--backend onnxruntime`` measures latency and peak memory on ONNX Runtime instead of torch
eager (:mod:`proxies.runtime`; the reference net too, so ``x ref`` compares like with like).
``--backend torch onnxruntime`` profiles every net on each backend in this one process, prints
each table, then the eager-vs-runtime comparison (:func:`compare_backends`: each net's latency
on both, their ratio, its rank on each, and the Spearman and Kendall correlations of the two
rankings). A backend that is not installed or not implemented is skipped with the reason.
Where a backend cannot report peak memory (ONNX Runtime on CUDA) the column says ``n/a``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from proxies.complexity import count_thop_macs, measure_complexity
from proxies.latency import (
    LatencyRatioResult,
    measure_latency,
    measure_latency_ratio,
    resolve_device,
)
from proxies.memory import measure_peak_memory
from search_space.zoo import AIM_NET

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


@dataclass(frozen=True)
class ProfileSettings:
    """How the measured columns are taken (every field is recorded with the results)."""

    device: str = "auto"
    lr_size: tuple[int, int] = (256, 256)
    complexity_size: tuple[int, int] = (256, 256)
    rounds: int = 5
    runs_per_round: int = 2
    warmup: int = 2
    threads: int | None = None
    latency: bool = True
    memory: bool = True
    thop: bool = False
    backend: str = "torch"  # proxies.runtime.BACKENDS


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
    settings: ProfileSettings,
    reference: nn.Module | None = None,
) -> ProfileRow:
    """Measure the deployed form of one model. ``reference`` (timed interleaved) gives the
    latency ratio."""
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
    shape = (1, 3, *settings.lr_size)
    if settings.latency:
        if reference is not None:
            ratio = _interleaved(model, reference, settings)
            lat = ratio.model
            row.update(latency_ratio=ratio.ratio_median, latency_ratio_p10=ratio.ratio_p10,
                       latency_ratio_p90=ratio.ratio_p90)
        else:
            lat = measure_latency(
                model, shape, device=settings.device,
                runs=settings.rounds * settings.runs_per_round, warmup=settings.warmup,
                threads=settings.threads, backend=settings.backend,
            )
        row.update(latency_ms=lat.median_ms, latency_p10_ms=lat.p10_ms,
                   latency_p90_ms=lat.p90_ms)
    if settings.memory:
        mem = measure_peak_memory(model, shape, device=settings.device,
                                  backend=settings.backend, threads=settings.threads)
        row.update(peak_memory_mib=mem.peak_memory_mib, weights_mib=mem.weights_mib)
    return ProfileRow(**row)


def _interleaved(model: nn.Module, reference: nn.Module,
                 settings: ProfileSettings) -> LatencyRatioResult:
    return measure_latency_ratio(
        model, reference, (1, 3, *settings.lr_size), device=settings.device,
        rounds=settings.rounds, runs_per_round=settings.runs_per_round, warmup=settings.warmup,
        threads=settings.threads, backend=settings.backend,
    )


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
    settings: ProfileSettings,
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
            aim_ratio = _interleaved(aim_model, deployed_form(ref), settings).ratio_median
    return with_aim_ratio(rows, aim_ratio)


def _fmt(value: float | None, spec: str) -> str:
    if value is not None and math.isnan(value):
        return "n/a"  # measured, but the backend cannot report it (see the table's note)
    return "-" if value is None else format(value, spec)


COLUMNS: tuple[tuple[str, str], ...] = (
    ("Model", "name"),
    ("Params [M]", "params_m"),
    ("FLOPs [G] (NTIRE)", "ntire_flops_g"),
    ("MACs [G]", "macs_g"),
    ("Acts [M]", "ntire_activations_m"),
    ("#Conv", "ntire_num_conv"),
    ("Latency [ms] (p10-p90)", "latency"),
    ("x ref (p10-p90)", "ratio"),
    (f"x {AIM_NET}", "ratio_aim"),
    ("Peak mem [MiB]", "peak_memory_mib"),
)


def table_cells(row: ProfileRow) -> list[str]:
    """The cells of ``row`` under :data:`COLUMNS` (``-`` where a value was not measured)."""
    lat = (f"{_fmt(row.latency_ms, '.1f')} ({_fmt(row.latency_p10_ms, '.1f')}-"
           f"{_fmt(row.latency_p90_ms, '.1f')})" if row.latency_ms is not None else "-")
    ratio = (f"{row.latency_ratio:.2f} ({_fmt(row.latency_ratio_p10, '.2f')}-"
             f"{_fmt(row.latency_ratio_p90, '.2f')})" if row.latency_ratio is not None else "-")
    return [
        row.name,
        f"{row.params_m:.3f}",
        f"{row.ntire_flops_g:.4f}",
        f"{row.macs_g:.4f}",
        f"{row.ntire_activations_m:.2f}",
        str(row.ntire_num_conv),
        lat,
        ratio,
        _fmt(row.latency_ratio_aim, ".2f"),
        _fmt(row.peak_memory_mib, ".1f"),
    ]


def format_table(rows: Sequence[ProfileRow], markdown: bool = False) -> str:
    header = [c[0] for c in COLUMNS]
    body = [table_cells(r) for r in rows]
    if any(r.thop_macs_g is not None for r in rows):
        header.append("thop MACs [G]")
        for cells, r in zip(body, rows, strict=True):
            cells.append(_fmt(r.thop_macs_g, ".4f"))
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*cells) for cells in body]
    return "\n".join(lines)


def compare_backends(rows: Mapping[str, Sequence[ProfileRow]]) -> dict[str, Any]:
    """Eager vs runtime: the same nets profiled on two backends in one process.

    ``rows`` maps two backend names (the first is the baseline, e.g. ``torch``) to rows of the
    same nets in the same order. Returns ``backends``, ``rows`` (per net: latency on each
    backend, ``runtime_over_baseline``, the ``x ref`` ratio on each and the net's rank by
    latency on each, 1 = fastest), ``spearman`` and ``kendall`` (of the two latency rankings),
    ``ratio_spearman`` (of the two ``x ref`` rankings; NaN without a reference),
    ``rank_changes`` (nets whose rank differs) and ``max_rank_shift``.

    Raises:
        ValueError: not exactly two backends, or rows of different nets or without latency.
    """
    from proxies.stats import kendall, spearman

    if len(rows) != 2:
        raise ValueError(f"rows: got backends {list(rows)}; compare exactly two, e.g. "
                         "{'torch': ..., 'onnxruntime': ...}")
    (base, a), (other, b) = rows.items()
    if [r.name for r in a] != [r.name for r in b]:
        raise ValueError(f"rows: {base} has nets {[r.name for r in a]} but {other} has "
                         f"{[r.name for r in b]}; profile the same nets in the same order")
    if any(r.latency_ms is None for r in (*a, *b)):
        raise ValueError("rows: a row has no latency; profile with latency on (no --no-latency)")
    lat_a = [float(r.latency_ms) for r in a]  # type: ignore[arg-type]
    lat_b = [float(r.latency_ms) for r in b]  # type: ignore[arg-type]
    rank_a = _ranks(lat_a)
    rank_b = _ranks(lat_b)
    ratios_a = [r.latency_ratio for r in a]
    ratios_b = [r.latency_ratio for r in b]
    have_ratio = all(x is not None for x in (*ratios_a, *ratios_b))
    out_rows = [{"name": ra.name, f"{base}_ms": la, f"{other}_ms": lb,
                 "runtime_over_baseline": lb / la, f"{base}_x_ref": ra.latency_ratio,
                 f"{other}_x_ref": rb.latency_ratio, f"{base}_rank": ka, f"{other}_rank": kb,
                 f"{base}_peak_memory_mib": ra.peak_memory_mib,
                 f"{other}_peak_memory_mib": rb.peak_memory_mib}
                for ra, rb, la, lb, ka, kb in zip(a, b, lat_a, lat_b, rank_a, rank_b,
                                                  strict=True)]
    enough = len(a) >= 2
    return {
        "backends": [base, other],
        "rows": out_rows,
        "spearman": spearman(lat_a, lat_b) if enough else math.nan,
        "kendall": kendall(lat_a, lat_b) if enough else math.nan,
        "ratio_spearman": spearman([float(x) for x in ratios_a],  # type: ignore[arg-type]
                                   [float(x) for x in ratios_b])  # type: ignore[arg-type]
        if have_ratio and enough else math.nan,
        "rank_changes": sum(x != y for x, y in zip(rank_a, rank_b, strict=True)),
        "max_rank_shift": max((abs(x - y) for x, y in zip(rank_a, rank_b, strict=True)),
                              default=0),
    }


def _ranks(values: Sequence[float]) -> list[int]:
    """1-based rank of each value (1 = smallest; ties by order)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def format_comparison(cmp: Mapping[str, Any]) -> str:
    """Markdown table of :func:`compare_backends`' result, with its correlations below."""
    base, other = cmp["backends"]
    header = ["Model", f"{base} [ms]", f"{other} [ms]", f"{other} / {base}", f"x ref {base}",
              f"x ref {other}", f"rank {base}", f"rank {other}", f"mem {base} [MiB]",
              f"mem {other} [MiB]"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in cmp["rows"]:
        cells = [r["name"], f"{r[f'{base}_ms']:.2f}", f"{r[f'{other}_ms']:.2f}",
                 f"{r['runtime_over_baseline']:.2f}", _fmt(r[f"{base}_x_ref"], ".2f"),
                 _fmt(r[f"{other}_x_ref"], ".2f"), str(r[f"{base}_rank"]),
                 str(r[f"{other}_rank"]), _fmt(r[f"{base}_peak_memory_mib"], ".1f"),
                 _fmt(r[f"{other}_peak_memory_mib"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nlatency ranking {base} vs {other}: Spearman {cmp['spearman']:.3f}, Kendall "
                 f"{cmp['kendall']:.3f}, x ref Spearman {cmp['ratio_spearman']:.3f}; "
                 f"{cmp['rank_changes']} of {len(cmp['rows'])} nets change rank (at most by "
                 f"{cmp['max_rank_shift']})")
    return "\n".join(lines)


def backend_note(backend: str, device: torch.device, threads: int | None) -> str:
    """How ``backend`` ran the nets, for a table's footer."""
    if backend == "torch":
        return "backend torch (eager)"
    from proxies.runtime import ort_providers

    provider = ort_providers(device)[0]
    name = provider[0] if isinstance(provider, tuple) else provider
    memory = ("peak memory: n/a (ONNX Runtime's CUDA EP reports none)" if device.type == "cuda"
              else "peak memory: RSS high-water mark of one run, arena off")
    import onnxruntime

    return (f"backend onnxruntime {onnxruntime.__version__} ({name}, intra-op threads "
            f"{threads or torch.get_num_threads()}, ONNX export of the deployed net); {memory}")


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
                   help="measurement backend(s): torch (eager) and/or onnxruntime (the ONNX "
                   "export in ONNX Runtime; CUDA EP on CUDA); two give the eager-vs-runtime "
                   "comparison (default torch)")
    p.add_argument("--no-latency", action="store_true", help="skip latency")
    p.add_argument("--no-memory", action="store_true", help="skip peak memory")
    p.add_argument("--thop", action="store_true",
                   help="add thop's MAC count (cross-check; thop runs on a CPU copy)")
    proto = p.add_argument_group(
        "challenge protocol", "measure as a challenge does, beside our figures "
        "(proxies/protocol.py)")
    proto.add_argument("--protocol", metavar="NAME",
                       help="ntire2024: as NTIRE 2024-2026's test_demo.py (FP32, batch 1, "
                       "whole images, no warm-up, mean over the folder, max_memory_allocated); "
                       "needs --images")
    proto.add_argument("--images", metavar="DIR",
                       help="LR images to upscale; a folder named HR or *_HR, or hr:DIR, is "
                       "downscaled first with proxies.data's degradation (lr:DIR forces LR)")
    proto.add_argument("--fp16", action="store_true", help="with --protocol: float16 inference")
    proto.add_argument("--channels-last", action="store_true",
                       help="with --protocol: channels-last weights and inputs")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return p


def ratio_note(reference: str | None) -> str:
    """What the ratio columns are, for a table's footer (empty without a reference)."""
    if reference is None:
        return ""
    return (f"x ref = latency / {reference}'s, timed interleaved; x {AIM_NET} = x ref / "
            f"{AIM_NET}'s x ref, both measured in this process")


def main(argv: Sequence[str] | None = None) -> int:
    from search_space.genotype import GenotypeError
    from search_space.zoo import ZOO, at_scale, resolve_genotype

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.protocol is not None or args.images is not None or args.fp16 or args.channels_last:
        from proxies.protocol import run_cli

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
    except (GenotypeError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        backends, skipped = _backends(args.backend)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not backends:
        print("error: --backend: no backend can measure here: " + "; ".join(
            f"{b}: {why}" for b, why in skipped.items()), file=sys.stderr)
        return 2
    settings = ProfileSettings(
        device=str(device), lr_size=args.size, rounds=args.rounds,
        runs_per_round=args.runs_per_round, warmup=args.warmup, threads=args.threads,
        latency=not args.no_latency, memory=not args.no_memory, thop=args.thop,
        backend=backends[0],
    )
    aim = None if reference is None else at_scale(ZOO[AIM_NET], reference.scale)
    by_backend: dict[str, list[ProfileRow]] = {}
    for backend in backends:
        torch.manual_seed(0)
        by_backend[backend] = profile_genotypes(named, replace(settings, backend=backend),
                                                reference, aim)
    rows = by_backend[backends[0]]
    comparison = (compare_backends({b: by_backend[b] for b in backends[:2]})
                  if len(backends) >= 2 and settings.latency else None)
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
            "comparison": comparison,
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
    if comparison is not None:
        print(f"\n### {backends[0]} vs {backends[1]} (same process)\n")
        print(format_comparison(comparison))
    return 0


def _backends(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(the backends that can measure, in order without repeats; skipped ones -> reason).

    Raises:
        ValueError: a name that is no backend at all (with the allowed names).
    """
    from proxies.runtime import BACKENDS, NOT_IMPLEMENTED, backend_reasons

    reasons = backend_reasons()
    usable: list[str] = []
    skipped: dict[str, str] = {}
    for name in dict.fromkeys(names):
        if name not in (*BACKENDS, *NOT_IMPLEMENTED):
            raise ValueError(f"--backend: got {name!r}; allowed: {', '.join(BACKENDS)}")
        why = reasons[name]
        if why is None:
            usable.append(name)
        else:
            skipped[name] = why
    return usable, skipped


if __name__ == "__main__":
    raise SystemExit(main())
