"""One report per run: ``python -m results.report RUN [RUN ...] --out DIR [--storage URL]``.

Takes the folders of retrained nets (``python searchers/retrain.py``: derived nets and zoo nets
retrained on the same budget) and, optionally, the search they came from (an Optuna storage or
a Ray Tune folder), and writes into ``--out``:

* ``report.html``: one offline page (Plotly; plotly.js in ``plotly.min.js`` beside it) with

  - the search's Pareto front (proxy PSNR against latency and against peak memory, both as
    ratios to the reference net measured in the same study) with the retrained nets added on a
    second y axis (their benchmark Y-PSNR against their latency and memory ratios measured
    here, in one process);
  - the retrained nets alone: benchmark Y-PSNR against measured latency and peak memory;
  - the NTIRE-style table: Y-PSNR / SSIM per set, params, FLOPs, activations, #conv, latency
    (its ratio to the reference, ``span_ntire2024`` by default, timed interleaved, and the
    ratio to ``rlfn_ntire``: the net's ratio over the mean ratio of the ``rlfn_ntire`` runs,
    or of one untrained ``rlfn_ntire`` timed here when none is among the runs) and peak
    memory, every net measured in this process on this machine;
  - whether a derived net meets the aim: the PSNR of ``rlfn_ntire`` on every set at lower
    latency than ``rlfn_ntire`` (its ratio to the reference below that of ``rlfn_ntire``),
    and no more peak memory than ``fmen_s`` (both must be among the runs);
  - side-by-side crops: bicubic, every net, HR, each with its crop PSNR;
  - the training budget, the machine, the measurement settings and the command.
* ``table.csv`` / ``table.md``: the table as numbers and as Markdown;
* ``seeds.csv`` / ``seeds.md``: one row per architecture (runs whose deployed genotypes are
  equal: the same net retrained with several ``run.seed`` values), with the mean, the standard
  deviation and the range of each set's Y-PSNR over its runs; the aim is judged on these means
  too;
* ``report.json``: everything above as data;
* ``eval/<net>.csv``: per-image metrics (reused on a re-run when the weights are unchanged);
* ``crops/<net>.png``: the crops.

Every net is evaluated in its deployed form (``deployed.pt`` with ``deployed_genotype.json``;
the retrain run checked it against the trained form). Runs must share the training budget
(the ``data`` and ``optim`` sections of their ``config.yaml``); ``--allow-mixed-budgets`` lets
different budgets through with a warning. Exit status 2 on bad input, with a message that
names it.

From Python: :func:`build_report` (the run folders, the report folder and
:class:`ReportOptions`), which returns a :class:`ReportResult`.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from proxies.measure.memory import measure_peak_memory
from proxies.measure.profile_rows import machine_info, profile_model, with_aim_ratio
from proxies.measure.settings import MeasureSettings, resolve_device
from proxies.profile.table import ratio_note
from results.evaluate.command import _tile_arg
from results.evaluate.inference import Tile
from results.evaluate.sets import DEFAULT_SETS, resolve_set, summarise
from results.plots.page import _write_text_atomic, write_page_html
from results.report.crops import _crops_html, make_crops
from results.report.data import (
    aim_latency_ratio,
    aim_verdict,
    build_table,
    evaluate_run,
    link_search_trials,
    repeated_seeds,
    search_points,
    seed_summary,
    set_labels,
)
from results.report.render import (
    _CSS,
    _aim_html,
    _html_table,
    _provenance_html,
    _seed_cells,
    _table_html,
    retrained_figure,
    search_figure,
    seeds_markdown,
    table_markdown,
)
from results.report.runs import (
    ReportError,
    budget_differences,
    build_deployed,
    check_runs,
    load_run,
    selection_overlaps,
)
from search_space import GenotypeError
from search_space.zoo import AIM_NET, REFERENCE_NET, ZOO, at_scale

logger = logging.getLogger("results.report")

__all__ = [
    "ReportOptions",
    "ReportResult",
    "build_parser",
    "build_report",
    "main",
]

REPORT_HTML = "report.html"
TABLE_CSV = "table.csv"
TABLE_MD = "table.md"
SEEDS_CSV = "seeds.csv"
SEEDS_MD = "seeds.md"
REPORT_JSON = "report.json"
EVAL_DIR = "eval"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m results.report``."""
    p = argparse.ArgumentParser(prog="python -m results.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="retrain run folders (derived and zoo)")
    p.add_argument("--out", type=Path, required=True, help="report folder (created)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--storage", help="Optuna storage URL of the search, e.g. "
                                          "sqlite:///runs/optuna/NAME/study.db")
    source.add_argument("--ray", type=Path, help="Ray Tune experiment folder of the search")
    p.add_argument("--study", help="Optuna study name (when the storage has several)")
    p.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS),
                   help="benchmark sets or HR folders (default: Set5 Set14 B100)")
    p.add_argument("--datasets-root", type=Path, help="folder holding <set>/HR")
    p.add_argument("--reference", default=REFERENCE_NET,
                   help=f"zoo net latency ratios are taken to (default {REFERENCE_NET})")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--size", type=int, default=128, help="LR side of the timing input")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads while timing (default 1; 0 keeps torch's setting)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "openvino"),
                   help="measurement backend of latency and peak memory (proxies.measure.runtime)")
    p.add_argument("--tile", type=_tile_arg, default=None,
                   help="LR tile side or 'auto' for the evaluation")
    p.add_argument("--crop-set", help="set of the crops (default: the first of --sets)")
    p.add_argument("--crop-image", help="image stem of the crops (default: most detailed)")
    p.add_argument("--crop-size", type=int, default=96, help="HR side of the crops")
    p.add_argument("--allow-mixed-budgets", action="store_true",
                   help="report runs trained with different budgets (with a warning)")
    return p


