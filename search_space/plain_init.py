"""The identity-centred init of a plain chain (MemSR's plain family,
:func:`search_space.zoo.is_plain_chain`): :func:`init_plain_chain`, which
:func:`search_space.network.build_model` applies to every plain chain (issue 27: from PyTorch's
default alone a 20-conv chain does not train). It works on a built
:class:`~search_space.network.SRNet` (not imported here: that module imports this one)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from search_space.zoo import is_plain_chain

__all__ = ["PLAIN_INIT_NOISE", "init_plain_chain"]

PLAIN_INIT_NOISE = 0.1
"""The factor on PyTorch's default weights and biases that :func:`init_plain_chain` keeps as
the random part of its identity-centred convs."""


def _chain_convs(net: Any) -> list[tuple[nn.Conv2d, int]]:
    """A plain chain's convs in order with the PixelShuffle factor after each (1: none)."""
    convs = [net.head, *(c for cell in net.cells for c in cell.body.convs)]
    if net.lr_conv is not None:
        convs.append(net.lr_conv)
    out: list[tuple[nn.Conv2d, int]] = [(c, 1) for c in convs]
    for m in net.upsampler:
        if isinstance(m, nn.PixelShuffle):
            out[-1] = (out[-1][0], m.upscale_factor)
        else:
            out.append((m, 1))
    return out


@torch.no_grad()
def init_plain_chain(net: Any, noise: float = PLAIN_INIT_NOISE) -> Any:
    """Give a plain chain (no skip of any kind: :func:`search_space.zoo.is_plain_chain`) an
    identity-centred init in place, so that it starts as "the input passes through" and trains
    (issue 27; Dirac-initialised convs as in ``torch.nn.init.dirac_``, with the channel copies
    and PixelShuffles of an SR chain).

    Channel ``c`` of every LR feature map carries a copy of image channel ``c mod 3``: the
    head's centre tap copies it (its bias adds ``input_mean`` back, so the copies are the
    [0, 1] image, which the activations after the cells' first convs pass), each width-to-width
    conv is a Dirac, a conv before a PixelShuffle(f) writes its input channel ``c`` to all
    ``f * f`` sub-pixels of channel ``c`` (nearest upsampling), and the last conv averages the
    copies of each image channel (its bias subtracts ``input_mean`` where ``output_mean`` adds
    it). The net's output at init is thus about the nearest-neighbour upsampled input. On top,
    ``noise`` times PyTorch's default weights and biases (those the net was built with: no
    random number is drawn) break the symmetry between the copies.

    Args:
        net: a freshly built plain chain (training form).
        noise: the factor on the default init that stays as the random part (0: none).

    Returns:
        ``net``.
    """
    if not is_plain_chain(net.genotype):
        raise ValueError("init_plain_chain: the net is not a plain chain (see "
                         "search_space.zoo.is_plain_chain); build it with build_model, which "
                         "applies this init to plain chains only")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: got {noise}; a finite factor >= 0 on the default init")
    mean = None if net.input_mean is None else net.input_mean.view(-1)
    layers = _chain_convs(net)
    for j, (conv, f) in enumerate(layers):
        first, last = j == 0, j == len(layers) - 1
        weight = conv.weight
        weight.mul_(noise)
        if conv.bias is not None:
            conv.bias.mul_(noise)
        c_in, c_out = conv.in_channels, conv.out_channels // (f * f)
        kh, kw = conv.kernel_size[0] // 2, conv.kernel_size[1] // 2
        for o in range(c_out):
            # the copies this output channel reads: image channel o mod 3 (head), every copy
            # of image channel o (last conv), its own channel (the rest)
            src = [o % 3] if first else list(range(o, c_in, 3)) if last else [o]
            rows = slice(o * f * f, (o + 1) * f * f)
            for c in src:
                weight[rows, c, kh, kw] += 1.0 / len(src)
            if mean is not None and conv.bias is not None:
                if first:
                    conv.bias[rows] += mean[o % 3]
                elif last and net.output_mean:
                    conv.bias[rows] -= mean[o]
    return net
