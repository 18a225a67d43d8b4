"""MemSR's initialisation of a plain student from a teacher's plain form (Wu, Lee & Ma, ICML
2022; ``architectures_2023_2026.md`` section 5, written here from its prose), which retraining
runs before its first iteration (``kd.init=memsr``).

:func:`memsr_init` fits the plain student layer by layer. For each intermediate teacher feature
``F`` (``C`` channels) it keeps the top-``r`` principal directions ``M`` (an SVD of the centred
feature, via the ``C x C`` covariance), projects ``F`` onto them, and shifts the projection by
``adjust`` times the mean of its negative part so that it is mostly positive (MemSR's
``decompose_adjust=3``), so ``F ~ M @ P + b``: the 1x1 *bridge* ``(M, b)``. The student's conv
is then solved by least squares (ridge-regularised, float64) so that its pre-activation output
on the student's *own* features so far matches ``P`` (for leaky ReLU the exact inverse of the
activation is applied to ``P``; for ReLU ``P`` itself), through a PixelShuffle where the layer
has one. The last conv is fitted to the teacher's output image. Unlike MemSR's code this needs
no copy of the teacher's tail, so the student may be narrower than the teacher everywhere.

The teacher's plain form and the plain family are :mod:`search_space.plain`.
:func:`check_pair` refuses a student and teacher whose chains do not align.

What differs from MemSR: our convs have ordinary biases (MemSR feeds an all-ones channel,
whose "bias" fades at the border); the fit uses the student's running features rather than
the teacher's projections as each layer's input; and MemSR's feature distillation through the
bridges is not implemented (retraining's KD is the L1 distance between the outputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from search_space.network import SRNet, normalise_input
from search_space.plain import PlainNet, layer_signature, plain_layers, teacher_signature
from search_space.rep import bias_of

__all__ = ["MemSRInit", "check_pair", "memsr_init"]

_LEAKY_SLOPES = {"lrelu0.05": 0.05, "lrelu0.1": 0.1}


@dataclass
class MemSRInit:
    """What :func:`memsr_init` did: the bridges (1x1 convs from each student feature to the
    teacher's plain feature) and, per layer, the relative error of the fit
    (``||bridge(student) - teacher|| / ||teacher - mean||``; the last layer: of the output)."""

    bridges: nn.ModuleList
    errors: list[float]
    offset: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"relative_errors": [round(e, 5) for e in self.errors],
                "bridges": [_io(b) for b in self.bridges],
                "offset": self.offset}


def _io(conv: nn.Module) -> list[int]:
    assert isinstance(conv, nn.Conv2d)
    return [conv.in_channels, conv.out_channels]


def _columns(f: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(C, N*H*W)``."""
    return f.transpose(0, 1).reshape(f.shape[1], -1)


def _sample(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=gen)[:k] if n > k else torch.arange(n)


def _project(f: torch.Tensor, r: int, adjust: float, max_columns: int, gen: torch.Generator
             ) -> tuple[torch.Tensor, nn.Conv2d]:
    """The shifted top-``r`` principal coordinates of ``f`` and the bridge back to ``f``."""
    cols = _columns(f).double()
    sample = cols[:, _sample(cols.shape[1], max_columns, gen)]
    mu = sample.mean(dim=1, keepdim=True)
    centred = sample - mu
    _, vecs = torch.linalg.eigh(centred @ centred.T / centred.shape[1])
    m = vecs.flip(1)[:, :r]  # descending variance
    if m.shape[1] < r:  # a student wider than the teacher feature: spare channels stay zero
        m = torch.cat([m, m.new_zeros(m.shape[0], r - m.shape[1])], dim=1)
    delta = adjust * (-(m.T @ centred).clamp(max=0)).mean(dim=1, keepdim=True)
    p = m.T @ (cols - mu) + delta
    bridge = nn.Conv2d(r, f.shape[1], 1).to(f)
    bridge.weight.data.copy_(m.view(*m.shape, 1, 1))
    bias_of(bridge).data.copy_((mu - m @ delta).view(-1))
    coords = p.view(r, f.shape[0], *f.shape[2:]).transpose(0, 1).to(f.dtype)
    return coords.contiguous(), bridge


def _inverse_act(t: torch.Tensor, act: str) -> torch.Tensor:
    slope = _LEAKY_SLOPES.get(act)
    if slope is not None:
        return torch.where(t >= 0, t, t / slope)
    return t  # relu (the shifted target is mostly positive) or none


def _fit(conv: nn.Conv2d, x: torch.Tensor, target: torch.Tensor, max_rows: int,
         gen: torch.Generator, ridge: float) -> None:
    """Set ``conv`` to the ridge least-squares map from ``x`` to ``target`` (its output)."""
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation,
                    padding=conv.padding)  # type: ignore[arg-type]
    a = cols.transpose(1, 2).reshape(-1, cols.shape[1]).double()
    t = target.flatten(2).transpose(1, 2).reshape(-1, target.shape[1]).double()
    rows = _sample(a.shape[0], max_rows, gen)
    a, t = a[rows], t[rows]
    bias = conv.bias is not None
    if bias:
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
    gram = a.T @ a
    lam = ridge * float(gram.diagonal().mean()) + 1e-12
    sol = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), a.T @ t)
    if bias:
        bias_of(conv).data.copy_(sol[-1])
        sol = sol[:-1]
    conv.weight.data.copy_(sol.T.reshape(conv.weight.shape))


