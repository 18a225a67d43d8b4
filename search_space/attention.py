"""Attention ops, keyed by name: ``ATTENTION_OPS[name](channels, spec, act)``.

* ``esa``: enhanced spatial attention of RFDN (Liu et al., "Residual Feature Distillation
  Network for Lightweight Image Super-Resolution", ECCVW 2020).
* ``esa_lite``: RLFN's trimmed ESA (Kong et al., "Residual Local Feature Network for Efficient
  Super-Resolution", CVPRW 2022): one 3x3 after the pooling instead of three, no ReLU.
* ``cca``: contrast-aware channel attention of IMDN (Hui et al., ACM MM 2019).
* ``hfab``: high-frequency attention block of FMEN (Du et al., CVPRW 2022), with an optional
  training form (batch norms, rep-conv inner blocks) that :func:`reparameterize` folds away.
* ``pa``: pixel attention of PAN (Zhao et al., ECCVW 2020): ``x * sigmoid(conv1x1(x))``.
* ``none``: identity.
* ``esa_mab``: the ESA variant of MAFFSRN's multi-attention block (Muqeet et al., "Multi-
  Attention Based Ultra Lightweight Image Super-Resolution", ECCVW 2020): a stride-2 3x3 with
  padding 1, max-pool 7/3, parallel dilation-1 and dilation-2 3x3s (each + LReLU 0.05) summed,
  nearest upsampling, + the reduced map (no ``conv_f``), 1x1 + ReLU, sigmoid.
* ``cea``: MAFFSRN's cost-efficient attention: ``x * sigmoid(dw5x5(conv1x1(x)))``.

Every op but ``none`` is a gate ``x * sigmoid(logits(x))`` and has ``gate(x)``, the sigmoid
factor alone: :class:`AttentionProduct` multiplies several gates of the same input (a cell
whose attention is a sequence, :attr:`CellGene.attention <search_space.genes.CellGene>`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from search_space.choices import ATTENTIONS, REPARAM_OPS
from search_space.genes import Attention
from search_space.ops import ConvChain, StatelessAct, add_residual, sigmoid_gate, sigmoid_of
from search_space.registry import Registry
from search_space.rep import bias_of, bn_scale_shift, pad_with, reparameterize_modules

ATTENTION_OPS: Registry[Callable[[int, Attention, str], nn.Module]] = Registry("attention")


_POOL = 7
"""Window of ESA's max-pool (stride 3), as in RFDN/RLFN."""


def _pad_to(x: torch.Tensor, size: int, mode: str, value: float = 0.0) -> torch.Tensor:
    """``x`` padded at the bottom and right up to ``size`` px in each spatial dim.

    The amounts are ``torch.sym_max(0, size - n)``: plain ints in eager mode (no copy when
    nothing is padded), symbolic under ``torch.export`` / ``torch.onnx.export(dynamo=True)``,
    so the graph keeps height and width dynamic instead of specialising on the example.
    """
    pad_h = torch.sym_max(0, size - x.shape[-2])
    pad_w = torch.sym_max(0, size - x.shape[-1])
    if isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == pad_w == 0:
        return x
    if mode == "constant":
        return F.pad(x, (0, pad_w, 0, pad_h), mode="constant", value=value)
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _pool(x: torch.Tensor) -> torch.Tensor:
    # RFDN/RLFN max-pool: 7x7 window, stride 3. A dim under 7 px is padded with the dtype's
    # lowest value (the max's identity; finite, so fp16/AMP cannot make NaN) up to 7, so the
    # window takes its global max: the same fixed window at every size, which ONNX's MaxPool
    # can express. Square maps under 7 px pool as with a window shrunk to the map (what this
    # op did before); a map under 7 px in one dim only takes the max over all of that dim,
    # 7-px windows along the other. At 7 px and more in both dims (inputs of 15 px and more)
    # nothing is padded: the official computation, bit for bit.
    x = _pad_to(x, _POOL, "constant", torch.finfo(x.dtype).min)
    return F.max_pool2d(x, kernel_size=_POOL, stride=3)


