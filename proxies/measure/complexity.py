"""Complexity counters: parameters, true MACs, and the NTIRE 2022 challenge's counters.

Three ways of counting, each written down:

* **True FLOPs/MACs** (:func:`count_macs`) come from ``torch.utils.flop_counter.FlopCounterMode``,
  which sees every convolution and matmul at the ATen level: grouped, dilated and functional
  convs (``F.conv2d``, e.g. ECB's Sobel branches) included. ``flops = 2 * macs``; biases,
  activations, pooling, interpolation and element-wise ops are not counted.
* **NTIRE 2022** (:func:`count_ntire2022`) reproduces the challenge's ``utils/model_summary.py``:
  forward hooks on module calls, so a module called twice counts twice and anything done
  functionally is invisible. FLOPs = Conv2d/ConvTranspose2d MACs without bias + the output
  numel of every ReLU/PReLU/ELU/LeakyReLU/ReLU6 module call + BatchNorm2d numel (x2 if affine)
  + ``batch * in.shape[1] * out.shape[1]`` for Linear (wrong for 4-D input, as the challenge's
  was). Activations = output numel of Conv2d/ConvTranspose2d calls; #conv = their call count.
* **thop** (:func:`count_thop_macs`) runs thop on a deep copy of the model (thop adds buffers to
  every module it visits). It hooks registered modules, so it misses functional convs; thop
  0.1.1 also adds ``numel`` for PReLU and ``4 * numel`` for affine BatchNorm. See
  ``BENCHMARKS.md`` for where it disagrees with the other two on the zoo.

All counters run the model once at ``input_shape`` (default 1x3x256x256, the NTIRE protocol).
:func:`count_macs` and :func:`count_ntire2022` run on a ``meta``-device copy, so they cost no
arithmetic and never touch the caller's model.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

logger = logging.getLogger(__name__)

NTIRE_INPUT_SHAPE: tuple[int, int, int, int] = (1, 3, 256, 256)
_RELU_FAMILY = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)
_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if len(shape) != 4 or any(not isinstance(d, int) or d <= 0 for d in shape):
        raise ValueError(f"input_shape: got {input_shape!r}; expected four positive ints "
                         "(N, C, H, W), e.g. (1, 3, 256, 256)")
    return shape


def count_params(model: nn.Module) -> int:
    """All parameters, as the challenge counted them (PReLU slopes and BN affine included)."""
    return sum(p.numel() for p in model.parameters())


def _meta_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to("meta").eval()


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...] = NTIRE_INPUT_SHAPE) -> int:
    """True multiply-accumulates of one forward pass (``FlopCounterMode`` FLOPs / 2)."""
    shape = _check_shape(input_shape)
    meta = _meta_copy(model)
    with FlopCounterMode(display=False) as counter:
        meta(torch.empty(shape, device="meta"))
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class NtireCounts:
    """The NTIRE 2022 challenge's counters (``utils/model_summary.py``)."""

    flops: int
    activations: int
    num_conv: int
    conv_macs: int

    @property
    def flops_g(self) -> float:
        return self.flops / 1e9

    @property
    def activations_m(self) -> float:
        return self.activations / 1e6


@torch.no_grad()
def count_ntire2022(
    model: nn.Module, input_shape: tuple[int, ...] = NTIRE_INPUT_SHAPE
) -> NtireCounts:
    """FLOPs, activations and #conv exactly as the NTIRE 2022 ESR challenge counted them."""
    shape = _check_shape(input_shape)
    meta = _meta_copy(model)
    tally = {"conv_macs": 0, "other": 0, "acts": 0, "convs": 0}

    def conv_hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        assert isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d))
        kh, kw = mod.kernel_size
        per_position = kh * kw * mod.in_channels * (mod.out_channels // mod.groups)
        tally["conv_macs"] += per_position * out.shape[0] * out.shape[2] * out.shape[3]
        tally["acts"] += out.numel()
        tally["convs"] += 1

    def act_hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        tally["other"] += out.numel()

    def bn_hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        assert isinstance(mod, nn.BatchNorm2d)
        tally["other"] += out.numel() * (2 if mod.affine else 1)

    def linear_hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        tally["other"] += inp[0].shape[0] * inp[0].shape[1] * out.shape[1]

    handles = []
    for mod in meta.modules():
        if isinstance(mod, _CONVS):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, _RELU_FAMILY):
            handles.append(mod.register_forward_hook(act_hook))
        elif isinstance(mod, nn.BatchNorm2d):
            handles.append(mod.register_forward_hook(bn_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    try:
        meta(torch.empty(shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return NtireCounts(
        flops=tally["conv_macs"] + tally["other"],
        activations=tally["acts"],
        num_conv=tally["convs"],
        conv_macs=tally["conv_macs"],
    )


@torch.no_grad()
def count_thop_macs(model: nn.Module, input_shape: tuple[int, ...] = NTIRE_INPUT_SHAPE) -> int:
    """MACs from thop, run on a CPU deep copy (thop registers buffers on what it visits)."""
    try:
        import thop
    except ImportError as exc:  # pragma: no cover - thop is a core dependency
        raise ImportError("count_thop_macs needs thop: pip install thop") from exc
    shape = _check_shape(input_shape)
    clone = copy.deepcopy(model).cpu().eval()
    macs, _ = thop.profile(clone, inputs=(torch.zeros(shape),), verbose=False)
    return int(macs)


@dataclass(frozen=True)
class Complexity:
    """Every complexity figure of one model at one input shape."""

    params: int
    macs: int
    ntire_flops: int
    ntire_activations: int
    ntire_num_conv: int
    input_shape: tuple[int, ...]

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def macs_g(self) -> float:
        return self.macs / 1e9

    @property
    def flops_g(self) -> float:
        """True FLOPs (2 x MACs), in G."""
        return 2 * self.macs / 1e9

    @property
    def ntire_flops_g(self) -> float:
        return self.ntire_flops / 1e9

    @property
    def ntire_activations_m(self) -> float:
        return self.ntire_activations / 1e6

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(params_m=self.params_m, macs_g=self.macs_g, flops_g=self.flops_g,
                   ntire_flops_g=self.ntire_flops_g,
                   ntire_activations_m=self.ntire_activations_m)
        out["input_shape"] = list(self.input_shape)
        return out


def measure_complexity(
    model: nn.Module, input_shape: tuple[int, ...] = NTIRE_INPUT_SHAPE
) -> Complexity:
    """Parameters, true MACs and the NTIRE 2022 counters of the deployed form of ``model``
    (:func:`search_space.network.deployed_form`) at ``input_shape``."""
    from search_space.network import deployed_form

    model = deployed_form(model)
    ntire = count_ntire2022(model, input_shape)
    return Complexity(
        params=count_params(model),
        macs=count_macs(model, input_shape),
        ntire_flops=ntire.flops,
        ntire_activations=ntire.activations,
        ntire_num_conv=ntire.num_conv,
        input_shape=tuple(input_shape),
    )
