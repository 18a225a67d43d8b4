"""The one settings object of the measurements, validated once; the device, input and deployed
model every measuring proxy starts from.

:class:`MeasureSettings` is how nets are measured (device, LR size, rounds, runs, warm-up,
threads, dtype, backend): every measuring function takes one, passed whole, and its
``__post_init__`` is the one place those values are checked (a :class:`ValueError` naming the
field, the value and the fix), so nothing downstream checks them again.
:func:`resolve_device` turns ``"auto"``/``"cpu"``/``"cuda[:N]"`` into a concrete device (or a
clear error) on the machine that measures; :func:`make_input` builds the seeded random input on
the device; :func:`model_for_measurement` yields the deployed form of the caller's model in
eval mode on the device, never moving, casting or re-flagging the caller's model. Shared by the
latency, memory, runtime and protocol proxies (:mod:`proxies.measure.latency`,
:mod:`proxies.measure.memory`, :mod:`proxies.measure.runtime`, :mod:`proxies.protocol.ntire`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from proxies.measure.backends import check_backend

__all__ = [
    "FLOAT_DTYPES",
    "DeviceUnavailable",
    "MeasureSettings",
    "check_device",
    "check_int",
    "make_input",
    "model_for_measurement",
    "resolve_device",
]

logger = logging.getLogger(__name__)

FLOAT_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "float64")
"""The dtypes a net can be measured in (``MeasureSettings.dtype``)."""


@dataclass(frozen=True)
class MeasureSettings:
    """How nets are measured: the one settings type of every measurement (latency, latency
    ratio, peak memory, the runtime backends, the hardware table's entries
    (:class:`searchers.differentiable.latency_table.HardwareTable`, one round), the profile's
    rows (:func:`proxies.measure.profile_rows.profile_model`, interleaved rounds with the
    reference) and a trial's measurement). The config sections build it once
    (``searchers.common.sections.MeasureSection.settings`` for the trials' ``measure`` and the
    DARTS search's ``hardware`` sections, ``ProfileConfig.settings`` for the search's profile),
    as do the profile and report commands; every field is recorded with the figures.

    ``device``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (checked here for its form;
    whether this machine has it is checked by :func:`resolve_device` where the nets are
    measured). The input is ``1 x channels x lr_size`` (:meth:`input_shape`; ``channels`` is the
    net's, 3 unless a caller measures one op). ``runs_per_round`` timed runs of a net per round,
    ``rounds`` rounds: :attr:`runs` in all when a net is timed alone; ``warmup`` untimed runs
    first. ``threads``: CPU intra-op threads while measuring (``None``: torch's current
    setting). ``dtype``: one of :data:`FLOAT_DTYPES`. ``backend``: one of
    :data:`proxies.measure.backends.BACKENDS` that can measure here (onnxruntime and openvino
    measure the float32 export only; openvino on the CPU only). ``complexity_size`` and the
    ``latency``/``memory``/``thop`` switches are what a profile row holds; the table reads
    neither.

    Raises:
        ValueError: a field out of range or of the wrong type, an unknown or unavailable
            backend, onnxruntime or openvino with a dtype other than float32, or openvino
            on a CUDA device.
    """

    device: str = "auto"
    lr_size: tuple[int, int] = (256, 256)
    rounds: int = 5
    runs_per_round: int = 2
    warmup: int = 2
    threads: int | None = None
    dtype: str = "float32"
    backend: str = "torch"  # proxies.measure.backends.BACKENDS
    complexity_size: tuple[int, int] = (256, 256)
    latency: bool = True
    memory: bool = True
    thop: bool = False

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: the checked values are stored normalised
        put(self, "device", check_device(self.device))
        put(self, "lr_size", _check_size("lr_size", self.lr_size))
        put(self, "complexity_size", _check_size("complexity_size", self.complexity_size))
        check_int("rounds", self.rounds, 1)
        check_int("runs_per_round", self.runs_per_round, 1)
        check_int("warmup", self.warmup, 0)
        if self.threads is not None:
            check_int("threads", self.threads, 1)
        if self.dtype not in FLOAT_DTYPES:
            raise ValueError(f"dtype must name a floating-point dtype ({', '.join(FLOAT_DTYPES)}), "
                             f"got {self.dtype!r}; pass e.g. dtype='float32'.")
        for name in ("latency", "memory", "thop"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}; "
                                 f"pass {name}=True to measure it, False to skip it.")
        check_backend(self.backend, "backend")
        if self.backend in ("onnxruntime", "openvino") and self.dtype != "float32":
            raise ValueError(f"dtype: got {self.dtype!r}; backend {self.backend} runs the "
                             "float32 ONNX export; allowed: 'float32' (or backend='torch' for "
                             "other dtypes)")
        if self.backend == "openvino" and self.device.startswith("cuda"):
            raise ValueError(f"device: got {self.device!r}; backend openvino measures on the "
                             "CPU only (OpenVINO's GPU plugin is for Intel GPUs, not CUDA); "
                             "allowed: 'cpu' or 'auto' on a machine without CUDA (or "
                             "backend='onnxruntime' or 'torch' on CUDA)")

    @property
    def runs(self) -> int:
        """Timed runs of a net measured alone: ``rounds * runs_per_round``."""
        return self.rounds * self.runs_per_round

    @property
    def torch_dtype(self) -> torch.dtype:
        """:attr:`dtype` as a :class:`torch.dtype`."""
        dtype = getattr(torch, self.dtype)
        assert isinstance(dtype, torch.dtype)
        return dtype

    def input_shape(self, channels: int = 3) -> tuple[int, int, int, int]:
        """The NCHW input of a net with ``channels`` input channels: ``(1, channels, H, W)``."""
        check_int("channels", channels, 1)
        return (1, channels, *self.lr_size)


def _check_size(name: str, value: Any) -> tuple[int, int]:
    """``value`` as ``(H, W)``: two positive ints (a list is accepted)."""
    dims = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(dims) != 2 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims
    ):
        raise ValueError(f"{name} must be 2 positive ints (H, W), got {value!r}; "
                         f"pass e.g. {name}=(256, 256).")
    return int(dims[0]), int(dims[1])


def check_int(name: str, value: object, minimum: int) -> None:
    """Require ``value`` to be an int (not bool) >= ``minimum``; name the parameter if not."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}; pass {name}={minimum} or more."
        )


class DeviceUnavailable(ValueError, RuntimeError):
    """A device was asked for that this machine lacks (CUDA without a working GPU): bad input
    to a command (a ValueError, exit status 2), and a RuntimeError for callers that catch it."""


_ALLOWED_DEVICES = "'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device of type cpu/cuda"


def check_device(device: str | torch.device | None) -> str:
    """The form of a device: ``"auto"`` (also for ``None``), or ``cpu``/``cuda``/``cuda:N`` as
    torch writes it. Whether this machine has the device is :func:`resolve_device`'s check.

    Raises:
        ValueError: not a device, or a device type other than cpu/cuda.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return "auto"
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device={device!r} is not a device; use {_ALLOWED_DEVICES}.") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} has unsupported type {dev.type!r}; "
                         f"use {_ALLOWED_DEVICES}.")
    return str(dev)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a concrete device.

    ``"auto"`` (or ``None``) gives the current CUDA device if CUDA is available, else the CPU.
    ``"cuda"`` is resolved to ``cuda:<current device index>``.

    Raises:
        ValueError: unknown device string, a device type other than cpu/cuda, or a CUDA index
            that does not exist.
        DeviceUnavailable: CUDA requested but ``torch.cuda.is_available()`` is False.
    """
    form = check_device(device)
    if form == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    dev = torch.device(form)
    if dev.type == "cpu":
        return torch.device("cpu")
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
