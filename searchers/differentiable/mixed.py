"""The mixed op of the DARTS supernet: a weighted sum over the candidates of one slot.

:class:`MixedOp` holds its slot's architecture weights as a registered ``nn.Parameter`` named
``alpha``; :class:`ArchState` (shared by every mixed op of one supernet) says how they mix:
``softmax`` (DARTS; divided by a temperature the searcher may anneal) or ``sigmoid`` (FairDARTS),
and with ``sample_k > 0`` only ``k`` candidates drawn from the mixing distribution are computed
in a training step. :class:`SlotCost` is what the hardware table needs of each candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from search_space.ops import add_residual


@dataclass
class ArchState:
    """Mixing settings shared by every mixed op of one supernet (a plain object, not a module)."""

    mode: Literal["softmax", "sigmoid"] = "softmax"
    temperature: float = 1.0
    sample_k: int = 0

    def weights(self, alpha: torch.Tensor) -> torch.Tensor:
        if self.mode == "sigmoid":
            return torch.sigmoid(alpha)
        return F.softmax(alpha / self.temperature, dim=-1)


@dataclass(frozen=True)
class SlotCost:
    """What the hardware tables need to know about one candidate of one slot."""

    kind: Literal["conv", "attention", "act", "cell", "width"]
    name: str
    c_in: int
    c_out: int


class MixedOp(nn.Module):
    """A weighted sum over candidate modules, weighted by its own ``alpha``.

    Args:
        slot: the slot name (``"cells.2.conv1"``).
        candidates: candidate names, in order.
        modules: one module per candidate.
        state: the supernet's shared :class:`ArchState`.
        costs: the hardware-table key of each candidate.
    """

    def __init__(self, slot: str, candidates: Sequence[str], modules: Sequence[nn.Module],
                 state: ArchState, costs: Sequence[SlotCost]) -> None:
        super().__init__()
        self.slot = slot
        self.candidates = tuple(candidates)
        self.ops = nn.ModuleList(modules)
        # A single candidate is a fixed choice: its alpha is frozen and not an arch parameter.
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(self.candidates)),
                                  requires_grad=len(self.candidates) > 1)
        self.costs = tuple(costs)
        object.__setattr__(self, "state", state)  # shared plain object, not a submodule
        # Set by the perturbation-based selection (:mod:`searchers.differentiable.select`):
        # ``fixed`` computes that candidate alone with weight 1 (a decided slot), ``excluded``
        # leaves that candidate out and renormalises the others (the perturbation).
        self.fixed: int | None = None
        self.excluded: int | None = None
        # Filled from the hardware tables; not saved (the tables have their own cache).
        self.register_buffer("latency_ms", torch.zeros(len(self.candidates)), persistent=False)
        self.register_buffer("memory_mib", torch.zeros(len(self.candidates)), persistent=False)
        self.register_buffer("params", torch.zeros(len(self.candidates)), persistent=False)

    state: ArchState
    latency_ms: torch.Tensor
    memory_mib: torch.Tensor
    params: torch.Tensor

    def weights(self) -> torch.Tensor:
        if len(self.candidates) == 1:  # a fixed choice: weight 1 in every mode
            return torch.ones_like(self.alpha)
        return self.state.weights(self.alpha)

    def _active(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, weights) of the candidates computed in this forward pass."""
        if self.fixed is not None:
            return torch.tensor([self.fixed]), torch.ones(1, device=self.alpha.device)
        w = self.weights()
        if self.excluded is not None:
            keep = torch.tensor([i for i in range(len(self.candidates)) if i != self.excluded])
            kept = w[keep]
            return keep, kept / kept.sum() if self.state.mode == "softmax" else kept
        k = self.state.sample_k
        if not self.training or k <= 0 or k >= len(self.candidates):
            return torch.arange(len(self.candidates)), w
        probs = w.detach() / w.detach().sum()
        idx = torch.multinomial(probs, k, replacement=False)
        if self.state.mode == "sigmoid":
            return idx, w[idx]
        return idx, F.softmax(self.alpha[idx] / self.state.temperature, dim=-1)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        idx, w = self._active()
        out: torch.Tensor | None = None
        for j, i in enumerate(idx.tolist()):
            y = self.ops[i](*args) * w[j]
            out = y if out is None else add_residual(y, out)
        assert out is not None
        return out

    def expected(self, table: torch.Tensor) -> torch.Tensor:
        """The mixing-weighted cost, differentiable in ``alpha``."""
        return (self.weights() * table).sum()

    def best(self) -> str:
        return self.candidates[int(self.alpha.detach().argmax())]


def normalised(w: torch.Tensor) -> torch.Tensor:
    """Mixing weights as a distribution (softmax weights already are; sigmoid ones are not)."""
    return w / w.sum()
