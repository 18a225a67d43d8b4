"""Retrain a derived (or zoo) net: ``python searchers/retrain.py GENOTYPE.json [key=value ...]``,
or from Python :func:`retrain` (a :class:`~search_space.Genotype` or a zoo name or file, and a
:class:`~searchers.training.config.RetrainConfig`), which returns a :class:`RetrainResult`.

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
before the first iteration (:mod:`searchers.training.memsr_init`; ``init.json`` records the
fit), then trains it with the KD above. The teacher must be an EDSR-like chain (``erb`` cells
without attention, e.g. ``edsr_baseline`` or a smaller one of the same layout) of the
student's depth::

    python searchers/retrain.py TEACHER.json run.name=teacher
    python searchers/retrain.py STUDENT.json --teacher runs/retrain/teacher kd.init=memsr

The command parses its arguments into a config and calls :func:`retrain`; the run itself is
:class:`searchers.training.trainer.Retrainer`, its settings :mod:`searchers.training.config`,
the teacher :mod:`searchers.training.teacher` and the deployment :mod:`searchers.training.deploy`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from results.run_folder import RunFolder
from searchers.common.command import exit_status, log_to_stderr
from searchers.common.config import ConfigError, dump_yaml, load_config
from searchers.training import distributed
from searchers.training.config import DEFAULT_KD_WEIGHT, RetrainConfig
from searchers.training.distributed import Dist
from searchers.training.loop import TrainingDiverged
from searchers.training.teacher import TEACHER_EXPECTED
from searchers.training.trainer import Retrainer

if TYPE_CHECKING:
    from search_space import Genotype

logger = logging.getLogger("searchers.training.retrain")


@dataclass(frozen=True)
class RetrainResult:
    """What :func:`retrain` leaves: the run folder and the net in it. ``finished`` once
    ``optim.iterations`` are done (not after ``stop_after``); then ``deployed_genotype`` and
    ``deploy_check`` (``deploy.json``: the deployed form against the trained one) are set on
    the process that wrote the run folder (rank 0 under torchrun)."""

    run_dir: Path
    genotype: Genotype
    iterations: int
    finished: bool
    deployed_genotype: Genotype | None = None
    deploy_check: dict[str, Any] | None = None

    @property
    def weights(self) -> Path:
        """The trained weights (the EMA where enabled), ``model.pt``."""
        return RunFolder(self.run_dir).model

    @property
    def deployed_weights(self) -> Path:
        """The deployed form's weights, ``deployed.pt`` (for :attr:`deployed_genotype`)."""
        return RunFolder(self.run_dir).deployed


