"""The upsampling tails besides the plain conv + PixelShuffle one, used by
:class:`search_space.network.SRNet`: MAFFSRN's two-branch :class:`DualTail` and EDSR's
:func:`edsr_tail` (x2 x2 / x3 / x4 conv-shuffle stages)."""

from __future__ import annotations

import torch
from torch import nn

from search_space.cells import Scale, frame_conv
from search_space.ops import add_residual
from search_space.rep import bias_of, plain_conv

__all__ = ["DualTail", "edsr_tail"]


class DualTail(nn.Module):
    """MAFFSRN's tail: ``PixelShuffle([a *] conv3x3(h) + [b *] conv5x5(h))`` (both to
    ``3 * scale**2`` channels; MAFFSRN shuffles each branch and sums, the same thing).

    Args:
        width: input channels.
        scale: upscaling factor.
        scales: each branch times a learnable scalar (init 0.5; training form, folded into the
            convs by :meth:`reparameterize`).
        bias: the convs have biases.
        weight_norm: the convs are weight-normalised (training form, folded likewise).
    """

    def __init__(self, width: int, scale: int, scales: bool = False, bias: bool = True,
                 weight_norm: bool = False) -> None:
        super().__init__()
        self.width, self.scale, self.bias = width, scale, bias
        out = 3 * scale * scale
        self.conv3 = frame_conv(width, out, 3, bias, weight_norm)
        self.conv5 = frame_conv(width, out, 5, bias, weight_norm)
        self.scale3 = Scale(0.5) if scales else None
        self.scale5 = Scale(0.5) if scales else None
        self.shuffle = nn.PixelShuffle(scale)

    def convs(self) -> tuple[nn.Conv2d, nn.Conv2d]:
        return self.conv3, self.conv5

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a, b = self.conv3(h), self.conv5(h)
        if self.scale3 is not None and self.scale5 is not None:
            a, b = self.scale3(a), self.scale5(b)
        return self.shuffle(add_residual(a, b))

    @torch.no_grad()
    def reparameterize(self) -> DualTail:
        """Plain convs with the scalars (and any weight norm) folded in."""
        out = DualTail(self.width, self.scale, bias=self.bias)
        convs = [plain_conv(self.conv3), plain_conv(self.conv5)]
        if self.scale3 is not None and self.scale5 is not None:
            for conv, s in zip(convs, (self.scale3.scale, self.scale5.scale), strict=True):
                conv.weight.mul_(s)
                if conv.bias is not None:
                    bias_of(conv).mul_(s)
        out.conv3, out.conv5 = convs
        return out.to(convs[0].weight)


def edsr_tail(width: int, scale: int, bias: bool = True, weight_norm: bool = False
              ) -> nn.Sequential:
    """EDSR's upsampler: [conv3x3 -> ``4 * width`` -> PixelShuffle(2)] x log2(scale) (x2, x4),
    or conv3x3 -> ``9 * width`` -> PixelShuffle(3) (x3), then conv3x3 -> 3 at the HR size."""
    factors = (3,) if scale == 3 else (2,) * {2: 1, 4: 2}[scale]
    layers: list[nn.Module] = []
    for f in factors:
        layers += [frame_conv(width, f * f * width, 3, bias, weight_norm), nn.PixelShuffle(f)]
    layers.append(frame_conv(width, 3, 3, bias, weight_norm))
    return nn.Sequential(*layers)