def _reduce(conv2: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    # ESA's 3x3 stride-2 unpadded conv; inputs under 3 px (1x1, 2x2 patches) are first
    # edge-padded to 3 px. From 3 px on nothing is padded.
    return conv2(_pad_to(x, 3, "replicate"))


class ESA(nn.Module):
    """Enhanced spatial attention (RFDN). ``f`` hidden channels, 7 convs."""

    def __init__(self, channels: int, f: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)
        self.relu = nn.ReLU()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        v = _pool(_reduce(self.conv2, c1_))
        v = self.relu(self.conv_max(v))
        c3 = self.conv3_(self.relu(self.conv3(v)))
        c3 = F.interpolate(c3, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv4(add_residual(c3, self.conv_f(c1_)))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_of(self.logits(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_gate(x, self.logits(x))


class ESALite(nn.Module):
    """RLFN's trimmed ESA. ``f`` hidden channels, 5 convs."""

    def __init__(self, channels: int, f: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c3 = self.conv3(_pool(_reduce(self.conv2, c1_)))
        c3 = F.interpolate(c3, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv4(add_residual(c3, self.conv_f(c1_)))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_of(self.logits(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_gate(x, self.logits(x))


class ESAMab(nn.Module):
    """The ESA variant of MAFFSRN's MAB. ``f`` hidden channels, 6 convs.

    ``rc = conv1x1(x)`` (C -> f); ``p = maxpool7/3(conv3x3 stride 2, padding 1 (rc))``;
    ``v = lrelu(conv3x3_d1(p)) + lrelu(conv3x3_d2(p))`` (LReLU 0.05, dilation 2 padded by 2);
    gate ``sigmoid(relu(conv1x1(nearest(v, size of rc) + rc)))`` (f -> C), so in [0.5, 1).
    The stride-2 conv works from 1 px (its padding); under 7 px the pool takes the global max
    as in :class:`ESA` (``_pool``), so the op is defined at every size, in ONNX too.
    """

    def __init__(self, channels: int, f: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=1)
        self.conv_d1 = nn.Conv2d(f, f, 3, padding=1)
        self.act_d1 = nn.LeakyReLU(0.05)
        self.conv_d2 = nn.Conv2d(f, f, 3, padding=2, dilation=2)
        self.act_d2 = nn.LeakyReLU(0.05)
        self.conv4 = nn.Conv2d(f, channels, 1)
        self.relu = nn.ReLU()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        rc = self.conv1(x)
        p = _pool(self.conv2(rc))
        v = add_residual(self.act_d1(self.conv_d1(p)), self.act_d2(self.conv_d2(p)))
        up = F.interpolate(v, size=rc.shape[-2:], mode="nearest")
        return self.relu(self.conv4(add_residual(up, rc)))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_of(self.logits(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_gate(x, self.logits(x))


class CEA(nn.Module):
    """MAFFSRN's cost-efficient attention: ``x * sigmoid(dw5x5(conv1x1(x)))``, both with bias.

    Defined at every input size (a pointwise and a zero-padded depthwise conv).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(channels, channels, 1)
        self.depthwise = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.depthwise(self.pointwise(x))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_of(self.logits(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_gate(x, self.logits(x))


class CCA(nn.Module):
    """Contrast-aware channel attention (IMDN): per-channel std + mean -> 1x1 -> ReLU -> 1x1."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)  # (N, C, 1, 1): broadcast

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return torch.sigmoid(self.conv_du(std + mean))


class PixelAttention(nn.Module):
    """Pixel attention (PAN): ``x * sigmoid(conv1x1(x))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_of(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_gate(x, self.conv(x))


class HFAB(nn.Module):
    """High-frequency attention block (FMEN), in deployed or training form.

    Deployed: squeeze 3x3 -> act -> ``blocks`` x (op -> act -> op) -> act -> excitate 3x3 ->
    sigmoid -> multiply the input. Training form (``bn=True``): a batch norm before the squeeze,
    before the excitate and after it; the convs around them pad with the batch norm's offset
    (padding 0 in the conv), so the norms fold exactly into the convs.

    Args:
        channels: input channels.
        mid: squeezed width.
        blocks: inner blocks.
        op: conv op of the inner blocks.
        act: activation name.
        bn: training form with batch norms.
    """

    def __init__(self, channels: int, mid: int, blocks: int = 1, op: str = "conv3x3",
                 act: str = "lrelu0.1", bn: bool = False) -> None:
        super().__init__()
        self.op, self.act = op, act
        pad = 0 if bn else 1
        self.bn1 = nn.BatchNorm2d(channels) if bn else None
        self.squeeze = nn.Conv2d(channels, mid, 3, padding=pad)
        self.act1 = StatelessAct(act, mid)
        self.convs = nn.Sequential(*(ConvChain((op, op), mid, act) for _ in range(blocks)))
        self.act2 = StatelessAct(act, mid)
        self.bn2 = nn.BatchNorm2d(mid) if bn else None
        self.excitate = nn.Conv2d(mid, channels, 3, padding=pad)
        self.bn3 = nn.BatchNorm2d(channels) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_gate(x, self.logits(x))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_of(self.logits(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.bn1 is not None:
            h = pad_with(self.bn1(h), bn_scale_shift(self.bn1)[1])
        h = self.act2(self.convs(self.act1(self.squeeze(h))))
        if self.bn2 is not None:
            h = pad_with(self.bn2(h), bn_scale_shift(self.bn2)[1])
        h = self.excitate(h)
        if self.bn3 is not None:
            h = self.bn3(h)
        return h

    @torch.no_grad()
    def reparameterize(self) -> HFAB:
        """The deployed HFAB: batch norms folded into squeeze/excitate, inner ops merged."""
        c, mid = self.squeeze.in_channels, self.squeeze.out_channels
        op = REPARAM_OPS.get(self.op, self.op)
        out = HFAB(c, mid, len(self.convs), op, self.act, bn=False).to(self.squeeze.weight)
        out.act1, out.act2 = copy.deepcopy(self.act1), copy.deepcopy(self.act2)
        out.convs = reparameterize_modules(self.convs)  # type: ignore[assignment]
        if self.bn1 is None or self.bn2 is None or self.bn3 is None:
            out.squeeze.load_state_dict(self.squeeze.state_dict())
            out.excitate.load_state_dict(self.excitate.state_dict())
            return out
        out.squeeze = _fold_input_bn(self.squeeze, self.bn1)
        out.excitate = _fold_input_bn(self.excitate, self.bn2)
        s3, t3 = bn_scale_shift(self.bn3)
        out.excitate.weight.mul_(s3.view(-1, 1, 1, 1))
        bias_of(out.excitate).mul_(s3).add_(t3)
        return out


def _fold_input_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``conv(pad_with(bn(x), t))`` with padding 0 as one conv with zero padding 1."""
    s, t = bn_scale_shift(bn)
    w = conv.weight
    k = conv.kernel_size[0]
    merged = nn.Conv2d(conv.in_channels, conv.out_channels, k, padding=k // 2).to(w)
    merged.weight.copy_(w * s.view(1, -1, 1, 1))
    bias_of(merged).copy_(bias_of(conv) + (w * t.view(1, -1, 1, 1)).sum(dim=(1, 2, 3)))
    return merged


ATTENTION_OPS.add("esa", lambda c, spec, act: ESA(c, spec.hidden(c)))
ATTENTION_OPS.add("esa_lite", lambda c, spec, act: ESALite(c, spec.hidden(c)))
ATTENTION_OPS.add("cca", lambda c, spec, act: CCA(c, spec.hidden(c)))
ATTENTION_OPS.add(
    "hfab", lambda c, spec, act: HFAB(c, spec.hidden(c), spec.blocks, spec.op, act, spec.bn)
)
ATTENTION_OPS.add("pa", lambda c, spec, act: PixelAttention(c))
ATTENTION_OPS.add("none", lambda c, spec, act: nn.Identity())
ATTENTION_OPS.add("esa_mab", lambda c, spec, act: ESAMab(c, spec.hidden(c)))
ATTENTION_OPS.add("cea", lambda c, spec, act: CEA(c))


class AttentionProduct(nn.ModuleList):
    """Several attention gates of the same input, multiplied onto it: ``x * g_1(x) * g_2(x)``.

    Args:
        gates: the attention modules, in order (each must have ``gate(x)``; ``none`` has none).
        slot: the slot name, for the error message.
    """

    def __init__(self, gates: list[nn.Module], slot: str = "attention") -> None:
        for k, m in enumerate(gates):
            if not callable(getattr(m, "gate", None)):
                raise TypeError(f"{slot}.{k}: got {type(m).__name__}, which has no gate(); a "
                                "sequence of attentions needs gating ops (not 'none', not a "
                                "searched slot)")
        super().__init__(gates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = [cast(Any, m).gate(x) for m in self]
        inplace = not torch.is_grad_enabled() or not any(
            t.requires_grad for t in (x, *gates))
        out = x * gates[0]  # a fresh, full-size tensor (a channel gate broadcasts)
        for g in gates[1:]:
            out = out.mul_(g) if inplace else out * g
        return out

if tuple(ATTENTION_OPS) != ATTENTIONS:
    raise ImportError("search_space.attention is out of step with search_space.choices")
