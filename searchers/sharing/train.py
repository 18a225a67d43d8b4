"""Supernet training for weight sharing: ``python searchers/train_supernet.py [--config FILE]
[--resume] [--stop-after STEP] [key=value ...]``; from Python :func:`train_supernet` with a
:class:`~searchers.sharing.config.SupernetConfig`, which returns a :class:`SupernetResult`.

The one supernet (:class:`~searchers.differentiable.supernet.SuperNet`, its ``width`` and
``num_cells`` the maxima) is trained along subnets (:mod:`searchers.differentiable.elastic`):
each step draws the paths of ``train.rule`` (``uniform``: one random subnet; ``sandwich``: the
largest, the smallest and ``train.sandwich_random`` random ones), runs the batch through each
with ``torch.func.functional_call`` on slices of the shared weights, sums their L1 losses (plus
``train.distill`` times each smaller path's L1 distance to the largest path's detached output)
and takes one Adam step on the shared weights, through the project's one training step
(:class:`~searchers.training.loop.TrainStep`: training section, divergence check, gradient
clipping). The architecture weights (``alpha``) take no part: they are not in the optimiser
and no path reads them.

The run folder (``run.dir``/``run.name``) holds ``config.yaml`` and ``command.txt``,
``supernet.json`` (the spec, widths and fewest cells: what a trial needs to rebuild the
supernet), ``log.csv``, ``checkpoint.pt`` (every ``run.checkpoint_every`` steps, with the RNG
states: a killed run resumes bit-identically with ``--resume``) and ``losses.html``. The
trials use it with ``proxy.kind=supernet proxy.supernet=runs/supernet/NAME``.
"""

from __future__ import annotations

import logging
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from results.run_folder import RunFolder
from search_space.genotype import Genotype
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
from searchers.differentiable.config import DEFAULT_PATCH
from searchers.differentiable.elastic import (
    ElasticSpace,
    extract_subnet,
    subnet_parameters,
    subnet_structure,
)
from searchers.differentiable.paths import largest_subnet, sample_subnet, smallest_subnet
from searchers.differentiable.supernet import SuperNet
from searchers.sharing.config import SharingTrain, SupernetConfig
from searchers.training.loop import TrainingDiverged, TrainStep, sample_batch, validate

__all__ = ["SubnetPaths", "SupernetDiverged", "SupernetResult", "main", "train_supernet"]

logger = logging.getLogger("searchers.sharing.train")

LOG_COLUMNS = ("step", "loss_train", "loss_largest", "loss_smallest", "loss_random", "loss_kd",
               "width", "cells", "lr", "val_psnr_largest_db", "val_psnr_smallest_db")
"""``log.csv``: the summed loss, each path's L1 (sandwich: largest, smallest, mean of the random
ones; uniform: ``loss_random`` with the path's ``width`` and ``cells``), the mean distillation
term, the learning rate, and at each checkpoint the largest and smallest subnets' Y-PSNR on the
validation images."""


class SupernetDiverged(RuntimeError):
    """The supernet's training loss became NaN or infinite."""


