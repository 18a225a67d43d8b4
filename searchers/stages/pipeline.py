"""The whole pipeline in one command: ``python searchers/pipeline.py [--config FILE] [k=v ...]``,
or from Python :func:`run_pipeline` (a :class:`PipelineConfig`).

Each stage calls its function with typed values, never a command line: the DARTS search's
:func:`~searchers.differentiable.search.run_search`, a study's
:func:`~searchers.trials.study.run_study`, :func:`~searchers.training.retrain.retrain` and
:func:`~results.report.command.build_report`; each run folder records the pipeline's command.
Stages, each skipped where its output is already there (so a killed pipeline, re-run with the
same command, continues where it stopped):

1. **search**, one run per method of ``pipeline.methods``: ``random`` and ``nsga2`` are Optuna
   studies of the ``trials`` section (``study.sampler`` set per method; a study resumes),
   ``darts`` a DARTS search of the ``darts`` section (resumed from its checkpoint). With
   ``pipeline.patches`` every method gets the same total budget in trained HR patches:
   ``n_trials = patches / (steps x seeds x batch)`` for the studies (zoo trials included),
   ``search.steps = patches / (2 x batch)`` for DARTS (a weight batch and an architecture
   batch per step). ``oneshot`` trains the ``supernet`` section's weight-sharing supernet
   once (``search/supernet``; with ``pipeline.patches``, ``patches / (batch x paths per
   step)`` steps), then runs a study of ``trials.study.sampler`` over the supernet's own space
   with ``proxy.kind=supernet`` (its trials as many as the other studies'; their
   ``proxy.finetune_steps`` come on top of the budget).
2. **select**: each method's best net under the budget, written to ``selected/METHOD.json``:
   for a study the feasible trial (every constraint <= 0: ``trials.budget``, e.g. at most
   0.8x SPAN's latency, and ``trials.constraints``) of highest proxy PSNR, zoo trials left out;
   for DARTS its derived genotype.
3. **retrain**: every selected net and every ``pipeline.zoo`` net with each seed of
   ``pipeline.seeds``, the same ``retrain`` recipe for all (a killed run resumes from its
   checkpoint).
4. **report**: over all retrained runs (Y-PSNR/SSIM per set, latency
   ratios timed interleaved in one process, peak memory, the seed table), with the NSGA-II
   study's front; then ``pipeline.md``: each method's net beside the zoo (means and spreads
   over seeds, which zoo nets it dominates) and each method's search cost.

Folder ``pipeline.dir/pipeline.name``: ``config.yaml`` (the whole resolved config) and
``command.txt``, ``search/``, ``selected/``, ``retrain/`` (each run folder with its own
``config.yaml``: the section of this config it ran), ``report/``, ``state.json`` (stage times,
accumulated over resumes) and ``pipeline.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from results.run_folder import RunFolder
from search_space.files import atomic_write_text
from searchers.common.command import exit_status, log_to_stderr
from searchers.common.config import dump_yaml, load_config
from searchers.common.sections import RunSection
from searchers.differentiable.config import DartsConfig
from searchers.sharing.config import SupernetConfig
from searchers.training.config import RetrainConfig
from searchers.trials.config import OptunaConfig

if TYPE_CHECKING:
    from search_space import Genotype

logger = logging.getLogger("searchers.stages.pipeline")

METHODS = ("random", "nsga2", "darts", "oneshot")


@dataclass
class PipelineSection(RunSection):
    """The pipeline's run folder (:class:`searchers.common.sections.RunSection`) and its stages."""

    dir: str = "runs/pipeline"
    name: str | None = "default"
    methods: list[Literal["random", "nsga2", "darts", "oneshot"]] = field(
        default_factory=lambda: ["random", "nsga2", "darts"])
    patches: int | None = None  # equal total search budget in trained HR patches (null: as set)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    zoo: list[str] = field(default_factory=lambda: ["rlfn_ntire", "span_ntire2024"])
    sets: list[str] = field(default_factory=lambda: ["Set5", "Set14", "B100"])
    datasets_root: str | None = "../shared/datasets"
    report_size: int = 64  # LR side of the report's timing input
    report_rounds: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"pipeline.methods: got {self.methods}; list one or more of "
                             f"{', '.join(METHODS)}, each once")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"pipeline.seeds: got {self.seeds}; list one or more distinct "
                             "seeds, e.g. [0, 1, 2]")
        if self.patches is not None and self.patches < 1:
            raise ValueError(f"pipeline.patches: got {self.patches}; give a budget >= 1 in "
                             "trained HR patches, or null to keep each method's own")
        from search_space.zoo import ZOO

        bad = [z for z in self.zoo if z not in ZOO]
        if bad:
            raise ValueError(f"pipeline.zoo: got unknown {bad}; valid names: {', '.join(ZOO)}")