def _rel_err(pred: torch.Tensor, target: torch.Tensor) -> float:
    centred = target - target.mean(dim=(0, 2, 3), keepdim=True)
    return float((pred - target).norm() / centred.norm().clamp_min(1e-12))




def check_pair(student: SRNet, teacher: SRNet | PlainNet) -> None:
    """Raise :class:`ValueError` unless MemSR's initialisation can map ``teacher``'s plain
    form onto ``student`` layer by layer (same count, activations and PixelShuffles)."""
    s = layer_signature(plain_layers(student))
    t = (teacher_signature(teacher) if isinstance(teacher, SRNet)
         else layer_signature(teacher.layers))
    if len(s) != len(t):
        raise ValueError(f"MemSR init: the student has {len(s)} plain layers and the teacher's "
                         f"plain form {len(t)}; give the student the teacher's number of cells "
                         "and its tail (search_space.plain.plain_genotype)")
    for j, (a, b) in enumerate(zip(s, t, strict=True)):
        if a != b:
            raise ValueError(f"MemSR init: plain layer {j} is (act, shuffle) = {a} in the student "
                             f"and {b} in the teacher; give the student the teacher's "
                             "activation and tail")


@torch.no_grad()
def memsr_init(student: SRNet, teacher: PlainNet, lr: torch.Tensor, *, adjust: float = 3.0,
               max_columns: int = 32768, ridge: float = 1e-4, seed: int = 0) -> MemSRInit:
    """Initialise the plain ``student`` (training form, in place) from the plain ``teacher``
    on the LR patches ``lr`` (``(N, 3, h, w)`` in [0, 1]); see the module docstring.

    The two chains must align layer by layer (same count, activations and PixelShuffles), as
    a plain student of the teacher's depth does: ``plain_genotype(len(teacher cells), r)``.
    """
    check_pair(student, teacher)
    s_layers = plain_layers(student)
    if student.data_range != 1.0:
        raise ValueError("memsr_init: the student must be in its training form (build_model)")
    gen = torch.Generator().manual_seed(seed)
    t_feats = teacher.features(lr * teacher.data_range)
    final = t_feats[-1] / teacher.data_range
    if teacher.output_mean:
        assert teacher.input_mean is not None
        final = final + teacher.input_mean / teacher.data_range
    s_mean = student.input_mean
    if student.output_mean:
        assert s_mean is not None
        final = final - s_mean
    x = normalise_input(lr, s_mean, student.input_scale)
    bridges, errors = nn.ModuleList(), []
    for j, layer in enumerate(s_layers):
        last = j == len(s_layers) - 1
        if last:
            target, bridge = final, None
        else:
            r = layer.conv.out_channels // layer.shuffle ** 2
            target, bridge = _project(t_feats[j], r, adjust, max_columns, gen)
        pre = _inverse_act(target, layer.act)
        if layer.shuffle > 1:
            pre = F.pixel_unshuffle(pre, layer.shuffle)
        _fit(layer.conv, x, pre, max_columns, gen, ridge)
        x = layer(x)
        if bridge is None:
            errors.append(_rel_err(x, target))
        else:
            bridges.append(bridge)
            errors.append(_rel_err(bridge(x), t_feats[j]))
    out = x + s_mean if student.output_mean and s_mean is not None else x
    check = float((student(lr) - out).abs().max())
    if not math.isfinite(check) or check > 1e-3 * max(float(out.abs().max()), 1.0):
        raise RuntimeError(f"memsr_init: the student's forward differs from its plain layers by "
                           f"{check:.2e}; the plain-layer mapping is wrong")
    return MemSRInit(bridges, errors)
