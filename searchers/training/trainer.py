"""One retraining run, :class:`Retrainer`: the net, its data, optimiser, LR schedule, EMA, mixed
precision and DistributedDataParallel; the KD teacher and MemSR's initialisation; checkpoints
that resume exactly (refusing another genotype or teacher); the loop with validation and logs;
and the deployment at the end (:mod:`searchers.training.deploy`).
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from results.run_folder import RunFolder
from search_space.patch import training_patch_size
from searchers.common.checkpoints import load_checkpoint, save_checkpoint
from searchers.common.config import ConfigError
from searchers.common.logs import CsvLogger
from searchers.training import distributed
from searchers.training.config import DEFAULT_PATCH, RetrainConfig, lr_lambda
from searchers.training.deploy import deploy
from searchers.training.distributed import Dist
from searchers.training.loop import TrainStep, loss_fn, sample_batch, validate
from searchers.training.teacher import load_teacher, teacher_words

logger = logging.getLogger("searchers.training.retrain")


class Retrainer:
    """One retraining run (the teacher, with ``cfg.kd.teacher``, is loaded here)."""

    def __init__(self, cfg: RetrainConfig, genotype: Any, run_dir: Path,
                 dist: Dist | None = None) -> None:
        from proxies.data.specs import dataset_from_spec
        from proxies.measure.settings import resolve_device
        from search_space import build_model

        self.cfg, self.genotype, self.run_dir = cfg, genotype, run_dir
        self.dist = dist = dist or Dist()
        if cfg.data.batch_size % dist.world_size:
            b, n = cfg.data.batch_size, dist.world_size
            raise ConfigError(
                f"data.batch_size is {b}, the global batch, but it does not split among "
                f"{n} processes; set data.batch_size to a multiple of {n} (e.g. "
                f"{max(n, b - b % n)}) or launch a number of processes that divides {b}",
                key="data.batch_size")
        scale = genotype.scale
        if cfg.data.scale is not None and cfg.data.scale != scale:
            raise ConfigError(f"data.scale is {cfg.data.scale} but the genotype is x{scale}; "
                              "retrain at the genotype's scale (drop data.scale) or use a "
                              f"genotype built for x{cfg.data.scale}")
        self.device = distributed.init(dist, resolve_device(cfg.run.device))
        self.teacher = None if cfg.kd.teacher is None else load_teacher(cfg.kd.teacher)
        if self.teacher is not None:
            if self.teacher.genotype.scale != scale:
                raise ConfigError(
                    f"kd.teacher (--teacher) {cfg.kd.teacher!r} is a x{self.teacher.genotype.scale}"
                    f" net but the net being retrained is x{scale}; distil from a teacher trained "
                    f"at x{scale}", key="kd.teacher")
            self.teacher.model.to(self.device)
        torch.manual_seed(cfg.run.seed)  # after the teacher is built: it does not shift the init
        random.seed(cfg.run.seed)
        self.rng = np.random.default_rng(cfg.run.seed)
        self.patch_size = training_patch_size(cfg.data.patch_size, genotype.attentions, scale,
                                              default=DEFAULT_PATCH, where="data.patch_size")
        self._check_memory(genotype)
        self.train = dataset_from_spec(cfg.data.train, scale, patch_size=self.patch_size)
        self.val = dataset_from_spec(cfg.data.val, scale)
        self.model = build_model(
            genotype, init="torch" if cfg.kd.init == "torch" else "standard").to(self.device)
        if cfg.kd.init == "memsr":
            self._check_memsr()
        o = cfg.optim
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(o))
        self.ema = None
        if o.ema is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(o.ema),
                                     use_buffers=True)
        self.amp = o.amp and self.device.type == "cuda"
        if o.amp and not self.amp:
            logger.info("optim.amp: mixed precision is used on CUDA only; training in float32")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.net: torch.nn.Module = self.model  # what trains: the DDP wrapper with several ranks
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)
            # super_resolve reads the net's value range off the module it calls
            object.__setattr__(self.net, "data_range",
                               float(getattr(self.model, "data_range", 1.0)))
        self.train_step = TrainStep(self.net, self.optimizer,
                                    loss=loss_fn(o.loss, o.charbonnier_eps),
                                    grad_clip=o.grad_clip, scheduler=self.scheduler,
                                    amp=self.amp, scaler=self.scaler,
                                    teacher=None if self.teacher is None else self.teacher.model,
                                    kd_weight=cfg.kd.weight or 0.0,
                                    agree=dist.all_true if dist.enabled else None)
        self.step = 0
        self.resumed = False  # set by load_checkpoint
        self.best_psnr = -math.inf
        self.folder = RunFolder(run_dir)
        self.ckpt_path = self.folder.checkpoint

    def _check_memory(self, genotype: Any) -> None:
        """Refuse a net, batch and patch whose training step does not fit on the device,
        before the data are read or the net is built (:mod:`search_space.memory`)."""
        from search_space import build_model
        from search_space.memory import require_training

        b, p, s = self.cfg.data.batch_size, self.patch_size, genotype.scale
        lr = p // s
        require_training(lambda: build_model(genotype), (lr, lr), self.device, scale=s,
                         batch=b // self.dist.world_size,
                         what=f"a training step on data.batch_size={b} patches of "
                         f"data.patch_size={p} (LR {lr}x{lr}, x{s})",
                         fix="lower data.batch_size or data.patch_size, or train a smaller net")

    def _check_memsr(self) -> None:
        from search_space.checks import GenotypeError
        from searchers.training.memsr_init import check_pair

        assert self.teacher is not None
        try:
            check_pair(self.model, self.teacher.model)  # type: ignore[arg-type]
        except (GenotypeError, ValueError) as exc:
            raise ConfigError(f"kd.init=memsr: {exc}", key="kd.init") from exc

    def memsr_init(self) -> dict[str, Any]:
        """MemSR's initialisation of the (plain) net from the teacher's plain form, on
        ``kd.init_patches`` training patches drawn from their own random stream (so the
        training batches are those of the same seed without it)."""
        import time

        from search_space.plain import plain_form
        from searchers.training.memsr_init import memsr_init

        assert self.teacher is not None
        t0 = time.perf_counter()
        rng = np.random.default_rng([self.cfg.run.seed, 0x5EED])
        lr, _ = sample_batch(self.train, self.cfg.kd.init_patches, self.patch_size, rng,
                             self.device)
        plain, offset = plain_form(self.teacher.model, lr)  # type: ignore[arg-type]
        result = memsr_init(self.model, plain, lr, seed=self.cfg.run.seed)
        result.offset = offset
        report = result.to_dict() | {"patches": int(lr.shape[0]),
                                     "seconds": round(time.perf_counter() - t0, 2)}
        logger.info("MemSR init from the teacher's plain form (offset %.3g) in %.1f s; layer "
                    "errors %.3f (first) ... %.3f (output)", offset, report["seconds"],
                    result.errors[0], result.errors[-1])
        return report

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def save_checkpoint(self) -> None:
        save_checkpoint({
            "step": self.step, "genotype": self.genotype.to_json(indent=None),
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.module.state_dict(),
            "ema_state": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "best_psnr": self.best_psnr,
            "teacher": None if self.teacher is None else self.teacher.identity,
            "world_size": self.dist.world_size,
            "rng": {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state,
                    "python": random.getstate()},
        }, self.ckpt_path)

    def load_checkpoint(self) -> None:
        """Rank 0 reads the checkpoint and hands it to the other ranks (which need not see the
        run folder); every rank restores it. Every rank draws the same random stream
        (:func:`sample_batch` ``part``), so the one RNG state of the checkpoint serves them all,
        and a run may resume with another world size: the global batch, and with it the
        training, is the same (up to rounding; batch-norm statistics are per rank)."""
        from search_space import Genotype

        keys = ("step", "model", "genotype")
        if not self.dist.enabled:
            ckpt = load_checkpoint(self.ckpt_path, self.device, keys)
        else:
            ckpt = self.dist.broadcast(load_checkpoint(self.ckpt_path, "cpu", keys)
                                       if self.dist.is_main else None)
        theirs = Genotype.from_json(ckpt["genotype"])
        if theirs != self.genotype:
            raise ConfigError(
                f"checkpoint {self.ckpt_path} was trained for genotype {ckpt['genotype']}, not "
                f"for {self.genotype.to_json(indent=None)}; start a new run.name or resume "
                "with the genotype it was trained for")
        theirs_t = ckpt.get("teacher")
        ours_t = None if self.teacher is None else self.teacher.identity
        if (theirs_t or {}).get("weights_sha256") != (ours_t or {}).get("weights_sha256"):
            again = ("without --teacher" if theirs_t is None
                     else f"with --teacher {theirs_t['path']}")
            raise ConfigError(
                f"checkpoint {self.ckpt_path} was trained {teacher_words(theirs_t)}, not "
                f"{teacher_words(ours_t)}; resume {again}, or start a new run.name",
                key="kd.teacher")
        if theirs_t is not None and ours_t is not None and (
                theirs_t["resolved"] != ours_t["resolved"]):
            logger.warning("the teacher was at %s and is now at %s (same weights)",
                           theirs_t["resolved"], ours_t["resolved"])
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None and ckpt.get("ema_state") is not None:
            self.ema.load_state_dict(ckpt["ema_state"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.best_psnr = ckpt["best_psnr"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.rng.bit_generator.state = ckpt["rng"]["numpy"]
        random.setstate(ckpt["rng"]["python"])
        self.step = int(ckpt["step"])
        self.resumed = True
        logger.info("resumed %s at iteration %d", self.ckpt_path, self.step)
        before = int(ckpt.get("world_size", 1))
        if before != self.dist.world_size:
            logger.warning("the run was trained on %d process(es) and resumes on %d, with the "
                           "same global batch %d", before, self.dist.world_size,
                           self.cfg.data.batch_size)

    @property
    def log_columns(self) -> list[str]:
        kd = [] if self.teacher is None else ["loss_kd"]
        return ["step", "loss_train", *kd, "lr", "val_psnr_y_db"]

    def run(self, resume: bool = False, stop_after: int | None = None) -> None:
        """Train to ``optim.iterations`` (or ``stop_after``). ``resume``: continue from the
        checkpoint, loaded here unless :meth:`load_checkpoint` already ran."""
        from tqdm import tqdm

        cfg, o, dist = self.cfg, self.cfg.optim, self.dist
        main = dist.is_main  # rank 0 writes, logs and validates; the others only train
        if resume and not self.resumed:
            self.load_checkpoint()
        if cfg.kd.init == "memsr" and not self.resumed and self.step == 0:
            report = self.memsr_init()  # same patches and fit on every rank
            if main:
                self.folder.write_json(self.folder.init, report)
            if self.ema is not None:  # average from the initialised weights
                self.ema.module.load_state_dict(self.model.state_dict())
        log = CsvLogger(self.folder.log, self.log_columns) if main else None
        if resume and log is not None:
            log.truncate_after("step", self.step)
        g = self.genotype
        bar = tqdm(total=o.iterations, initial=self.step, desc="retrain", unit="it",
                   dynamic_ncols=True, disable=True if not main else None)
        part = (dist.rank, dist.world_size)
        while self.step < o.iterations:
            lr, hr = sample_batch(self.train, cfg.data.batch_size, self.patch_size, self.rng,
                                  self.device, part=part)
            loss = self.train_step(lr, hr, where=(
                f" at iteration {self.step}; the last good checkpoint is kept in "
                f"{self.ckpt_path}. Lower optim.lr ({o.lr}) and resume with --resume."))
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.step += 1
            row: dict[str, Any] = {}
            if main and (self.step % cfg.run.val_every == 0 or self.step == o.iterations):
                psnr = validate(self.eval_model, self.val, scale=g.scale, device=self.device,
                                side=cfg.data.val_max_side)
                self.best_psnr = max(self.best_psnr, psnr)
                row["val_psnr_y_db"] = psnr
                bar.set_postfix(val_psnr=f"{psnr:.3f}")
            # the same decision on every rank (validation steps are log steps)
            if (self.step % cfg.run.val_every == 0 or self.step == o.iterations
                    or self.step % cfg.run.log_every == 0):
                loss = dist.mean(loss)  # the global batch's loss: the mean over the ranks
                if self.teacher is not None:
                    row["loss_kd"] = dist.mean(self.train_step.last_kd or 0.0)
                if log is not None:
                    log.log({"step": self.step, "loss_train": loss,
                             "lr": self.optimizer.param_groups[0]["lr"], **row})
            if main and (self.step % cfg.run.checkpoint_every == 0
                         or self.step == o.iterations):
                self.save_checkpoint()
            bar.update(1)
            if stop_after is not None and self.step >= stop_after:
                logger.warning("stopping at iteration %d (--stop-after)", self.step)
                break
        bar.close()
        if log is not None:
            log.close()

    def finish(self) -> dict[str, Any]:
        """Final weights, deployment form and its equivalence check (:func:`deploy`), training
        curves; returns the check."""
        report = deploy(self.eval_model, self.val, self.run_dir, scale=self.genotype.scale,
                        side=self.cfg.data.val_max_side, device=self.device,
                        iterations=self.step)
        try:
            from results.plots.run import write_training_plots

            write_training_plots(self.run_dir)  # "Retraining: <run folder>"
        except (ImportError, ValueError) as exc:
            logger.warning("training curves not written: %s", exc)
        return report
