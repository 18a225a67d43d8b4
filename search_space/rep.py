"""Re-parameterisable conv blocks and the merge algebra they share.

* :class:`RRRB`, FMEN's residual-in-residual rep block (Du et al., "Fast and Memory-Efficient
  Network Towards Efficient Image Super-Resolution", CVPRW 2022): 1x1 expand -> 3x3 (+ inner
  identity) -> 1x1 reduce (+ outer identity), merging into one 3x3.
* :class:`ECB`, the edge-oriented conv block of ECBSR (Zhang et al., "Edge-oriented
  Convolution Block for Real-time Super Resolution on Mobile Devices", ACM MM 2021): 3x3,
  1x1->3x3, 1x1->Sobel-x, 1x1->Sobel-y and 1x1->Laplacian branches (+ identity), merging
  into one 3x3.
* :class:`Conv3XC`, SPAN's re-parameterisable 3x3 (Wan et al., "Swift Parameter-free
  Attention Network for Efficient Super-Resolution", CVPRW 2024): on the zero-padded input,
  1x1 (x gain) -> 3x3 unpadded -> 1x1, plus a 1x1 skip on the unpadded input, merging into
  one 3x3.

RRRB and ECB pad the output of their 1x1 convs with the 1x1 bias instead of zeros; Conv3XC
pads its input before the first 1x1. Either way the merged 3x3 with ordinary zero padding is
exact at the image border too.

Two training-form pieces of MAFFSRN (Muqeet et al., ECCVW 2020) fold the same way:
:class:`WeightNormConv2d` (weight normalisation, Salimans & Kingma 2016) into a plain conv, and
:class:`ChannelShuffle` into the 1x1 that follows it (:func:`fold_shuffle`).
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn


def bias_of(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of a conv built with ``bias=True``."""
    if conv.bias is None:
        raise ValueError(f"{conv} has no bias; the merge needs convs built with bias=True")
    return conv.bias


def pad_with(x: torch.Tensor, values: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """Pad ``x`` (N, C, H, W) by ``pad`` pixels with a per-channel constant ``values`` (C,)."""
    v = values.view(1, -1, 1, 1)
    return F.pad(x - v, (pad, pad, pad, pad)) + v


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(s, t)`` with ``bn(x) == s * x + t`` in eval mode."""
    assert bn.running_var is not None and bn.running_mean is not None
    s = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight
    t = -bn.running_mean * s
    if bn.bias is not None:
        t = t + bn.bias
    return s, t


def compose_1x1_3x3(
    k0: torch.Tensor, b0: torch.Tensor, k1: torch.Tensor, b1: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``conv3x3(pad_with(conv1x1(x), b0), k1, b1)`` into one 3x3 kernel and bias.

    ``k0`` is (M, C_in, 1, 1), ``k1`` is (C_out, M, 3, 3) or depthwise (M, 1, 3, 3) expanded
    by the caller.
    """
    kernel = F.conv2d(k1, k0.permute(1, 0, 2, 3))
    bias = (k1 * b0.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    if b1 is not None:
        bias = bias + b1
    return kernel, bias


def centre_tap(k1x1: torch.Tensor) -> torch.Tensor:
    """A 1x1 kernel (O, I, 1, 1) as the centre tap of a 3x3 kernel."""
    return F.pad(k1x1, (1, 1, 1, 1))


def identity_3x3(channels: int, like: torch.Tensor) -> torch.Tensor:
    k = torch.zeros(channels, channels, 3, 3, dtype=like.dtype, device=like.device)
    k[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
    return k


def bias_or_zeros(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of ``conv``, or zeros when it was built without one."""
    if conv.bias is None:
        return conv.weight.new_zeros(conv.out_channels)
    return conv.bias


def make_conv3x3(c_in: int, c_out: int, kernel: torch.Tensor, bias: torch.Tensor | None
                 ) -> nn.Conv2d:
    """A padded conv3x3 holding ``kernel`` and ``bias`` (no bias parameter when None)."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias is not None).to(
        device=kernel.device, dtype=kernel.dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        if bias is not None:
            bias_of(conv).copy_(bias)
    return conv


class RRRB(nn.Module):
    """FMEN's residual-in-residual rep block (training form of a 3x3 conv).

    Args:
        c_in: input channels.
        c_out: output channels.
        ratio: expansion of the hidden width, ``ratio * c_out`` (FMEN: 2).

    The outer identity exists only when ``c_in == c_out``.
    """

    def __init__(self, c_in: int, c_out: int, ratio: int = 2) -> None:
        super().__init__()
        mid = ratio * c_out
        self.c_in, self.c_out = c_in, c_out
        self.expand_conv = nn.Conv2d(c_in, mid, 1)
        self.fea_conv = nn.Conv2d(mid, mid, 3, padding=0)
        self.reduce_conv = nn.Conv2d(mid, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.expand_conv(x)
        out = self.fea_conv(pad_with(e, bias_of(self.expand_conv))) + e
        out = self.reduce_conv(out)
        return out + x if self.c_in == self.c_out else out

    @torch.no_grad()
    def reparameterize(self) -> nn.Conv2d:
        k0, b0 = self.expand_conv.weight, bias_of(self.expand_conv)
        kernel, bias = compose_1x1_3x3(k0, b0, self.fea_conv.weight, bias_of(self.fea_conv))
        kernel, bias = kernel + centre_tap(k0), bias + b0  # inner identity
        kr, br = self.reduce_conv.weight, bias_of(self.reduce_conv)
        kernel = torch.einsum("om,mihw->oihw", kr[:, :, 0, 0], kernel)
        bias = kr[:, :, 0, 0] @ bias + br
        if self.c_in == self.c_out:
            kernel = kernel + identity_3x3(self.c_out, kernel)
        return make_conv3x3(self.c_in, self.c_out, kernel, bias)


_EDGE_MASKS = {
    "sobel_x": ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0)),
    "sobel_y": ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0)),
    "laplacian": ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0)),
}