@dataclass
class PipelineConfig:
    """The pipeline's config: its own section and the config of each stage (``trials`` for the
    random and NSGA-II studies, ``darts``, ``supernet`` for the ``oneshot`` method's supernet
    training, and the one ``retrain`` recipe)."""

    pipeline: PipelineSection = field(default_factory=PipelineSection)
    trials: OptunaConfig = field(default_factory=OptunaConfig)
    darts: DartsConfig = field(default_factory=DartsConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)


def equal_budgets(cfg: PipelineConfig) -> PipelineConfig:
    """The config with ``pipeline.patches`` turned into each method's trials or steps."""
    patches = cfg.pipeline.patches
    if patches is None:
        return cfg
    p = cfg.trials.proxy
    per_trial = p.steps * p.seeds * p.batch_size
    n_trials = max(1, patches // max(1, per_trial))
    steps = max(1, patches // (2 * cfg.darts.data.batch_size))
    search = replace(cfg.darts.search, steps=steps,
                     warmup_steps=min(cfg.darts.search.warmup_steps, steps // 5))
    st = cfg.supernet.train
    paths = 1 if st.rule == "uniform" else 2 + st.sandwich_random
    supernet = replace(cfg.supernet, train=replace(
        st, steps=max(1, patches // (paths * cfg.supernet.data.batch_size))))
    return replace(cfg, trials=replace(cfg.trials, study=replace(cfg.trials.study,
                                                                 n_trials=n_trials)),
                   darts=replace(cfg.darts, search=search), supernet=supernet)


class Pipeline:
    """One pipeline folder; each stage method is idempotent."""

    def __init__(self, cfg: PipelineConfig, argv: Sequence[str]) -> None:
        """``argv``: the command line every run folder records (``[sys.argv[0], *args]``)."""
        self.cfg = equal_budgets(cfg)
        self.root = cfg.pipeline.folder()
        self.argv = list(argv)
        self.state_path = self.root / "state.json"

    # -- bookkeeping ------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        if self.state_path.exists():
            return dict(json.loads(self.state_path.read_text()))
        return {"seconds": {}, "done": []}

    def _stage(self, name: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` unless ``name`` is done; its wall time adds to ``state.json``."""
        state = self._state()
        if name in state["done"]:
            logger.info("%s: done already", name)
            return
        logger.info("%s: running", name)
        t0 = time.perf_counter()
        try:
            fn()
        finally:
            state = self._state()
            state["seconds"][name] = state["seconds"].get(name, 0.0) + time.perf_counter() - t0
            atomic_write_text(self.state_path, json.dumps(state, indent=2) + "\n")
        state["done"].append(name)
        atomic_write_text(self.state_path, json.dumps(state, indent=2) + "\n")

    # -- stages -----------------------------------------------------------------------------

    def run(self) -> Path:
        """All stages, with the pipeline's folder locked (:meth:`RunFolder.lock`): a second
        pipeline on it is refused; each stage locks its own run folder inside it too."""
        with RunFolder(self.root).lock(rename="pipeline.name"):
            return self._run()

    def _run(self) -> Path:
        RunFolder(self.root).record(dump_yaml(self.cfg), self.argv)
        for method in self.cfg.pipeline.methods:
            self._stage(f"search.{method}", partial(self.search, method))
        self._stage("select", self.select)
        for label, genotype in self.retrain_jobs():
            for seed in self.cfg.pipeline.seeds:
                self._stage(f"retrain.{label}_s{seed}",
                            partial(self.retrain, genotype, f"{label}_s{seed}", seed))
        self.report()  # always re-run: cheap where the evaluations are cached
        return self.root / "pipeline.md"

    def search(self, method: str) -> None:
        """One method's search in ``search/METHOD``; a DARTS search resumes its checkpoint, a
        study resumes by itself."""
        if method == "darts":
            from searchers.differentiable.search import run_search

            d = self.cfg.darts
            dcfg = replace(d, run=replace(d.run, dir=str(self.root / "search"), name="darts"))
            run_search(dcfg, resume=RunFolder(dcfg.run.folder()).checkpoint.exists(),
                       command=self.argv)
            return
        from searchers.trials.study import run_study

        if method == "oneshot":
            self.train_supernet()
        run_study(self.trials(method), command=self.argv)

    def supernet_dir(self) -> Path:
        return self.root / "search" / "supernet"

    def train_supernet(self) -> None:
        """The ``oneshot`` method's supernet, trained once in ``search/supernet`` (resumed
        from its checkpoint; skipped once finished)."""
        from searchers.sharing.train import train_supernet

        s = self.cfg.supernet
        folder = RunFolder(self.supernet_dir())
        if folder.supernet.exists() and _finished_steps(folder) >= s.train.steps:
            return
        scfg = replace(s, run=replace(s.run, dir=str(self.root / "search"), name="supernet"))
        train_supernet(scfg, resume=folder.checkpoint.exists(), command=self.argv)

    def trials(self, method: str) -> OptunaConfig:
        """The ``trials`` section as the study of ``method`` runs it: random sampling,
        NSGA-II, or (``oneshot``) the configured sampler over the supernet's own space with
        ``proxy.kind=supernet`` (the zoo nets, outside its frame, not enqueued)."""
        t = self.cfg.trials
        run = replace(t.run, dir=str(self.root / "search"), name=method)
        if method == "oneshot":
            from searchers.trials.supernet_space import space_of_supernet

            folder = str(self.supernet_dir())
            space = (space_of_supernet(folder, t.space)
                     if RunFolder(self.supernet_dir()).supernet.exists()
                     else t.space)
            return replace(t, space=space, run=run,
                           proxy=replace(t.proxy, kind="supernet", supernet=folder),
                           study=replace(t.study, name=method, enqueue_zoo=False))
        sampler: Literal["random", "nsga2"] = "random" if method == "random" else "nsga2"
        return replace(t, study=replace(t.study, sampler=sampler, name=method), run=run)

    def storage(self, method: str) -> str:
        from searchers.trials.study import storage_url

        return storage_url(self.trials(method))

    def select(self) -> None:
        from search_space import Genotype

        sel = self.root / "selected"
        sel.mkdir(parents=True, exist_ok=True)
        summary: dict[str, dict[str, Any]] = {}
        for method in self.cfg.pipeline.methods:
            if method == "darts":
                g = Genotype.load(RunFolder(self.root / "search" / "darts").genotype)
                summary[method] = {"source": "DARTS derived genotype"}
            else:
                g, summary[method] = self._best_trial(method)
            g.save(sel / f"{method}.json")
        atomic_write_text(sel / "selected.json", json.dumps(summary, indent=2) + "\n")

    def _best_trial(self, method: str) -> tuple[Any, dict[str, Any]]:
        import optuna

        from search_space import Genotype
        from searchers.trials.storage import make_storage

        study = optuna.load_study(study_name=method,
                                  storage=make_storage(self.storage(method), self.cfg.trials.study))
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
            raise RuntimeError(f"the {method} study has no feasible searched trial (every one "
                               "breaks the budget or failed); widen the budget or raise "
                               "the trials")
        info = {"trial": best.number, "proxy_psnr_db": best.values[0],
                "latency_ratio": best.user_attrs.get("latency_ratio"),
                "memory_ratio": best.user_attrs.get("memory_ratio"),
                "constraints": best.user_attrs.get("constraints")}
        logger.info("%s: trial %d selected (%.3f dB proxy)", method, best.number, best.values[0])
        return Genotype.from_json(best.user_attrs["genotype"]), info

    def retrain_jobs(self) -> list[tuple[str, Genotype | str]]:
        """``(label, net)`` of every net to retrain: each method's selected genotype (read back
        from ``selected/``, where the select stage wrote it) and each zoo net by name."""
        from search_space import Genotype

        sel = self.root / "selected"
        jobs: list[tuple[str, Genotype | str]] = [
            (m, Genotype.load(sel / f"{m}.json")) for m in self.cfg.pipeline.methods]
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
        """The report over every retrained run, with the NSGA-II study's front, and
        ``pipeline.md``."""
        from results.report.command import ReportOptions, build_report
        from search_space.zoo import REFERENCE_NET

        p = self.cfg.pipeline
        runs = [self.root / "retrain" / f"{label}_s{seed}"
                for label, _ in self.retrain_jobs() for seed in p.seeds]
        out = self.root / "report"
        nsga2 = "nsga2" in p.methods
        options = ReportOptions(
            sets=tuple(p.sets), size=p.report_size, rounds=p.report_rounds,
            device=self.cfg.trials.measure.device,
            datasets_root=Path(p.datasets_root) if p.datasets_root else None,
            reference=self.cfg.trials.budget.reference or REFERENCE_NET,
            storage=self.storage("nsga2") if nsga2 else None, study="nsga2" if nsga2 else None)
        build_report(runs, out, options, command=self.argv)
        atomic_write_text(self.root / "pipeline.md", self.summary(out))

    # -- the summary ------------------------------------------------------------------------

    def summary(self, report_dir: Path) -> str:
        from searchers.stages.tables import dominance_table, hypervolume_line

        payload = json.loads((report_dir / "report.json").read_text())
        seeds = payload.get("seeds") or []
        state = self._state()
        p = self.cfg.pipeline
        lines = [f"# Pipeline {p.name}", "",
                 f"Budget: {self._budget_text()}; each net retrained with seeds {p.seeds} on "
                 "the same recipe; report: report/report.html.", ""]
        lines += ["| method | search cost [s] | trials / steps |", "|---|---|---|"]
        for m in p.methods:
            amount = (f"{self.cfg.darts.search.steps} steps" if m == "darts"
                      else f"{self.cfg.supernet.train.steps} supernet steps + "
                      f"{self.cfg.trials.study.n_trials} trials" if m == "oneshot"
                      else f"{self.cfg.trials.study.n_trials} trials")
            lines.append(f"| {m} | {state['seconds'].get(f'search.{m}', math.nan):.0f} | "
                         f"{amount} |")
        lines += ["", dominance_table(seeds), "", hypervolume_line(seeds)]
        return "\n".join(lines) + "\n"

    def _budget_text(self) -> str:
        b = self.cfg.trials.budget
        parts = []
        if b.reference and b.latency_x is not None:
            parts.append(f"latency <= {b.latency_x}x {b.reference}")
        if b.reference and b.memory_x is not None:
            parts.append(f"memory <= {b.memory_x}x {b.reference}")
        patches = self.cfg.pipeline.patches
        parts.append(f"{patches} trained patches per method" if patches else
                     "each method's own search length")
        return ", ".join(parts)


def _finished_steps(folder: RunFolder) -> int:
    """The last step a supernet training logged (0 without a log)."""
    import csv

    if not folder.log.exists():
        return 0
    with folder.log.open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("step")]
    return max(steps, default=0)


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
