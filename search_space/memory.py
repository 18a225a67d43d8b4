"""Memory estimates made before a net is built or run, and the one refusal when they do not fit.

Every command that builds a net, or runs one at a size, asks here first: a net or an input too
large for the machine is refused in one line (:class:`InsufficientMemory`, a ``ValueError``:
the commands' exit 2) naming what it needs, what the machine has and the fix, instead of a
torch traceback or the kernel's OOM killer. Nothing large is allocated to find out.

**The model** (float32, bytes):

* *weights*: the parameters and buffers of the net built on the ``meta`` device (exact
  counts, no storage allocated);
* *data*: the input batch ``B x C x H x W``, in training also the HR targets
  ``B x 3 x sH x sW``;
* *activations*: the peak of the bytes that the tensors of one forward (inference, no grad)
  or one training step (forward, an L1-like loss, backward: the saved activations and every
  gradient, the weights' included) hold at once. It is traced op by op on the ``meta``
  device (:class:`AllocationTrace`: + an op's new storage, - a storage that dies), which
  computes every shape exactly and allocates nothing, then multiplied by
  :data:`ACTIVATION_MARGIN` for what the meta device does not show (kernels' scratch memory,
  oneDNN's weight layouts, cuDNN's workspaces), plus :data:`SCRATCH_BYTES` for the im2col
  buffer of the CPU's small convolutions;
* *optimizer* (training): Adam's two moments plus one step's temporaries,
  :data:`OPTIMIZER_FACTOR` times the trainable weights.

A forward needs weights + data + activations; a training step weights + data + activations
+ optimizer. Against the CPU profiler's measured peak (:mod:`proxies.measure.memory`, the
same quantity: what one forward or step allocates above what was there before) the estimated
activations were 1.11-1.43x for a forward (RLFN, IMDN, SPAN, EDSR-baseline and MAFFSRN at
64-256 px LR) and 1.00-1.32x for a training step (forward and backward, batch 2-4, 32-48 px
LR); the traces alone, 0.8-1.0x. ``tests/test_memory_estimate.py`` checks a tiny net within a
factor.

Tracing costs a fraction of a second (seconds for a DARTS supernet), so two bounds come first
(:func:`require_forward`, :func:`require_training`): the data, weights and optimizer alone (a
lower bound; over the limit, refused at once, before any build for the data alone: what a
40000x40000 input meets) and a coarse upper bound from the net's inventory (every leaf module
holding :data:`UPPER_TENSORS_PER_MODULE` tensors of the widest channel count at the HR size;
under the limit, accepted without a trace). Only a net between the two is traced. Counting a
net's weights on the meta device costs about one real build (the initialisers are skipped);
the first trace, or weight-normalised build, in a process also imports torch's Python meta
kernels (2-4 s once on a busy 2-core host).

**What the machine has** (:func:`available_bytes`): on CUDA the device's free memory
(``torch.cuda.mem_get_info``); on the host ``MemAvailable`` of ``/proc/meminfo``, capped by a
cgroup's memory limit minus its usage (a container's limit); elsewhere it is unknown and
nothing is refused. ``SRNAS_MEMORY_CHECK=off`` switches the check off (for an estimate that
refuses what would fit).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace

import torch

from search_space.memory_host import available_bytes, format_bytes
from search_space.memory_trace import (
    _ON_META,
    AllocationTrace,
    Net,
    _leaves,
    _meta_net,
    _trace,
    _weights,
    _widest,
)

__all__ = [
    "ACTIVATION_MARGIN",
    "ENV_SWITCH",
    "OPTIMIZER_FACTOR",
    "SCRATCH_BYTES",
    "UPPER_TENSORS_PER_MODULE",
    "AllocationTrace",
    "InsufficientMemory",
    "MemoryEstimate",
    "available_bytes",
    "check_enabled",
    "check_memory",
    "estimate_forward",
    "estimate_training",
    "estimate_weights",
    "format_bytes",
    "require_batch",
    "require_forward",
    "require_training",
    "require_weights",
]

logger = logging.getLogger(__name__)

ENV_SWITCH = "SRNAS_MEMORY_CHECK"
"""``off`` (or ``0``, ``false``, ``no``) switches every memory check off."""

ACTIVATION_MARGIN = 1.25
"""The traced activations times this: scratch memory the meta device does not allocate."""

SCRATCH_BYTES = 9 * 20480 * 4
"""Added to the activations: torch runs a CPU convolution of at most 3x3 on a batch of one
whose input has at most 20480 elements through im2col (its ``use_mkldnn`` rule), whose buffer
(9 x the input) the meta device does not show; larger ones go to oneDNN without it. Without
this a tiny net's estimate was 0.38x the measured peak at 32x32 px."""

OPTIMIZER_FACTOR = 3
"""Adam's state and step: two moments and one step's temporaries, each the trainable weights."""

UPPER_TENSORS_PER_MODULE = 2
"""The coarse upper bound's tensors per leaf module (each of the widest channel count at the
HR size); a net under that bound is accepted without a trace. The bound was 45-2400x the estimated
activations of every zoo net and of the default DARTS supernet (forward and training step)."""

