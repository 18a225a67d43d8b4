"""GPU check: every GPU measurement of the project in one run, for the day a GPU is lent.

``python -m searchers.tools.gpu_check --out DIR [--dry-run] [--only ITEM,...] [--images SPEC]``
writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (a summary table, then each item's own
table). Each item is a function run under its own time cap (the caps add up to 380 s, and
the run stops starting items once 450 s have passed, so the check ends well inside 8 minutes
on one GPU):

==================  =====  ==================================================================
item                cap s  what (the code it calls)
==================  =====  ==================================================================
``zoo_fp32``        70     the zoo on CUDA, NTIRE 2024-2026 protocol and ours, FP32
                           (:func:`proxies.protocol.compare.compare`: ``test_demo.py``'s
                           protocol beside :mod:`proxies.profile.command`'s steady state)
``zoo_fp16``        60     the same in FP16
``lut_fidelity``    80     the DARTS hardware table measured on CUDA, checked against 30
                           whole random nets
                           (:func:`searchers.differentiable.latency_table.validate_table`,
                           as ``python -m searchers.tools.benchmark lut``)
``darts_step``      70     DARTS search-step time and peak memory, full and sampling memory
                           modes (:func:`searchers.tools.benchmark.bench_step`)
``amp_retrain``     60     a short mixed-precision retraining (:class:`searchers.training.retrain.
                           Retrainer` with ``optim.amp=true``): time per iteration, peak
                           memory, validation PSNR
``onnxruntime_cuda`` 40    ONNX Runtime's CUDA execution provider next to torch eager, through
                           ``measure.backend=onnxruntime`` (``proxies.measure.latency``)
==================  =====  ==================================================================

An item whose prerequisite is missing is recorded as ``skipped`` with the reason, never faked:
no CUDA device, no ``CUDAExecutionProvider`` in onnxruntime, no ``backend`` option in
``proxies.measure.latency.measure_latency`` yet, no ``optim.amp`` in the retraining config, float16
kernels missing. An item that raises is ``failed`` (with the error), one that runs past its cap
is ``timeout``. The exit code is 1 when any item failed or timed out, else 0.

``--dry-run`` runs every item on the CPU at tiny sizes (a few tiny images written to
``DIR/_dry_images``, a 1-cell supernet, 2 retraining iterations), so the tests exercise the
whole script without a GPU. Its figures mean nothing.

Images for the protocol items: ``--images`` (as ``python -m proxies.profile --images``);
default Set14's HR folder (``../shared/datasets/Set14/HR``) where this checkout has it, else
the embedded ``default:val`` set, both downscaled x4 with the project's degradation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import platform
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("searchers.tools.gpu_check")

TOTAL_BUDGET_S = 450.0
"""No item is started once this much wall time has passed (the last may run its cap)."""

ROOT = Path(__file__).resolve().parents[2]
SET14 = ROOT.parent / "shared" / "datasets" / "Set14" / "HR"


class Skipped(Exception):  # noqa: N818 (a status, not an error)
    """A prerequisite of the item is missing; the message says which and how to get it."""


class ItemTimeout(Exception):  # noqa: N818
    """The item ran past its time cap."""


@dataclass
class Context:
    """What every item sees."""

    out: Path
    dry_run: bool
    device: torch.device | None  # None: no CUDA in a real run
    images: str
    cuda_reason: str = ""

    def need_cuda(self) -> torch.device:
        """The device to measure on: the CPU in a dry run, else CUDA (or :class:`Skipped`)."""
        if self.dry_run:
            return torch.device("cpu")
        if self.device is None:
            raise Skipped(self.cuda_reason)
        return self.device


@dataclass
class ItemResult:
    name: str
    title: str
    status: str  # ok | skipped | failed | timeout
    seconds: float
    cap_s: float
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    markdown: str = ""


@dataclass(frozen=True)
class Item:
    name: str
    title: str
    cap_s: float
    run: Callable[[Context], tuple[dict[str, Any], str]]


# ------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raise :class:`ItemTimeout` in the block once ``seconds`` of wall time have passed
    (``SIGALRM``; in another thread or without ``SIGALRM`` the block runs uncapped)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        logger.warning("no time cap here (not the main thread, or no SIGALRM)")
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise ItemTimeout(f"ran past its cap of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_markdown_table(text: str) -> list[dict[str, Any]]:
    """The rows of the first Markdown table in ``text`` as dicts (numbers as floats; ``-``
    as ``None``)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return []
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        row: dict[str, Any] = {}
        for key, cell in zip(header, cells, strict=False):
            if cell == "-":
                row[key] = None
                continue
            try:
                row[key] = float(cell)
            except ValueError:
                row[key] = cell
        rows.append(row)
    return rows


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def write_dry_images(out: Path) -> Path:
    """Three tiny HR images (48 px) in ``out/_dry_images/HR`` for the dry run."""
    from PIL import Image

    folder = out / "_dry_images" / "HR"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 48, dtype=np.float64)
    for i in range(3):
        smooth = (base[None, :, None] * 0.6 + base[:, None, None] * 0.4) * np.ones((1, 1, 3))
        arr = np.clip(smooth + rng.normal(0, 12, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"dry{i}.png")
    return folder


def dry_folder(ctx: Context) -> str:
    return str(ctx.out / "_dry_images" / "HR")


# ------------------------------------------------------------------------------ items


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


def item_amp_retrain(ctx: Context) -> tuple[dict[str, Any], str]:
    from search_space.zoo import ZOO, at_scale
    from searchers.common.config import load_config
    from searchers.training.retrain import RetrainConfig, Retrainer, RetrainOptim

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
          f"{trainer.amp} | {data['ms_per_iteration']:.1f} | {_fmt(peak, '.1f')} | "
          f"{trainer.best_psnr:.3f} |" + (f"\n\n{note.strip(' ()')}" if note else ""))
    return data, md


