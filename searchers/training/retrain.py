"""Retrain a derived (or zoo) net: ``python searchers/retrain.py GENOTYPE.json [key=value ...]``.

L1 loss (L2 and Charbonnier as options), Adam with a linear warm-up then a cosine or step
schedule, an optional EMA of the weights, mixed precision on GPU, checkpoints with
``--resume``, a progress bar, validation Y-PSNR every ``run.val_every`` iterations, and the
training curves in Plotly. At the end the net is re-parameterised into its deployed form, which
is checked against the trained form on the validation images.

Knowledge distillation: ``--teacher RUN_OR_CHECKPOINT`` (or ``kd.teacher`` in the config) adds
``kd.weight`` (default 1.0 with a teacher; 0 logs the term without training on it) times the
L1 distance between the net's output and the teacher's on the same [0, 1] LR batch. The
teacher is any net trained with this tool: a finished run folder (its ``deployed.pt`` with
``deployed_genotype.json``, else ``model.pt`` with ``genotype.json``) or a checkpoint file (a
run's ``checkpoint.pt``, which records its genotype, or a ``model.pt``/``deployed.pt`` beside
its genotype file). It runs in its deployed form, in eval mode, without gradients; its scale
must be the net's. The teacher is not saved in the checkpoint, but its identity (path and the
SHA-256 of its deployed weights) is, and ``--resume`` refuses another teacher.

The run folder (``run.dir``/``run.name``, the name defaulting to the zoo name, or for a genotype
file to its source and content hash, :func:`run_label`) holds
``config.yaml``, ``command.txt``, ``genotype.json``, ``log.csv`` (with KD, the unweighted KD
term as ``loss_kd`` next to ``loss_train``, which includes it), ``checkpoint.pt``,
``model.pt`` (final weights, the EMA where enabled), ``deployed.pt`` and
``deployed_genotype.json``, ``deploy.json`` (the equivalence check), ``training.html`` and,
with KD, ``teacher.json`` (the teacher's path, weights hash, genotype and the files read).

Several devices: ``torchrun --nproc_per_node=N searchers/retrain.py ...`` trains one run with
DistributedDataParallel (:mod:`searchers.training.distributed`; Gloo on the CPU, NCCL on CUDA with
each process on ``cuda:LOCAL_RANK``). ``data.batch_size`` stays the global batch: each rank
crops its ``1/N`` share of the batch one process would draw from the same seeded stream, so the
batches, the RNG state in the checkpoint and the training (up to float rounding; batch-norm
statistics are per rank) are those of a single process; the logged loss is the mean over the
ranks. Rank 0 alone writes the run folder, logs, validates and deploys; ``config.yaml``
records ``run.world_size``. ``--resume`` and ``--stop-after`` work under torchrun, and a run
may resume on another number of processes (same global batch). Without torchrun, or with
one process, nothing changes.

MemSR's scheme: ``kd.init=memsr`` with a teacher initialises a plain student
(:func:`search_space.plain.plain_genotype`, e.g. ``memsr_plain``) from the teacher's plain form
before the first iteration (:mod:`search_space.plain`; ``init.json`` records the fit), then
trains it with the KD above. The teacher must be an EDSR-like chain (``erb`` cells without
attention, e.g. ``edsr_baseline`` or a smaller one of the same layout) of the student's depth::

    python searchers/retrain.py TEACHER.json run.name=teacher
    python searchers/retrain.py STUDENT.json --teacher runs/retrain/teacher kd.init=memsr
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from search_space.files import error_line
from search_space.network import super_resolve
from searchers.common.config import (
    ConfigError,
    RunSection,
    atomic_torch_save,
    atomic_write_text,
    load_checkpoint,
    load_config,
    record_run,
    save_checkpoint,
)
from searchers.common.logs import CsvLogger
from searchers.training import distributed
from searchers.training.distributed import Dist
from searchers.training.loop import (
    TrainingDiverged,
    TrainStep,
    centre_crop,
    loss_fn,
    sample_batch,
    training_patch_size,
    validate,
)

if TYPE_CHECKING:
    from search_space import Genotype

logger = logging.getLogger("searchers.training.retrain")


DEFAULT_PATCH = 64
"""The HR patch when ``data.patch_size`` is unset, raised to what the net's attention needs."""