class EdgeBranch(nn.Module):
    """1x1 conv, then a fixed depthwise edge filter with a learnt per-channel scale and bias."""

    mask: torch.Tensor

    def __init__(self, c_in: int, c_out: int, mask: str) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(c_in, c_out, 1)
        self.scale = nn.Parameter(torch.randn(c_out, 1, 1, 1) * 1e-3)
        self.bias = nn.Parameter(torch.randn(c_out) * 1e-3)
        m = torch.tensor(_EDGE_MASKS[mask]).expand(c_out, 1, 3, 3).clone()
        self.register_buffer("mask", m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = pad_with(self.conv1x1(x), bias_of(self.conv1x1))
        return F.conv2d(y, self.scale * self.mask, self.bias, groups=self.mask.shape[0])

    def merged(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.mask.shape[0]
        dense = torch.zeros(c, c, 3, 3, dtype=self.mask.dtype, device=self.mask.device)
        dense[torch.arange(c), torch.arange(c)] = (self.scale * self.mask)[:, 0]
        return compose_1x1_3x3(self.conv1x1.weight, bias_of(self.conv1x1), dense, self.bias)


class ECB(nn.Module):
    """Edge-oriented conv block (training form of a 3x3 conv).

    Args:
        c_in: input channels.
        c_out: output channels.
        depth_multiplier: hidden width of the 1x1->3x3 branch, ``depth_multiplier * c_out``.

    The identity branch exists only when ``c_in == c_out``.
    """

    def __init__(self, c_in: int, c_out: int, depth_multiplier: int = 2) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        mid = depth_multiplier * c_out
        self.conv3x3 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.expand = nn.Conv2d(c_in, mid, 1)
        self.expand_3x3 = nn.Conv2d(mid, c_out, 3, padding=0)
        self.sobel_x = EdgeBranch(c_in, c_out, "sobel_x")
        self.sobel_y = EdgeBranch(c_in, c_out, "sobel_y")
        self.laplacian = EdgeBranch(c_in, c_out, "laplacian")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3x3(x)
        y = y + self.expand_3x3(pad_with(self.expand(x), bias_of(self.expand)))
        y = y + self.sobel_x(x) + self.sobel_y(x) + self.laplacian(x)
        return y + x if self.c_in == self.c_out else y

    @torch.no_grad()
    def reparameterize(self) -> nn.Conv2d:
        kernel, bias = self.conv3x3.weight.clone(), bias_of(self.conv3x3).clone()
        parts = [
            compose_1x1_3x3(self.expand.weight, bias_of(self.expand),
                            self.expand_3x3.weight, bias_of(self.expand_3x3)),
            self.sobel_x.merged(),
            self.sobel_y.merged(),
            self.laplacian.merged(),
        ]
        for k, b in parts:
            kernel, bias = kernel + k, bias + b
        if self.c_in == self.c_out:
            kernel = kernel + identity_3x3(self.c_out, kernel)
        return make_conv3x3(self.c_in, self.c_out, kernel, bias)


class Conv3XC(nn.Module):
    """SPAN's Conv3XC (training form of a 3x3 conv).

    Args:
        c_in: input channels.
        c_out: output channels.
        gain: expansion of the hidden width, ``gain * c_in`` and ``gain * c_out`` (SPAN: 2).
        bias: every conv has a bias (SPAN: true); without, the merged 3x3 has none either.

    ``out = conv1x1(conv3x3(conv1x1(pad(x)))) + conv1x1_skip(x)``, where ``pad`` adds one
    pixel of zeros and the 3x3 is unpadded. Padding before the first 1x1 puts that conv's
    bias on the padded ring, which is exactly what the merged, zero-padded 3x3 computes there.
    """

    def __init__(self, c_in: int, c_out: int, gain: int = 2, bias: bool = True) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.expand = nn.Conv2d(c_in, gain * c_in, 1, bias=bias)
        self.fea = nn.Conv2d(gain * c_in, gain * c_out, 3, padding=0, bias=bias)
        self.reduce = nn.Conv2d(gain * c_out, c_out, 1, bias=bias)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.fea(self.expand(F.pad(x, (1, 1, 1, 1)))))
        return y + self.skip(x)

    @torch.no_grad()
    def reparameterize(self) -> nn.Conv2d:
        has_bias = self.skip.bias is not None
        kernel, bias = compose_1x1_3x3(self.expand.weight, bias_or_zeros(self.expand),
                                       self.fea.weight, bias_or_zeros(self.fea))
        kr = self.reduce.weight[:, :, 0, 0]
        kernel = torch.einsum("om,mihw->oihw", kr, kernel) + centre_tap(self.skip.weight)
        bias = kr @ bias + bias_or_zeros(self.reduce) + bias_or_zeros(self.skip)
        return make_conv3x3(self.c_in, self.c_out, kernel, bias if has_bias else None)


Pair = tuple[int, int]


class WeightNormConv2d(nn.Conv2d):
    """A conv with a weight-normalised kernel, ``w = g * v / ||v||`` (norm over all but the
    output channel), as ``torch.nn.utils.weight_norm(conv)`` (MAFFSRN) keeps it: parameters
    ``weight_g`` (C_out, 1, 1, 1), ``weight_v`` and ``bias``. At construction ``v`` is the
    conv's usual initial kernel and ``g`` its norm, so the initial ``w`` is unchanged.

    Args are those of ``nn.Conv2d``. :meth:`reparameterize` returns the plain conv.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        v = self.weight.detach().clone()
        del self._parameters["weight"]
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(_norm_but_dim0(v))

    def normalised_weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / _norm_but_dim0(self.weight_v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalised_weight(), self.bias)

    @torch.no_grad()
    def reparameterize(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.in_channels, self.out_channels, cast(Pair, self.kernel_size),
                         stride=cast(Pair, self.stride), padding=cast(Pair, self.padding),
                         dilation=cast(Pair, self.dilation), groups=self.groups,
                         bias=self.bias is not None).to(self.weight_v)
        conv.weight.copy_(self.normalised_weight())
        if self.bias is not None:
            bias_of(conv).copy_(self.bias)
        return conv


def _norm_but_dim0(v: torch.Tensor) -> torch.Tensor:
    return v.pow(2).sum(dim=tuple(range(1, v.dim())), keepdim=True).sqrt()


def plain_conv(conv: nn.Module) -> nn.Conv2d:
    """``conv`` as a plain ``nn.Conv2d`` (a weight-normalised one folded; a copy either way)."""
    if isinstance(conv, WeightNormConv2d):
        return conv.reparameterize()
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv: got {type(conv).__name__}; expected an nn.Conv2d")
    return copy.deepcopy(conv)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: ``groups`` blocks of channels interleaved, so with 2 groups
    of ``C`` channels ``a0..a{C-1}, b0..b{C-1}`` become ``a0, b0, a1, b1, ...``.

    Args:
        groups: number of channel blocks (MAFFSRN: 2).
    """

    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(
            n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def shuffle_source(channels: int, groups: int) -> torch.Tensor:
    """``src`` with ``ChannelShuffle(groups)(x)[:, j] == x[:, src[j]]``."""
    return torch.arange(channels).view(groups, channels // groups).t().reshape(-1)


@torch.no_grad()
def fold_shuffle(conv: nn.Conv2d, groups: int) -> nn.Conv2d:
    """``conv(shuffle(x))`` as one conv on ``x``: the shuffle permutes the conv's input
    channels, so the kernel's input axis is permuted back (exact)."""
    if conv.groups != 1:
        raise ValueError(f"conv.groups: got {conv.groups}; the shuffle folds into dense convs")
    folded = plain_conv(conv)
    src = shuffle_source(conv.in_channels, groups).to(folded.weight.device)
    folded.weight[:, src] = folded.weight.clone()
    return folded


def reparameterize_modules(module: nn.Module) -> nn.Module:
    """A deployed copy of ``module``: each part with ``reparameterize()`` replaced by its result."""
    if hasattr(module, "reparameterize"):
        return module.reparameterize()  # type: ignore[operator]
    module = copy.deepcopy(module)
    _deploy_children(module)
    return module


def _deploy_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if hasattr(child, "reparameterize"):
            setattr(module, name, child.reparameterize())  # type: ignore[operator]
        else:
            _deploy_children(child)