def item_onnxruntime_cuda(ctx: Context) -> tuple[dict[str, Any], str]:
    from proxies.measure.latency import measure_latency
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
    rows, lines = [], []
    backend: dict[str, Any] = {"backend": "onnxruntime"}
    for name in names:
        model = build_model(at_scale(ZOO[name], scale)).eval()
        shape = (1, 3, side, side)
        eager = measure_latency(model, shape, device=device, runs=runs, warmup=warmup)
        onnx = measure_latency(model, shape, device=device, runs=runs, warmup=warmup,
                               **backend)
        rows.append({"name": name, "torch_ms": eager.median_ms, "onnxruntime_ms": onnx.median_ms,
                     "ratio": onnx.median_ms / eager.median_ms})
        lines.append(f"| {name} | {eager.median_ms:.3f} | {onnx.median_ms:.3f} | "
                     f"{onnx.median_ms / eager.median_ms:.2f} |")
    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    md = (f"ONNX Runtime {ort.__version__}, {provider}, LR {side}x{side}\n\n"
          "| net | torch eager [ms] | onnxruntime [ms] | ort / torch |\n|---|---|---|---|\n"
          + "\n".join(lines))
    return {"device": str(device), "provider": provider, "lr_size": [side, side],
            "onnxruntime": ort.__version__, "rows": rows}, md


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


# ------------------------------------------------------------------------------ running


def environment(device: torch.device | None) -> dict[str, Any]:
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m searchers.tools.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--dry-run", action="store_true",
                   help="every item on the CPU at tiny sizes (seconds; for the tests)")
    p.add_argument("--only", default="", help="comma-separated items: "
                   + ", ".join(i.name for i in ITEMS))
    p.add_argument("--images", help="images for the protocol items (as proxies.profile.command "
                   "--images); default Set14 HR where present, else default:val")
    p.add_argument("--device", default="cuda", help="the CUDA device (default cuda)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    try:
        payload = run_check(Path(args.out), dry_run=args.dry_run, only=only,
                            images=args.images, device=args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in payload["items"]:
        print(f"{r['name']:<18} {r['status']:<8} {r['seconds']:6.1f} s  {r['reason'] or ''}")
    print(f"wrote {Path(args.out) / 'gpu_check.json'} and {Path(args.out) / 'gpu_check.md'}")
    return 1 if any(r["status"] in ("failed", "timeout") for r in payload["items"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