@dataclass
class RetrainData:
    train: str = "default:train"
    val: str = "default:val"
    scale: int | None = None  # default: the genotype's; a different value is refused
    # HR patch side; null: 64, or the smallest patch on which the net's attention works
    # (ESA: 108 at x4). A smaller explicit patch is refused for nets with ESA.
    patch_size: int | None = None
    batch_size: int = 16
    val_max_side: int | None = 256  # validation images centre-cropped to this HR side

    def __post_init__(self) -> None:
        if (self.patch_size is not None and self.patch_size < 1) or self.batch_size < 1:
            raise ValueError(f"patch_size and batch_size must be >= 1; got {self.patch_size}, "
                             f"{self.batch_size}")


@dataclass
class RetrainOptim:
    iterations: int = 1000
    lr: float = 5e-4
    schedule: Literal["cosine", "step"] = "cosine"
    warmup_iterations: int = 50
    step_size: int = 400
    gamma: float = 0.5
    loss: Literal["l1", "l2", "charbonnier"] = "l1"
    charbonnier_eps: float = 1e-3
    # EMA of the weights: off by default. With decay d the average needs ~1/(1-d) iterations to
    # forget the initialisation (1000 for 0.999), so enable it for long runs only.
    ema: float | None = None
    amp: bool = True
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.lr <= 0 or self.warmup_iterations < 0:
            raise ValueError(f"iterations >= 1, lr > 0 and warmup_iterations >= 0 needed; got "
                             f"{self.iterations}, {self.lr}, {self.warmup_iterations}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema: got {self.ema}; a decay in (0, 1), or null to switch it off")


@dataclass
class RetrainRun(RunSection):
    """The retraining's run folder (:class:`searchers.common.config.RunSection`; a null name is the
    net's), seed, device and schedule of checkpoints, validation and logs."""

    dir: str = "runs/retrain"
    name: str | None = None
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 200
    val_every: int = 200
    log_every: int = 20
    # Recorded, not read: the processes the run was (last) launched with (torchrun's
    # WORLD_SIZE; 1 for a plain run). data.batch_size is the global batch, split among them.
    world_size: int = 1


DEFAULT_KD_WEIGHT = 1.0
"""``kd.weight`` when a teacher is given and the weight is left unset."""


@dataclass
class RetrainKD:
    # Knowledge distillation (also --teacher): a retrain run folder or a checkpoint file of the
    # teacher net; null: off.
    teacher: str | None = None
    # Weight of the L1 term between the net's and the teacher's outputs; null: 1.0 with a
    # teacher (recorded as such in config.yaml). 0 logs the term without training on it.
    weight: float | None = None
    # The student's initialisation: random (none), or MemSR's (memsr: a plain student fitted
    # to the SVD of the teacher's plain-form features; needs a teacher and a plain student).
    init: Literal["none", "memsr"] = "none"
    init_patches: int = 16  # training patches the MemSR init fits on (its own random stream)

    def __post_init__(self) -> None:
        if self.init == "memsr" and self.teacher is None:
            raise ValueError("init is 'memsr' but there is no teacher; pass --teacher "
                             "RUN_OR_CHECKPOINT (a trained residual net such as edsr_baseline), "
                             "or set kd.init=none")
        if self.init_patches < 1:
            raise ValueError(f"init_patches: got {self.init_patches}; at least 1")
        if self.teacher is not None and not self.teacher.strip():
            raise ValueError("teacher: got an empty path; pass a retrain run folder or a "
                             "checkpoint file, or null for no distillation")
        if self.weight is not None and not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"weight: got {self.weight}; a finite weight >= 0 (0 logs the KD "
                             "term without training on it)")
        if self.teacher is None and self.weight is not None:
            raise ValueError(f"weight is {self.weight} but there is no teacher; pass --teacher "
                             "RUN_OR_CHECKPOINT (or kd.teacher=...), or drop kd.weight")
        if self.teacher is not None and self.weight is None:
            self.weight = DEFAULT_KD_WEIGHT


