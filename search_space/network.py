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

    The net works on inputs in ``[0, genotype.data_range]`` and returns outputs in that range,
    as the published nets do (RFDN, RLFN and FMEN take [0, 255]; IMDN takes [0, 1]).
    """

    def __init__(self, genotype: Genotype) -> None:
        if not isinstance(genotype, Genotype):
            raise TypeError(f"genotype: got {type(genotype).__name__}; expected a Genotype "
                            "(load one with Genotype.load(path) or search_space.zoo.ZOO[name])")
        w = genotype.width
        cells = [CELLS[c.type](c, w, prefix=f"cells.{i}.") for i, c in enumerate(genotype.cells)]
        super().__init__(genotype.scale, w, cells, genotype.fusion, genotype.fusion_act)
        self.genotype = genotype

    @property
    def scale(self) -> int:
        return self.genotype.scale

    @property
    def data_range(self) -> float:
        return self.genotype.data_range


def build_model(genotype: Genotype) -> SRNet:
    """Build the ``torch.nn.Module`` of a genotype (training form, freshly initialised)."""
    return SRNet(genotype)


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
    """The deployed form of ``model``: rep and ECB ops merged, batch norms folded.

    The result is a new module (``model`` is left untouched) whose structure and
    ``state_dict()`` keys equal ``build_model(model.genotype.deployed())``; its output matches
    the training form in eval mode (max abs diff <= 1e-4 in float32 for inputs in [0, 1]).
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
    return deployed.eval()
