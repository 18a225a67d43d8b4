"""Suite-wide settings.

Each pytest process (each xdist worker) gets a host-wide lock folder of its own
(``SRNAS_LOCK_DIR``, :mod:`proxies.measure.isolation`), inherited by the commands its tests start.
With one shared folder a latency measurement in one worker would stall the training in the
other and the two workers would run one after the other, whenever either measures; within a
worker, the processes a test starts still isolate their measurements from each other. A
folder set by the caller is kept.

Each process also runs one intra-op thread (``OMP_NUM_THREADS=1`` unless set): the suite runs
two workers on two cores, and two threads each oversubscribe them (the four test files timed
both ways, twice each, on 2 cores: 142-162 s with the default threads, 133-137 s with one).
Code that sets a thread count (``threads=``, ``measure.threads``) still gets it.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_OWN: list[str] = []


def pytest_configure(config):
    # before torch is imported here, and inherited by the xdist workers and every command a
    # test starts
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    xdist_controller = bool(config.getoption("numprocesses", None)) and not hasattr(
        config, "workerinput")  # its workers would inherit the folder: leave it to them
    if not xdist_controller and not os.environ.get("SRNAS_LOCK_DIR", "").strip():
        folder = tempfile.mkdtemp(prefix="srnas-locks-test-")
        os.environ["SRNAS_LOCK_DIR"] = folder
        _OWN.append(folder)


def pytest_unconfigure(config):
    while _OWN:
        shutil.rmtree(_OWN.pop(), ignore_errors=True)
        os.environ.pop("SRNAS_LOCK_DIR", None)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A hardware lookup table at tiny settings (16x16 px, 2 runs), one per test module."""
    from proxies.measure.settings import MeasureSettings
    from searchers.differentiable.latency_table import HardwareTable

    settings = MeasureSettings(lr_size=(16, 16), rounds=1, runs_per_round=2, warmup=1, threads=1)
    return HardwareTable(settings, tmp_path_factory.mktemp("lut"))
