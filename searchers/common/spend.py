"""What a search spends, in the unit its budget is given in (``cpu_seconds``): the CPU time of
this process, all its threads, on a CPU; the wall time on a CUDA device (GPU-seconds: the host
mostly waits there). Everything the method does counts (data loading, the hardware table, the
sampler, training, measuring, selecting), except what a cache spares it.

A :class:`SpendMeter` is read lap by lap: an Optuna worker charges each trial with the lap that
ends with it (its sampling and the previous trial's bookkeeping included), a DARTS search adds
its laps to the total its checkpoint carries over a kill."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["SpendMeter", "spent_seconds"]


def spent_seconds(device: Any = "cpu") -> float:
    """The process's clock for ``device``: CPU seconds (``time.process_time``) on a CPU, wall
    seconds (``time.perf_counter``) on a CUDA device."""
    kind = getattr(device, "type", str(device)).split(":")[0]
    return time.perf_counter() if kind == "cuda" else time.process_time()


class SpendMeter:
    """Laps of :func:`spent_seconds` on one device, from construction (or the last lap)."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device
        self.mark = spent_seconds(device)

    def lap(self) -> float:
        """The seconds spent since the last lap (or construction); starts the next lap."""
        now = spent_seconds(self.device)
        lap, self.mark = now - self.mark, now
        return lap

    def peek(self) -> float:
        """The seconds spent in the current lap, without ending it."""
        return spent_seconds(self.device) - self.mark
