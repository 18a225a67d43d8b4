"""The architecture step of DARTS: one :meth:`Architect.step` per search step.

Bilevel optimisation (Liu et al., "DARTS: Differentiable Architecture Search", ICLR 2019): the
network weights ``w`` minimise the training loss; the architecture weights ``alpha`` minimise
the validation loss plus the hardware penalty. First order uses ``dL_val(w, alpha)/dalpha``;
second order uses the one-step unrolled ``w' = w - xi * dL_train(w, alpha)/dw`` with the
finite-difference Hessian-vector product of the DARTS paper.

The hardware penalty (:class:`HardwarePenalty`) is computed from the supernet's expected
latency, peak memory and parameters. It is *not* detached: its gradient reaches ``alpha``
(the published DLSR code computed its penalty on a detached copy, so it did nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from searchers.differentiable.expected import expected_cost
from searchers.differentiable.supernet import SuperNet

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class HardwarePenalty:
    """Weights of the hardware terms of the architecture loss.

    Each term is the expected cost divided by its reference (the expected cost at the start
    of the search, set by :meth:`Architect.set_reference`), times its weight. In budget mode
    a term is ``weight * relu(cost - target) / target`` instead: only what lies above the
    target is penalised.

    Args:
        latency_weight, memory_weight, params_weight: weights (>= 0).
        mode: ``"weighted"`` or ``"budget"``.
        latency_target_ms, memory_target_mib, params_target: budget-mode targets (> 0;
            ``None`` leaves that term out in budget mode).
    """

    latency_weight: float = 0.0
    memory_weight: float = 0.0
    params_weight: float = 0.0
    mode: str = "weighted"
    latency_target_ms: float | None = None
    memory_target_mib: float | None = None
    params_target: float | None = None

    def __post_init__(self) -> None:
        for name in ("latency_weight", "memory_weight", "params_weight"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name}: got {value}; a loss weight must be >= 0 "
                                 f"(0 switches the term off)")
        if self.mode not in ("weighted", "budget"):
            raise ValueError(f"mode: got {self.mode!r}; allowed: weighted, budget")
        for name in ("latency_target_ms", "memory_target_mib", "params_target"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: got {value}; a target must be > 0 or null")

    def terms(self, cost: dict[str, torch.Tensor],
              reference: dict[str, float]) -> dict[str, torch.Tensor]:
        """The penalty terms (differentiable in alpha), keyed like ``cost``."""
        spec = {
            "latency_ms": (self.latency_weight, self.latency_target_ms),
            "memory_mib": (self.memory_weight, self.memory_target_mib),
            "params": (self.params_weight, self.params_target),
        }
        out = {}
        for key, (weight, target) in spec.items():
            if weight == 0:
                continue
            if self.mode == "budget":
                if target is None:
                    continue
                out[key] = weight * torch.relu(cost[key] - target) / target
            else:
                out[key] = weight * cost[key] / max(reference.get(key, 1.0), 1e-12)
        return out


class Architect:
    """Updates the architecture weights of a :class:`SuperNet`.

    Args:
        net: the supernet.
        loss_fn: the reconstruction loss, ``loss_fn(sr, hr)``.
        penalty: hardware penalty weights.
        lr: architecture learning rate (Adam).
        betas: Adam betas (DARTS: 0.5, 0.999).
        weight_decay: Adam weight decay on alpha.
        second_order: use the unrolled second-order gradient.
        unroll_lr: ``xi``, the virtual weight step of second order (DARTS uses the weight lr).
        zero_one_weight: FairDARTS zero-one loss weight (sigmoid mode).
    """

    def __init__(self, net: SuperNet, *, loss_fn: LossFn, penalty: HardwarePenalty,
                 lr: float = 3e-3, betas: tuple[float, float] = (0.5, 0.999),
                 weight_decay: float = 1e-3, second_order: bool = False,
                 unroll_lr: float = 1e-3, zero_one_weight: float = 0.0) -> None:
        if lr <= 0:
            raise ValueError(f"lr: got {lr}; the architecture learning rate must be > 0")
        if zero_one_weight < 0:
            raise ValueError(f"zero_one_weight: got {zero_one_weight}; must be >= 0")
        self.net, self.loss_fn, self.penalty = net, loss_fn, penalty
        self.second_order, self.unroll_lr = second_order, unroll_lr
        self.zero_one_weight = zero_one_weight
        self.optimizer = torch.optim.Adam(net.arch_parameters(), lr=lr, betas=betas,
                                          weight_decay=weight_decay)
        self.reference: dict[str, float] = {}

    def set_reference(self) -> None:
        """Normalise each hardware term by the current expected cost (call once, at start)."""
        with torch.no_grad():
            self.reference = {k: float(v) for k, v in expected_cost(self.net).items()}

    def hardware_loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """(total penalty, its terms, the expected costs as floats)."""
        cost = expected_cost(self.net)
        terms = self.penalty.terms(cost, self.reference)
        if self.zero_one_weight > 0 and self.net.state.mode == "sigmoid":
            w = torch.cat([torch.sigmoid(a) for a in self.net.arch_parameters() if a.numel() > 1])
            terms["zero_one"] = -self.zero_one_weight * (w - 0.5).pow(2).mean()
        total = sum(terms.values(), torch.zeros((), device=self.net.device))
        return total, terms, {k: float(v.detach()) for k, v in cost.items()}

    def step(self, train: tuple[torch.Tensor, torch.Tensor],
             val: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """One architecture update. Returns the losses as floats."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.second_order:
            val_loss = self._second_order_grads(train, val)
        else:
            lr_img, hr_img = val
            loss = self.loss_fn(self.net(lr_img), hr_img)
            arch = self.net.arch_parameters()
            grads = torch.autograd.grad(loss, arch, allow_unused=True)
            _accumulate(arch, grads)
            val_loss = float(loss.detach())
        hw, terms, cost = self.hardware_loss()
        if hw.requires_grad:
            hw.backward()
        self.optimizer.step()
        out = {"loss_val": val_loss, "loss_hardware": float(hw.detach())}
        out.update({f"loss_{k}": float(v.detach()) for k, v in terms.items()})
        out.update({f"expected_{k}": v for k, v in cost.items()})
        return out

    def _second_order_grads(self, train: tuple[torch.Tensor, torch.Tensor],
                            val: tuple[torch.Tensor, torch.Tensor]) -> float:
        net = self.net
        arch = net.arch_parameters()
        weight_ids = {id(p) for p in net.weight_parameters()}
        names = [n for n, p in net.named_parameters() if id(p) in weight_ids]
        weights = [p for n, p in net.named_parameters() if id(p) in weight_ids]
        others = {n: p for n, p in net.named_parameters() if id(p) not in weight_ids}
        buffers = dict(net.named_buffers())

        def loss_with(ws: Sequence[torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]
                      ) -> torch.Tensor:
            params = dict(zip(names, ws, strict=True))
            params.update(others)
            sr = functional_call(net, {**params, **buffers}, (batch[0],))
            return self.loss_fn(sr, batch[1])

        # w' = w - xi * dL_train/dw
        g_train = torch.autograd.grad(loss_with(weights, train), weights, allow_unused=True)
        unrolled = [(w - self.unroll_lr * g).detach().requires_grad_() if g is not None
                    else w.detach().requires_grad_() for w, g in zip(weights, g_train, strict=True)]
        val_loss = loss_with(unrolled, val)
        grads = torch.autograd.grad(val_loss, [*arch, *unrolled], allow_unused=True)
        d_alpha, d_w = grads[: len(arch)], grads[len(arch):]
        # Finite-difference Hessian-vector product (DARTS eq. 8).
        flat = [g for g in d_w if g is not None]
        eps = 0.01 / (torch.cat([g.flatten() for g in flat]).norm() + 1e-12) if flat else 0.0
        hess: list[torch.Tensor | None] = []
        for sign in (1.0, -1.0):
            shifted = [(w + sign * eps * g).detach() if g is not None else w.detach()
                       for w, g in zip(weights, d_w, strict=True)]
            hess_part = torch.autograd.grad(loss_with(shifted, train), arch, allow_unused=True)
            hess = list(hess_part) if sign > 0 else [
                None if a is None or b is None else (a - b) / (2 * eps)
                for a, b in zip(hess, hess_part, strict=True)
            ]
        final = [None if d is None else d - self.unroll_lr * (h if h is not None else 0.0)
                 for d, h in zip(d_alpha, hess, strict=True)]
        _accumulate(arch, final)
        return float(val_loss.detach())


def _accumulate(params: list[nn.Parameter], grads: tuple[torch.Tensor | None, ...] | list
                ) -> None:
    for p, g in zip(params, grads, strict=True):
        if g is None:
            continue
        p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()
