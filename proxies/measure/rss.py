"""The resident-set high-water mark of this process, around one call: the RSS figure of
:mod:`proxies.measure.memory`'s ``rss_check`` and of the onnxruntime backend's peak memory
(:func:`proxies.measure.runtime.ort_peak_memory`). Linux only (``/proc/self/clear_refs`` and
``/proc/self/status``); elsewhere the figure is None.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
from collections.abc import Callable

__all__ = ["rss_peak_delta_mib"]

logger = logging.getLogger("proxies.measure.memory")  # its figures are the memory proxy's


def _read_status_kib() -> dict[str, int]:
    """``VmHWM`` and ``VmRSS`` (KiB) from ``/proc/self/status``."""
    values: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])
    if len(values) != 2:
        raise OSError(f"/proc/self/status lacks VmHWM/VmRSS (found {sorted(values)})")
    return values


def _malloc_trim() -> None:
    """Return freed heap memory to the OS (glibc), so the next peak needs fresh pages."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError) as exc:
        logger.debug("malloc_trim unavailable (%s); RSS delta may understate the peak", exc)


def rss_peak_delta_mib(forward: Callable[[], object]) -> float | None:
    """Rise of the resident-set high-water mark (MiB) over one ``forward()``; None if unknown."""
    if not sys.platform.startswith("linux"):
        logger.info(
            "rss_check needs Linux /proc (platform %s); rss_peak_delta_mib=None", sys.platform
        )
        return None
    gc.collect()
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")  # reset VmHWM to the current RSS
        before = _read_status_kib()
    except OSError as exc:
        logger.info("rss_check: cannot reset the peak RSS (%s); rss_peak_delta_mib=None", exc)
        return None
    if before["VmHWM"] - before["VmRSS"] > 1024:
        logger.info(
            "rss_check: VmHWM (%d KiB) did not reset to VmRSS (%d KiB); rss_peak_delta_mib=None",
            before["VmHWM"],
            before["VmRSS"],
        )
        return None
    out = forward()
    del out
    after = _read_status_kib()
    return (after["VmHWM"] - before["VmHWM"]) / 1024.0
