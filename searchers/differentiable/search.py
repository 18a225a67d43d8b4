"""Differentiable, hardware-aware architecture search over SR cells.

Run ``python searchers/darts.py`` (the embedded default data, about 6 minutes on 2 CPU cores;
``--config configs/quickstart.yaml``, the sampled mode: under 2 minutes) or
``python searchers/darts.py --config configs/darts_t91.yaml search.steps=2000``. Any config key
can be overridden as ``key=value`` (dotted keys). ``--resume`` continues a killed run. From
Python: :func:`run_search` with a :class:`~searchers.differentiable.config.DartsConfig`, which
returns a :class:`SearchResult`.

The run folder (``run.dir``/``run.name``) holds the resolved config and the exact command,
``log.csv``, ``checkpoint.pt`` (written atomically every ``run.checkpoint_every`` steps),
``genotype.json`` (the net chosen by ``search.select``, fitted under the latency budget;
``selection.json`` says how) and the ``top_k/`` alternatives (the most likely by architecture
weight), ``alphas.html`` and ``losses.html``, and ``profile.md``/``profile.json``: the derived
net next to the zoo, measured in the same run, with an estimate of its Y-PSNR on the selection
split (the supernet's weights, ``profile.estimate_steps`` fine-tuning steps).
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from results.run_folder import RunFolder
from search_space.files import atomic_write_text
from search_space.patch import training_patch_size
from searchers.common.checkpoints import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from searchers.common.command import run_command
from searchers.common.config import ConfigError, dump_yaml
from searchers.common.logs import CsvLogger
from searchers.common.spend import SpendMeter
from searchers.differentiable.budget import budget_targets, selection_reserve
from searchers.differentiable.config import DEFAULT_PATCH, DartsConfig
from searchers.differentiable.expected import expected_cost
from searchers.training.loop import (
    TrainingDiverged,
    TrainStep,
    sample_batch,
    training_section,
)

if TYPE_CHECKING:
    from search_space import Genotype

logger = logging.getLogger("searchers.differentiable.search")


class SearchDiverged(RuntimeError):
    """The search loss became NaN or infinite."""


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


class DartsSearch:
    """One search run: data, supernet, hardware table, optimisers, run folder."""

    def __init__(self, cfg: DartsConfig, run_dir: Path) -> None:
        from proxies.data.specs import dataset_from_spec
        from proxies.measure.settings import resolve_device
        from searchers.differentiable.architect import Architect, HardwarePenalty
        from searchers.differentiable.latency_table import HardwareTable, fill_supernet_costs
        from searchers.differentiable.mixed import ArchState
        from searchers.differentiable.supernet import SuperNet

        self.cfg, self.run_dir = cfg, run_dir
        self.folder = RunFolder(run_dir)
        self.device = resolve_device(cfg.run.device)
        self.meter = SpendMeter(self.device)  # everything this process spends on the search
        self.spent_before = 0.0  # what earlier processes of this run spent (the checkpoint's)
        self.total_steps = cfg.search.steps  # search.cpu_seconds: calibrated after the warm-up
        self.calibrated = cfg.search.cpu_seconds is None
        # a budget too small for the perturbation rule falls back to alpha (_calibrate)
        self.select_rule: Literal["perturbation", "alpha"] = cfg.search.select
        self.step_costs: list[float] = []  # seconds of the architecture steps timed so far
        torch.manual_seed(cfg.run.seed)
        random.seed(cfg.run.seed)
        self.rng = np.random.default_rng(cfg.run.seed)
        s, d = cfg.space.scale, cfg.data
        self.patch_size = training_patch_size(d.patch_size, cfg.space.attention_candidates, s,
                                              default=DEFAULT_PATCH, where="data.patch_size")
        self.train = dataset_from_spec(d.train, s, patch_size=self.patch_size,
                                       downsampler=d.downsampler)
        self.val = dataset_from_spec(d.val, s, patch_size=self.patch_size,
                                     downsampler=d.downsampler)
        self.spec = cfg.space.supernet_spec()
        sc = cfg.search
        state = ArchState(mode="sigmoid" if sc.guard == "fair" else "softmax",
                          sample_k=sc.sample_k if sc.memory_mode == "sample" else 0)
        self._check_memory(lambda: SuperNet(self.spec, state))
        self.net = SuperNet(self.spec, state).to(self.device)
        hw = cfg.hardware
        self.table = HardwareTable(hw.settings(), hw.cache_dir)
        fill_supernet_costs(self.net, self.table, progress=True)
        self.net.to(self.device)
        penalty = {k: v for k, v in asdict(cfg.loss).items()
                   if k not in ("reference", "latency_x", "memory_x")}
        penalty.update(budget_targets(cfg, self.table, run_dir))
        self.architect = Architect(
            self.net, loss_fn=F.l1_loss, penalty=HardwarePenalty(**penalty),
            lr=sc.arch_lr, weight_decay=sc.arch_weight_decay, second_order=sc.order == "second",
            unroll_lr=sc.lr, zero_one_weight=sc.zero_one_weight if sc.guard == "fair" else 0.0,
        )
        self.optimizer = torch.optim.Adam(self.net.weight_parameters(), lr=sc.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=sc.steps, eta_min=sc.lr_min)
        self.weight_step = TrainStep(self.net, self.optimizer, loss=F.l1_loss,
                                     params=self.net.weight_parameters(), grad_clip=sc.grad_clip,
                                     scheduler=self.scheduler)
        self.step = 0
        self.resumed = False  # set by load_checkpoint
        self.ckpt_path = self.folder.checkpoint
        self.log: CsvLogger | None = None

    def _check_memory(self, build: Any) -> None:
        """Refuse a space, batch and patch whose weight step does not fit on the device,
        before the supernet is built (:mod:`search_space.memory`; the architecture step's
        forward and backward on a validation batch are of the same size, one after the
        other)."""
        from search_space.memory import require_training

        b, p, s = self.cfg.data.batch_size, self.patch_size, self.cfg.space.scale
        lr = p // s
        require_training(build, (lr, lr), self.device, scale=s, batch=b,
                         what=f"a search step of the supernet (space.width="
                         f"{self.cfg.space.width}, space.num_cells={self.cfg.space.num_cells}) "
                         f"on data.batch_size={b} patches of data.patch_size={p}",
                         fix="lower data.batch_size, data.patch_size, space.width or "
                         "space.num_cells, or use fewer candidates" + (
                             ", or search.memory_mode=sample"
                             if self.cfg.search.memory_mode == "full" else ""))

    # -- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        save_checkpoint({
            "step": self.step,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "arch_optimizer": self.architect.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "reference": self.architect.reference,
            "rng": rng_state(self.rng),
            "spent_s": self.spent(), "total_steps": self.total_steps,
            "calibrated": self.calibrated, "select_rule": self.select_rule,
        }, self.ckpt_path)

    def load_checkpoint(self) -> None:
        ckpt = load_checkpoint(self.ckpt_path, self.device, keys=("step", "model", "rng"))
        self.net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.architect.optimizer.load_state_dict(ckpt["arch_optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.architect.reference = ckpt["reference"]
        set_rng_state(self.rng, ckpt["rng"])
        self.step = int(ckpt["step"])
        self.spent_before = float(ckpt.get("spent_s", 0.0))
        self.total_steps = int(ckpt.get("total_steps", self.cfg.search.steps))
        self.calibrated = bool(ckpt.get("calibrated", self.cfg.search.cpu_seconds is None))
        self.select_rule = ("alpha" if ckpt.get("select_rule") == "alpha"
                            else self.cfg.search.select)
        # the temperature of the last step taken: a run killed after its last step (in the
        # selection or the profile) selects under the same mixture as one that was not
        self.net.state.temperature = self.cfg.search.temperature_at(max(self.step - 1, 0),
                                                                    self.total_steps)
        self.resumed = True
        logger.info("resumed %s at step %d", self.ckpt_path, self.step)

    # -- the budget -------------------------------------------------------------------------

    def spent(self) -> float:
        """Seconds spent on this run so far (:mod:`searchers.common.spend`: CPU-seconds on a
        CPU), every process of it together."""
        return self.spent_before + self.meter.peek()

    def _calibrate(self, step_s: float) -> None:
        """``search.cpu_seconds``: after three architecture steps, fix the search's length to
        what the budget still buys (the selection's reserve kept back); the LR schedule and
        the temperature follow the new length. Stops at once if nothing is left."""
        self.step_costs.append(step_s)
        budget = self.cfg.search.cpu_seconds
        assert budget is not None
        if len(self.step_costs) < 3 and self.step < self.total_steps:
            return
        per_step = sorted(self.step_costs)[len(self.step_costs) // 2]
        reserve = selection_reserve(self.net, self.cfg.search, self.select_rule, per_step)
        left = budget - self.spent() - reserve
        if reserve > 0 and left < reserve:
            logger.warning("search.cpu_seconds=%.0f: the perturbation selection (about %.0f s) "
                           "would cost more than the search steps the budget still buys "
                           "(%.0f s): the net is selected by its alphas instead; raise the "
                           "budget, or lower search.select_batches / select_top_m", budget,
                           reserve, max(left, 0.0))
            self.select_rule, reserve = "alpha", 0.0
            left = budget - self.spent()
        self.total_steps = self.step + max(0, int(left // per_step))
        self.scheduler.T_max = max(1, self.total_steps)
        self.calibrated = True
        logger.info("search.cpu_seconds=%.0f: %.1f s spent by step %d, %.3f s per step, %.1f s "
                    "kept for the selection: the search runs %d steps", budget, self.spent(),
                    self.step, per_step, reserve, self.total_steps)

    # -- the loop ---------------------------------------------------------------------------

    def _batch(self, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return sample_batch(data, self.cfg.data.batch_size, self.patch_size, self.rng,
                            self.device)

    def _log_columns(self) -> list[str]:
        cols = ["step", "loss_train", "loss_val", "loss_hardware", "loss_latency_ms",
                "loss_memory_mib", "loss_params", "loss_zero_one", "expected_latency_ms",
                "expected_memory_mib", "expected_params_m", "temperature", "lr"]
        for slot, dist in self.net.slot_distributions().items():
            cols += [f"alpha/{slot}/{c}" for c in dist]
        return cols

    def run(self, resume: bool = False, stop_after: int | None = None) -> None:
        from tqdm import tqdm

        cfg, sc = self.cfg, self.cfg.search
        if not resume:
            self.architect.set_reference()
            # the stream the sampled mode draws its paths from starts here, whatever the
            # hardware table's filling and the budget's measurement took from torch's generator
            # (nothing when they were cached): a run's net does not depend on the caches
            torch.manual_seed(cfg.run.seed)
        elif not self.resumed:  # run_search loads it before it writes anything
            self.load_checkpoint()
        self.log = CsvLogger(self.folder.log, self._log_columns())
        if resume:
            self.log.truncate_after("step", self.step)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="darts", unit="step",
                   dynamic_ncols=True)
        arch_out: dict[str, float] = {}
        while self.step < self.total_steps:
            step_start = self.meter.peek()
            self.net.state.temperature = sc.temperature_at(self.step, self.total_steps)
            train = self._batch(self.train)
            val = self._batch(self.val)
            self.net.train()
            if self.step >= sc.warmup_steps:
                with training_section():
                    arch_out = self.architect.step(train, val)
            diverged = (f" at step {self.step} (arch: {arch_out}); the last good checkpoint is "
                        f"kept in {self.ckpt_path}. Lower search.lr ({sc.lr}) or search.arch_lr "
                        f"({sc.arch_lr}) and resume with --resume.")
            if not all(math.isfinite(v) for v in arch_out.values()):
                raise SearchDiverged(f"the architecture loss became non-finite{diverged}")
            try:
                loss = self._weight_step(train)
            except TrainingDiverged as exc:
                raise SearchDiverged(f"{exc}{diverged}") from exc
            self.step += 1
            if not self.calibrated and self.step > sc.warmup_steps:
                self._calibrate(self.meter.peek() - step_start)
                bar.total = self.total_steps
            elif not self.calibrated and self.spent() >= (sc.cpu_seconds or math.inf):
                logger.warning("search.cpu_seconds=%s spent in the weight warm-up (step %d of "
                               "search.warmup_steps=%d): the search stops without an "
                               "architecture step; raise the budget or lower the warm-up",
                               sc.cpu_seconds, self.step, sc.warmup_steps)
                self.total_steps, self.calibrated = self.step, True
            if self.step % cfg.run.log_every == 0 or self.step == self.total_steps:
                self._log_row(loss, arch_out)
            if self.step % cfg.run.checkpoint_every == 0 or self.step == self.total_steps:
                self.save_checkpoint()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}",
                            lat_ms=f"{arch_out.get('expected_latency_ms', float('nan')):.2f}",
                            T=f"{self.net.state.temperature:.2f}")
            if stop_after is not None and self.step >= stop_after:
                logger.warning("stopping at step %d (--stop-after)", self.step)
                break
        bar.close()

    def _weight_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        """One weight step; with an elastic width and ``search.width_training=uniform``, at
        one width drawn uniformly (from torch's generator, saved with the checkpoint)."""
        gate = self.net.width_gate
        if gate is None or self.cfg.search.width_training == "mixture":
            return self.weight_step(*batch)
        gate.fixed = int(torch.randint(len(gate.candidates), (1,)))
        try:
            return self.weight_step(*batch)
        finally:
            gate.fixed = None

    def _log_row(self, loss: float, arch_out: dict[str, float]) -> None:
        assert self.log is not None
        with torch.no_grad():
            cost = {k: float(v) for k, v in expected_cost(self.net).items()}
        row: dict[str, Any] = {"step": self.step, "loss_train": loss,
                               "temperature": self.net.state.temperature,
                               "lr": self.optimizer.param_groups[0]["lr"],
                               "expected_latency_ms": cost["latency_ms"],
                               "expected_memory_mib": cost["memory_mib"],
                               "expected_params_m": cost["params"] / 1e6}
        row.update({k: v for k, v in arch_out.items() if k.startswith("loss_")})
        for slot, dist in self.net.slot_distributions().items():
            row.update({f"alpha/{slot}/{c}": p for c, p in dist.items()})
        self.log.log(row)

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    # -- results ----------------------------------------------------------------------------

    def write_results(self) -> tuple[Genotype, list[Genotype]]:
        """The derived genotype (``genotype.json``) and the ``run.top_k`` most likely ones
        (``top_k/``), with the plots and the profile; returns them."""
        from searchers.differentiable.latency_table import predict_genotype
        from searchers.differentiable.select import select_net

        genotype = select_net(self)
        genotype.save(self.folder.genotype)
        summary, top = [], []
        for k, (g, logp) in enumerate(self.net.top_k(self.cfg.run.top_k)):
            g.save(self.run_dir / "top_k" / f"genotype_{k}.json")
            top.append(g)
            predicted = predict_genotype(self.net, g)
            summary.append({"rank": k, "log_prob": logp, "predicted": predicted})
        atomic_write_text(self.run_dir / "top_k" / "summary.json", json.dumps(summary, indent=2))
        logger.info("derived genotype written to %s", self.folder.genotype)
        if self.cfg.run.plots:
            from results.plots.run import write_run_plots

            write_run_plots(self.folder.log, self.run_dir)
        if self.cfg.profile.enabled:
            from searchers.differentiable.profile import write_profile

            write_profile(self, genotype)
        return genotype, top


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    """What :func:`run_search` leaves: the run folder, the steps done and, once the search has
    run all ``search.steps`` (``finished``), the derived genotype and the ``run.top_k`` most
    likely ones (``top_k/``), most likely first."""

    run_dir: Path
    steps: int
    finished: bool
    genotype: Genotype | None = None
    top_k: tuple[Genotype, ...] = ()


def run_search(cfg: DartsConfig, *, resume: bool = False, stop_after: int | None = None,
               command: Sequence[str] | None = None) -> SearchResult:
    """Search with ``cfg`` in its run folder (``run.dir``/``run.name``) and derive the genotype.

    ``resume`` continues the run from its checkpoint (a new run refuses a folder that holds
    one); ``stop_after`` stops after that step as if killed; ``command`` is the command line
    recorded in ``command.txt`` (default ``sys.argv``). Raises :class:`ConfigError` (or another
    ``ValueError``/``OSError``) for bad input before anything is written, and
    :class:`SearchDiverged` when the loss stops being finite. The run folder is locked for the
    search (:meth:`RunFolder.lock`): another process writing it is refused.
    """
    with RunFolder(cfg.run.folder()).lock():
        return _search(cfg, resume, stop_after, command)


def _search(cfg: DartsConfig, resume: bool, stop_after: int | None,
            command: Sequence[str] | None) -> SearchResult:
    """:func:`run_search` in its locked run folder."""
    run_dir = cfg.run.folder()
    ckpt = RunFolder(run_dir).checkpoint
    if resume and not ckpt.exists():
        raise ConfigError(f"--resume: no checkpoint in {run_dir}; run without --resume to start "
                          "it, or point run.dir/run.name at the run to continue")
    if not resume and ckpt.exists():
        raise ConfigError(f"{run_dir} already holds a run ({ckpt.name}); pass --resume to "
                          "continue it, or choose another run.name=...")
    search = DartsSearch(cfg, run_dir)  # reads the data, device and space: bad input fails here,
    run_dir.mkdir(parents=True, exist_ok=True)  # before anything is written
    if resume:  # a damaged or crafted checkpoint is refused before anything is written
        search.load_checkpoint()
    RunFolder(run_dir).record(dump_yaml(cfg), list(sys.argv if command is None else command),
                              resume=resume)
    search.run(resume=resume, stop_after=stop_after)
    if not search.finished:
        return SearchResult(run_dir=run_dir, steps=search.step, finished=False)
    genotype, top = search.write_results()
    return SearchResult(run_dir=run_dir, steps=search.step, finished=True, genotype=genotype,
                        top_k=tuple(top))


def main(argv: list[str] | None = None) -> int:
    """The command: the config from ``--config`` and the overrides (with ``--resume``, the run's
    own ``config.yaml`` and the overrides), then :func:`run_search`."""
    return run_command(
        argv, prog="python searchers/darts.py",
        description="Differentiable hardware-aware search over SR cells. Overrides: key=value "
        "with dotted keys, e.g. search.steps=1000 data.train=../shared/datasets/T91/HR.",
        config_help="YAML config (default: the built-in defaults, which equal "
        "configs/darts.yaml)", config_type=DartsConfig, run=run_search, logger=logger,
        failures={SearchDiverged: 3})
