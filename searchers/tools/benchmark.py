"""Search benchmarks: ``python -m searchers.tools.benchmark WHAT [--config FILE] [key=value ...]``.

DARTS (the DARTS config, same defaults and overrides):

* ``lut``: table-predicted vs measured latency over random derived nets (Spearman, MAPE).
* ``step``: search time per 100 steps in the full and the sampling (memory-efficient) mode, the
  peak memory of one search step in each, and the supernet's weight step against the summed
  isolated forward+backward times of its candidate ops (the framework overhead).

Trials (the Optuna config):

* ``overhead``: per-trial overhead of sampling, the sampler and the storage, without training
  or measurement (the evaluation is replaced by a constant).
* ``proxy-rank``: how far each proxy ranks nets as a long training does
  (:mod:`searchers.tools.proxy_rank`, whose options it takes).

Costs:

* ``train-form [GENOTYPE.json ...]``: latency and params of the re-parameterisable ops
  (``rep_conv3x3``, ``ecb3x3``, ``conv3xc``, next to ``conv3x3``) and of the given nets in their
  training form against their deployed form, one thread, timed interleaved round by round in
  one process. The training form is what a search would see if it costed the net as trained;
  every proxy measures the deployed form, so this is the only place the training form is timed.

All print Markdown.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from searchers.common.config import load_config
from searchers.differentiable.config import DartsConfig
from searchers.differentiable.search import DartsSearch

logger = logging.getLogger(__name__)


def _median_ms(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _search(cfg: DartsConfig, tmp: str) -> DartsSearch:
    from pathlib import Path

    return DartsSearch(cfg, Path(tmp))


def bench_lut(cfg: DartsConfig, samples: int) -> str:
    import tempfile

    from searchers.differentiable.latency_table import validate_table

    with tempfile.TemporaryDirectory() as tmp:
        search = _search(cfg, tmp)
        r = validate_table(search.net, search.table, samples=samples, seed=cfg.run.seed)
    settings = search.table.settings  # what the table and the nets were measured with
    (h, w), threads = settings.lr_size, settings.threads
    return (
        "| backend | nets | LR size | threads | Spearman | MAPE [%] | measured median [ms] | "
        "predicted median [ms] |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {settings.backend} | {r['samples']} | {h}x{w} | {threads} | "
        f"{r['spearman']:.3f} | "
        f"{r['mape_percent']:.1f} | {statistics.median(r['measured_ms']):.2f} | "
        f"{statistics.median(r['predicted_ms']):.2f} |"
    )


def _isolated_ms(search: DartsSearch, runs: int) -> float:
    """Sum over candidate ops of their isolated forward+backward time at their input shape."""
    from searchers.differentiable.mixed import MixedOp

    shapes: dict[int, tuple[int, ...]] = {}

    def record(mod: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        shapes.setdefault(id(mod), tuple(args[0].shape))

    hooks = [m.register_forward_pre_hook(record) for m in search.net.mixed_ops()
             if m.costs[0].kind != "cell"]
    lr, _ = search._batch(search.train)
    with torch.no_grad():
        search.net(lr)
    for h in hooks:
        h.remove()
    total = 0.0
    for m in search.net.mixed_ops():
        if not isinstance(m, MixedOp) or id(m) not in shapes:
            continue
        for op in m.ops:
            x = torch.rand(shapes[id(m)], device=search.device, requires_grad=True)

            def fwd_bwd(op: torch.nn.Module = op, x: torch.Tensor = x) -> None:
                op(x).sum().backward()

            total += _median_ms(fwd_bwd, runs)
    return total


def bench_step(cfg: DartsConfig, runs: int) -> str:
    import tempfile

    from proxies.measure.memory import measure_callable_peak_mib

    rows = []
    for mode in ("full", "sample"):
        mcfg = replace(cfg, search=replace(cfg.search, memory_mode=mode))
        with tempfile.TemporaryDirectory() as tmp:
            s = _search(mcfg, tmp)
            s.architect.set_reference()
            s.net.train()
            train, val = s._batch(s.train), s._batch(s.val)

            def weight_step(s: DartsSearch = s, train: Any = train) -> None:
                s.optimizer.zero_grad(set_to_none=True)
                F.l1_loss(s.net(train[0]), train[1]).backward()
                s.optimizer.step()

            def search_step(s: DartsSearch = s, train: Any = train, val: Any = val) -> None:
                s.architect.step(train, val)
                weight_step()

            w_ms = _median_ms(weight_step, runs)
            step_ms = _median_ms(search_step, runs)
            peak = measure_callable_peak_mib(search_step, s.device)
            iso = _isolated_ms(s, max(3, runs // 2)) if mode == "full" else float("nan")
            rows.append((mode, step_ms, w_ms, iso, peak))
    c = cfg
    head = (f"width {c.space.width}, {c.space.num_cells} cells of {'/'.join(c.space.cell_types)}, "
            f"{len(c.space.conv_candidates)} conv x {len(c.space.attention_candidates)} "
            f"attention candidates, batch {c.data.batch_size} x {c.data.patch_size}px HR, "
            f"x{c.space.scale}, sample_k {c.search.sample_k}\n\n")
    table = ("| mode | search step [ms] | s / 100 steps | weight step [ms] | "
             "sum of isolated candidate ops fwd+bwd [ms] | overhead x | peak step memory "
             "[MiB] |\n|---|---|---|---|---|---|---|\n")
    for mode, step_ms, w_ms, iso, peak in rows:
        over = f"{w_ms / iso:.2f}" if iso == iso else "-"
        iso_s = f"{iso:.1f}" if iso == iso else "-"
        table += (f"| {mode} | {step_ms:.1f} | {step_ms / 10:.1f} | {w_ms:.1f} | {iso_s} | "
                  f"{over} | {peak:.1f} |\n")
    return head + table


def bench_overhead(cfg: Any, trials: int, tmp: str) -> str:
    """Per-trial overhead with the evaluation replaced by a constant (SQLite storage)."""
    import optuna

    from searchers.trials import study as optuna_search
    from searchers.trials.trial import TrialResult

    def constant(genotype: Any, *args: Any, **kwargs: Any) -> TrialResult:
        return TrialResult(30.0, 1.0, 1.0, 0.1, 1.0, 1.0, 1.0, 10, "cpu", 0.0,
                           genotype.to_json(indent=None), {})

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    real = optuna_search.evaluate_genotype
    optuna_search.evaluate_genotype = constant
    try:
        url = f"sqlite:///{tmp}/overhead.db"
        cfg = replace(cfg, study=replace(cfg.study, n_trials=trials, enqueue_zoo=False))
        optuna_search.open_study(cfg, url)
        t0 = time.perf_counter()
        optuna_search.run_worker(cfg, url, worker=1)
        total = time.perf_counter() - t0
    finally:
        optuna_search.evaluate_genotype = real
    return ("| sampler | storage | trials | per-trial overhead [ms] |\n|---|---|---|---|\n"
            f"| {cfg.study.sampler} (population {cfg.study.population_size}) | SQLite | "
            f"{trials} | {total / trials * 1e3:.1f} |")


def _interleaved_ms(modules: dict[str, torch.nn.Module], x: torch.Tensor, rounds: int,
                    runs: int) -> dict[str, float]:
    """Median over rounds of each module's per-round median time (order alternating)."""
    medians: dict[str, list[float]] = {k: [] for k in modules}
    calls: dict[str, Callable[[], object]] = {k: partial(m, x) for k, m in modules.items()}
    names = list(calls)
    with torch.inference_mode():
        for call in calls.values():
            _median_ms(call, 1, warmup=2)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                medians[name].append(_median_ms(calls[name], runs, warmup=0))
    return {k: statistics.median(v) for k, v in medians.items()}


