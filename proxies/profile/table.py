"""Format profile rows as tables, and compare the rows of two backends.

:func:`format_table` prints :class:`proxies.measure.profile_rows.ProfileRow` rows under
:data:`COLUMNS` (plain or Markdown; ``-`` where a value was not measured, ``n/a`` where the
backend cannot report it). :func:`compare_backends` sets the same nets profiled on two backends
in one process side by side (each net's latency on both, their ratio, its rank on each, and
the Spearman and Kendall correlations of the two rankings); :func:`format_comparison` prints
that. :func:`ratio_note` and :func:`backend_note` are the tables' footers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from proxies.measure.profile_rows import ProfileRow
from search_space.zoo import AIM_NET


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
    from proxies.measure.stats import kendall, spearman

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
    if backend == "openvino":
        import openvino

        from proxies.measure.runtime import OV_PEAK_MEMORY_REASON

        return (f"backend openvino {openvino.__version__} (CPU plugin, inference threads "
                f"{threads or torch.get_num_threads()}, 1 stream, latency hint, f32; ONNX export "
                "of the deployed net compiled at the LR size, its output checked against "
                "PyTorch's); peak memory: n/a ("
                f"{OV_PEAK_MEMORY_REASON.removeprefix('unavailable: ')})")
    from proxies.measure.runtime import ort_providers

    provider = ort_providers(device)[0]
    name = provider[0] if isinstance(provider, tuple) else provider
    memory = ("peak memory: n/a (ONNX Runtime's CUDA EP reports none)" if device.type == "cuda"
              else "peak memory: RSS high-water mark of one run, arena off")
    import onnxruntime

    return (f"backend onnxruntime {onnxruntime.__version__} ({name}, intra-op threads "
            f"{threads or torch.get_num_threads()}, ONNX export of the deployed net); {memory}")


def ratio_note(reference: str | None) -> str:
    """What the ratio columns are, for a table's footer (empty without a reference)."""
    if reference is None:
        return ""
    return (f"x ref = latency / {reference}'s, timed interleaved; x {AIM_NET} = x ref / "
            f"{AIM_NET}'s x ref, both measured in this process")
