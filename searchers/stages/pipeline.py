"""The whole pipeline in one command: ``python searchers/pipeline.py [--config FILE] [k=v ...]``,
or from Python :func:`run_pipeline` (a :class:`PipelineConfig`).

Each stage calls its function with typed values, never a command line: the DARTS search's
:func:`~searchers.differentiable.search.run_search`, a study's
:func:`~searchers.trials.study.run_study`, :func:`~searchers.training.retrain.retrain` and
:func:`~results.report.command.build_report`; each run folder records the pipeline's command.
Stages, each skipped where its output is already there (so a killed pipeline, re-run with the
same command, continues where it stopped):

1. **search**, one run per method of ``pipeline.methods`` (under ``pipeline.search_seeds``,
   one per method and search seed, ``search/METHOD_searchK``: the study's, DARTS's and the
   supernet's seed is K): ``random``, ``nsga2``, ``tpe`` and ``gp`` are Optuna studies of the
   ``trials`` section (``study.sampler`` set per method; a study resumes), ``darts`` a DARTS
   search of the ``darts`` section (resumed from its checkpoint). ``oneshot`` trains the
   ``supernet`` section's weight-sharing supernet once (``search/supernet``), then runs a study of
   ``trials.study.sampler`` over the supernet's own space with ``proxy.kind=supernet``.
   ``params``, the zero-cost baseline every search must beat, draws at random and trains
   nothing (``proxy.kind=params``): it hands over the largest net it measured under the budget.
   Equal budgets, one of: ``pipeline.cpu_seconds``, the CPU-seconds (GPU: wall seconds) of
   everything a search spends (:func:`~searchers.stages.config.equal_budgets`: the studies
   stop starting trials once their trials have spent it, DARTS fixes its length after a few
   timed steps, the ``oneshot`` study gets what its supernet's training left);
   ``pipeline.patches``, trained HR patches (``n_trials = patches / (steps x seeds x
   batch)``, ``search.steps = patches / (2 x batch)``, the supernet ``patches / (batch x
   paths per step)`` steps; the supernet proxy's fine-tuning on top).
2. **select**: each search's best net under the budget, written to ``selected/LABEL.json``:
   for a study the feasible trial (every constraint <= 0: ``trials.budget``, e.g. at most
   0.8x SPAN's latency, and ``trials.constraints``) of highest proxy PSNR, zoo trials left out;
   for DARTS its derived genotype.
3. **retrain**: every selected net and every ``pipeline.zoo`` net with each seed of
   ``pipeline.seeds``, the same ``retrain`` recipe for all (a killed run resumes from its
   checkpoint).
4. **matched** (``matched.n`` > 0; :mod:`searchers.stages.matched`): per space, uniform draws
   timed against the reference until each search's net has ``matched.n`` random nets within
   ``matched.tolerance`` of its latency, then those nets retrained like the rest
   (``retrain/matched_SPACEk_sSEED``); ``pipeline.md`` ranks each searched net among them.
5. **report**: over all retrained runs (Y-PSNR/SSIM per set, latency
   ratios timed interleaved in one process, peak memory, the seed table), with the first
   NSGA-II study's front; then ``pipeline.md`` (:mod:`searchers.stages.summary`): what each
   search spent, each net beside the zoo, the recipe's fidelity against the converged zoo
   (under 0.9 the verdicts are marked short-recipe results) and, under search seeds, each
   method's mean and spread over its searches, and the matched-latency ranks.

Before each stage a progress line (done, spent, estimated left) is logged, and after each one
``pipeline.md`` is rewritten with the stages so far (:mod:`searchers.stages.progress`).

Folder ``pipeline.dir/pipeline.name``: ``config.yaml`` (the whole resolved config) and
``command.txt``, ``search/``, ``selected/``, ``retrain/`` (each run folder with its own
``config.yaml``: the section of this config it ran), ``report/``, ``state.json`` (stage wall
times and CPU-seconds, accumulated over resumes) and ``pipeline.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from results.run_folder import RunFolder
from search_space.files import atomic_write_text
from searchers.common.command import exit_status, log_to_stderr
from searchers.common.config import dump_yaml, load_config
from searchers.common.spend import SpendMeter
from searchers.stages.config import PipelineConfig, equal_budgets
from searchers.stages.matched import Matched
from searchers.stages.progress import Progress, finished_steps
from searchers.trials.config import OptunaConfig

if TYPE_CHECKING:
    from search_space import Genotype

logger = logging.getLogger("searchers.stages.pipeline")

class NoFeasibleNet(RuntimeError):
    """A study none of whose searched trials meets the budget: its search hands over no net
    (the select stage records it; the report says so)."""


@dataclass(frozen=True)
class Search:
    """One search of the pipeline: its ``label`` (the run folder, study and retraining name:
    the method, or ``METHOD_searchK`` under ``pipeline.search_seeds``), ``method`` and search
    ``seed`` (None: the sections' own)."""

    label: str
    method: str
    seed: int | None = None


class Pipeline:
    """One pipeline folder; each stage method is idempotent."""

    def __init__(self, cfg: PipelineConfig, argv: Sequence[str]) -> None:
        """``argv``: the command line every run folder records (``[sys.argv[0], *args]``)."""
        self.cfg = equal_budgets(cfg)
        self.root = cfg.pipeline.folder()
        self.argv = list(argv)
        self.state_path = self.root / "state.json"
        self.progress = Progress(self)

    def searches(self) -> list[Search]:
        """Every search, search seed by search seed (all methods of a seed before the next)."""
        p = self.cfg.pipeline
        if p.search_seeds is None:
            return [Search(m, m) for m in p.methods]
        return [Search(f"{m}_search{k}", m, k) for k in p.search_seeds for m in p.methods]

    # -- bookkeeping ------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        if self.state_path.exists():
            state = dict(json.loads(self.state_path.read_text()))
            state.setdefault("cpu_seconds", {})
            return state
        return {"seconds": {}, "cpu_seconds": {}, "done": []}

    def _stage(self, name: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` unless ``name`` is done; its wall time and spend (CPU-seconds on a CPU,
        :mod:`searchers.common.spend`) add to ``state.json``; the progress line before it and
        ``pipeline.md`` (the stages so far) after it."""
        state = self._state()
        if name in state["done"]:
            logger.info("%s: done already", name)
            return
        self.progress.line(name, state)
        t0, meter = time.perf_counter(), SpendMeter(self.cfg.trials.measure.device)
        try:
            fn()
        finally:
            state = self._state()
            state["seconds"][name] = state["seconds"].get(name, 0.0) + time.perf_counter() - t0
            state["cpu_seconds"][name] = state["cpu_seconds"].get(name, 0.0) + meter.lap()
            atomic_write_text(self.state_path, json.dumps(state, indent=2) + "\n")
        state["done"].append(name)
        atomic_write_text(self.state_path, json.dumps(state, indent=2) + "\n")
        atomic_write_text(self.root / "pipeline.md", self.progress.status(state))

    def stages(self) -> list[str]:
        """Every stage's name, in the order they run (the report aside; the matched-latency
        check's retrainings once its draws are made)."""
        matched = Matched(self)
        seeds = self.cfg.pipeline.seeds
        return ([f"search.{s.label}" for s in self.searches()] + ["select"] +
                [f"retrain.{label}_s{seed}" for label, _ in self.retrain_jobs(
                    planned=not (self.root / "selected" / "selected.json").exists())
                 for seed in seeds] + [f"matched.{space}" for space in matched.spaces()] +
                [f"retrain.{label}_s{seed}" for label, _ in matched.jobs() for seed in seeds])

    # -- stages -----------------------------------------------------------------------------

    def run(self) -> Path:
        """All stages, with the pipeline's folder locked (:meth:`RunFolder.lock`): a second
        pipeline on it is refused; each stage locks its own run folder inside it too."""
        with RunFolder(self.root).lock(rename="pipeline.name"):
            return self._run()

    def _run(self) -> Path:
        RunFolder(self.root).record(dump_yaml(self.cfg), self.argv)
        for search in self.searches():
            self._stage(f"search.{search.label}", partial(self.search, search))
        self._reselect_new_searches()
        self._stage("select", self.select)
        for label, genotype in self.retrain_jobs():
            for seed in self.cfg.pipeline.seeds:
                self._stage(f"retrain.{label}_s{seed}",
                            partial(self.retrain, genotype, f"{label}_s{seed}", seed))
        matched = Matched(self)
        for space in matched.spaces():
            if not matched.complete(space):  # a search added since: its pool grows
                self._redo(f"matched.{space}")
            self._stage(f"matched.{space}", partial(matched.draw, space))
        for label, genotype in matched.jobs():
            for seed in self.cfg.pipeline.seeds:
                self._stage(f"retrain.{label}_s{seed}",
                            partial(self.retrain, genotype, f"{label}_s{seed}", seed))
        self.report()  # always re-run: cheap where the evaluations are cached
        return self.root / "pipeline.md"

    def _redo(self, name: str) -> None:
        """Mark stage ``name`` to run again (its function is idempotent and continues)."""
        state = self._state()
        if name in state["done"]:
            logger.info("%s: again, for the searches added since", name)
            state["done"].remove(name)
            atomic_write_text(self.state_path, json.dumps(state, indent=2) + "\n")

    def _reselect_new_searches(self) -> None:
        """A method or search seed added to a finished pipeline folder: its search ran above,
        so the select stage is run again for every search (cheap: each reads its study)."""
        chosen = self.root / "selected" / "selected.json"
        if chosen.exists() and any(s.label not in json.loads(chosen.read_text())
                                   for s in self.searches()):
            self._redo("select")

    def search(self, search: Search) -> None:
        """One search in ``search/LABEL``; a DARTS search resumes its checkpoint, a study
        resumes by itself."""
        if search.method == "darts":
            from searchers.differentiable.search import run_search

            d = self.cfg.darts
            seed = d.run.seed if search.seed is None else search.seed
            dcfg = replace(d, run=replace(d.run, dir=str(self.root / "search"),
                                          name=search.label, seed=seed))
            run_search(dcfg, resume=RunFolder(dcfg.run.folder()).checkpoint.exists(),
                       command=self.argv)
            return
        from searchers.trials.study import run_study

        if search.method == "oneshot":
            self.train_supernet(search)
        run_study(self.trials(search), command=self.argv)

    def supernet_dir(self, search: Search) -> Path:
        name = "supernet" if search.seed is None else f"supernet_search{search.seed}"
        return self.root / "search" / name

    def train_supernet(self, search: Search) -> None:
        """The ``oneshot`` search's supernet, trained once in ``search/supernet`` (per search
        seed: ``search/supernet_searchK``; resumed from its checkpoint, skipped once
        finished); what it spent is kept in ``state.json`` (the study gets the rest of
        ``pipeline.cpu_seconds``)."""
        from searchers.sharing.train import train_supernet

        s = self.cfg.supernet
        folder = RunFolder(self.supernet_dir(search))
        if folder.supernet.exists() and finished_steps(folder) >= s.train.steps:
            return
        seed = s.run.seed if search.seed is None else search.seed
        scfg = replace(s, run=replace(s.run, dir=str(folder.path.parent),
                                      name=folder.path.name, seed=seed))
        meter = SpendMeter(self.cfg.trials.measure.device)
        try:
            train_supernet(scfg, resume=folder.checkpoint.exists(), command=self.argv)
        finally:
            state = self._state()
            key = f"supernet.{search.label}"
            state["cpu_seconds"][key] = state["cpu_seconds"].get(key, 0.0) + meter.lap()
            atomic_write_text(self.state_path, json.dumps(state, indent=2) + "\n")

    def trials(self, search: Search) -> OptunaConfig:
        """The ``trials`` section as ``search``'s study runs it: random sampling, NSGA-II, or
        (``oneshot``) the configured sampler over the supernet's own space with
        ``proxy.kind=supernet`` (the zoo nets, outside its frame, not enqueued; under
        ``pipeline.cpu_seconds`` the study gets what the supernet's training left)."""
        t = self.cfg.trials
        run = replace(t.run, dir=str(self.root / "search"), name=search.label)
        study = replace(t.study, name=search.label,
                        seed=t.study.seed if search.seed is None else search.seed)
        if search.method == "oneshot":
            from searchers.trials.supernet_space import space_of_supernet

            folder = self.supernet_dir(search)
            space = (space_of_supernet(str(folder), t.space)
                     if RunFolder(folder).supernet.exists() else t.space)
            budget = self.cfg.pipeline.cpu_seconds
            if budget is not None:
                spent = self._state()["cpu_seconds"].get(f"supernet.{search.label}", 0.0)
                if spent >= budget:
                    raise RuntimeError(
                        f"oneshot ({search.label}): the supernet's training spent {spent:.0f} "
                        f"of pipeline.cpu_seconds={budget:.0f}, nothing is left for its study; "
                        "lower supernet.train.steps or raise pipeline.cpu_seconds")
                study = replace(study, cpu_seconds=budget - spent)
            return replace(t, space=space, run=run,
                           proxy=replace(t.proxy, kind="supernet", supernet=str(folder)),
                           study=replace(study, enqueue_zoo=False))
        if search.method == "params":  # the zero-cost baseline: random draws, the largest
            return replace(t, run=run, proxy=replace(t.proxy, kind="params", supernet=None),
                           study=replace(study, sampler="random", enqueue_zoo=False))
        sampler = cast(Literal["nsga2", "tpe", "gp", "random"], search.method)
        return replace(t, study=replace(study, sampler=sampler), run=run)

    def storage(self, search: Search) -> str:
        from searchers.trials.study import storage_url

        return storage_url(self.trials(search))

    def select(self) -> None:
        from search_space import Genotype

        sel = self.root / "selected"
        sel.mkdir(parents=True, exist_ok=True)
        chosen: dict[str, dict[str, Any]] = {}
        for search in self.searches():
            g: Genotype | None = None
            if search.method == "darts":
                g = Genotype.load(RunFolder(self.root / "search" / search.label).genotype)
                chosen[search.label] = {"source": "DARTS derived genotype"}
            else:
                try:
                    g, chosen[search.label] = self._best_trial(search)
                except NoFeasibleNet as exc:  # a result of the search, not a failure of it
                    logger.warning("%s", exc)
                    chosen[search.label] = {"source": None, "none": str(exc)}
            chosen[search.label].update(method=search.method, search_seed=search.seed)
            if g is not None:
                g.save(sel / f"{search.label}.json")
        if not any(c.get("source") is not None or "trial" in c for c in chosen.values()):
            raise RuntimeError("no search handed over a net under the budget (selected/"
                               "selected.json says why); widen the budget or raise "
                               "pipeline.cpu_seconds / the trials")
        atomic_write_text(sel / "selected.json", json.dumps(chosen, indent=2) + "\n")

    def _best_trial(self, search: Search) -> tuple[Any, dict[str, Any]]:
        import optuna

        from search_space import Genotype
        from searchers.trials.storage import make_storage

        study = optuna.load_study(study_name=search.label, storage=make_storage(
            self.storage(search), self.cfg.trials.study))
        best = None
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.user_attrs.get("is_zoo") or not t.values or not math.isfinite(t.values[0]):
                continue
            cons = t.user_attrs.get("constraints") or {}
            if any(v > 0 for v in cons.values()):
                continue
            if best is None or t.values[0] > best.values[0]:
                best = t
        if best is None:
            raise NoFeasibleNet(f"the {search.label} study has no feasible searched trial (every "
                                "one breaks the budget or failed): it hands over no net; widen "
                                "the budget or raise the trials")
        info = {"trial": best.number, "proxy_psnr_db": best.values[0],
                "latency_ratio": best.user_attrs.get("latency_ratio"),
                "memory_ratio": best.user_attrs.get("memory_ratio"),
                "constraints": best.user_attrs.get("constraints")}
        unit = "M params, the params proxy" if search.method == "params" else "dB proxy"
        logger.info("%s: trial %d selected (%.3f %s)", search.label, best.number,
                    best.values[0], unit)
        return Genotype.from_json(best.user_attrs["genotype"]), info

    def retrain_jobs(self, planned: bool = False) -> list[tuple[str, Genotype | str]]:
        """``(label, net)`` of every net to retrain: each search's selected genotype (read back
        from ``selected/``, where the select stage wrote it; ``planned``: the label only, net
        None until selected) and each zoo net by name."""
        from search_space import Genotype

        sel = self.root / "selected"
        jobs: list[tuple[str, Any]] = [
            (s.label, None if planned else Genotype.load(sel / f"{s.label}.json"))
            for s in self.searches() if planned or (sel / f"{s.label}.json").exists()]
        return jobs + [(z, z) for z in self.cfg.pipeline.zoo]

    def retrain(self, genotype: Genotype | str, name: str, seed: int) -> None:
        """Retrain one net with one seed in ``retrain/NAME``, skipped where it is deployed
        already and resumed from its checkpoint where it was killed."""
        from searchers.training.retrain import retrain

        r = self.cfg.retrain
        cfg = replace(r, run=replace(r.run, dir=str(self.root / "retrain"), name=name, seed=seed))
        folder = RunFolder(cfg.run.folder())
        if folder.deployed.exists() and folder.deploy_check.exists():
            return
        retrain(genotype, cfg, resume=folder.checkpoint.exists(), command=self.argv)

    def report(self) -> None:
        """The report over every retrained run, with the (first) NSGA-II study's front, and
        ``pipeline.md`` (:func:`searchers.stages.summary.summary`)."""
        from results.report.command import ReportOptions, build_report
        from search_space.zoo import REFERENCE_NET
        from searchers.stages.summary import summary

        p = self.cfg.pipeline
        runs = [self.root / "retrain" / f"{label}_s{seed}"
                for label, _ in self.retrain_jobs() for seed in p.seeds]
        out = self.root / "report"
        nsga2 = next((s for s in self.searches() if s.method == "nsga2"), None)
        options = ReportOptions(
            sets=tuple(p.sets), size=p.report_size, rounds=p.report_rounds,
            device=self.cfg.trials.measure.device,
            datasets_root=Path(p.datasets_root) if p.datasets_root else None,
            reference=self.cfg.trials.budget.reference or REFERENCE_NET,
            storage=self.storage(nsga2) if nsga2 else None,
            study=nsga2.label if nsga2 else None)
        build_report(runs, out, options, command=self.argv)
        atomic_write_text(self.root / "pipeline.md", summary(self, out))

    def budget_text(self) -> str:
        b = self.cfg.trials.budget
        parts = []
        if b.reference and b.latency_x is not None:
            parts.append(f"latency <= {b.latency_x}x {b.reference}")
        if b.reference and b.memory_x is not None:
            parts.append(f"memory <= {b.memory_x}x {b.reference}")
        p = self.cfg.pipeline
        parts.append(f"{p.cpu_seconds:.0f} CPU-seconds per search" if p.cpu_seconds else
                     f"{p.patches} trained patches per method" if p.patches else
                     "each method's own search length")
        return ", ".join(parts)


def run_pipeline(cfg: PipelineConfig, *, command: Sequence[str] | None = None) -> Path:
    """Run (or continue) the pipeline of ``cfg`` in ``pipeline.dir``/``pipeline.name``; returns
    its summary, ``pipeline.md``. ``command`` is the command line each run folder records
    (default ``sys.argv``). Bad input raises ``ConfigError``/``ValueError``/``OSError``; a stage
    that fails otherwise raises a ``RuntimeError`` (e.g. a diverged search)."""
    return Pipeline(cfg, sys.argv if command is None else command).run()


def main(argv: list[str] | None = None) -> int:
    """The command: the config from ``--config`` and the overrides, then :func:`run_pipeline`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python searchers/pipeline.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    log_to_stderr()

    def work() -> None:
        cfg = load_config(PipelineConfig, args.config, args.overrides)
        print(run_pipeline(cfg, command=[sys.argv[0], *argv]).read_text())

    return exit_status(work, logger, failures={RuntimeError: 1})
