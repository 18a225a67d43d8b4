"""GPU-check items that measure the DARTS search: the hardware lookup table's fidelity against
whole nets (:func:`searchers.differentiable.latency_table.validate_table`) and the search step's
time and peak memory (:func:`searchers.tools.benchmark.bench_step`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from searchers.tools.gpu_check.context import Context, dry_folder, parse_markdown_table


def _darts_config(ctx: Context, device: torch.device) -> Any:
    from searchers.common.config import load_config
    from searchers.differentiable.config import DartsConfig

    cache = ctx.out / "hardware_cache"
    over = [f"run.device={device}", f"hardware.device={device}", f"hardware.cache_dir={cache}",
            "profile.enabled=false", "run.plots=false"]
    if device.type == "cuda":
        over.append("hardware.threads=null")  # CPU threads mean nothing on CUDA
    if ctx.dry_run:
        data = dry_folder(ctx)
        over += [f"data.train={data}", f"data.val={data}", "data.patch_size=16",
                 "data.batch_size=1", "space.scale=2", "space.width=8", "space.num_cells=1",
                 "space.cell_types=[erb]", "space.conv_candidates=[conv3x3,conv1x1]",
                 "space.attention_candidates=[none]", "space.fusion=false",
                 "hardware.lr_size=16", "hardware.runs=1", "hardware.warmup=0"]
    return load_config(DartsConfig, None, over)


def item_lut_fidelity(ctx: Context) -> tuple[dict[str, Any], str]:
    from searchers.differentiable.latency_table import validate_table
    from searchers.differentiable.search import DartsSearch

    device = ctx.need_cuda()
    cfg = _darts_config(ctx, device)
    samples = 3 if ctx.dry_run else 30
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        search = DartsSearch(cfg, Path(tmp))
        built = time.perf_counter() - t0
        r = validate_table(search.net, search.table, samples=samples, seed=cfg.run.seed)
    size = cfg.hardware.lr_size
    data = {"device": str(device), "lr_size": [size, size], "entries": len(search.table.entries),
            "table_seconds": built, **r}
    md = ("| nets | LR size | table entries | table build [s] | Spearman | MAPE [%] | "
          "measured median [ms] |\n|---|---|---|---|---|---|---|\n"
          f"| {r['samples']} | {size}x{size} | {data['entries']} | {built:.1f} | "
          f"{r['spearman']:.3f} | {r['mape_percent']:.1f} | "
          f"{float(np.median(r['measured_ms'])):.3f} |")
    return data, md


def item_darts_step(ctx: Context) -> tuple[dict[str, Any], str]:
    from searchers.tools.benchmark import bench_step

    device = ctx.need_cuda()
    cfg = _darts_config(ctx, device)
    md = bench_step(cfg, 1 if ctx.dry_run else 10)
    rows = parse_markdown_table(md)
    modes = {str(r.get("mode")) for r in rows}
    if modes != {"full", "sample"}:
        raise RuntimeError(f"bench_step gave modes {sorted(modes)}; expected full and sample")
    return {"device": str(device), "rows": rows}, md
