"""Several processes, one training: PyTorch's DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node=N searchers/retrain.py ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`from_env` reads
them (no ``WORLD_SIZE``, or 1: a plain single process, no process group, exactly as without
torchrun) and :func:`init` starts the process group: NCCL on CUDA (each process on
``cuda:LOCAL_RANK``), Gloo on the CPU. :class:`Dist` carries the rank and the few collectives
the training loop needs (all of them no-ops in a single process).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist

logger = logging.getLogger(__name__)

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedError(ValueError):
    """The torchrun environment is incomplete or inconsistent."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process (a process group is running)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files, logs and validates."""
        return self.rank == 0

    def _device(self) -> torch.device:
        if tdist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def mean(self, value: float) -> float:
        """``value`` averaged over the ranks (float64 all-reduce)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._device())
        tdist.all_reduce(t)
        return float(t.item()) / self.world_size

    def all_true(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on every rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._device())
        tdist.all_reduce(t, op=tdist.ReduceOp.MIN)
        return bool(t.item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; e.g. a checkpoint read on rank 0 only)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0, device=self._device())
        return box[0]

    def first_error(self, error: str | None) -> str | None:
        """The lowest rank's error message, on every rank (``None`` when no rank failed): a
        failure of one rank's setup stops every rank instead of leaving them waiting."""
        if not self.enabled:
            return error
        errors: list[Any] = [None] * self.world_size
        tdist.all_gather_object(errors, error)
        return next((e for e in errors if e is not None), None)

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()


def _env_int(name: str) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(
            f"{name}={raw!r}: torchrun sets {', '.join(ENV_VARS)} to integers; launch with "
            "torchrun --nproc_per_node=N searchers/retrain.py ..., or unset WORLD_SIZE for a "
            "single process") from None


def from_env() -> Dist:
    """The :class:`Dist` of torchrun's environment; a single process without ``WORLD_SIZE``."""
    if "WORLD_SIZE" not in os.environ:
        return Dist()
    world = _env_int("WORLD_SIZE")
    if world < 1:
        raise DistributedError(f"WORLD_SIZE={world}: at least 1; launch with torchrun "
                               "--nproc_per_node=N (N >= 1)")
    if world == 1:
        return Dist()
    rank = _env_int("RANK")
    local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is not in [0, WORLD_SIZE={world}); launch with "
                               "torchrun, which numbers the processes")
    return Dist(rank=rank, world_size=world, local_rank=local)


def init(dist: Dist, device: torch.device) -> torch.device:
    """Start the process group for ``dist`` (a no-op for one process) and return this rank's
    device: ``cuda:LOCAL_RANK`` with NCCL where ``device`` is CUDA, the CPU with Gloo."""
    if not dist.enabled:
        return device
    if device.type == "cuda":
        if dist.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK={dist.local_rank} but this host has {torch.cuda.device_count()} "
                "CUDA device(s); pass --nproc_per_node at most the number of GPUs per node")
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend, init_method="env://")
    logger.info("rank %d of %d (local %d) on %s, backend %s", dist.rank, dist.world_size,
                dist.local_rank, device, backend)
    return device


def close(dist: Dist) -> None:
    if dist.enabled and tdist.is_initialized():
        tdist.destroy_process_group()


__all__ = ["Dist", "DistributedError", "close", "from_env", "init"]