FLOAT_BYTES = 4



class InsufficientMemory(ValueError):
    """A net or an input that would not fit in the memory the machine (or the GPU) has."""


@dataclass(frozen=True)
class MemoryEstimate:
    """What one piece of work needs, in bytes (see the module docstring for the model).

    ``what`` names the work (``"rlfn_ntire's forward at 1x3x256x256"``); ``method`` says how
    the activations were found: ``"trace"`` (exact shapes on the meta device, with the margin),
    ``"lower bound"`` (no activations: data, weights and optimizer only, so the need is at
    least ``total_bytes``), ``"upper bound"`` (the inventory's coarse bound) or ``"weights"``
    (only the weights were asked for). ``train``: the work is a training step (``data_bytes``
    then holds the HR targets too).
    """

    what: str
    params: int = 0
    weights_bytes: int = 0
    data_bytes: int = 0
    activation_bytes: int = 0
    optimizer_bytes: int = 0
    method: str = "trace"
    train: bool = False

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.data_bytes + self.activation_bytes
                + self.optimizer_bytes)

    def breakdown(self) -> str:
        """``"weights 1.2 MiB, input 17.9 GiB, ..."``: the parts that are not zero."""
        data = "batch (LR patches, HR targets)" if self.train else "input"
        parts = [("weights", self.weights_bytes), (data, self.data_bytes),
                 ("activations", self.activation_bytes), ("Adam state", self.optimizer_bytes)]
        return ", ".join(f"{name} {format_bytes(n)}" for name, n in parts if n)


def check_enabled() -> bool:
    """False when ``SRNAS_MEMORY_CHECK`` switches the checks off, or while a net is being
    built on the meta device for an estimate (a build inside an estimate is not checked)."""
    if _ON_META.get():
        return False
    return os.environ.get(ENV_SWITCH, "on").strip().lower() not in ("off", "0", "false", "no")


# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------


def _shape_words(batch: int, channels: int, lr_size: tuple[int, int]) -> str:
    return f"{batch}x{channels}x{lr_size[0]}x{lr_size[1]}"


def _data_bytes(batch: int, channels: int, lr_size: tuple[int, int], scale: int,
                train: bool) -> tuple[int, int]:
    """(the input's bytes, in training with the HR targets; the output's bytes)."""
    h, w = lr_size
    lr = batch * channels * h * w * FLOAT_BYTES
    out = batch * 3 * h * w * scale * scale * FLOAT_BYTES
    return (lr + out if train else lr), out


def estimate_weights(net: Net, what: str = "the net") -> MemoryEstimate:
    """The bytes of ``net``'s parameters and buffers (a builder is built on the meta
    device)."""
    params, weights, _ = _weights(_meta_net(net))
    return MemoryEstimate(what=what, params=params, weights_bytes=weights, method="weights")


def _estimate(net: Net, lr_size: tuple[int, int], *, scale: int, batch: int, channels: int,
              train: bool, what: str, limit: int | None) -> MemoryEstimate:
    """The estimate of the work; with ``limit`` the bounds first: a lower bound over it or
    an upper bound under it is returned without a trace."""
    for name, value in (("batch", batch), ("channels", channels), ("scale", scale),
                        ("lr_size[0]", lr_size[0]), ("lr_size[1]", lr_size[1])):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: got {value!r}; allowed: an integer >= 1")
    data, out = _data_bytes(batch, channels, lr_size, scale, train)
    # the output, and in training the gradient of the output, are allocated by any net
    floor = MemoryEstimate(what=what, data_bytes=data, activation_bytes=out * (1 + train),
                           method="lower bound", train=train)
    if limit is not None and floor.total_bytes > limit:
        return floor  # refused before any build: the data alone do not fit
    module = _meta_net(net)
    params, weights, trainable = _weights(module)
    floor = replace(floor, params=params, weights_bytes=weights,
                    activation_bytes=floor.activation_bytes + (trainable if train else 0),
                    optimizer_bytes=OPTIMIZER_FACTOR * trainable if train else 0)
    if limit is not None and floor.total_bytes > limit:
        return floor
    if limit is not None:
        hr_pixels = batch * lr_size[0] * lr_size[1] * scale * scale
        coarse = (UPPER_TENSORS_PER_MODULE * (_leaves(module) + 1) * _widest(module, scale)
                  * hr_pixels * FLOAT_BYTES + SCRATCH_BYTES)
        upper = replace(floor, activation_bytes=floor.activation_bytes + coarse,
                        method="upper bound")
        if upper.total_bytes <= limit:
            return upper
    x = torch.empty(batch, channels, *lr_size, device="meta")
    try:
        peak = _trace(module, x, train)
    except (RuntimeError, NotImplementedError, TypeError, ValueError, IndexError) as exc:
        logger.warning("%s: the memory estimate could not trace the net (%s: %s); only the "
                       "data, weights and optimizer are checked", what, type(exc).__name__,
                       " ".join(str(exc).split())[:200])
        return floor
    return replace(floor, activation_bytes=math.ceil(ACTIVATION_MARGIN * peak) + SCRATCH_BYTES,
                   method="trace")