def bench_train_form(genotypes: list[str], rounds: int = 15, runs: int = 5) -> str:
    from proxies.measure.complexity import count_params
    from proxies.measure.isolation import measuring
    from search_space import Genotype, build_model
    from search_space.network import deployed_form
    from search_space.ops import OPS

    torch.manual_seed(0)
    rows = []
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with measuring():
            cases: list[tuple[str, torch.nn.Module, torch.Tensor, int, int]] = [
                (f"`{op}` 32->32 @ 64x64", OPS[op](32, 32), torch.rand(1, 32, 64, 64), rounds,
                 runs) for op in ("conv3x3", "rep_conv3x3", "ecb3x3", "conv3xc")]
            cases += [(f"{path} @ 128x128", build_model(Genotype.load(path)),
                       torch.rand(1, 3, 128, 128), max(3, rounds // 2), max(1, runs // 2))
                      for path in genotypes]
            for label, module, x, n_rounds, n_runs in cases:
                train = module.eval()
                deployed = deployed_form(train).eval()
                ms = _interleaved_ms({"train": train, "deployed": deployed}, x, n_rounds,
                                     n_runs)
                rows.append(f"| {label} | {ms['train']:.2f} | {ms['deployed']:.2f} | "
                            f"{count_params(train):,} / {count_params(deployed):,} |")
    finally:
        torch.set_num_threads(previous)
    return ("| what | training form [ms] | deployed [ms] | params training / deployed |\n"
            "|---|---|---|---|\n" + "\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["proxy-rank"]:
        from searchers.tools.proxy_rank import main as proxy_rank_main

        return proxy_rank_main(argv[1:], prog="python -m searchers.tools.benchmark proxy-rank")
    p = argparse.ArgumentParser(prog="python -m searchers.tools.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("lut", "step", "overhead", "proxy-rank", "train-form"))
    p.add_argument("--config")
    p.add_argument("--samples", type=int, default=30, help="random nets for 'lut'")
    p.add_argument("--runs", type=int, default=10, help="timed runs for 'step'")
    p.add_argument("--trials", type=int, default=200, help="trials for 'overhead'")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds for 'train-form'")
    args = p.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.what == "train-form":  # the positional key=value slots take genotype files here
        print(bench_train_form(list(args.overrides), rounds=args.rounds))
        return 0
    if args.what == "overhead":
        import tempfile

        from searchers.trials.config import OptunaConfig

        ocfg = load_config(OptunaConfig, args.config, args.overrides)
        if ocfg.measure.threads:
            torch.set_num_threads(ocfg.measure.threads)
        with tempfile.TemporaryDirectory() as tmp:
            print(bench_overhead(ocfg, args.trials, tmp))
        return 0
    cfg = load_config(DartsConfig, args.config, args.overrides)
    torch.manual_seed(cfg.run.seed)
    out = bench_lut(cfg, args.samples) if args.what == "lut" else bench_step(cfg, args.runs)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
