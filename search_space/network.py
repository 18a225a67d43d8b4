"""The SR network built from a :class:`~search_space.genotype.Genotype`, and its deployment."""

from __future__ import annotations

import copy

import torch
from torch import nn

from search_space.cells import CELLS
from search_space.genotype import Genotype
from search_space.ops import ACTIVATION_OPS, add_residual


class SRSkeleton(nn.Module):
    """head conv3x3 -> cells -> [fusion] -> LR conv3x3 + head -> conv3x3 -> PixelShuffle.

    The frame every net of the space shares: derived nets (:class:`SRNet`), the DARTS supernet
    and the NNI model space differ only in the cells they put in it.

    Args:
        scale: upscaling factor.
        width: trunk channels.
        cells: the cell modules, in order (each maps ``width`` to ``width`` channels).
        fusion: RFDN-style fusion (concat of every cell output, 1x1, activation).
        fusion_act: the fusion's activation.
    """

    def __init__(self, scale: int, width: int, cells: list[nn.Module], fusion: bool = False,
                 fusion_act: str = "lrelu0.05") -> None:
        super().__init__()
        w, s = width, scale
        self.head = nn.Conv2d(3, w, 3, padding=1)
        self.cells = nn.ModuleList(cells)
        self.fusion: nn.Module | None = None
        if fusion:
            self.fusion = nn.Sequential(
                nn.Conv2d(w * len(cells), w, 1), ACTIVATION_OPS[fusion_act](w)
            )
        self.lr_conv = nn.Conv2d(w, w, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(w, 3 * s * s, 3, padding=1), nn.PixelShuffle(s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        h, outs = feat, []
        for cell in self.cells:
            h = cell(h)
            outs.append(h)
        if self.fusion is not None:
            h = self.fusion(torch.cat(outs, dim=1))
        return self.upsampler(add_residual(self.lr_conv(h), feat))


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
    """

    value_range: torch.Tensor

    def __init__(self, genotype: Genotype) -> None:
        if not isinstance(genotype, Genotype):
            raise TypeError(f"genotype: got {type(genotype).__name__}; expected a Genotype "
                            "(load one with Genotype.load(path) or search_space.zoo.ZOO[name])")
        w = genotype.width
        cells = [CELLS[c.type](c, w, prefix=f"cells.{i}.") for i, c in enumerate(genotype.cells)]
        super().__init__(genotype.scale, w, cells, genotype.fusion, genotype.fusion_act)
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
    def is_deployed(self) -> bool:
        """Re-parameterised and on the genotype's deployed value range."""
        return self.genotype.is_deployed and self.data_range == self.genotype.data_range


def build_model(genotype: Genotype) -> SRNet:
    """Build the ``torch.nn.Module`` of a genotype (training form on [0, 1], freshly
    initialised)."""
    return SRNet(genotype)


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


@torch.no_grad()
def reparameterize(model: SRNet) -> SRNet:
    """The deployed form of ``model``: rep and ECB ops merged, batch norms folded, and the
    genotype's value range folded into the head and last convs.

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
    return deployed.eval()


def _fold_value_range(net: SRNet, factor: float) -> None:
    """Make ``net`` take and return values ``factor`` times larger (exact: both convs are
    linear, and everything between them sees the same features as before)."""
    net.head.weight.div_(factor)
    last = net.upsampler[0]
    assert isinstance(last, nn.Conv2d) and last.bias is not None
    last.weight.mul_(factor)
    last.bias.mul_(factor)
    net.value_range.mul_(factor)


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
