"""How far each proxy ranks nets as a long training does: ``python -m searchers.tools.proxy_rank
--config FILE [options] [key=value ...]`` (also ``python -m searchers.tools.benchmark
proxy-rank``).

The nets: the zoo nets named by ``--zoo``, then ``--archs`` random nets of the config's space
(Optuna's random sampler, seed ``study.seed``), or of a trained supernet's space
(``--draw supernet`` with ``--supernet RUN``). The truth: the mean PSNR of ``--long-seeds``
trainings of ``--factor`` x ``proxy.steps`` steps (seeds 0, 1, ...). The proxies, each with
its cost in training steps per net:

* ``K steps`` (``proxy.steps``; today's ``proxy.kind=train``); with ``--seeds S`` also the mean
  over S seeds at K/S steps, S seeds at K steps and one training of S x K steps (only the
  first two with ``--seed-mean-only``);
* ``halving`` (``--halving``): successive halving as ``proxy.kind=halving`` runs it: each net
  trained on one cosine schedule over the top rung's steps and validated at every rung
  (``proxy.halving_min_steps * halving_eta**r``), the nets dealt into brackets of
  ``proxy.halving_batch`` in a fixed random order, the best ``1/eta`` of each bracket by PSNR
  going on; a net's score is (the rung it reached, its PSNR there), its cost the steps it
  trained. Ranked by PSNR only (a study also weighs latency and memory: that is a choice of
  the search, not of the proxy's fidelity);
* ``supernet K=k`` (``--supernet RUN --finetune 0,20``): the net's slices of a weight-sharing
  supernet (``python searchers/train_supernet.py``), fine-tuned k steps; nets outside the
  supernet's space get no score and are left out of that proxy's correlations (the count is
  shown). The supernet's own training time (``--supernet-seconds``, as measured when it was
  trained), divided over the nets it scores, is added to its cost.

For each proxy: Spearman, Kendall and the precision of its top 10 % (the share of its top
ceil(n/10) nets that are among the truth's), over all nets and over the nets that train (truth
>= ``--trains-above`` dB). Every training is appended to the JSON-lines ``--cache`` (the first
file is written, others are read), so a killed run resumes, and ``--part i/n`` splits the nets
over processes; a run whose caches hold everything prints the Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankSettings:
    """What ``proxy-rank`` compares (see the module docstring)."""

    archs: int = 12
    factor: int = 20
    zoo: tuple[str, ...] = ()
    seeds: int = 1
    wide: bool = True  # with seeds > 1: also K steps x seeds and seeds x K steps
    long_seeds: int = 1
    halving: bool = False
    supernet: str | None = None
    finetune: tuple[int, ...] = (0,)
    supernet_seconds: float = 0.0
    draw: str = "space"  # space | supernet
    trains_above: float = 23.0
    cache: tuple[str, ...] = ()
    part: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        if self.draw not in ("space", "supernet"):
            raise ValueError(f"--draw: got {self.draw!r}; give 'space' or 'supernet'")
        if self.draw == "supernet" and not self.supernet:
            raise ValueError("--draw supernet needs --supernet RUN (a train_supernet run)")
        if self.long_seeds < 1 or self.seeds < 1 or self.factor < 1:
            raise ValueError(f"--long-seeds, --seeds and --factor must be >= 1; got "
                             f"{self.long_seeds}, {self.seeds}, {self.factor}")
        i, n = self.part
        if not 0 <= i < n:
            raise ValueError(f"--part: got {i}/{n}; give i/n with 0 <= i < n, e.g. 0/2")


@dataclass
class _Done:
    """The finished trainings, keyed (kind, genotype JSON, steps, seed)."""

    runs: dict[tuple[str, str, int, int], dict[str, Any]] = field(default_factory=dict)

    def get(self, kind: str, g: Any, steps: int, seed: int) -> dict[str, Any] | None:
        return self.runs.get((kind, g.to_json(indent=None), steps, seed))


def proxy_candidates(steps: int, seeds: int, wide: bool = True) -> dict[str, tuple[int, int]]:
    """The short-training proxies, as (steps, seeds): K steps; the same cost split over seeds;
    with ``wide`` also K steps over seeds and seeds x K steps once."""
    out = {f"{steps} steps": (steps, 1)}
    if seeds > 1:
        out[f"{steps // seeds} steps x {seeds} seeds"] = (steps // seeds, seeds)
        if wide:
            out[f"{steps} steps x {seeds} seeds"] = (steps, seeds)
            out[f"{steps * seeds} steps"] = (steps * seeds, 1)
    return out


def draw_nets(cfg: Any, s: RankSettings) -> list[tuple[str, Any]]:
    """The zoo nets, then ``s.archs`` random nets of the space (seed ``study.seed``)."""
    import optuna

    from searchers.trials.trial import sample_genotype, zoo_genotype

    space = cfg.space
    if s.draw == "supernet":
        from searchers.trials.supernet_space import space_of_supernet

        space = space_of_supernet(str(s.supernet), cfg.space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    nets = [(name, zoo_genotype(name, cfg.space.scale)) for name in s.zoo]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=cfg.study.seed))
    for i in range(s.archs):
        trial = study.ask()
        nets.append((f"random {i}", sample_genotype(trial, space)))
        study.tell(trial, 0.0)
    return nets


def _fits(g: Any, run: str) -> bool:
    from searchers.differentiable.elastic import SubnetError, check_subnet
    from searchers.sharing.load import load_supernet

    try:
        check_subnet(load_supernet(run).space.spec, g)
    except SubnetError:
        return False
    return True


def _jobs(cfg: Any, s: RankSettings, g: Any) -> list[tuple[str, int, int]]:
    """Every (kind, steps, seed) the table needs of net ``g``."""
    from searchers.trials.halving import rung_steps

    k, seed0 = cfg.proxy.steps, cfg.proxy.seed
    jobs = {("train", k * s.factor, r) for r in range(s.long_seeds)}
    jobs |= {("train", st, seed0 + j) for st, n in proxy_candidates(k, s.seeds, s.wide).values()
             for j in range(n)}
    if s.halving:
        jobs.add(("curve", rung_steps(cfg.proxy)[-1], seed0))
    if s.supernet and _fits(g, s.supernet):
        jobs |= {("supernet", ft, seed0) for ft in s.finetune}
    return sorted(jobs, key=lambda j: (j[1], j[0], j[2]))


def _train(cfg: Any, g: Any, kind: str, steps: int, seed: int, device: torch.device,
           patch: int, s: RankSettings) -> dict[str, Any]:
    """One training of ``g``: its PSNR (and, for a halving curve, the PSNR at every rung)."""
    from search_space import build_model
    from searchers.trials.halving import rung_steps
    from searchers.trials.trial import ProxyTraining, proxy_psnr

    proxy = replace(cfg.proxy, steps=steps, seed=seed, kind="train", supernet=None)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if kind == "curve":
        run = ProxyTraining(build_model(g), g, proxy, device, patch, total_steps=steps)
        psnrs, done = [], 0
        for rung in rung_steps(cfg.proxy):
            run.advance(rung - done)
            done = rung
            psnrs.append(run.psnr())
        out["psnrs"] = psnrs
        psnr = psnrs[-1]
    elif kind == "supernet":
        from searchers.trials.inherit import shared_subnet

        psnr = proxy_psnr(shared_subnet(g, Path(str(s.supernet))), g, proxy, device, patch)
    else:
        psnr = proxy_psnr(build_model(g), g, proxy, device, patch)
    return {**out, "psnr_db": psnr, "seconds": time.perf_counter() - t0}


def _read_cache(paths: Sequence[str]) -> _Done:
    done = _Done()
    for path in paths:
        with contextlib.suppress(FileNotFoundError), open(path) as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    done.runs[(r.get("kind", "train"), r["genotype"], r["steps"], r["seed"])] = r
    return done


def proxy_rank(cfg: Any, s: RankSettings) -> str:
    """Train what this part still lacks (appending to ``s.cache[0]``), then the table, or a
    line saying how many trainings other parts still owe."""
    from proxies.measure.settings import resolve_device
    from searchers.trials.trial import study_patch_size

    nets = draw_nets(cfg, s)
    device = resolve_device(cfg.measure.device)
    patch = study_patch_size(cfg.space, cfg.proxy, list(s.zoo))
    done = _read_cache(s.cache)
    jobs = {label: _jobs(cfg, s, g) for label, g in nets}
    out_fh = open(s.cache[0], "a") if s.cache else None  # noqa: SIM115 (closed below)
    try:
        for i, (label, g) in enumerate(nets):
            if i % s.part[1] != s.part[0]:
                continue
            for kind, steps, seed in jobs[label]:
                if done.get(kind, g, steps, seed) is not None:
                    continue
                r = {"net": label, "genotype": g.to_json(indent=None), "kind": kind,
                     "steps": steps, "seed": seed,
                     **_train(cfg, g, kind, steps, seed, device, patch, s)}
                done.runs[(kind, r["genotype"], steps, seed)] = r
                logger.info("%s: %s %d steps (seed %d): %.3f dB, %.0f s", label, kind, steps,
                            seed, r["psnr_db"], r["seconds"])
                if out_fh is not None:
                    out_fh.write(json.dumps(r) + "\n")
                    out_fh.flush()
    finally:
        if out_fh is not None:
            out_fh.close()
    missing = [(label, *j) for label, g in nets for j in jobs[label]
               if done.get(j[0], g, j[1], j[2]) is None]
    if missing:
        return f"{len(missing)} trainings still to run (other parts), e.g. {missing[0]}"
    return render(cfg, s, nets, done)


# -- the table ---------------------------------------------------------------------------------


def top_precision(proxy: Sequence[float], truth: Sequence[float]) -> float:
    """The share of the proxy's top ceil(n/10) nets that are among the truth's top ceil(n/10)
    (NaN scores rank last)."""
    k = max(1, math.ceil(len(truth) / 10))

    def top(v: Sequence[float]) -> set[int]:
        order = sorted(range(len(v)), key=lambda i: -v[i] if not math.isnan(v[i]) else math.inf)
        return set(order[:k])

    return len(top(proxy) & top(truth)) / k


def halving_scores(curves: Sequence[Sequence[float]], steps: Sequence[int], batch: int,
                   eta: int, seed: int = 0) -> tuple[list[float], list[int]]:
    """Successive halving replayed on recorded curves (each net's PSNR at every rung): the
    nets dealt into brackets of ``batch`` in a random order (``seed``), the best
    ``max(1, n // eta)`` of a bracket by PSNR going on at each rung. Returns each net's score
    ``1000 * rung + PSNR`` (reaching a higher rung ranks first) and the steps it trained."""
    from searchers.trials.halving import survivors

    order = np.random.default_rng(seed).permutation(len(curves)).tolist()
    score, cost = [0.0] * len(curves), [0] * len(curves)
    for b in range(0, len(order), batch):
        alive = order[b:b + batch]
        for r in range(len(steps)):
            for i in alive:
                p = curves[i][r]
                score[i] = 1000.0 * r + (p if not math.isnan(p) else -999.0)
                cost[i] = steps[r]
            if r + 1 < len(steps):
                alive = sorted(alive, key=lambda i: -score[i])[:survivors(len(alive), eta)]
    return score, cost


def render(cfg: Any, s: RankSettings, nets: list[tuple[str, Any]], done: _Done) -> str:
    from proxies.measure.complexity import count_params
    from search_space import build_model
    from searchers.differentiable.latency_table import kendall, spearman
    from searchers.trials.halving import rung_steps

    k, seed0, long_steps = cfg.proxy.steps, cfg.proxy.seed, cfg.proxy.steps * s.factor
    params = [count_params(build_model(g)) for _, g in nets]

    def mean(kind: str, g: Any, steps: int, seeds: Sequence[int]) -> tuple[float, float]:
        rs = [done.get(kind, g, steps, sd) for sd in seeds]
        return (statistics.fmean(r["psnr_db"] for r in rs if r is not None),
                sum(r["seconds"] for r in rs if r is not None))

    truth = [mean("train", g, long_steps, range(s.long_seeds))[0] for _, g in nets]
    long_s = statistics.fmean(mean("train", g, long_steps, range(s.long_seeds))[1] / s.long_seeds
                              for _, g in nets)
    # the zero-cost baseline every trained proxy must beat: the parameter count
    cols: dict[str, list[float]] = {"params (no training)": [float(p) for p in params]}
    cost: dict[str, float] = {"params (no training)": 0.0}
    steps_of: dict[str, str] = {"params (no training)": "0"}
    for name, (steps, n) in proxy_candidates(k, s.seeds, s.wide).items():
        got = [mean("train", g, steps, [seed0 + j for j in range(n)]) for _, g in nets]
        cols[name], cost[name] = [p for p, _ in got], statistics.fmean(t for _, t in got)
        steps_of[name] = str(steps * n)
    notes = []
    fit = [True] * len(nets)
    if s.halving:
        rungs = rung_steps(cfg.proxy)
        curves = [done.get("curve", g, rungs[-1], seed0) for _, g in nets]
        score, trained = halving_scores([c["psnrs"] for c in curves if c], rungs,
                                        cfg.proxy.halving_batch, cfg.proxy.halving_eta,
                                        cfg.study.seed)
        name = f"halving {'/'.join(map(str, rungs))}"
        cols[name] = score
        steps_of[name] = f"{statistics.fmean(trained):.0f} (mean)"
        per_step = [c["seconds"] / rungs[-1] for c in curves if c]
        cost[name] = statistics.fmean(t * st for t, st in zip(per_step, trained, strict=True))
        notes.append(f"{name}: brackets of {cfg.proxy.halving_batch}, eta "
                     f"{cfg.proxy.halving_eta}, {statistics.fmean(trained):.0f} steps per net "
                     "on average (seconds: each net's curve time x the share it trained)")
    if s.supernet:
        fit = [_fits(g, s.supernet) for _, g in nets]
        n_fit = sum(fit)
        once = s.supernet_seconds
        for ft in s.finetune:
            name = f"supernet K={ft}"
            steps_of[name] = str(ft)
            rs = [done.get("supernet", g, ft, seed0) if f else None
                  for (_, g), f in zip(nets, fit, strict=True)]
            cols[name] = [r["psnr_db"] if r else math.nan for r in rs]
            cost[name] = statistics.fmean(r["seconds"] for r in rs if r) + once / max(1, n_fit)
        notes.append(f"supernet {s.supernet}: {n_fit} of {len(nets)} nets lie in its space "
                     f"(the others are left out of its rows); its training ({once:.0f} s) is "
                     f"divided over them")

    def rows(keep: list[bool], title: str) -> str:
        t = [v for v, kp in zip(truth, keep, strict=True) if kp]
        out = (f"\n{title} ({sum(keep)} nets)\n\n| proxy | nets scored | steps per net | "
               "s per net | s / truth's | Spearman | Kendall | top-10 % precision |\n"
               "|---|---|---|---|---|---|---|---|\n")
        for name, v in cols.items():
            pairs = [(p, q) for p, q, kp in zip(v, truth, keep, strict=True)
                     if kp and not math.isnan(p)]
            if len(pairs) < 3:
                continue
            ps, qs = [p for p, _ in pairs], [q for _, q in pairs]
            out += (f"| {name} | {len(pairs)} | {steps_of[name]} | "
                    f"{cost[name]:.1f} | {_share(cost[name], long_s * s.long_seeds)} | "
                    f"{spearman(ps, qs):.3f} | {kendall(ps, qs):.3f} | "
                    f"{top_precision(ps, qs):.2f} |\n")
        return out if t else ""

    head = (f"Truth: {long_steps} steps, the mean of {s.long_seeds} seed(s), {long_s:.0f} s per "
            f"training on average; {len(nets)} nets.\n")
    if s.long_seeds >= 2:  # the ceiling: how well one truth seed ranks as another does
        seeds = [[mean("train", g, long_steps, [r])[0] for _, g in nets] for r in (0, 1)]
        notes.insert(0, f"the truth's own seeds 0 and 1 agree with Spearman "
                     f"{spearman(*seeds):.3f}, Kendall {kendall(*seeds):.3f} (a ceiling for "
                     "any proxy)")
    head += "".join(f"\n* {n_}" for n_ in notes) + ("\n" if notes else "")
    head += rows([True] * len(nets), "All nets")
    trains = [q >= s.trains_above for q in truth]
    if not all(trains):
        head += rows(trains, f"The nets that train (truth >= {s.trains_above:g} dB)")
    if s.supernet and not all(fit):  # every proxy on the supernet's nets alike
        head += rows(fit, "The nets in the supernet's space")
    body = ("\n| net | params | width | cells | " + " | ".join(list(cols)[1:]) +
            " | truth |\n|---|---|---|---|" + "---|" * len(cols) + "\n")
    for j, (label, g) in enumerate(nets):
        cells = "/".join(c.type for c in g.cells)
        body += (f"| {label} | {params[j]:,} | {g.width} | {cells} | " +
                 " | ".join(_fmt(cols[c][j]) for c in list(cols)[1:]) + f" | {truth[j]:.3f} |\n")
    return head + body


def _share(cost: float, truth: float) -> str:
    return "0" if cost <= 0 else f"1/{truth / cost:.0f}"


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return f"r{int(v // 1000)} {v % 1000:.3f}" if v >= 900 else f"{v:.3f}"


def main(argv: list[str] | None = None, prog: str = "python -m searchers.tools.proxy_rank"
         ) -> int:
    from searchers.common.command import exit_status
    from searchers.common.config import load_config
    from searchers.trials.config import OptunaConfig

    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config")
    p.add_argument("--archs", type=int, default=12, help="random nets")
    p.add_argument("--factor", type=int, default=20, help="truth steps / proxy.steps")
    p.add_argument("--zoo", default="", help="comma-separated zoo nets")
    p.add_argument("--seeds", type=int, default=1, help="also the seed means over this many")
    p.add_argument("--seed-mean-only", action="store_true",
                   help="with --seeds S: only K steps and the mean of S at K/S (not K x S, S x K)")
    p.add_argument("--long-seeds", type=int, default=1, help="seeds of the truth's training")
    p.add_argument("--halving", action="store_true", help="add the successive-halving proxy")
    p.add_argument("--supernet", help="a train_supernet run: add the supernet proxy")
    p.add_argument("--finetune", default="0", help="the supernet proxy's fine-tune steps, "
                   "comma-separated")
    p.add_argument("--supernet-seconds", type=float, default=0.0,
                   help="the supernet's training time, divided over the nets it scores")
    p.add_argument("--draw", default="space", help="random nets from the config's 'space' or "
                   "the 'supernet''s")
    p.add_argument("--trains-above", type=float, default=23.0,
                   help="truth PSNR [dB] a net must reach to count as one that trains")
    p.add_argument("--cache", action="append", default=None,
                   help="JSON-lines file of finished trainings (the first is written)")
    p.add_argument("--part", default="0/1", help="this process's share, i/n")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        i, n = (int(v) for v in args.part.split("/"))
        finetune = tuple(int(v) for v in args.finetune.split(",") if v)
    except ValueError:
        p.error(f"--part {args.part!r} / --finetune {args.finetune!r}: give i/n and integers")

    def work() -> None:
        cfg = load_config(OptunaConfig, args.config, args.overrides)
        if cfg.measure.threads:
            torch.set_num_threads(cfg.measure.threads)
        settings = RankSettings(
            archs=args.archs, factor=args.factor, zoo=tuple(z for z in args.zoo.split(",") if z),
            seeds=args.seeds, wide=not args.seed_mean_only, long_seeds=args.long_seeds,
            halving=args.halving,
            supernet=args.supernet, finetune=finetune, supernet_seconds=args.supernet_seconds,
            draw=args.draw, trains_above=args.trains_above, cache=tuple(args.cache or ()),
            part=(i, n))
        print(proxy_rank(cfg, settings))

    return exit_status(work, logger)


if __name__ == "__main__":
    sys.exit(main())
