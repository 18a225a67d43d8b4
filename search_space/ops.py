"""The op table: every conv op and activation of the search space, keyed by name.

``OPS[name](c_in, c_out, bias=True)`` builds a conv op (``bias=False``: no bias on its output
conv(s); the ops in :data:`~search_space.choices.NEEDS_BIAS` refuse it);
``ACTIVATION_OPS[name](channels)`` builds an activation module. The supernet's mixed slots,
Optuna sampling, retraining and export all build their ops from these tables (attention ops
live in :mod:`search_space.attention`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from search_space.choices import ACTIVATIONS, CONV_OPS
from search_space.registry import Registry
from search_space.rep import ECB, RRRB, Conv3XC

ConvBuilder = Callable[..., nn.Module]

OPS: Registry[ConvBuilder] = Registry("conv op")
ACTIVATION_OPS: Registry[Callable[[int], nn.Module]] = Registry("activation")


class SepConv(nn.Module):
    """Depthwise kxk (no bias) then pointwise 1x1 (separable conv, as in MobileNet/DARTS)."""

    def __init__(self, c_in: int, c_out: int, k: int, bias: bool = True) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class BSConv(nn.Module):
    """Blueprint-separable conv (BSConvU, as in BSRN): pointwise 1x1 (no bias), then depthwise."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.depthwise = nn.Conv2d(c_out, c_out, k, padding=k // 2, groups=c_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.depthwise(self.pointwise(x))


def _conv(c_in: int, c_out: int, k: int, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=dilation * (k // 2), dilation=dilation, bias=bias)


def _biased(name: str, cls: Callable[[int, int], nn.Module]) -> ConvBuilder:
    def build(c_in: int, c_out: int, bias: bool = True) -> nn.Module:
        if not bias:
            raise ValueError(f"bias: got False for op {name!r}; allowed: True. It pads with its "
                             "biases; use conv3x3 or conv3xc in a net with bias=false.")
        return cls(c_in, c_out)

    return build


for _k in (1, 3, 5, 7):
    OPS.add(f"conv{_k}x{_k}", partial(_conv, k=_k))
for _k in (3, 5, 7):
    OPS.add(f"sep_conv{_k}x{_k}", partial(SepConv, k=_k))
for _k in (3, 5):
    OPS.add(f"dil_conv{_k}x{_k}_d2", partial(_conv, k=_k, dilation=2))
OPS.add("bsconv3x3", partial(BSConv, k=3))
OPS.add("rep_conv3x3", _biased("rep_conv3x3", RRRB))
OPS.add("ecb3x3", _biased("ecb3x3", ECB))
OPS.add("conv3xc", Conv3XC)

# In-place where the function allows it: cells only apply activations to fresh conv outputs,
# and autograd supports these in place, so this saves one feature map of peak memory per call.
ACTIVATION_OPS.add("relu", lambda c: nn.ReLU(inplace=True))
ACTIVATION_OPS.add("lrelu0.05", lambda c: nn.LeakyReLU(0.05, inplace=True))
ACTIVATION_OPS.add("lrelu0.1", lambda c: nn.LeakyReLU(0.1, inplace=True))
ACTIVATION_OPS.add("prelu", lambda c: nn.PReLU(c, init=0.25))
ACTIVATION_OPS.add("silu", lambda c: nn.SiLU(inplace=True))
ACTIVATION_OPS.add("gelu", lambda c: nn.GELU())

FUNCTIONAL_ACTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "lrelu0.05": partial(F.leaky_relu, negative_slope=0.05),
    "lrelu0.1": partial(F.leaky_relu, negative_slope=0.1),
    "silu": F.silu,
    "gelu": F.gelu,
}
"""Parameter-free activations applied as functions (see :class:`ConvChain`)."""

if tuple(OPS) != CONV_OPS or tuple(ACTIVATION_OPS) != ACTIVATIONS:
    raise ImportError("search_space.ops is out of step with the names in search_space.choices")


def _no_autograd(*tensors: torch.Tensor) -> bool:
    return not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors)


