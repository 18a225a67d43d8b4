"""The SR network built from a :class:`~search_space.genotype.Genotype`, and its deployment."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from search_space.cells import CELLS, GROUPS, frame_conv
from search_space.genes import GroupGene
from search_space.genotype import Genotype
from search_space.memory import MemoryEstimate, check_enabled, estimate_weights, require_weights
from search_space.ops import ACTIVATION_OPS, OPS, add_residual
from search_space.plain_init import init_plain_chain
from search_space.rep import reparameterize_modules
from search_space.tails import DualTail, edsr_tail
from search_space.zoo import is_plain_chain

logger = logging.getLogger(__name__)


def normalise_input(x: torch.Tensor, mean: torch.Tensor | None, scale: torch.Tensor | None
                    ) -> torch.Tensor:
    """``(x - mean) * scale``, each step only where given: what a net feeds its head."""
    if mean is not None:
        x = x - mean
    if scale is not None:
        x = x * scale
    return x


class SRSkeleton(nn.Module):
    """[(x - mean) * s] -> head -> cells -> [fusion] -> LR conv [+ head] -> conv3x3 -> PixelShuffle.

    (MAFFSRN's variant: the cells in feature-fusion groups, no LR conv, the dual tail, and the
    bicubic upsampling of ``x`` added to the output.)

    The frame every net of the space shares: derived nets (:class:`SRNet`), the DARTS supernet
    and the NNI model space differ only in the cells they put in it. The keyword switches are
    those of :class:`~search_space.genotype.Genotype` (see there); at their defaults the frame
    is the one every net had before they existed, module for module.

    Args:
        scale: upscaling factor.
        width: trunk channels.
        cells: the cell modules, in order (each maps ``width`` to ``width`` channels).
        fusion: RFDN-style fusion (concat of the taps, 1x1, activation).
        fusion_act: the fusion's activation, or ``none``.
        fusion_taps: ``(tap name, channels)`` of each fusion input, in order; ``None``: every
            cell output. A ``cells.{i}.act0`` tap calls cell ``i``'s ``features()``.
        lr_conv_before_fusion: the LR conv runs on the last cell's output, before the fusion.
        long_skip: add the head output before the upsampler.
        input_mean: RGB mean subtracted from the input (kept in the ``input_mean`` buffer).
        input_scale: the deployed input factor; when not 1 an ``input_scale`` buffer (1 in the
            training form) multiplies the mean-shifted input, and :func:`reparameterize` folds
            the factor out of the head into it.
        bias: the head, fusion, LR conv and upsampler convs have biases.
        head_op: the head conv's op (from :data:`~search_space.ops.OPS`).
        lr_conv_op: the LR conv's op, or ``none`` (no LR conv).
        groups: the cells' partition into feature-fusion groups (modules in ``groups``, built
            from :data:`~search_space.cells.GROUPS`); ``None``: the cells in a chain.
        weight_norm: the frame convs (head, LR conv, fusion, the groups' fusions, tail) are
            weight-normalised (:class:`~search_space.rep.WeightNormConv2d`).
        tail: ``conv3x3`` (conv3x3 -> PixelShuffle, ``upsampler``), ``dual``
            (:class:`DualTail`) or ``edsr`` (:func:`edsr_tail`).
        tail_scales: the dual tail's learnable branch scalars.
        input_skip: ``bicubic``: add the bicubic upsampling of the net input to the output.
        output_mean: add ``input_mean`` back to the output (EDSR).
    """

    input_mean: torch.Tensor | None
    input_scale: torch.Tensor | None

    def __init__(self, scale: int, width: int, cells: list[nn.Module], fusion: bool = False,
                 fusion_act: str = "lrelu0.05", *,
                 fusion_taps: Sequence[tuple[str, int]] | None = None,
                 lr_conv_before_fusion: bool = False, long_skip: bool = True,
                 input_mean: Sequence[float] | None = None, input_scale: float = 1.0,
                 bias: bool = True, head_op: str = "conv3x3",
                 lr_conv_op: str = "conv3x3", groups: Sequence[GroupGene] | None = None,
                 weight_norm: bool = False, tail: str = "conv3x3", tail_scales: bool = False,
                 input_skip: str = "none", output_mean: bool = False) -> None:
        super().__init__()
        w, s = width, scale
        wn = weight_norm
        self.head = frame_conv(3, w, 3, bias, True) if wn else OPS[head_op](3, w, bias=bias)
        self.cells = nn.ModuleList(cells)
        if fusion_taps is None:
            fusion_taps = [(f"cells.{i}", w) for i in range(len(cells))]
        self.fusion_taps = tuple(t for t, _ in fusion_taps)
        self._act0_cells = {int(t.split(".")[1]) for t in self.fusion_taps if t.endswith(".act0")}
        self._fused = frozenset(self.fusion_taps)
        self.fusion: nn.Module | None = None
        if fusion:
            layers: list[nn.Module] = [frame_conv(sum(c for _, c in fusion_taps), w, 1, bias, wn)]
            if fusion_act != "none":
                layers.append(ACTIVATION_OPS[fusion_act](w))
            self.fusion = nn.Sequential(*layers)
        self.lr_conv: nn.Module | None = None
        if lr_conv_op != "none":
            self.lr_conv = frame_conv(w, w, 3, bias, True) if wn else OPS[lr_conv_op](
                w, w, bias=bias)
        self.groups: nn.ModuleList | None = None
        self._group_sizes: tuple[int, ...] = ()
        if groups is not None:
            self.groups = nn.ModuleList(GROUPS[g.type](g, w, bias=bias, weight_norm=wn)
                                        for g in groups)
            self._group_sizes = tuple(g.size for g in groups)
            if sum(self._group_sizes) != len(cells):
                raise ValueError(f"groups: got sizes {list(self._group_sizes)} for "
                                 f"{len(cells)} cells; the sizes must sum to the cell count")
        self.upsampler: nn.Module
        if tail == "dual":
            self.upsampler = DualTail(w, s, tail_scales, bias, wn)
        elif tail == "edsr":
            self.upsampler = edsr_tail(w, s, bias, wn)
        else:
            self.upsampler = nn.Sequential(frame_conv(w, 3 * s * s, 3, bias, wn),
                                           nn.PixelShuffle(s))
        self.scale_factor = s
        self.bicubic_skip = input_skip == "bicubic"
        self.lr_conv_before_fusion = lr_conv_before_fusion
        self.long_skip = long_skip
        if output_mean and input_mean is None:
            raise ValueError("output_mean: true needs an input_mean to add back")
        self.output_mean = output_mean
        # Buffers only where used (a None buffer trips torch.export): nets without the switches
        # keep the state_dict keys they always had.
        if input_mean is not None:
            mean = torch.tensor([float(v) for v in input_mean]).view(1, -1, 1, 1)
            self.register_buffer("input_mean", mean)
        else:
            self.input_mean = None
        if input_scale != 1.0:
            self.register_buffer("input_scale", torch.tensor(1.0))
        else:
            self.input_scale = None

    @property
    def device(self) -> torch.device:
        """The device the net's parameters are on."""
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(normalise_input(x, self.input_mean, self.input_scale))
        # Only what is read later is kept (the normalised input dies with the head): a held
        # tensor costs peak memory (MemSR's plain nets exist to hold none).
        feat = h if self.long_skip else None
        taps = {"head": h} if self.fusion is not None and "head" in self._fused else {}
        if self.groups is not None:
            h = self._grouped_cells(h)
        else:
            for i, cell in enumerate(self.cells):
                if i in self._act0_cells:
                    h, taps[f"cells.{i}.act0"] = cell.features(h)  # type: ignore[operator]
                else:
                    h = cell(h)
                if self.fusion is not None and f"cells.{i}" in self._fused:
                    taps[f"cells.{i}"] = h  # kept only when fused: a dead tap costs memory
        if self.lr_conv_before_fusion:
            assert self.lr_conv is not None
            h = taps["lr_conv"] = self.lr_conv(h)
        if self.fusion is not None:
            h = self.fusion(torch.cat([taps[t] for t in self.fusion_taps], dim=1))
        if not self.lr_conv_before_fusion and self.lr_conv is not None:
            h = self.lr_conv(h)
        if feat is not None:
            h = h + feat if h is feat else add_residual(h, feat)
            del feat
        out = self.upsampler(h)
        if self.bicubic_skip:
            up = F.interpolate(x, scale_factor=float(self.scale_factor), mode="bicubic",
                               align_corners=False)
            out = add_residual(out, up)
        if self.output_mean:
            assert self.input_mean is not None
            out = out + self.input_mean
        return out

    def _grouped_cells(self, h: torch.Tensor) -> torch.Tensor:
        assert self.groups is not None
        i = 0
        for group, size in zip(self.groups, self._group_sizes, strict=True):
            x, outs = h, []
            for cell in self.cells[i:i + size]:
                h = cell(h)
                outs.append(h)
            h = group(outs, x)
            i += size
        return h


class SRNet(SRSkeleton):
    """The network of a genotype.

    Args:
        genotype: the architecture. It is kept as ``self.genotype`` (a plain value, so it
            travels with the module but not in ``state_dict()``).

    **Value range.** A freshly built net (the training form) takes and returns values in
    ``[0, 1]``, whatever ``genotype.data_range`` says: every net trains on [0, 1] with the same
    recipe, and no attention gate saturates on raw 0-255 input. ``genotype.data_range`` is the
    interface of the *deployed* net: :func:`reparameterize` folds the factor into the head conv
    (input ``/ data_range``) and the last conv (output ``* data_range``), both linear, so the
    deployed RFDN, RLFN and FMEN take and return [0, 255] exactly as the official nets do.
    ``data_range`` is the range this module works in (kept in the ``value_range`` buffer, so it
    is saved in ``state_dict()`` and a loaded deployed checkpoint knows its range), and
    :func:`super_resolve` is how every loop calls a net on [0, 1] images.

    **Input normalisation.** ``genotype.input_mean`` is subtracted from the input in both
    forms (it is a buffer, scaled with the value range). ``genotype.input_scale`` is, like
    ``data_range``, an interface of the deployed net only: the training form feeds the
    mean-shifted input to its head as it is, and :func:`reparameterize` divides the head by
    the factor and multiplies the input by it (the ``input_scale`` buffer), so the deployed
    SPAN takes [0, 1], feeds ``(x - mean) * 255`` to its head and returns [0, 1], as the
    official SPAN does.
    """

    value_range: torch.Tensor

    def __init__(self, genotype: Genotype) -> None:
        if not isinstance(genotype, Genotype):
            raise TypeError(f"genotype: got {type(genotype).__name__}; expected a Genotype "
                            "(load one with Genotype.load(path) or search_space.zoo.ZOO[name])")
        w, g = genotype.width, genotype
        cells = [CELLS[c.type](c, w, prefix=f"cells.{i}.", bias=g.bias)
                 for i, c in enumerate(g.cells)]
        taps = [(t, g.tap_channels(t)) for t in g.fusion_inputs]
        super().__init__(g.scale, w, cells, g.fusion, g.fusion_act, fusion_taps=taps,
                         lr_conv_before_fusion=g.lr_conv_before_fusion, long_skip=g.long_skip,
                         input_mean=g.input_mean, input_scale=g.input_scale, bias=g.bias,
                         head_op=g.head_op, lr_conv_op=g.lr_conv_op, groups=g.groups,
                         weight_norm=g.weight_norm, tail=g.tail, tail_scales=g.tail_scales,
                         input_skip=g.input_skip, output_mean=g.output_mean)
        self.genotype = genotype
        self.register_buffer("value_range", torch.tensor(1.0))

    @property
    def scale(self) -> int:
        return self.genotype.scale

    @property
    def data_range(self) -> float:
        """The value range this module takes and returns: 1.0 until deployed, then
        ``genotype.data_range``."""
        return float(self.value_range)

    @property
    def input_factor(self) -> float:
        """The factor the mean-shifted input is multiplied by before the head: 1.0 until
        deployed, then ``genotype.input_scale``."""
        return 1.0 if self.input_scale is None else float(self.input_scale)

    @property
    def is_deployed(self) -> bool:
        """Re-parameterised and on the genotype's deployed value range and input scale."""
        return (self.genotype.is_deployed and self.data_range == self.genotype.data_range
                and self.input_factor == self.genotype.input_scale)


INITS: tuple[str, ...] = ("standard", "torch")
""":func:`build_model`'s initialisations: ``standard`` (PyTorch's default for every module,
then :func:`init_plain_chain` for a plain chain, :func:`search_space.zoo.is_plain_chain`) or
``torch`` (PyTorch's default only: what every net had before issue 27)."""

def build_model(genotype: Genotype, *, init: str = "standard") -> SRNet:
    """Build the ``torch.nn.Module`` of a genotype (training form on [0, 1], freshly
    initialised).

    Args:
        genotype: the architecture.
        init: ``standard``: PyTorch's default init, and for a plain chain (MemSR's plain
            family, :func:`search_space.zoo.is_plain_chain`) the identity-centred
            :func:`init_plain_chain` on top (it draws no random numbers, so the global RNG
            after the build is the same either way); every other net's weights are PyTorch's
            default, bit for bit. ``torch``: PyTorch's default for every net (plain chains
            before issue 27, which do not train).

    Raises:
        ValueError: ``init`` is not one of :data:`INITS`.
        InsufficientMemory: the net's weights (counted on the meta device first,
            :mod:`search_space.memory`) do not fit in this host's available memory.
    """
    if init not in INITS:
        raise ValueError(f"init: got {init!r}; allowed: {', '.join(INITS)} (standard: the "
                         "identity-centred init for plain chains, torch: PyTorch's default)")
    if isinstance(genotype, Genotype) and check_enabled():
        try:
            weights = _weights_estimate(genotype)
        except (RuntimeError, NotImplementedError) as exc:  # an op the meta device lacks
            logger.warning("the weights of width %d, %d cells could not be counted on the "
                           "meta device (%s); building unchecked", genotype.width,
                           genotype.num_cells, exc)
        else:
            require_weights(weights, what=f"the net of this genotype (width {genotype.width}, "
                            f"{genotype.num_cells} cells)", fix="use a smaller width, fewer "
                            "cells or narrower inner and attention widths")
    net = SRNet(genotype)
    if init == "standard" and is_plain_chain(genotype):
        init_plain_chain(net)
    return net


@functools.lru_cache(maxsize=256)
def _weights_estimate(genotype: Genotype) -> MemoryEstimate:
    """The weights of ``genotype``'s net, counted on the meta device (once per genotype)."""
    return estimate_weights(lambda: SRNet(genotype))


def super_resolve(model: nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """``model`` applied to an LR batch in [0, 1], its output returned in [0, 1].

    The net owns its value range (``model.data_range``; 1.0 for modules without one): the
    input is scaled into it and the output back, so every loop (training, validation,
    evaluation) calls every net, trained or deployed, the same way.
    """
    r = float(getattr(model, "data_range", 1.0))
    if r == 1.0:
        return model(lr)
    return model(lr * r) / r


@torch.no_grad()
def reparameterize(model: SRNet) -> SRNet:
    """The deployed form of ``model``: rep and ECB ops merged, batch norms, weight norms,
    channel shuffles and the foldable scalar scales folded into convs, and the genotype's value
    range folded into the head and last convs.

    The result is a new module (``model`` is left untouched) whose structure and
    ``state_dict()`` keys equal ``build_model(model.genotype.deployed())``. It takes and
    returns values in ``[0, genotype.data_range]``, as the official net does;
    ``super_resolve(deployed, x)`` matches ``super_resolve(model, x)`` in eval mode (max abs
    diff <= 1e-4 in float32 for x in [0, 1]). A deployed net is returned as a copy, unchanged.
    """
    if not isinstance(model, SRNet):
        raise TypeError(f"model: got {type(model).__name__}; expected an SRNet from build_model()")
    was_training = model.training
    model.eval()
    try:
        deployed = reparameterize_modules(model)
    finally:
        model.train(was_training)
    assert isinstance(deployed, SRNet)
    deployed.genotype = model.genotype.deployed()
    factor = deployed.genotype.data_range / model.data_range
    if factor != 1.0:
        _fold_value_range(deployed, factor)
    input_factor = deployed.genotype.input_scale / model.input_factor
    if input_factor != 1.0:
        _fold_input_scale(deployed, input_factor)
    return deployed.eval()


def _head_conv(net: SRNet) -> nn.Conv2d:
    head = net.head
    if not isinstance(head, nn.Conv2d):
        raise TypeError(f"head: got {type(head).__name__}; the range folds need the deployed "
                        "head to be one conv (Genotype.head_op in FRAME_OPS)")
    return head


def _fold_value_range(net: SRNet, factor: float) -> None:
    """Make ``net`` take and return values ``factor`` times larger (exact: both convs are
    linear, the input mean scales with the input, and everything between them sees the same
    features as before)."""
    _head_conv(net).weight.div_(factor)
    for last in _tail_convs(net):
        last.weight.mul_(factor)
        if last.bias is not None:
            last.bias.mul_(factor)
    if net.input_mean is not None:
        net.input_mean.mul_(factor)
    net.value_range.mul_(factor)


def _tail_convs(net: SRNet) -> tuple[nn.Conv2d, ...]:
    """The convs whose outputs are the net's output (before any input skip)."""
    if isinstance(net.upsampler, DualTail):
        return net.upsampler.convs()
    last = net.upsampler[-1 if net.genotype.tail == "edsr" else 0]  # type: ignore[index]
    assert isinstance(last, nn.Conv2d)
    return (last,)


def _fold_input_scale(net: SRNet, factor: float) -> None:
    """Multiply the head's input by ``factor`` and divide the head by it (exact: the head is
    linear, and zero padding commutes with the scaling)."""
    assert net.input_scale is not None
    _head_conv(net).weight.div_(factor)
    net.input_scale.mul_(factor)


def deployed_form(module: nn.Module) -> nn.Module:
    """What a cost is measured on: the deployed form of ``module``.

    An :class:`SRNet` goes through :func:`reparameterize` (unless already deployed); any other
    module has its re-parameterisable parts merged (:func:`reparameterize_modules`), and is
    returned as it is when it has none. Latency, memory, parameters, FLOPs, activations and
    #conv are always those of this form, never of a multi-branch training form.
    """
    if isinstance(module, SRNet):
        return module if module.is_deployed else reparameterize(module)
    if not any(hasattr(m, "reparameterize") for m in module.modules()):
        return module
    was_training = module.training
    module.eval()
    try:
        return reparameterize_modules(module).eval()
    finally:
        module.train(was_training)