@dataclass(frozen=True)
class ReportOptions:
    """The report's options besides its runs and folder: the command line's, one field per
    flag (``crop_size`` is ``--crop-size``), with its defaults. ``storage`` (an Optuna URL, with
    ``study`` where it holds several) or ``ray`` (a Ray Tune folder) is the search the runs came
    from; ``size``, ``rounds``, ``threads`` and ``backend`` are the timing settings."""

    storage: str | None = None
    ray: Path | None = None
    study: str | None = None
    sets: Sequence[str] = DEFAULT_SETS
    datasets_root: Path | None = None
    reference: str = REFERENCE_NET
    device: str = "auto"
    size: int = 128
    threads: int = 1
    rounds: int = 5
    backend: str = "torch"
    tile: Tile = None
    crop_set: str | None = None
    crop_image: str | None = None
    crop_size: int = 96
    allow_mixed_budgets: bool = False

    def __post_init__(self) -> None:
        for name, lo in (("size", 16), ("rounds", 1), ("crop_size", 8), ("threads", 0)):
            value = getattr(self, name)
            if value < lo:
                raise ReportError(f"--{name.replace('_', '-')}: got {value}; allowed: >= {lo}")
        if self.reference not in ZOO:
            raise ReportError(f"--reference: got {self.reference!r}; allowed: {list(ZOO)}")
        if self.study is not None and self.storage is None:
            raise ReportError("--study applies to --storage only")
        if self.storage is not None and self.ray is not None:
            raise ReportError("--storage and --ray: give one search, not both")
        if not self.sets or isinstance(self.sets, str):
            raise ReportError(f"--sets: got {self.sets!r}; give a list of benchmark names or "
                              "HR folders, e.g. ['Set5']")


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote into ``out``: the table (one row per run), the seed
    table (one row per architecture), the aim verdicts and ``report.json``'s whole content."""

    out: Path
    table: pd.DataFrame
    seeds: pd.DataFrame
    aim: dict[str, Any]
    aim_over_seeds: dict[str, Any] | None
    payload: dict[str, Any]

    @property
    def html(self) -> Path:
        return self.out / REPORT_HTML


