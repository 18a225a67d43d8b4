"""MemSR's plain networks (Wu, Lee & Ma, ICML 2022): the ``plain`` family and the exact
conversion of a residual teacher into its plain form.

A *plain* net is a chain of convs with activations and nothing else: no residuals, no concat,
no attention, no long skip, so no feature map has to be kept alive past the next conv (the
point of MemSR: peak memory is one feature map, not two). In this space it is a genotype of
``erb`` cells without attention or block residual, ``long_skip=false``, no fusion, and an
EDSR (or conv3x3) tail (:func:`plain_genotype`); every searcher and loop handles it like any
other genotype. :func:`~search_space.network.build_model` gives such a chain an
identity-centred init (:func:`~search_space.plain_init.init_plain_chain`, issue 27: from PyTorch's
default alone a 20-conv chain does not train); ``init="torch"`` (``kd.init=torch`` in a
retrain) gives the old one.

:func:`plain_form` turns a trained residual teacher (EDSR-like: ``erb`` cells without
attention, with or without block residuals and long skip) into an *equal* plain net
(``architectures_2023_2026.md`` section 5, written here from its prose) by carrying each skip
as extra channels: the layer that must pass a copy of ``x`` through its activation outputs
``x + offset`` (ReLU and leaky ReLU are the identity on positive values) and the next layer
subtracts the offset again. The offset is measured, not guessed: ``margin`` times the largest
carried value on calibration patches, and the conversion is checked against the teacher on
them. :func:`plain_layers` and :func:`teacher_signature` give the layer chains that MemSR's
initialisation of a plain student from that form aligns
(:mod:`searchers.training.memsr_init`, used by retraining only).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from search_space.checks import fail
from search_space.network import SRNet, normalise_input, super_resolve
from search_space.ops import FUNCTIONAL_ACTS
from search_space.rep import bias_of
from search_space.zoo import PLAIN_ACTS, check_convertible, check_plain, plain_genotype

__all__ = ["PLAIN_ACTS", "PlainLayer", "PlainNet", "check_convertible", "check_plain",
           "layer_signature", "plain_form", "plain_genotype", "plain_layers", "teacher_signature"]

@dataclass
class PlainLayer:
    """One layer of a plain chain: ``PixelShuffle(shuffle)(act(conv(x)))``."""

    conv: nn.Conv2d
    act: str = "none"
    shuffle: int = 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.act != "none":
            x = FUNCTIONAL_ACTS[self.act](x)
        return F.pixel_shuffle(x, self.shuffle) if self.shuffle > 1 else x


class PlainNet(nn.Module):
    """A chain of :class:`PlainLayer` with an SR net's input normalisation and value range.

    ``super_resolve(plain, x)`` is the net on [0, 1] images, as for every net of the space;
    :meth:`features` returns every layer's output (on the net's own value range).
    """

    input_mean: torch.Tensor | None
    input_scale: torch.Tensor | None

    def __init__(self, layers: Sequence[PlainLayer], *, input_mean: torch.Tensor | None = None,
                 input_scale: torch.Tensor | None = None, output_mean: bool = False,
                 data_range: float = 1.0) -> None:
        super().__init__()
        self.convs = nn.ModuleList(layer.conv for layer in layers)
        self.acts = tuple(layer.act for layer in layers)
        self.shuffles = tuple(layer.shuffle for layer in layers)
        self.register_buffer("input_mean", None if input_mean is None else input_mean.clone())
        self.register_buffer("input_scale", None if input_scale is None else input_scale.clone())
        self.output_mean = output_mean
        self.data_range = data_range

    @property
    def layers(self) -> list[PlainLayer]:
        return [PlainLayer(c, a, s)  # type: ignore[arg-type]
                for c, a, s in zip(self.convs, self.acts, self.shuffles, strict=True)]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = normalise_input(x, self.input_mean, self.input_scale), []
        for layer in self.layers:
            h = layer(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)[-1]
        if self.output_mean:
            assert self.input_mean is not None
            out = out + self.input_mean
        return out


def _conv_of(module: nn.Module, where: str) -> nn.Conv2d:
    if not isinstance(module, nn.Conv2d) or module.groups != 1 or module.stride != (1, 1):
        raise fail(where, type(module).__name__, "a plain conv (conv1x1 ... conv7x7, dil_conv)",
                   "Re-parameterise the net first, or use plain conv ops in the plain net.")
    return module


def _tail_layers(net: SRNet, where: str) -> list[PlainLayer]:
    assert isinstance(net.upsampler, nn.Sequential)
    mods = list(net.upsampler)
    layers: list[PlainLayer] = []
    for k, m in enumerate(mods):
        if isinstance(m, nn.PixelShuffle):
            layers[-1].shuffle = m.upscale_factor
        else:
            layers.append(PlainLayer(_conv_of(m, f"{where} upsampler[{k}]")))
    return layers


def _cell_convs(cell: nn.Module) -> tuple[nn.Module, nn.Module]:
    body = cell.body
    assert isinstance(body, nn.Module) and isinstance(body.convs, nn.ModuleList)
    c0, c1 = body.convs
    return c0, c1


def _b(conv: nn.Conv2d | None) -> torch.Tensor | float:
    """A conv's bias, or 0 for a conv without one."""
    return 0.0 if conv is None or conv.bias is None else conv.bias