def add_residual(fresh: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``fresh + skip``, written into ``fresh`` when no autograd graph is being built.

    ``fresh`` must be a tensor the caller owns (a conv or activation output used nowhere else).
    In-place at inference is what keeps FMEN's peak memory low (``h += x``); every cell uses it.
    """
    return fresh.add_(skip) if _no_autograd(fresh, skip) else fresh + skip


def sigmoid_gate(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(logits)``, in place on ``logits`` when no autograd graph is being built."""
    if _no_autograd(x, logits):
        return logits.sigmoid_().mul_(x)
    return x * torch.sigmoid(logits)


def sigmoid_of(logits: torch.Tensor) -> torch.Tensor:
    """``sigmoid(logits)``, in place on ``logits`` (a fresh tensor the caller owns) when no
    autograd graph is being built."""
    return logits.sigmoid_() if _no_autograd(logits) else torch.sigmoid(logits)


def spab_gate(h3: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
    """SPAN's parameter-free gate ``(h3 + x) * (sigmoid(h3) - 0.5)`` (``h3 * ...`` when ``x`` is
    None), in place on ``h3`` when no autograd graph is being built.

    ``h3`` must be a tensor the caller owns (a fresh conv output); ``x`` is never written.
    """
    gate = torch.sigmoid(h3) - 0.5
    if x is None:
        return h3.mul_(gate) if _no_autograd(h3, gate) else h3 * gate
    if _no_autograd(h3, x, gate):
        return h3.add_(x).mul_(gate)
    return (h3 + x) * gate


class StatelessAct(nn.Module):
    """An activation applied as a function (PReLU keeps its per-channel slopes here).

    FMEN's ERB and HFAB apply one module-level activation that is not a registered submodule;
    the NTIRE 2022 counter therefore sees none of their activations, and FMEN-S's published
    22.28 G FLOPs counts none. ERB and HFAB here keep that behaviour: this wrapper is not a
    ReLU-family module, so hook-based counters skip it exactly as they skipped FMEN's.
    """

    def __init__(self, name: str, channels: int) -> None:
        super().__init__()
        self.name = name
        self.weight = nn.Parameter(torch.full((channels,), 0.25)) if name == "prelu" else None
        self.fn = FUNCTIONAL_ACTS.get(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            return F.prelu(x, self.weight)
        assert self.fn is not None
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class ConvSlots(Protocol):
    """What :class:`ConvChain` asks of a slot builder (:class:`search_space.cells.SlotBuilder`
    and the DARTS supernet's): a conv per slot and the activation between two of them."""

    def conv(self, slot: str, op: str, c_in: int, c_out: int, bias: bool = True) -> nn.Module:
        ...

    def stateless_act(self, slot: str, name: str, channels: int) -> nn.Module:
        ...


class _OpSlots:
    """The ops the names say (the default of :class:`ConvChain`)."""

    def conv(self, slot: str, op: str, c_in: int, c_out: int, bias: bool = True) -> nn.Module:
        return OPS[op](c_in, c_out, bias=bias)

    def stateless_act(self, slot: str, name: str, channels: int) -> nn.Module:
        return StatelessAct(name, channels)


class ConvChain(nn.Module):
    """Conv slots of equal width with an activation between consecutive ones (ERB's body, and
    HFAB's inner blocks).

    Args:
        ops: conv op names, one per conv.
        channels: width of every conv.
        act: activation name (applied functionally, as FMEN does; see ``StatelessAct``).
        builder: where the convs and activations come from (default: the named ops).
        prefix: slot-name prefix.
        bias: the convs have biases.
    """

    def __init__(self, ops: tuple[str, ...], channels: int, act: str,
                 builder: ConvSlots | None = None, prefix: str = "",
                 bias: bool = True) -> None:
        super().__init__()
        slots = builder if builder is not None else _OpSlots()
        self.convs = nn.ModuleList(slots.conv(f"{prefix}conv{i}", op, channels, channels, bias)
                                   for i, op in enumerate(ops))
        self.acts = nn.ModuleList(slots.stateless_act(f"{prefix}act", act, channels)
                                  for _ in ops[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs[0](x)
        for act, conv in zip(self.acts, self.convs[1:], strict=True):
            x = conv(act(x))
        return x
