"""Run the GPU-check items and write what they found.

:data:`ITEMS` is the table of items (name, title, time cap, function) in the order run;
:func:`run_check` runs them (each under its cap, none started once :data:`TOTAL_BUDGET_S` has
passed) and writes ``gpu_check.json`` and ``gpu_check.md`` (:func:`to_markdown`);
:func:`run_item` runs one and never raises (its status says what happened);
:func:`environment` records the machine. See :mod:`searchers.tools.gpu_check`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import platform
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from searchers.tools.gpu_check.context import (
    Context,
    Item,
    ItemResult,
    ItemTimeout,
    Skipped,
    time_cap,
    write_dry_images,
)
from searchers.tools.gpu_check.runtime_items import item_onnxruntime_cuda
from searchers.tools.gpu_check.search_items import item_darts_step, item_lut_fidelity
from searchers.tools.gpu_check.training_items import item_amp_retrain
from searchers.tools.gpu_check.zoo_items import item_zoo_fp16, item_zoo_fp32

logger = logging.getLogger(__name__)

TOTAL_BUDGET_S = 450.0
"""No item is started once this much wall time has passed (the last may run its cap)."""

ROOT = Path(__file__).resolve().parents[3]
SET14 = ROOT.parent / "shared" / "datasets" / "Set14" / "HR"
"""The protocol items' default images, where this checkout has them."""


ITEMS: tuple[Item, ...] = (
    Item("zoo_fp32", "The zoo on CUDA, NTIRE 2024-2026 protocol and ours, FP32", 70,
         item_zoo_fp32),
    Item("zoo_fp16", "The zoo on CUDA, NTIRE 2024-2026 protocol and ours, FP16", 60,
         item_zoo_fp16),
    Item("lut_fidelity", "Hardware lookup table fidelity on CUDA (30 random nets)", 80,
         item_lut_fidelity),
    Item("darts_step", "DARTS step time and peak memory, full and sample memory modes", 70,
         item_darts_step),
    Item("amp_retrain", "Short AMP retraining", 60, item_amp_retrain),
    Item("onnxruntime_cuda", "ONNX Runtime CUDA execution provider vs torch eager", 40,
         item_onnxruntime_cuda),
)
"""Every item, in the order run."""


def environment(device: torch.device | None) -> dict[str, Any]:
    """Where the check ran: date, Python, torch, CUDA, the CPU and GPU, onnxruntime."""
    from proxies.measure.profile_rows import cpu_name

    env: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"), "python":
        platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
    }
    if device is not None and device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cudnn"] = torch.backends.cudnn.version()
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = list(ort.get_available_providers())
    except ImportError:
        env["onnxruntime"] = None
    return env

def run_item(item: Item, ctx: Context, cap_s: float) -> ItemResult:
    """Run one item under its cap; never raises (the status says what happened)."""
    logger.info("gpu check: %s (cap %.0f s)", item.name, cap_s)
    t0 = time.perf_counter()
    result = ItemResult(item.name, item.title, "ok", 0.0, cap_s)
    try:
        with time_cap(cap_s):
            result.data, result.markdown = item.run(ctx)
    except Skipped as exc:
        result.status, result.reason = "skipped", str(exc)
    except ItemTimeout as exc:
        result.status, result.reason = "timeout", str(exc)
    except Exception as exc:  # an item's failure is recorded, the others still run
        result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"
        result.data = {"traceback": traceback.format_exc()}
        logger.error("%s failed: %s", item.name, result.reason)
    result.seconds = time.perf_counter() - t0
    if result.status != "ok":
        logger.info("%s: %s (%s)", item.name, result.status, result.reason)
    return result

def run_check(out: Path, *, dry_run: bool = False, only: list[str] | None = None,
              images: str | None = None, device: str = "cuda") -> dict[str, Any]:
    """Run the items (all, or ``only``), write ``gpu_check.json`` and ``gpu_check.md`` in
    ``out`` and return the JSON payload."""
    from proxies.measure.settings import resolve_device

    names = [i.name for i in ITEMS]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ValueError(f"--only: unknown item(s) {', '.join(unknown)}; items: "
                         f"{', '.join(names)}")
    out.mkdir(parents=True, exist_ok=True)
    dev: torch.device | None = None
    reason = ""
    if not dry_run:
        try:
            dev = resolve_device(device)
            if dev.type != "cuda":
                raise RuntimeError(f"--device {device} is not a CUDA device")
        except (RuntimeError, ValueError) as exc:
            dev, reason = None, f"no CUDA device: {exc}"
    else:
        images = f"hr:{write_dry_images(out)}"
    if images is None:
        images = f"hr:{SET14}" if SET14.is_dir() else "default:val"
    ctx = Context(out=out, dry_run=dry_run, device=dev, images=images, cuda_reason=reason)
    started = time.perf_counter()
    results = []
    for item in ITEMS:
        if only and item.name not in only:
            continue
        elapsed = time.perf_counter() - started
        if not dry_run and elapsed > TOTAL_BUDGET_S:
            results.append(ItemResult(item.name, item.title, "skipped", 0.0, item.cap_s,
                                      f"the check's budget of {TOTAL_BUDGET_S:.0f} s is spent "
                                      f"({elapsed:.0f} s); rerun with --only {item.name}"))
            continue
        results.append(run_item(item, ctx, item.cap_s))
    payload = {
        "dry_run": dry_run, "device": "cpu" if dry_run else (str(dev) if dev else None),
        "images": images, "environment": environment(dev),
        "total_seconds": time.perf_counter() - started,
        "items": [dataclasses.asdict(r) for r in results],
    }
    (out / "gpu_check.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(to_markdown(payload))
    return payload

def to_markdown(payload: dict[str, Any]) -> str:
    """``gpu_check.md``: the summary table, then each item's own table."""
    env = payload["environment"]
    where = env.get("gpu") or f"{env['cpu']} (CPU)"
    dry = " (dry run: CPU, tiny sizes, figures meaningless)" if payload["dry_run"] else ""
    lines = [
        f"# GPU check{dry}",
        "",
        f"{env['date']}, {where}, torch {env['torch']} (CUDA {env['cuda']}), onnxruntime "
        f"{env.get('onnxruntime') or '-'}; total {payload['total_seconds']:.0f} s. Command: "
        "`python -m searchers.tools.gpu_check --out DIR"
        f"{' --dry-run' if payload['dry_run'] else ''}`",
        "",
        "| item | status | seconds | cap [s] | note |",
        "|---|---|---|---|---|",
    ]
    for r in payload["items"]:
        note = (r["reason"] or "").replace("|", "/").replace("\n", " ")
        lines.append(f"| {r['name']} | {r['status']} | {r['seconds']:.1f} | {r['cap_s']:.0f} "
                     f"| {note} |")
    for r in payload["items"]:
        lines += ["", f"## {r['name']}: {r['title']}", "", f"Status: **{r['status']}**"
                  + (f" ({r['reason']})" if r["reason"] else "")]
        if r["markdown"]:
            lines += ["", r["markdown"]]
    return "\n".join(lines) + "\n"