def estimate_forward(net: Net, lr_size: tuple[int, int], *, scale: int, batch: int = 1,
                     channels: int = 3, what: str | None = None) -> MemoryEstimate:
    """What one inference forward (eval mode, no grad) of ``net`` on a
    ``batch x channels x lr_size`` input needs: weights, input, traced activations (the
    output included). ``scale``: the net's upscaling factor (1 for a net that keeps the
    size)."""
    what = what or f"a forward at {_shape_words(batch, channels, lr_size)}"
    return _estimate(net, lr_size, scale=scale, batch=batch, channels=channels, train=False,
                     what=what, limit=None)


def estimate_training(net: Net, lr_size: tuple[int, int], *, scale: int, batch: int,
                      channels: int = 3, what: str | None = None) -> MemoryEstimate:
    """What one training step of ``net`` (Adam) on ``batch`` LR patches of ``lr_size`` (HR
    targets ``scale`` times larger) needs: weights, the batch, traced activations and
    gradients, Adam's state."""
    what = what or f"a training step on {_shape_words(batch, channels, lr_size)}"
    return _estimate(net, lr_size, scale=scale, batch=batch, channels=channels, train=True,
                     what=what, limit=None)


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


def check_memory(estimate: MemoryEstimate, device: str | torch.device, *, fix: str,
                 available: tuple[int | None, str] | None = None) -> MemoryEstimate:
    """Refuse ``estimate`` when it needs more than ``device`` has.

    Raises:
        InsufficientMemory: one line: the work, what it needs (and of what), what the
            machine has, and ``fix``.
    """
    limit, where = available if available is not None else available_bytes(device)
    if limit is None or estimate.total_bytes <= limit:
        return estimate
    need = "at least " if estimate.method == "lower bound" else "about "
    raise InsufficientMemory(
        f"{estimate.what} needs {need}{format_bytes(estimate.total_bytes)} "
        f"({estimate.breakdown()}), but {where}; {fix} ({ENV_SWITCH}=off skips this check)")


def _require(net: Net, lr_size: tuple[int, int], device: str | torch.device, *, scale: int,
             batch: int, channels: int, train: bool, what: str, fix: str
             ) -> MemoryEstimate | None:
    if not check_enabled():
        return None
    available = available_bytes(device)
    if available[0] is None:
        logger.debug("memory check skipped: %s", available[1])
        return None
    estimate = _estimate(net, lr_size, scale=scale, batch=batch, channels=channels,
                         train=train, what=what, limit=available[0])
    return check_memory(estimate, device, fix=fix, available=available)


def require_forward(net: Net, lr_size: tuple[int, int], device: str | torch.device, *,
                    scale: int, what: str, fix: str, batch: int = 1, channels: int = 3
                    ) -> MemoryEstimate | None:
    """Refuse a forward of ``net`` at ``batch x channels x lr_size`` on ``device`` that would
    not fit (:class:`InsufficientMemory` naming ``what``, the need, what ``device`` has, and
    ``fix``), before anything large is allocated. Returns the estimate (``None`` when the
    check is off or the device's memory is unknown)."""
    return _require(net, lr_size, device, scale=scale, batch=batch, channels=channels,
                    train=False, what=what, fix=fix)


def require_training(net: Net, lr_size: tuple[int, int], device: str | torch.device, *,
                     scale: int, batch: int, what: str, fix: str, channels: int = 3
                     ) -> MemoryEstimate | None:
    """Refuse a training step of ``net`` on ``batch`` LR patches of ``lr_size`` on ``device``
    that would not fit (as :func:`require_forward`)."""
    return _require(net, lr_size, device, scale=scale, batch=batch, channels=channels,
                    train=True, what=what, fix=fix)


def require_batch(batch: int, lr_size: tuple[int, int], *, scale: int, what: str, fix: str,
                  device: str | torch.device = "cpu", channels: int = 3
                  ) -> MemoryEstimate | None:
    """Refuse a training batch whose LR patches and HR targets alone do not fit on
    ``device`` (the host by default: patches are drawn there, whatever device trains) before
    any net is chosen: a study's check of its ``proxy.batch_size`` and patch."""
    if not check_enabled():
        return None
    data, _ = _data_bytes(batch, channels, lr_size, scale, train=True)
    return check_memory(MemoryEstimate(what=what, data_bytes=data, method="lower bound",
                                       train=True), device, fix=fix)


def require_weights(net: Net | MemoryEstimate, *, what: str, fix: str
                    ) -> MemoryEstimate | None:
    """Refuse building a net whose weights do not fit in this host's memory (nets are built
    on the host, then moved). ``net``: a builder, or its :func:`estimate_weights`."""
    if not check_enabled():
        return None
    estimate = (net if isinstance(net, MemoryEstimate) else estimate_weights(net, what))
    return check_memory(replace(estimate, what=what), "cpu", fix=fix)