def plain_layers(net: SRNet) -> list[PlainLayer]:
    """The layers of a plain-family net, sharing its conv modules (so fitting them sets the
    net's weights): head, each cell's two convs (the first with the cell's activation), the LR
    conv, the tail."""
    check_plain(net.genotype)
    layers = [PlainLayer(_conv_of(net.head, "student head"))]
    for i, (cell, gene) in enumerate(zip(net.cells, net.genotype.cells, strict=True)):
        c0, c1 = _cell_convs(cell)
        layers += [PlainLayer(_conv_of(c0, f"student cells[{i}].conv0"), gene.act),
                   PlainLayer(_conv_of(c1, f"student cells[{i}].conv1"))]
    if net.lr_conv is not None:
        layers.append(PlainLayer(_conv_of(net.lr_conv, "student lr_conv")))
    return layers + _tail_layers(net, "student")


def _like(conv: nn.Conv2d, c_in: int, c_out: int) -> nn.Conv2d:
    k, d = conv.kernel_size, conv.dilation
    out = nn.Conv2d(c_in, c_out, (k[0], k[1]), padding=conv.padding,  # type: ignore[arg-type]
                    dilation=(d[0], d[1]), bias=True)
    out.to(conv.weight)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(bias_of(out))
    return out


def _eye(conv: nn.Conv2d, rows: slice, cols: slice) -> None:
    """Identity from input channels ``cols`` to output channels ``rows`` (the centre tap)."""
    kh, kw = conv.kernel_size
    n = rows.stop - rows.start
    conv.weight[rows, cols, kh // 2, kw // 2] = torch.eye(n, dtype=conv.weight.dtype)


def _carried_max(net: SRNet, lr: torch.Tensor) -> float:
    """The largest |value| a converted net must carry: the head output and every cell input."""
    with torch.no_grad():
        h = net.head(normalise_input(lr * net.data_range, net.input_mean, net.input_scale))
        m = float(h.abs().max())
        for cell in net.cells:
            h = cell(h)
            m = max(m, float(h.abs().max()))
    return m


@torch.no_grad()
def plain_form(teacher: SRNet, calibration: torch.Tensor, margin: float = 10.0,
               atol: float = 1e-3) -> tuple[PlainNet, float]:
    """The plain net equal to ``teacher`` (a deployed or plain-conv EDSR-like net), and the
    offset it carries skips with.

    ``calibration`` is a batch of LR patches in [0, 1]; the offset is ``margin`` times the
    largest carried value on it, and the plain net must match the teacher there to ``atol``
    (relative to the output range), else :class:`RuntimeError`.
    """
    g = teacher.genotype
    check_convertible(g)
    w = g.width
    skip = g.long_skip
    offset = margin * max(_carried_max(teacher, calibration), 1e-3)
    head = _conv_of(teacher.head, "teacher head")
    layers: list[PlainLayer] = []
    # The head writes x, and a second copy g for the long skip (no activation: no offset).
    conv = _like(head, 3, 2 * w if skip else w)
    weight, bias = conv.weight, bias_of(conv)
    weight[:w] = head.weight
    bias[:w] = _b(head)
    if skip:
        weight[w:] = weight[:w]
        bias[w:] = bias[:w]
    layers.append(PlainLayer(conv))
    state = 2 * w if skip else w  # channels: [x, g?]
    for i, (cell, gene) in enumerate(zip(teacher.cells, g.cells, strict=True)):
        c1, c2 = (_conv_of(c, f"teacher cells[{i}].conv{k}")
                  for k, c in enumerate(_cell_convs(cell)))
        res = gene.block_residual
        # A: [x, g?] -> [x + off (res), g + off (skip), act(conv1 x)]
        carried = (w if res else 0) + (w if skip else 0)
        a = _like(c1, state, carried + w)
        a_bias = bias_of(a)
        k = 0
        if res:
            _eye(a, slice(0, w), slice(0, w))
            a_bias[0:w] = offset
            k = w
        if skip:
            _eye(a, slice(k, k + w), slice(w, 2 * w))
            a_bias[k:k + w] = offset
        a.weight[carried:, :w] = c1.weight
        a_bias[carried:] = _b(c1)
        layers.append(PlainLayer(a, gene.act))
        # B: [x + off?, g + off?, h] -> [conv2 h (+ x), g?]
        b = _like(c2, carried + w, state)
        b_bias = bias_of(b)
        b.weight[:w, carried:] = c2.weight
        b_bias[:w] = _b(c2)
        if res:
            _eye(b, slice(0, w), slice(0, w))
            b_bias[:w] -= offset
        if skip:
            _eye(b, slice(w, 2 * w), slice(k, k + w))
            b_bias[w:] = -offset
        layers.append(PlainLayer(b))
    if teacher.lr_conv is not None or skip:
        if teacher.lr_conv is None:  # the long skip alone: a 1x1 sum
            last = _like(nn.Conv2d(state, w, 1).to(head.weight), state, w)
            _eye(last, slice(0, w), slice(0, w))
        else:
            ref = _conv_of(teacher.lr_conv, "teacher lr_conv")
            last = _like(ref, state, w)
            last.weight[:, :w] = ref.weight
            bias_of(last)[:] = _b(ref)
        if skip:
            _eye(last, slice(0, w), slice(w, 2 * w))
        layers.append(PlainLayer(last))
    layers += [PlainLayer(copy.deepcopy(t.conv), t.act, t.shuffle)
               for t in _tail_layers(teacher, "teacher")]
    plain = PlainNet(layers, input_mean=teacher.input_mean, input_scale=teacher.input_scale,
                     output_mean=teacher.output_mean, data_range=teacher.data_range).eval()
    diff = float((super_resolve(plain, calibration) - super_resolve(teacher, calibration))
                 .abs().max())
    if not diff <= atol:
        raise RuntimeError(f"plain_form: the plain net differs from the teacher by {diff:.2e} "
                           f"(> {atol:g}) on the calibration patches with offset {offset:.3g}")
    return plain, offset


def layer_signature(layers: Sequence[PlainLayer]) -> list[tuple[str, int]]:
    """The (activation, PixelShuffle) of each layer of a plain chain."""
    return [(layer.act, layer.shuffle) for layer in layers]


def teacher_signature(teacher: SRNet) -> list[tuple[str, int]]:
    """The (activation, PixelShuffle) of each layer of ``plain_form(teacher)``."""
    g = teacher.genotype
    check_convertible(g)
    sig = [("none", 1)]
    for c in g.cells:
        sig += [(c.act, 1), ("none", 1)]
    if teacher.lr_conv is not None or g.long_skip:
        sig.append(("none", 1))
    return sig + layer_signature(_tail_layers(teacher, "teacher"))