def run_label(spec: str, label: str, genotype: Genotype) -> str:
    """The default run name: a zoo net's name; for a genotype file, its source (the file's stem,
    or its folder's name where the file is the generic ``genotype.json`` a search writes) and
    the first 8 hex digits of the SHA-1 of the genotype's canonical JSON, e.g.
    ``default-3f2a9c1e`` for ``runs/darts/default/genotype.json``. Two different genotypes never
    share a run folder; the same genotype maps to the same one (so ``--resume`` finds it). A
    genotype given as a value (``spec`` empty) is ``genotype-<hash>``."""
    from search_space.zoo import ZOO

    if spec in ZOO:
        return label
    source = Path(spec).parent.name if label == "genotype" else label
    digest = hashlib.sha1(json.dumps(genotype.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"{source or 'genotype'}-{digest[:8]}"




def retrain(genotype: Genotype | str, cfg: RetrainConfig | None = None, *,
            resume: bool = False, teacher: str | Path | None = None,
            stop_after: int | None = None, command: Sequence[str] | None = None
            ) -> RetrainResult:
    """Retrain ``genotype`` (a :class:`~search_space.Genotype`, a zoo name or a genotype JSON
    file) with ``cfg`` (default: the built-in defaults) into the run folder
    ``cfg.run.dir``/``cfg.run.name`` (a null name: :func:`run_label`), deploy it and check the
    deployed form.

    ``resume`` continues the run from its checkpoint (refusing another genotype or teacher);
    ``teacher`` (a run folder or checkpoint file) sets ``kd.teacher``; ``stop_after`` stops
    after that iteration as if killed; ``command`` is the command line recorded in the run
    folder's ``command.txt`` (default ``sys.argv``). Under torchrun (``WORLD_SIZE`` > 1) every
    process calls it and they train one run together (:mod:`searchers.training.distributed`).
    The run folder is locked for the run (by rank 0: :meth:`RunFolder.lock`): another process
    writing it is refused.

    Raises :class:`ConfigError` (or another ``ValueError``/``OSError``) for bad input before
    anything is written, and :class:`TrainingDiverged` when the loss stops being finite.
    """
    from proxies.measure.settings import resolve_device
    from search_space import Genotype
    from search_space.checks import GenotypeError
    from search_space.zoo import resolve_genotype

    cfg = RetrainConfig() if cfg is None else cfg
    if teacher is not None:
        cfg = replace(cfg, kd=replace(cfg.kd, teacher=str(teacher)))
    if isinstance(genotype, Genotype):
        label = run_label("", "genotype", genotype)
    else:
        spec = str(genotype)
        label, genotype = resolve_genotype(spec)
        label = run_label(spec, label, genotype)
    argv = list(sys.argv if command is None else command)
    dist, trainer, lock = Dist(), None, None
    try:
        dist = distributed.from_env()
        if not dist.is_main:  # one voice: the other ranks log only warnings and errors
            logging.getLogger().setLevel(logging.WARNING)
        cfg = replace(cfg, run=replace(cfg.run, world_size=dist.world_size))
        run_dir = cfg.run.folder(label)
        folder = RunFolder(run_dir)
        ckpt = folder.checkpoint
        distributed.init(dist, resolve_device(cfg.run.device))  # the process group, if any
        try:  # every rank sets up; a failure on any stops them all, with its message
            if dist.is_main:  # rank 0 writes the run folder: it holds the lock for the ranks
                lock = folder.lock().acquire()
            if dist.is_main and resume and not ckpt.exists():
                raise ConfigError(f"--resume: no checkpoint in {run_dir}")
            if dist.is_main and not resume and ckpt.exists():
                raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue "
                                  "it or choose another run.name=...")
            trainer = Retrainer(cfg, genotype, run_dir, dist)  # checks the input; writes nothing
        except (ConfigError, GenotypeError, ValueError, OSError) as exc:
            if not dist.enabled:
                raise
            _agreed(dist, str(exc))
        _agreed(dist, None)
        assert trainer is not None
        if resume:
            trainer.load_checkpoint()  # refuses another genotype or teacher before any write
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            RunFolder(run_dir).record(dump_yaml(cfg), argv, resume=resume)
            genotype.save(folder.genotype)
            if trainer.teacher is not None:
                folder.write_json(folder.teacher, trainer.teacher.identity)
        trainer.run(resume=resume, stop_after=stop_after)
        finished = trainer.step >= cfg.optim.iterations
        check = trainer.finish() if dist.is_main and finished else None  # rank 0 deploys
        dist.barrier()
        deployed = None if check is None else Genotype.load(folder.deployed_genotype)
        return RetrainResult(run_dir=run_dir, genotype=genotype, iterations=trainer.step,
                             finished=finished, deployed_genotype=deployed, deploy_check=check)
    finally:
        # The DDP wrapper's reducer must go before its process group: destroyed after it (at
        # interpreter exit), Gloo can abort the process ("terminate called without an active
        # exception") after a run that otherwise ended well.
        del trainer
        gc.collect()
        distributed.close(dist)
        if lock is not None:
            lock.release()


def _agreed(dist: Dist, error: str | None) -> None:
    """Raise ``ConfigError`` on every rank when any rank's setup failed (the lowest rank's)."""
    first = dist.first_error(error)
    if first is not None:
        raise ConfigError(first)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python searchers/retrain.py``."""
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
    return p


def main(argv: list[str] | None = None) -> int:
    """The command: the config from ``--config`` and the overrides, then :func:`retrain`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_intermixed_args(argv)
    log_to_stderr()

    def work() -> None:
        overrides = list(args.overrides)
        if args.teacher is not None:  # a JSON string is a YAML string: any path stays as is
            overrides.append(f"kd.teacher={json.dumps(args.teacher)}")
        cfg = load_config(RetrainConfig, args.config, overrides)
        retrain(args.genotype, cfg, resume=args.resume, stop_after=args.stop_after,
                command=[sys.argv[0], *argv])

    return exit_status(work, logger, failures={TrainingDiverged: 3})
