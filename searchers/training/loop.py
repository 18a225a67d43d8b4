"""The one training and validation loop: retraining, the trial proxy and DARTS all step here.

Every net trains on [0, 1] values: LR/HR patches come from :mod:`proxies.data.imageset` in
[0, 1] (their HR side resolved and checked by :func:`search_space.patch.training_patch_size`),
and the net is called through :func:`search_space.network.super_resolve`, so the net, not the
loop, owns its value range (a deployed RLFN takes [0, 255]; its training form takes [0, 1]).
The pieces:

* :func:`sample_batch` draws seeded random patches onto the device;
* :class:`TrainStep` is one optimisation step (loss, backward, optional gradient clipping and
  mixed precision, optimiser and scheduler step) inside the host's training section
  (:func:`proxies.measure.isolation.training`, so latency is never timed while this host
  trains). With a ``teacher`` it adds knowledge distillation: ``kd_weight`` times the L1
  distance between the net's output and the teacher's on the same [0, 1] LR batch (the teacher
  in eval mode, under ``no_grad``, also called through :func:`super_resolve`);
* :func:`validate` is the mean Y-PSNR over whole (optionally centre-cropped) images.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from search_space.memory import require_training
from search_space.network import super_resolve

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def loss_fn(kind: str, eps: float = 1e-3) -> LossFn:
    """``l1`` (default), ``l2`` or ``charbonnier`` (with ``eps``), on [0, 1] values."""
    if kind == "l2":
        return F.mse_loss
    if kind == "charbonnier":
        return lambda sr, hr: torch.sqrt((sr - hr).pow(2) + eps * eps).mean()
    if kind != "l1":
        raise ValueError(f"loss: got {kind!r}; allowed: l1, l2, charbonnier")
    return F.l1_loss


def sample_batch(data: Any, batch_size: int, patch_size: int, rng: np.random.Generator,
                 device: torch.device, *, part: tuple[int, int] = (0, 1)
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` aligned random LR/HR patches in [0, 1] (flips, rot90), on ``device``.

    ``part=(rank, world_size)``: this rank's share, patches ``rank * b`` to ``(rank + 1) * b``
    (``b = batch_size // world_size``) of the batch one process would draw from ``rng``; every
    rank's ``rng`` advances as that process's does.
    """
    rank, world = part
    if world == 1:
        lr, hr = data.random_patches(batch_size, patch_size, rng)
    else:
        if batch_size % world:
            raise ValueError(f"batch_size: got {batch_size} for {world} processes; pass a "
                             f"global batch that is a multiple of {world}")
        b = batch_size // world
        lr, hr = data.random_patches(batch_size, patch_size, rng,
                                     keep=slice(rank * b, (rank + 1) * b))
    return lr.to(device), hr.to(device)


def training_section() -> Any:
    """The host's training section (:func:`proxies.measure.isolation.training`): no srnas process on
    this host times latency while it is held."""
    from proxies.measure.isolation import training

    return training()


JOINT_TRY_S = 0.05
"""How long each rank tries for its training section before the ranks compare (seconds)."""


@contextlib.contextmanager
def joint_training_section(agree: Callable[[bool], bool]) -> Iterator[None]:
    """Every rank of a distributed step inside its host's training section, or none.

    A rank that blocked on its section while another waited in the gradient all-reduce inside
    its own would deadlock with a measurer queued between them. So each rank tries for
    :data:`JOINT_TRY_S`, ``agree(got)`` (an all-reduce: true when every rank got it) decides,
    and on a refusal those that got it let go and all try again, until the lock timeout
    (``SRNAS_LOCK_TIMEOUT``, as :func:`proxies.measure.isolation.training`).
    """
    from proxies.measure import isolation, lock_files

    deadline, timeout = lock_files.lock_deadline(None)
    pause = JOINT_TRY_S
    while True:
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(isolation.training(timeout=JOINT_TRY_S))
            got = True
        except lock_files.IsolationTimeout:
            got = False
        if agree(got):
            break
        stack.close()
        if time.monotonic() >= deadline:
            raise lock_files.IsolationTimeout(
                f"training: the ranks of this distributed run could not all enter their host's "
                f"training section within {timeout:.0f} s (another srnas process measuring); "
                f"raise {lock_files.ENV_TIMEOUT} or set {lock_files.ENV_SWITCH}=off")
        time.sleep(pause)
        pause = min(2 * pause, 1.0)
    with stack:
        yield