@dataclass
class RetrainConfig:
    data: RetrainData = field(default_factory=RetrainData)
    optim: RetrainOptim = field(default_factory=RetrainOptim)
    run: RetrainRun = field(default_factory=RetrainRun)
    kd: RetrainKD = field(default_factory=RetrainKD)


def lr_lambda(cfg: RetrainOptim) -> Any:
    """Linear warm-up, then cosine to 1 % or step decay."""

    def factor(it: int) -> float:
        if it < cfg.warmup_iterations:
            return (it + 1) / cfg.warmup_iterations
        if cfg.schedule == "step":
            return cfg.gamma ** ((it - cfg.warmup_iterations) // cfg.step_size)
        t = (it - cfg.warmup_iterations) / max(cfg.iterations - cfg.warmup_iterations, 1)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of ``model.state_dict()``: every entry's name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


TEACHER_EXPECTED = (
    "a finished run folder of python searchers/retrain.py (deployed.pt with "
    "deployed_genotype.json, or model.pt with genotype.json) or a checkpoint file (a run's "
    "checkpoint.pt, or a model.pt/deployed.pt beside its genotype.json/deployed_genotype.json)")


@dataclass(frozen=True)
class Teacher:
    """A KD teacher: its deployed net (eval mode, frozen, on the CPU until moved) and identity.

    ``path`` is as given; ``source`` names the files it was read from; ``weights_sha256`` is
    :func:`weights_sha256` of the deployed net, which identifies it on ``--resume``.
    """

    model: torch.nn.Module
    genotype: Genotype  # the deployed one
    path: str
    source: str
    weights_sha256: str

    @property
    def identity(self) -> dict[str, Any]:
        return {"path": self.path, "resolved": str(Path(self.path).expanduser().resolve()),
                "weights_sha256": self.weights_sha256, "source": self.source,
                "genotype": self.genotype.to_json(indent=None)}


def _deployed_from_weights(weights: Path, genotype: Genotype, genotype_name: str
                           ) -> tuple[torch.nn.Module, Genotype]:
    """``genotype``'s net with ``weights`` loaded (the EMA of a checkpoint where it has one),
    re-parameterised into its deployed form, and the deployed genotype."""
    from results.evaluate.command import load_checkpoint
    from search_space import build_model, reparameterize

    model = build_model(genotype)
    load_checkpoint(model, weights, genotype_name=genotype_name)
    return reparameterize(model), genotype.deployed()


def load_teacher(spec: str) -> Teacher:
    """The KD teacher at ``spec`` (see the module docstring), in its deployed form on the CPU.

    A run folder is read with :func:`results.report.runs.load_run` and
    :func:`results.report.runs.build_deployed` when it holds ``deployed.pt``; otherwise its
    ``model.pt`` is loaded into ``genotype.json``'s net and re-parameterised, as is a checkpoint
    file. Raises :class:`ConfigError` naming ``spec`` and what was expected.
    """
    from results.evaluate.command import CheckpointError, read_state_dict
    from search_space import Genotype, GenotypeError

    path = Path(spec).expanduser()
    where = f"kd.teacher (--teacher) {spec!r}"
    if not path.exists():
        raise ConfigError(f"{where} does not exist; pass {TEACHER_EXPECTED}", key="kd.teacher")
    try:
        if path.is_dir():
            if (path / "deployed.pt").is_file() and (path / "deployed_genotype.json").is_file():
                from results.report.runs import build_deployed, load_run

                run = load_run(path)
                model, deployed = build_deployed(run, torch.device("cpu")), run.deployed
                source = str(path / "deployed.pt")
            elif (path / "model.pt").is_file() and (path / "genotype.json").is_file():
                file = path / "genotype.json"
                model, deployed = _deployed_from_weights(path / "model.pt", Genotype.load(file),
                                                         str(file))
                source = str(path / "model.pt")
            else:
                raise ConfigError(
                    f"{where} is a folder without deployed.pt + deployed_genotype.json or "
                    f"model.pt + genotype.json; pass {TEACHER_EXPECTED} (a run that has not "
                    "finished: resume it first)", key="kd.teacher")
        else:
            _, _, ckpt = read_state_dict(path)
            recorded = ckpt.get("genotype")
            if isinstance(recorded, str):
                genotype, genotype_name = Genotype.from_json(recorded), f"{path}['genotype']"
            else:
                file = path.with_name("deployed_genotype.json" if path.name == "deployed.pt"
                                      else "genotype.json")
                if not file.is_file():
                    raise ConfigError(
                        f"{where} holds weights that do not record their genotype, and there is "
                        f"no {file.name} beside it; pass {TEACHER_EXPECTED}", key="kd.teacher")
                genotype, genotype_name = Genotype.load(file), str(file)
            model, deployed = _deployed_from_weights(path, genotype, genotype_name)
            source = str(path)
    except ConfigError:
        raise
    except (CheckpointError, GenotypeError, ValueError) as exc:  # ReportError is a ValueError
        raise ConfigError(f"{where}: {exc}", key="kd.teacher") from exc
    model.eval().requires_grad_(False)
    return Teacher(model=model, genotype=deployed, path=spec, source=source,
                   weights_sha256=weights_sha256(model))


def _teacher_words(identity: dict[str, Any] | None) -> str:
    if identity is None:
        return "without a teacher"
    return (f"with teacher {identity['path']!r} (deployed weights sha256 "
            f"{identity['weights_sha256'][:16]}...)")


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
        self.train = dataset_from_spec(cfg.data.train, scale, patch_size=self.patch_size)
        self.val = dataset_from_spec(cfg.data.val, scale)
        self.model = build_model(genotype).to(self.device)
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
        self.ckpt_path = run_dir / "checkpoint.pt"

    def _check_memsr(self) -> None:
        from search_space.genotype import GenotypeError
        from search_space.plain import check_pair

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

        from search_space.plain import memsr_init, plain_form

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
                f"checkpoint {self.ckpt_path} was trained {_teacher_words(theirs_t)}, not "
                f"{_teacher_words(ours_t)}; resume {again}, or start a new run.name",
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
                atomic_write_text(self.run_dir / "init.json",
                                  json.dumps(report, indent=2) + "\n")
            if self.ema is not None:  # average from the initialised weights
                self.ema.module.load_state_dict(self.model.state_dict())
        log = CsvLogger(self.run_dir / "log.csv", self.log_columns) if main else None
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
        """Final weights, deployment form and its equivalence check, training curves."""
        from search_space import reparameterize

        model = self.eval_model.eval()
        atomic_torch_save(model.state_dict(), self.run_dir / "model.pt")
        deployed = reparameterize(model)  # type: ignore[arg-type]
        atomic_torch_save(deployed.state_dict(), self.run_dir / "deployed.pt")
        deployed.genotype.save(self.run_dir / "deployed_genotype.json")
        max_diff = 0.0
        scale, side = self.genotype.scale, self.cfg.data.val_max_side
        with torch.inference_mode():
            for _, lr, _hr in self.val:
                lr, _ = centre_crop(lr, _hr, scale, side)
                x = lr.to(self.device)
                diff = super_resolve(model, x) - super_resolve(deployed, x)
                max_diff = max(max_diff, float(diff.abs().max()))
        psnr_trained = validate(model, self.val, scale=scale, device=self.device, side=side)
        psnr_deployed = validate(deployed, self.val, scale=scale, device=self.device, side=side)
        report = {"max_abs_diff_0_1": max_diff, "psnr_y_db_trained": psnr_trained,
                  "psnr_y_db_deployed": psnr_deployed, "equivalent": max_diff <= 1e-4,
                  "iterations": self.step, "deployed_value_range": deployed.data_range}
        atomic_write_text(self.run_dir / "deploy.json", json.dumps(report, indent=2))
        if not report["equivalent"]:
            logger.warning("the deployed form differs from the trained one by %.2e", max_diff)
        try:
            from results.plots.run import write_training_plots

            write_training_plots(self.run_dir)  # "Retraining: <run folder>"
        except (ImportError, ValueError) as exc:
            logger.warning("training curves not written: %s", exc)
        logger.info("val Y-PSNR %.3f dB (deployed %.3f dB, max diff %.1e); results in %s",
                    psnr_trained, psnr_deployed, max_diff, self.run_dir)
        return report


def run_label(spec: str, label: str, genotype: Genotype) -> str:
    """The default run name: a zoo net's name; for a genotype file, its source (the file's stem,
    or its folder's name where the file is the generic ``genotype.json`` a search writes) and
    the first 8 hex digits of the SHA-1 of the genotype's canonical JSON, e.g.
    ``default-3f2a9c1e`` for ``runs/darts/default/genotype.json``. Two different genotypes never
    share a run folder; the same genotype maps to the same one (so ``--resume`` finds it)."""
    from search_space.zoo import ZOO

    if spec in ZOO:
        return label
    source = Path(spec).parent.name if label == "genotype" else label
    digest = hashlib.sha1(json.dumps(genotype.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"{source or 'genotype'}-{digest[:8]}"


def main(argv: list[str] | None = None) -> int:
    from search_space.genotype import GenotypeError
    from search_space.zoo import resolve_genotype

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python searchers/retrain.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("genotype", help="a genotype JSON file or a zoo name")
    p.add_argument("--config")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--teacher", metavar="RUN_OR_CHECKPOINT",
                   help="distil from this net (sets kd.teacher; kd.weight, default "
                   f"{DEFAULT_KD_WEIGHT}, weighs the L1 term to its output): {TEACHER_EXPECTED}")
    p.add_argument("--stop-after", type=int, metavar="IT",
                   help="stop after this iteration as if killed (resume with --resume)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    dist, trainer = Dist(), None
    try:
        dist = distributed.from_env()
        if not dist.is_main:  # one voice: the other ranks log only warnings and errors
            logging.getLogger().setLevel(logging.WARNING)
        label, genotype = resolve_genotype(args.genotype)
        label = run_label(args.genotype, label, genotype)
        overrides = list(args.overrides)
        if args.teacher is not None:  # a JSON string is a YAML string: any path stays as is
            overrides.append(f"kd.teacher={json.dumps(args.teacher)}")
        cfg = load_config(RetrainConfig, args.config, overrides)
        cfg.run.world_size = dist.world_size
        run_dir = cfg.run.folder(label)
        ckpt = run_dir / "checkpoint.pt"
        from proxies.measure.settings import resolve_device

        distributed.init(dist, resolve_device(cfg.run.device))  # the process group, if any
        try:  # every rank sets up; a failure on any stops them all, with its message
            if dist.is_main and args.resume and not ckpt.exists():
                raise ConfigError(f"--resume: no checkpoint in {run_dir}")
            if dist.is_main and not args.resume and ckpt.exists():
                raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue "
                                  "it or choose another run.name=...")
            trainer = Retrainer(cfg, genotype, run_dir, dist)  # checks the input; writes nothing
        except (ConfigError, GenotypeError, ValueError, OSError) as exc:
            if not dist.enabled:
                raise
            _agreed(dist, str(exc))
        _agreed(dist, None)
        assert trainer is not None
        if args.resume:
            trainer.load_checkpoint()  # refuses another genotype or teacher before any write
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            record_run(run_dir, cfg, [sys.argv[0], *argv], resume=args.resume)
            genotype.save(run_dir / "genotype.json")
            if trainer.teacher is not None:
                atomic_write_text(run_dir / "teacher.json",
                                  json.dumps(trainer.teacher.identity, indent=2) + "\n")
        trainer.run(resume=args.resume, stop_after=args.stop_after)
        if dist.is_main and trainer.step >= cfg.optim.iterations:
            trainer.finish()  # the deployment form and its check: rank 0 only
        dist.barrier()
    except TrainingDiverged as exc:
        logger.error("%s", exc)
        return 3
    except (ConfigError, GenotypeError, ValueError, OSError) as exc:
        logger.error("%s", error_line(exc))
        return 2
    finally:
        # The DDP wrapper's reducer must go before its process group: destroyed after it (at
        # interpreter exit), Gloo can abort the process ("terminate called without an active
        # exception") after a run that otherwise ended well.
        del trainer
        gc.collect()
        distributed.close(dist)
    return 0


def _agreed(dist: Dist, error: str | None) -> None:
    """Raise ``ConfigError`` on every rank when any rank's setup failed (the lowest rank's)."""
    first = dist.first_error(error)
    if first is not None:
        raise ConfigError(first)
