"""What every measuring proxy does before it measures: device, input and the deployed model.

:func:`resolve_device` turns ``"auto"``/``"cpu"``/``"cuda[:N]"`` into a concrete device (or a
clear error); :func:`check_input_shape`, :func:`check_dtype` and :func:`check_int` validate the
arguments, naming the parameter and the fix; :func:`make_input` builds the seeded random input
on the device; :func:`model_for_measurement` yields the deployed form of the caller's model in
eval mode on the device, never moving, casting or re-flagging the caller's model. Shared by the
latency, memory, runtime and protocol proxies (:mod:`proxies.measure.latency`,
:mod:`proxies.measure.memory`,
:mod:`proxies.measure.runtime`, :mod:`proxies.protocol.ntire`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "DEFAULT_INPUT_SHAPE",
    "DeviceUnavailable",
    "MeasureSettings",
    "check_dtype",
    "check_input_shape",
    "check_int",
    "make_input",
    "model_for_measurement",
    "resolve_device",
]

logger = logging.getLogger(__name__)

DEFAULT_INPUT_SHAPE: tuple[int, int, int, int] = (1, 3, 256, 256)


@dataclass(frozen=True)
class MeasureSettings:
    """How nets are measured: the one settings type of the measurements that take settings,
    the hardware table's entries (:class:`searchers.differentiable.latency_table.HardwareTable`,
    one round) and the
    profile's rows (:func:`proxies.measure.profile_rows.profile_model`, interleaved rounds with the
    reference). The config sections turn into it
    (``searchers.common.config.MeasureSection.settings``
    for the trials' ``measure`` and the DARTS search's ``hardware`` sections,
    ``ProfileConfig.settings`` for the profile); every field is recorded with the figures.

    ``runs_per_round`` timed runs of a net per round, ``rounds`` rounds: :attr:`runs` in all
    when a net is timed alone. ``complexity_size`` and the ``latency``/``memory``/``thop``
    switches are what a profile row holds; the table reads neither.
    """

    device: str = "auto"
    lr_size: tuple[int, int] = (256, 256)
    rounds: int = 5
    runs_per_round: int = 2
    warmup: int = 2
    threads: int | None = None
    dtype: str = "float32"
    backend: str = "torch"  # proxies.measure.runtime.BACKENDS
    complexity_size: tuple[int, int] = (256, 256)
    latency: bool = True
    memory: bool = True
    thop: bool = False

    @property
    def runs(self) -> int:
        """Timed runs of a net measured alone: ``rounds * runs_per_round``."""
        return self.rounds * self.runs_per_round


class DeviceUnavailable(ValueError, RuntimeError):
    """A device was asked for that this machine lacks (CUDA without a working GPU): bad input
    to a command (a ValueError, exit status 2), and a RuntimeError for callers that catch it."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a concrete device.

    ``"auto"`` (or ``None``) gives the current CUDA device if CUDA is available, else the CPU.
    ``"cuda"`` is resolved to ``cuda:<current device index>``.

    Raises:
        ValueError: unknown device string, a device type other than cpu/cuda, or a CUDA index
            that does not exist.
        DeviceUnavailable: CUDA requested but ``torch.cuda.is_available()`` is False.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    allowed = "'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device of type cpu/cuda"
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device={device!r} is not a device; use {allowed}.") from exc
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"device={device!r} has unsupported type {dev.type!r}; use {allowed}.")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"device={device!r} asks for CUDA, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
            "use device='cpu' or 'auto', or run on a machine with a working CUDA GPU."
        )
    index = torch.cuda.current_device() if dev.index is None else dev.index
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise ValueError(
            f"device={device!r} names CUDA index {index}, but only {count} CUDA device(s) exist; "
            f"use an index in 0..{count - 1}."
        )
    return torch.device("cuda", index)



def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Validate an NCHW shape of four positive ints and return it as a tuple."""
    dims = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
    if len(dims) != 4 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims
    ):
        raise ValueError(
            f"input_shape must be 4 positive ints (N, C, H, W), got {input_shape!r}; "
            "pass e.g. input_shape=(1, 3, 256, 256)."
        )
    n, c, h, w = (int(d) for d in dims)
    return n, c, h, w


def check_dtype(dtype: torch.dtype) -> None:
    """Require a floating-point ``torch.dtype`` for the generated input."""
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(
            f"dtype must be a floating-point torch.dtype, got {dtype!r}; "
            "pass e.g. dtype=torch.float32 or torch.float16."
        )


def make_input(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Seeded random input, generated on the host and copied to ``device`` (synchronised)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=dtype).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return x


def _fits(model: nn.Module, device: torch.device, dtype: torch.dtype) -> bool:
    """True if every parameter/buffer is on ``device`` and every float one has ``dtype``."""
    tensors = [*model.parameters(), *model.buffers()]
    return all(
        t.device == device and (not t.is_floating_point() or t.dtype == dtype) for t in tensors
    )


@contextlib.contextmanager
def model_for_measurement(
    model: nn.Module, device: torch.device, dtype: torch.dtype
) -> Iterator[nn.Module]:
    """Yield the deployed form of ``model`` (or a moved/cast deep copy) in eval mode; restore
    every module's flag.

    Every proxy measures the deployed form (:func:`search_space.network.deployed_form`):
    re-parameterisable ops merged, batch norms folded. A training-form module is never timed
    or measured. The caller's model is used as given when it is already deployed and lives on
    ``device`` in ``dtype``; otherwise a copy is made, so the caller's model is never changed.
    """
    from search_space.network import deployed_form

    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}; "
            "wrap the callable in an nn.Module subclass."
        )
    model = deployed_form(model)
    if _fits(model, device, dtype):
        target = model
    else:
        logger.debug("timing a deep copy of %s moved to %s/%s", type(model).__name__, device, dtype)
        try:
            target = copy.deepcopy(model)
        except (TypeError, RuntimeError, copy.Error) as exc:
            raise TypeError(
                f"model {type(model).__name__} cannot be deep-copied to move it to {device} "
                f"({exc}); move it there yourself (model.to(device, dtype)) before measuring."
            ) from exc
        target = target.to(device=device, dtype=dtype)
    flags = [(m, m.training) for m in target.modules()]
    target.eval()
    try:
        yield target
    finally:
        for module, training in flags:
            module.training = training


def check_int(name: str, value: object, minimum: int) -> None:
    """Require ``value`` to be an int (not bool) >= ``minimum``; name the parameter if not."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}; pass {name}={minimum} or more."
        )
