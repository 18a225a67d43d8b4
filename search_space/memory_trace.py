"""The meta-device trace behind :mod:`search_space.memory`'s activation estimates: a net built
on the ``meta`` device (exact shapes, nothing allocated, initialisers skipped) and one forward
or training step run under :class:`AllocationTrace`, which follows the bytes of the storages
alive and their peak."""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

Net = nn.Module | Callable[[], nn.Module]
"""A built net, or a function that builds one (called under ``torch.device("meta")``)."""

_ON_META: contextvars.ContextVar[bool] = contextvars.ContextVar("srnas_memory_on_meta",
                                                               default=False)



class AllocationTrace(TorchDispatchMode):
    """The running sum of the bytes of the storages that the ops run under it create, and
    its peak (``peak_bytes``).

    An op whose schema returns no alias (not a view, not in-place, no ``out=``) creates new
    storages: their bytes are added, and subtracted when the storage dies (a weak-reference
    finalizer). Storages that existed before (weights, the input) are not counted. On the
    meta device this is the allocation profile of the work without allocating anything.
    ``aten.multinomial`` on a meta tensor answers with the first ``k`` indices on the CPU:
    sampling ops are read back by Python (``.tolist()``), which meta tensors cannot do, and the
    shapes are all the estimate needs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._tracked: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live_bytes -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.aten.multinomial.default and args[0].device.type == "meta":
            return torch.arange(int(args[1]), dtype=torch.long)
        out = func(*args, **kwargs)
        if any(r.alias_info is not None for r in func._schema.returns):
            return out
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self._tracked:
                    nbytes = storage.nbytes()
                    self._tracked.add(key)
                    self.live_bytes += nbytes
                    self.peak_bytes = max(self.peak_bytes, self.live_bytes)
                    weakref.finalize(storage, self._release, key, nbytes)
        return out


_FILLS = frozenset([
    *(getattr(torch.nn.init, name) for name in dir(torch.nn.init)
      if name.endswith("_") and not name.startswith("_")),
    *(getattr(torch.Tensor, name) for name in (
        "uniform_", "normal_", "fill_", "zero_", "copy_", "erfinv_", "mul_", "add_", "sub_",
        "div_", "clamp_", "bernoulli_", "random_", "exponential_"))])
"""The initialisers (``torch.nn.init``'s) and the in-place ops that fill weights: on the meta
device they change nothing, and each returns the tensor it fills."""


class _SkipFills(TorchFunctionMode):
    """Answers the in-place fills of :data:`_FILLS` with their tensor, untouched: a build on
    the meta device then costs about twice a real build instead of seven times (the
    initialisers' meta kernels run in Python)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _FILLS:
            filled = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(filled, torch.Tensor):
                return filled
        return func(*args, **kwargs)


@contextlib.contextmanager
def _on_meta() -> Iterator[None]:
    token = _ON_META.set(True)
    try:
        with torch.device("meta"), _SkipFills():
            yield
    finally:
        _ON_META.reset(token)


def _meta_net(net: Net) -> nn.Module:
    """``net`` itself (a built net), or the net ``net()`` builds on the meta device."""
    if isinstance(net, nn.Module):
        return net
    with _on_meta():
        return net()


def _weights(module: nn.Module) -> tuple[int, int, int]:
    """(parameters, bytes of parameters and buffers, bytes of the trainable parameters)."""
    params = list(module.parameters())
    tensors = [*params, *module.buffers()]
    return (sum(p.numel() for p in params),
            sum(t.numel() * t.element_size() for t in tensors),
            sum(p.numel() * p.element_size() for p in params if p.requires_grad))


def _widest(module: nn.Module, scale: int) -> int:
    """The most channels any tensor of the net has: its convs' inputs and outputs (a concat
    feeds a conv of its width), any parameter's leading sizes, and the 3 x scale**2 channels
    of the tail."""
    widest = 3 * scale * scale
    for m in module.modules():
        for name in ("in_channels", "out_channels", "num_features"):
            value = getattr(m, name, None)
            if isinstance(value, int):
                widest = max(widest, value)
        for p in m.parameters(recurse=False):
            widest = max(widest, *p.shape[:2]) if p.dim() else widest
    return widest


def _leaves(module: nn.Module) -> int:
    return sum(1 for m in module.modules() if next(m.children(), None) is None)


def _state_on_meta(module: nn.Module) -> dict[str, torch.Tensor]:
    """Meta stand-ins of a built net's parameters and buffers (for ``functional_call``)."""
    state: dict[str, torch.Tensor] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        state[name] = torch.empty(p.shape, dtype=p.dtype, device="meta",
                                  requires_grad=p.requires_grad)
    for name, b in module.named_buffers(remove_duplicate=False):
        state[name] = torch.empty(b.shape, dtype=b.dtype, device="meta")
    return state


def _trace(module: nn.Module, x: torch.Tensor, train: bool) -> int:
    """Peak bytes one forward (``train``: forward + loss + backward) of ``module`` on ``x``
    allocates, traced on the meta device."""
    on_meta = all(t.device.type == "meta" for t in (*module.parameters(), *module.buffers()))
    state = None if on_meta else _state_on_meta(module)
    was_training = module.training
    module.train(train)
    trace = AllocationTrace()
    try:
        with contextlib.ExitStack() as stack:
            if not train:
                stack.enter_context(torch.no_grad())
            stack.enter_context(trace)
            out = (module(x) if state is None
                   else torch.func.functional_call(module, state, (x,)))
            if train:
                loss = out.abs().mean()  # like the L1 loss: one output-sized temporary
                del out
                loss.backward()
                del loss
            else:
                del out
    finally:
        module.train(was_training)
    return trace.peak_bytes
