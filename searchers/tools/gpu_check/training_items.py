"""GPU-check item that measures training: a short mixed-precision retraining
(:class:`searchers.training.trainer.Retrainer` with ``optim.amp=true``): time per iteration,
peak memory, validation PSNR."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from searchers.tools.gpu_check.context import Context, Skipped, dry_folder, fmt


def item_amp_retrain(ctx: Context) -> tuple[dict[str, Any], str]:
    from search_space.zoo import ZOO, at_scale
    from searchers.common.config import load_config
    from searchers.training.config import RetrainConfig, RetrainOptim
    from searchers.training.trainer import Retrainer

    device = ctx.need_cuda()
    if "amp" not in {f.name for f in dataclasses.fields(RetrainOptim)}:
        raise Skipped("searchers/retrain.py has no optim.amp option (mixed-precision "
                      "retraining is absent in this checkout)")
    iterations = 2 if ctx.dry_run else 300
    over = ["optim.amp=true", f"optim.iterations={iterations}", "optim.warmup_iterations=0",
            f"run.device={device}", f"run.val_every={iterations}",
            f"run.checkpoint_every={iterations}", f"run.log_every={iterations}",
            f"run.dir={ctx.out}", "run.name=amp_retrain"]
    if ctx.dry_run:
        genotype = at_scale(ZOO["span_ntire2024"], 2)
        over += [f"data.train={dry_folder(ctx)}", f"data.val={dry_folder(ctx)}",
                 "data.patch_size=16", "data.batch_size=2"]
    else:
        genotype = ZOO["span_ntire2024_train"]
        over += ["data.batch_size=16", "data.patch_size=128"]
    cfg = load_config(RetrainConfig, None, over)
    run_dir = ctx.out / "amp_retrain"
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Retrainer(cfg, genotype, run_dir)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    trainer.run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else None)
    if device.type == "cuda" and not trainer.amp:
        raise RuntimeError("optim.amp=true on CUDA but the trainer did not enable autocast")
    data = {"device": str(device), "net": "span_ntire2024_train" if not ctx.dry_run
            else "span_ntire2024 x2", "iterations": trainer.step, "amp": trainer.amp,
            "grad_scale": float(trainer.scaler.get_scale()) if trainer.amp else None,
            "seconds": seconds, "ms_per_iteration": seconds / max(trainer.step, 1) * 1e3,
            "peak_memory_mib": peak, "val_psnr_y_db": trainer.best_psnr,
            "batch": cfg.data.batch_size, "patch": trainer.patch_size}
    note = "" if trainer.amp else " (AMP is CUDA only: this run trained in float32)"
    md = ("| net | iterations | batch x patch | AMP | ms / iteration (incl. 1 validation) | "
          "peak memory [MiB] | val Y-PSNR [dB] |\n|---|---|---|---|---|---|---|\n"
          f"| {data['net']} | {trainer.step} | {cfg.data.batch_size} x {trainer.patch_size} | "
          f"{trainer.amp} | {data['ms_per_iteration']:.1f} | {fmt(peak, '.1f')} | "
          f"{trainer.best_psnr:.3f} |" + (f"\n\n{note.strip(' ()')}" if note else ""))
    return data, md