class TrainStep:
    """One optimisation step of ``model`` on a batch, shared by every loop.

    The loss is ``loss(sr, hr)``, plus ``kd_weight * l1(sr, teacher_sr)`` with a teacher
    (knowledge distillation on the output). The KD term (unweighted) of the last step is kept
    in :attr:`last_kd`; it is computed and reported with ``kd_weight=0`` too, but then adds
    nothing to the gradient.

    Args:
        model: the net (any module; called through :func:`super_resolve`).
        optimizer: its optimiser.
        loss: the loss on [0, 1] values (:func:`loss_fn`).
        params: the parameters to clip (default: all of ``model``'s); DARTS passes its weight
            parameters so that the architecture weights are left alone.
        grad_clip: max gradient norm, or ``None``.
        scheduler: stepped after the optimiser, or ``None``.
        amp: float16 autocast with a gradient scaler (CUDA only).
        scaler: the gradient scaler (created when ``None``; kept for checkpoints).
        teacher: a trained net at the same scale (default ``None``: no distillation). It is put
            in eval mode with its parameters frozen, and run under ``no_grad``.
        kd_weight: the weight of the KD term (default 0.0); > 0 needs a teacher.
        agree: for a distributed step (``model`` wrapped in DistributedDataParallel), a
            collective ``agree(flag) -> bool`` true when ``flag`` is true on every rank: the
            ranks enter the training section together (:func:`joint_training_section`) and
            stop together when any rank's loss is not finite. ``None`` (default): one process.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 loss: LossFn = F.l1_loss, params: list[torch.nn.Parameter] | None = None,
                 grad_clip: float | None = None, scheduler: Any = None, amp: bool = False,
                 scaler: torch.amp.GradScaler | None = None,
                 teacher: torch.nn.Module | None = None, kd_weight: float = 0.0,
                 agree: Callable[[bool], bool] | None = None) -> None:
        if not (math.isfinite(kd_weight) and kd_weight >= 0):
            raise ValueError(f"kd_weight: got {kd_weight}; a finite weight >= 0")
        if kd_weight > 0 and teacher is None:
            raise ValueError(f"kd_weight: got {kd_weight} but no teacher; pass teacher=... or "
                             "kd_weight=0")
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.params = params
        self.grad_clip, self.scheduler, self.amp = grad_clip, scheduler, amp
        self.scaler = scaler or torch.amp.GradScaler("cuda", enabled=amp)
        self.teacher, self.kd_weight = teacher, kd_weight
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self.agree = agree
        self.last_kd: float | None = None

    def forward_terms(self, lr: torch.Tensor, hr: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss to minimise and the (unweighted) KD term, ``None`` without a teacher."""
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            sr = super_resolve(self.model, lr)
            total = self.loss(sr, hr)
            if self.teacher is None:
                return total, None
            with torch.no_grad():
                target = super_resolve(self.teacher, lr)
            if self.kd_weight == 0:
                return total, F.l1_loss(sr.detach(), target)
            kd = F.l1_loss(sr, target)
            return total + self.kd_weight * kd, kd

    def forward_loss(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return self.forward_terms(lr, hr)[0]

    def __call__(self, lr: torch.Tensor, hr: torch.Tensor, *, where: str = "") -> float:
        """Train on one batch; returns the loss (KD term included). Raises
        :class:`TrainingDiverged` (the optimiser untouched) when the loss is not finite."""
        agree = self.agree
        with training_section() if agree is None else joint_training_section(agree):
            self.model.train()
            loss, kd = self.forward_terms(lr, hr)
            value = float(loss.detach())
            self.last_kd = None if kd is None else float(kd.detach())
            finite = math.isfinite(value)
            if not (finite if agree is None else agree(finite)):
                raise TrainingDiverged(f"the loss became {value}{where}" if not finite else
                                       f"another rank's loss became non-finite{where}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)
                params = self.params if self.params is not None else list(
                    self.model.parameters())
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scheduler is not None:
                self.scheduler.step()
        return value


def centre_crop(lr: torch.Tensor, hr: torch.Tensor, scale: int, side: int | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre ``side`` x ``side`` HR window (and its LR window); ``None``: whole images."""
    if side is None:
        return lr, hr
    s = side // scale
    h, w = lr.shape[-2:]
    top, left = max(0, (h - s) // 2), max(0, (w - s) // 2)
    return (lr[..., top:top + s, left:left + s],
            hr[..., top * scale:(top + s) * scale, left * scale:(left + s) * scale])


@torch.inference_mode()
def validate(model: torch.nn.Module, data: Any, *, scale: int, device: torch.device,
             side: int | None = None) -> float:
    """Mean Y-PSNR (dB) over the images of ``data``, each centre-cropped to ``side`` HR px.

    The net is called through :func:`super_resolve` and scored with the conventions of
    :func:`proxies.quality.evaluate_pair` on [0, 1] values, whatever range the net works in.
    """
    from proxies.quality import evaluate_pair

    was_training = model.training
    model.eval()
    scores = []
    try:
        for _, lr, hr in data:
            lr, hr = centre_crop(lr, hr, scale, side)
            sr = super_resolve(model, lr.to(device)).float().cpu()
            scores.append(evaluate_pair(sr, hr, scale=scale, data_range=1.0).psnr_y_db)
    finally:
        model.train(was_training)
    return float(np.mean(scores))



class ShortTraining:
    """The proxies' short training of one net, advanced in chunks: seeded ``seed`` (torch,
    then the patch draws), Adam at ``lr`` with a cosine schedule to ``lr / 100`` over
    ``total_steps`` and the shared :class:`TrainStep`, on random ``patch_size`` patches of
    ``train``. Advancing by ``a`` then ``b`` steps trains exactly what one run of ``a + b``
    steps trains (the optimiser, schedule and patch generator are kept), so successive
    halving's rungs are points of one training curve. The trials' proxy PSNR
    (:class:`searchers.trials.trial.ProxyTraining`) and the DARTS search's quality estimate.
    """

    def __init__(self, model: torch.nn.Module, train: Any, *, total_steps: int, lr: float,
                 batch_size: int, patch_size: int, seed: int, device: torch.device) -> None:
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.model = model.to(device)
        self.train, self.device = train, device
        self.batch_size, self.patch_size = batch_size, patch_size
        self.total_steps = total_steps
        self.steps_done, self.diverged = 0, False
        self.step: TrainStep | None = None
        if total_steps > 0:
            scale = int(getattr(train, "scale", getattr(model, "scale_factor", 1)))
            lr_side = patch_size // scale
            require_training(
                self.model, (lr_side, lr_side), device, scale=scale, batch=batch_size,
                what=f"the short training on batch_size={batch_size} patches of patch_size="
                f"{patch_size} (LR {lr_side}x{lr_side}, x{scale})",
                fix="lower the batch size or the patch size (a study's proxy.batch_size, "
                "proxy.patch_size)")
            opt = torch.optim.Adam(self.model.parameters(), lr=lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps,
                                                               eta_min=lr * 0.01)
            self.step = TrainStep(self.model, opt, loss=F.l1_loss, scheduler=sched)

    def advance(self, steps: int) -> bool:
        """Train ``steps`` more steps (at most up to ``total_steps``); False once the loss
        diverged (the net is then left as it was at that step)."""
        steps = min(steps, self.total_steps - self.steps_done)
        if self.diverged or steps <= 0:
            return not self.diverged
        assert self.step is not None
        for _ in range(steps):
            try:
                self.step(*sample_batch(self.train, self.batch_size, self.patch_size, self.rng,
                                        self.device))
            except TrainingDiverged:
                self.diverged = True
                return False
            self.steps_done += 1
        return True

    def psnr(self, val: Any, *, scale: int, side: int | None = None) -> float:
        """:func:`validate` on ``val`` now; NaN once the training diverged."""
        if self.diverged:
            return math.nan
        return validate(self.model, val, scale=scale, device=self.device, side=side)


def short_training(model: torch.nn.Module, train: Any, val: Any, *, steps: int, lr: float,
                   batch_size: int, patch_size: int, seed: int, scale: int,
                   device: torch.device, side: int | None = None) -> float:
    """:class:`ShortTraining` for ``steps`` steps, then the Y-PSNR on ``val`` (``steps=0``:
    ``model`` as it is; NaN when the training diverged)."""
    run = ShortTraining(model, train, total_steps=steps, lr=lr, batch_size=batch_size,
                        patch_size=patch_size, seed=seed, device=device)
    run.advance(steps)
    return run.psnr(val, scale=scale, side=side)
