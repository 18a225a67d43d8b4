"""GPU-check item that measures a runtime: ONNX Runtime's CUDA execution provider next to torch
eager, each net timed with one :class:`proxies.measure.settings.MeasureSettings` per backend
(:func:`proxies.measure.latency.measure_latency`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from searchers.tools.gpu_check.context import Context, Skipped


def item_onnxruntime_cuda(ctx: Context) -> tuple[dict[str, Any], str]:
    from proxies.measure.latency import measure_latency
    from proxies.measure.settings import MeasureSettings
    from search_space import build_model
    from search_space.zoo import REFERENCE_NET, YARDSTICK, ZOO, at_scale

    device = ctx.need_cuda()
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise Skipped(f"onnxruntime is not installed ({exc}); pip install onnxruntime-gpu "
                      "on the GPU machine") from exc
    providers = list(ort.get_available_providers())
    if device.type == "cuda" and "CUDAExecutionProvider" not in providers:
        raise Skipped(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
                      f"{', '.join(providers)}); install onnxruntime-gpu matching the CUDA "
                      "version")
    names = [REFERENCE_NET] if ctx.dry_run else list(YARDSTICK)
    scale = 2 if ctx.dry_run else 4
    side = 16 if ctx.dry_run else 256
    runs, warmup = (2, 1) if ctx.dry_run else (30, 5)
    eager = MeasureSettings(device=str(device), lr_size=(side, side), rounds=1,
                            runs_per_round=runs, warmup=warmup)
    onnx = replace(eager, backend="onnxruntime")
    rows, lines = [], []
    for name in names:
        model = build_model(at_scale(ZOO[name], scale)).eval()
        torch_ms = measure_latency(model, eager).median_ms
        ort_ms = measure_latency(model, onnx).median_ms
        rows.append({"name": name, "torch_ms": torch_ms, "onnxruntime_ms": ort_ms,
                     "ratio": ort_ms / torch_ms})
        lines.append(f"| {name} | {torch_ms:.3f} | {ort_ms:.3f} | {ort_ms / torch_ms:.2f} |")
    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    md = (f"ONNX Runtime {ort.__version__}, {provider}, LR {side}x{side}\n\n"
          "| net | torch eager [ms] | onnxruntime [ms] | ort / torch |\n|---|---|---|---|\n"
          + "\n".join(lines))
    return {"device": str(device), "provider": provider, "lr_size": [side, side],
            "onnxruntime": ort.__version__, "rows": rows}, md