def build_report(run_dirs: Sequence[str | Path], out: str | Path,
                 options: ReportOptions | None = None, *,
                 command: Sequence[str] | None = None) -> ReportResult:
    """The report of the retrain run folders ``run_dirs`` in the folder ``out`` (created), with
    ``options`` (default: the command's defaults); ``command`` is the command line it records
    (default ``sys.argv``). Raises :class:`ReportError` (a ``ValueError``), ``FileNotFoundError``
    or :class:`~search_space.GenotypeError` for bad input, before anything is written."""
    from tqdm import tqdm

    from search_space import build_model

    opts = ReportOptions() if options is None else options
    recorded = list(sys.argv if command is None else command)
    runs = [load_run(Path(folder)) for folder in run_dirs]
    check_runs(runs, opts.allow_mixed_budgets)
    for spec in opts.sets:
        resolve_set(spec, opts.datasets_root)  # a missing folder fails before any work
    crop_set = opts.crop_set or opts.sets[0]
    crop_folder = resolve_set(crop_set, opts.datasets_root)
    search = None
    if opts.ray is not None:
        from results.table.ray_experiment import from_ray

        search = search_points(from_ray(opts.ray), opts.reference)
    elif opts.storage is not None:
        from results.table.optuna_study import from_optuna

        search = search_points(from_optuna(opts.storage, opts.study), opts.reference)
    try:
        device = resolve_device(opts.device)
    except RuntimeError as exc:  # CUDA asked for but not available
        raise ReportError(f"--device {opts.device}: {exc}") from exc
    settings = MeasureSettings(device=str(device), lr_size=(opts.size, opts.size),
                               rounds=opts.rounds, threads=opts.threads or None,
                               backend=opts.backend)  # checked once, before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    overlaps = selection_overlaps(runs, opts.sets, opts.datasets_root)
    for name, hits in overlaps.items():
        logger.warning("%s was validated (selected) on %s, which this report also scores: its "
                       "figures there are not test figures", name, ", ".join(hits))
    models = {run.name: build_deployed(run, device) for run in runs}
    summaries: dict[str, pd.DataFrame] = {}
    for run in tqdm(runs, desc="evaluating", unit="net", file=sys.stderr):
        per_image = evaluate_run(run, models[run.name], opts.sets, device=device,
                                 tile=opts.tile, datasets_root=opts.datasets_root,
                                 cache_dir=out / EVAL_DIR)
        summaries[run.name] = summarise(per_image)
    scale = runs[0].deployed.scale
    reference = build_model(at_scale(ZOO[opts.reference], scale)).to(device).eval()
    torch.manual_seed(0)
    profiles = {run.name: profile_model(run.name, models[run.name], settings, reference)
                for run in tqdm(runs, desc="profiling", unit="net", file=sys.stderr)}
    aim_ratio = aim_latency_ratio(runs, profiles, opts.reference)
    if aim_ratio is None:  # no retrained rlfn_ntire: time an untrained one (same latency)
        aim_net = build_model(at_scale(ZOO[AIM_NET], scale)).to(device).eval()
        aim_ratio = profile_model(AIM_NET, aim_net, replace(settings, memory=False),
                                  reference).latency_ratio
    profiles = dict(zip(profiles, with_aim_ratio(list(profiles.values()), aim_ratio),
                        strict=True))
    ref_memory = measure_peak_memory(reference, settings).peak_memory_mib
    table = build_table(runs, summaries, profiles)
    table["memory_ratio"] = table["peak_memory_mib"] / ref_memory if ref_memory else math.nan
    links = {} if search is None else link_search_trials(search, runs)
    table["search_trial"] = [links.get(run.name) for run in runs]
    front_set = set_labels(table)[0]
    aim = aim_verdict(table)
    seeds = seed_summary(table, runs)
    for name, given in repeated_seeds(seeds).items():
        logger.warning("%s was retrained with repeated seeds (%s): give each run its own "
                       "run.seed for a spread over seeds", name, ", ".join(given))
    aim_mean = aim_verdict(seeds) if (seeds["runs"] > 1).any() else None
    crops = make_crops(models, {r.name: r.deployed for r in runs}, crop_folder,
                       image=opts.crop_image, size=opts.crop_size, device=device)

    info = machine_info(device)
    if opts.threads:
        info["threads"] = opts.threads
    budget = runs[0].budget if not budget_differences(runs) else {
        r.name: r.budget for r in runs}
    provenance = {
        "command": shlex.join([sys.executable, *recorded]),
        "machine": info,
        "profile_settings": asdict(settings),
        "latency_reference": opts.reference,
        "aim_net": AIM_NET,
        "aim_latency_ratio": aim_ratio,
        "training_budget": budget,
        "selected_on_reported_sets": overlaps,
        "runs": {r.name: {"folder": str(r.run_dir), "command": r.command,
                          "deploy_check": r.deploy_check} for r in runs},
    }
    blocks: list[Any] = []
    if search is not None:
        blocks += [search_figure(search, table, "latency", opts.reference, front_set),
                   search_figure(search, table, "memory", opts.reference, front_set)]
    blocks.append(retrained_figure(table, front_set))
    how = {"onnxruntime": " (the ONNX export; peak memory: the resident-set rise)",
           "openvino": " (the ONNX export compiled for the CPU; peak memory: n/a, OpenVINO "
                       "gives no honest figure, proxies/measure/runtime.py)",
           }.get(opts.backend, " (eager)")
    blocks.append("<h2>NTIRE-style table</h2><p>Every net in its deployed form, measured in "
                  f"this process on {html.escape(opts.backend)}{how}: "
                  f"LR {opts.size}x{opts.size} timing input, "
                  f"{html.escape(ratio_note(opts.reference))}; complexity at 256x256."
                  "</p>" + _table_html(table))
    if overlaps:
        blocks.append("<p><b>Selected on a reported set:</b> " + "; ".join(
            f"{html.escape(n)} (validated on {html.escape(', '.join(h))})"
            for n, h in overlaps.items()) + ". Its figures on those sets are not test figures."
            "</p>")
    blocks.append(_aim_html(aim))
    if aim_mean is not None:
        blocks.append("<h2>Over seeds</h2><p>One row per architecture: the Y-PSNR mean "
                      "&plusmn; sample std [min-max] over its runs.</p>"
                      + _html_table(*_seed_cells(seeds), seeds["kind"])
                      + "<p>Judged on the means:</p>" + _aim_html(aim_mean))
    blocks.append(_crops_html(crops, out))
    blocks.append(_provenance_html(provenance))
    title = f"Report: {', '.join(r.name for r in runs)}"
    write_page_html(blocks, out / REPORT_HTML, title, style=_CSS)
    _write_text_atomic(table.to_csv(index=False), out / TABLE_CSV)
    _write_text_atomic(table_markdown(table), out / TABLE_MD)
    _write_text_atomic(seeds.to_csv(index=False), out / SEEDS_CSV)
    _write_text_atomic(seeds_markdown(seeds), out / SEEDS_MD)
    payload = {**provenance, "table": json.loads(table.to_json(orient="records")),
               "aim": aim, "seeds": json.loads(seeds.to_json(orient="records")),
               "aim_over_seeds": aim_mean, "crops": {"set": crop_set, "image": crops["image"],
                                     "box": crops["box"],
                                     "psnr_y_db": {lab: v for lab, _, v in crops["panels"]}},
               "search": None if search is None else {
                   "trials": len(search), "source": opts.storage or str(opts.ray)}}
    _write_text_atomic(json.dumps(payload, indent=2, default=str), out / REPORT_JSON)
    return ReportResult(out=out, table=table, seeds=seeds, aim=aim, aim_over_seeds=aim_mean,
                        payload=payload)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    try:
        options = ReportOptions(**{f.name: getattr(args, f.name) for f in fields(ReportOptions)})
        payload = build_report(args.runs, args.out, options,
                               command=["-m", "results.report", *argv]).payload
    except (ReportError, FileNotFoundError, ValueError, GenotypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table_markdown(pd.DataFrame(payload["table"])))
    aim = payload["aim"]
    if aim["available"]:
        print("aim met by: " + (", ".join(aim["met_by"]) or "no derived net"))
    else:
        print(f"aim not judged: {aim['reason']}")
    if payload.get("aim_over_seeds"):
        print(seeds_markdown(pd.DataFrame(payload["seeds"])))
        over = payload["aim_over_seeds"]
        print("aim met on the means over seeds by: " + (", ".join(over["met_by"])
                                                         or "no derived net"))
    print(f"report: {args.out / REPORT_HTML}")
    return 0
