"""GPU-check items that measure the zoo: the NTIRE 2024-2026 challenge protocol beside our
steady-state figures, in FP32 and in FP16 (:func:`proxies.protocol.compare.compare`)."""

from __future__ import annotations

from typing import Any

import torch

from searchers.tools.gpu_check.context import Context, Skipped, dry_folder


def _zoo(ctx: Context, dtype: torch.dtype) -> tuple[dict[str, Any], str]:
    from proxies.protocol.command import format_comparison
    from proxies.protocol.compare import compare
    from proxies.protocol.images import open_images
    from proxies.protocol.ntire import ProtocolError
    from search_space.zoo import AIM_NET, REFERENCE_NET, ZOO, at_scale

    device = ctx.need_cuda()
    if ctx.dry_run:
        span = at_scale(ZOO[REFERENCE_NET], 2)
        nets = [(REFERENCE_NET, span)]
        source = open_images(f"hr:{dry_folder(ctx)}")
        (rounds, runs, warmup), threads = (1, 1, 0), 1
        reference, aim = (REFERENCE_NET, span), None
    else:
        nets = [(n, g) for n, g in ZOO.items() if not n.endswith("_train")]
        source = open_images(ctx.images)
        (rounds, runs, warmup), threads = (5, 2, 3), None
        reference, aim = (REFERENCE_NET, ZOO[REFERENCE_NET]), ZOO[AIM_NET]
    try:
        cmp = compare(nets, source, device=str(device), dtype=dtype, reference=reference,
                      aim=aim, rounds=rounds, runs_per_round=runs, warmup=warmup,
                      threads=threads)
    except ProtocolError as exc:
        if "--fp16" in str(exc):
            raise Skipped(str(exc)) from exc
        raise
    return cmp.to_dict(), format_comparison(cmp, markdown=True)


def item_zoo_fp32(ctx: Context) -> tuple[dict[str, Any], str]:
    return _zoo(ctx, torch.float32)


def item_zoo_fp16(ctx: Context) -> tuple[dict[str, Any], str]:
    return _zoo(ctx, torch.float16)
