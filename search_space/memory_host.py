"""What the machine has for new allocations (:func:`available_bytes`), for the estimates of
:mod:`search_space.memory`: on CUDA the device's free memory (``torch.cuda.mem_get_info``); on
the host ``MemAvailable`` of ``/proc/meminfo``, capped by a cgroup's memory limit minus its
working set (a container's limit); elsewhere unknown."""

from __future__ import annotations

from pathlib import Path

import torch


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it >= 1 (``"1.5 GiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")




def available_bytes(device: str | torch.device = "cpu") -> tuple[int | None, str]:
    """``(bytes, where)``: the memory free for new allocations on ``device`` and how that was
    found; ``(None, reason)`` where it cannot be known (nothing is refused then)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return None, f"{dev}: CUDA is not available"
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free), f"{dev} has {format_bytes(free)} free (torch.cuda.mem_get_info)"
    if dev.type != "cpu":
        return None, f"{dev}: its free memory is not known"
    found = _meminfo_available()
    limit = _cgroup_available()
    if found is None and limit is None:
        return None, "this host's available memory is not known (no /proc/meminfo)"
    if limit is not None and (found is None or limit < found):
        return limit, (f"this host has {format_bytes(limit)} available (its cgroup's memory "
                       "limit minus usage)")
    assert found is not None
    return found, f"this host has {format_bytes(found)} available (MemAvailable)"


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _inactive_file(path: Path, key: str) -> int:
    """Page cache the kernel reclaims before it kills (``memory.stat``'s inactive file)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """A cgroup's memory limit minus its working set (v2, then v1); None without a limit."""
    for limit_file, usage_file, stat_key, folder in (
            ("memory.max", "memory.current", "inactive_file", root),
            ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file",
             root / "memory")):
        limit = _read_int(folder / limit_file)
        usage = _read_int(folder / usage_file)
        if limit is None or usage is None or limit >= 2**60:  # v1's "no limit" is ~2**63
            continue
        working = usage - _inactive_file(folder / "memory.stat", stat_key)
        return max(0, limit - working)
    return None