class SubnetPaths(nn.Module):
    """The supernet run along several subnets on one batch: their outputs stacked
    (``[paths, B, 3, H, W]``). Its parameters are the supernet's; set :attr:`paths` per step."""

    def __init__(self, net: SuperNet) -> None:
        super().__init__()
        self.net = net
        self.paths: list[Genotype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.paths:
            raise ValueError("SubnetPaths: no paths set; assign .paths before the forward pass")
        outs = []
        for g in self.paths:
            model = subnet_structure(self.net, g).train(self.training)
            outs.append(torch.func.functional_call(model, subnet_parameters(self.net, g), (x,)))
        return torch.stack(outs)


class PathLoss:
    """The summed L1 loss of stacked path outputs; with ``distill`` > 0 each path after the
    first (the largest) adds ``distill`` times its L1 distance to the first's detached output.
    The terms of the last call are kept in :attr:`last`."""

    def __init__(self, distill: float = 0.0) -> None:
        self.distill = distill
        self.last: list[float] = []
        self.last_kd: float | None = None

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        per = [F.l1_loss(sr[i], hr) for i in range(sr.shape[0])]
        total = torch.stack(per).sum()
        self.last = [float(p.detach()) for p in per]
        self.last_kd = None
        if self.distill > 0 and sr.shape[0] > 1:
            target = sr[0].detach()
            kd = torch.stack([F.l1_loss(sr[i], target) for i in range(1, sr.shape[0])])
            total = total + self.distill * kd.sum()
            self.last_kd = float(kd.detach().mean())
        return total


def step_paths(space: ElasticSpace, train: SharingTrain, rng: np.random.Generator
               ) -> list[Genotype]:
    """The paths of one step: one random subnet (uniform), or the largest, the smallest and
    ``sandwich_random`` random ones (sandwich), drawn from ``rng``."""
    def draw() -> Genotype:
        return sample_subnet(space.spec, space.widths, space.cells_min, rng)

    if train.rule == "uniform":
        return [draw()]
    return [largest_subnet(space.spec), smallest_subnet(space.spec, space.widths,
                                                        space.cells_min),
            *(draw() for _ in range(train.sandwich_random))]


class SupernetTraining:
    """One training run: data, supernet, optimiser, run folder."""

    def __init__(self, cfg: SupernetConfig, run_dir: Path) -> None:
        from proxies.data.specs import dataset_from_spec
        from proxies.measure.settings import resolve_device

        self.cfg, self.folder = cfg, RunFolder(run_dir)
        self.device = resolve_device(cfg.run.device)
        torch.manual_seed(cfg.run.seed)
        random.seed(cfg.run.seed)
        self.rng = np.random.default_rng(cfg.run.seed)
        s, d = cfg.space.scale, cfg.data
        self.patch_size = training_patch_size(d.patch_size, cfg.space.attention_candidates, s,
                                              default=DEFAULT_PATCH, where="data.patch_size")
        self.train = dataset_from_spec(d.train, s, patch_size=self.patch_size,
                                       downsampler=d.downsampler)
        self.val = dataset_from_spec(d.val, s, downsampler=d.downsampler)
        self.space = cfg.space.elastic()
        self.net = SuperNet(self.space.spec).to(self.device)
        weights = self.net.weight_parameters()  # the alphas are left out: never trained
        t = cfg.train
        self.optimizer = torch.optim.Adam(weights, lr=t.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=t.steps, eta_min=t.lr_min)
        self.paths = SubnetPaths(self.net)
        self.loss = PathLoss(t.distill)
        self.train_step = TrainStep(self.paths, self.optimizer, loss=self.loss, params=weights,
                                    grad_clip=t.grad_clip or None, scheduler=self.scheduler)
        self.step = 0
        self.resumed = False  # set by load_checkpoint
        self.log: CsvLogger | None = None

    def save_checkpoint(self) -> None:
        save_checkpoint({"step": self.step, "model": self.net.state_dict(),
                         "optimizer": self.optimizer.state_dict(),
                         "scheduler": self.scheduler.state_dict(),
                         "rng": rng_state(self.rng)}, self.folder.checkpoint)

    def load_checkpoint(self) -> None:
        ckpt = load_checkpoint(self.folder.checkpoint, self.device,
                               keys=("step", "model", "optimizer", "scheduler", "rng"))
        self.net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(self.rng, ckpt["rng"])
        self.step = int(ckpt["step"])
        self.resumed = True
        logger.info("resumed %s at step %d", self.folder.checkpoint, self.step)

    def validate_extremes(self) -> tuple[float, float]:
        """The Y-PSNR of the largest and the smallest subnets on the validation images."""
        sp = self.space
        scores = []
        for g in (largest_subnet(sp.spec), smallest_subnet(sp.spec, sp.widths, sp.cells_min)):
            model = extract_subnet(self.net, g)
            scores.append(validate(model, self.val, scale=sp.spec.scale, device=self.device))
        return scores[0], scores[1]

    def run(self, resume: bool = False, stop_after: int | None = None) -> None:
        from tqdm import tqdm

        cfg, t = self.cfg, self.cfg.train
        if resume and not self.resumed:
            self.load_checkpoint()
        self.log = CsvLogger(self.folder.log, LOG_COLUMNS)
        if resume:
            self.log.truncate_after("step", self.step)
        bar = tqdm(total=t.steps, initial=self.step, desc="supernet", unit="step",
                   dynamic_ncols=True)
        try:
            while self.step < t.steps:
                batch = sample_batch(self.train, cfg.data.batch_size, self.patch_size, self.rng,
                                     self.device)
                self.paths.paths = step_paths(self.space, t, self.rng)
                try:
                    loss = self.train_step(*batch)
                except TrainingDiverged as exc:
                    raise SupernetDiverged(
                        f"{exc} at step {self.step}; the last good checkpoint is kept in "
                        f"{self.folder.checkpoint}. Lower train.lr ({t.lr}) or "
                        "train.grad_clip and resume with --resume.") from exc
                self.step += 1
                checkpoint = self.step % cfg.run.checkpoint_every == 0 or self.step == t.steps
                if self.step % cfg.run.log_every == 0 or checkpoint:
                    self._log_row(loss, checkpoint)
                if checkpoint:
                    self.save_checkpoint()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if stop_after is not None and self.step >= stop_after:
                    logger.warning("stopping at step %d (--stop-after)", self.step)
                    break
        finally:
            bar.close()
            self.log.close()

    def _log_row(self, loss: float, validate_now: bool) -> None:
        assert self.log is not None
        terms, paths = self.loss.last, self.paths.paths
        row: dict[str, Any] = {"step": self.step, "loss_train": loss, "loss_kd": self.loss.last_kd,
                               "lr": self.optimizer.param_groups[0]["lr"]}
        if self.cfg.train.rule == "uniform":
            row.update(loss_random=terms[0], width=paths[0].width, cells=paths[0].num_cells)
        else:
            row.update(loss_largest=terms[0], loss_smallest=terms[1],
                       loss_random=float(np.mean(terms[2:])) if terms[2:] else None)
        if validate_now:
            row["val_psnr_largest_db"], row["val_psnr_smallest_db"] = self.validate_extremes()
        self.log.log(row)

    @property
    def finished(self) -> bool:
        return self.step >= self.cfg.train.steps

    def write_plots(self) -> Path | None:
        """``losses.html``: the log's curves (None, with a warning, when nothing to draw)."""
        import pandas as pd

        from results.plots.page import write_html
        from results.plots.run import LOSSES_HTML, loss_figure

        df = pd.read_csv(self.folder.log)
        columns = [c for c in LOG_COLUMNS if c not in ("step", "width", "cells")]
        try:
            fig = loss_figure(df, columns, title=f"Supernet training: {self.folder.path.name}")
        except ValueError as exc:
            logger.warning("%s not written: %s", LOSSES_HTML, exc)
            return None
        return write_html(fig, self.folder.path / LOSSES_HTML)


@dataclass(frozen=True)
class SupernetResult:
    """What :func:`train_supernet` leaves: the run folder, the steps done, whether all
    ``train.steps`` ran, the space (``supernet.json``) and, once finished, the largest and
    smallest subnets' Y-PSNR on the validation images."""

    run_dir: Path
    steps: int
    finished: bool
    space: ElasticSpace
    val_psnr_largest_db: float = math.nan
    val_psnr_smallest_db: float = math.nan


def train_supernet(cfg: SupernetConfig, resume: bool = False, stop_after: int | None = None,
                   command: Sequence[str] | None = None) -> SupernetResult:
    """Train the supernet of ``cfg`` in its run folder (``run.dir``/``run.name``).

    ``resume`` continues the run from its checkpoint (a new run refuses a folder that holds
    one, and ``resume`` without one is refused); ``stop_after`` stops after that step as if
    killed; ``command`` is recorded in ``command.txt`` (default ``sys.argv``). Raises
    :class:`ConfigError` (or another ``ValueError``/``OSError``) for bad input before anything
    is written, :class:`SupernetDiverged` when the loss stops being finite. The run folder is
    locked for the training (:meth:`RunFolder.lock`): another process writing it is refused.
    """
    with RunFolder(cfg.run.folder()).lock():
        return _train(cfg, resume, stop_after, command)


def _train(cfg: SupernetConfig, resume: bool, stop_after: int | None,
           command: Sequence[str] | None) -> SupernetResult:
    """:func:`train_supernet` in its locked run folder."""
    run_dir = cfg.run.folder()
    folder = RunFolder(run_dir)
    if resume and not folder.checkpoint.exists():
        raise ConfigError(f"--resume: no checkpoint in {run_dir}; run without --resume to start "
                          "it, or point run.dir/run.name at the run to continue")
    if not resume and folder.checkpoint.exists():
        raise ConfigError(f"{run_dir} already holds a run ({folder.checkpoint.name}); pass "
                          "--resume to continue it, or choose another run.name=...")
    training = SupernetTraining(cfg, run_dir)  # data, device and space checked here,
    run_dir.mkdir(parents=True, exist_ok=True)  # before anything is written
    if resume:  # a damaged or crafted checkpoint is refused before anything is written
        training.load_checkpoint()
    folder.record(dump_yaml(cfg), list(sys.argv if command is None else command), resume=resume)
    folder.write_json(folder.supernet, training.space.to_dict())
    training.run(resume=resume, stop_after=stop_after)
    if not training.finished:
        return SupernetResult(run_dir, training.step, False, training.space)
    if cfg.run.plots:
        training.write_plots()
    largest, smallest = training.validate_extremes()
    logger.info("supernet trained: %s; largest subnet %.2f dB, smallest %.2f dB (Y-PSNR on %s)",
                run_dir, largest, smallest, cfg.data.val)
    return SupernetResult(run_dir, training.step, True, training.space, largest, smallest)


def main(argv: list[str] | None = None) -> int:
    """The command: the config from ``--config`` and the overrides (with ``--resume``, the run's
    own ``config.yaml`` and the overrides), then :func:`train_supernet`."""
    return run_command(
        argv, prog="python searchers/train_supernet.py",
        description="Train the one supernet along sampled subnets (elastic width and depth) "
        "for weight sharing. Overrides: key=value with dotted keys, e.g. train.steps=1000.",
        config_help="YAML config (default: the built-in defaults)", config_type=SupernetConfig,
        run=train_supernet, logger=logger, failures={SupernetDiverged: 3})
