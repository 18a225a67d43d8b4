"""Memory estimates before building or running (issue 28, :mod:`search_space.memory`).

A genotype, an input size, a batch or a patch that cannot fit is refused before anything large is
allocated: exit 2, one line naming the need, what the machine has and the fix, nothing written
(the rows use the bad-input table's checker, ``tests/test_bad_input.py``), and fast. The estimate
itself is checked against the CPU profiler's measured peak on a tiny net, and its bounds, trace
and switch one by one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_input import Case, _darts, _optuna, _refused, _retrain  # noqa: E402

from search_space import (  # noqa: E402
    Genotype,
    build_model,
    memory_host,  # noqa: E402
)
from search_space import memory as mem  # noqa: E402
from search_space.zoo import ZOO  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20

TINY = Genotype.from_dict({"scale": 2, "width": 8, "cells": [
    {"type": "erb", "ops": ["conv3x3", "conv3x3"], "attention": "pa"},
    {"type": "rlfb", "ops": ["conv3x3"] * 3, "attention": "none"}]})
"""A tiny net (every estimate here is traced in well under a second)."""


def _genotype_file(tmp: Path, **changes: object) -> Path:
    """rlfn_ntire's genotype with ``changes`` (its ESA-lite keeps its own hidden width)."""
    data = {**ZOO["rlfn_ntire"].to_dict(), **changes}
    path = tmp / "net.json"
    path.write_text(json.dumps(data))
    return path


def _wide(tmp: Path) -> Path:
    return _genotype_file(tmp, width=100000)


def _heavy(tmp: Path) -> Path:
    """A valid net of about 100 MiB of weights (width 256, four ERBs of two 7x7 convs)."""
    cell = {"type": "erb", "ops": ["conv7x7", "conv7x7"], "attention": "none"}
    path = tmp / "heavy.json"
    path.write_text(json.dumps({"scale": 4, "width": 256, "cells": [cell] * 4}))
    return path


def _retrain_file(make: Callable[[Path], Path], *overrides: str) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from searchers.training.retrain import main

        return main([str(make(tmp)), f"run.dir={tmp / 'runs'}", "run.name=existing",
                     *overrides])

    return run


def _evaluate_file(make: Callable[[Path], Path]) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from results.evaluate.command import main

        return main([str(make(tmp)), "--sets", "Set5", "--out", str(tmp / "runs" / "e.csv")])

    return run


def _export_file(make: Callable[[Path], Path]) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from results.export.command import main

        return main([str(make(tmp)), "--out", str(tmp / "runs" / "export")])

    return run


def _profile(*argv: str) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from proxies.profile.command import main

        return main(list(argv))

    return run


CASES = [
    Case("genotype width 100000 (retrain)", _retrain_file(_wide),
         ("Genotype.width", "100000", "<= 1024")),
    Case("genotype width 100000 (evaluate)", _evaluate_file(_wide),
         ("Genotype.width", "100000", "<= 1024")),
    Case("genotype width 100000 (export)", _export_file(_wide),
         ("Genotype.width", "100000", "<= 1024")),
    Case("genotype of 300 cells", _retrain_file(
        lambda t: _genotype_file(t, cells=[ZOO["rlfn_ntire"].to_dict()["cells"][0]] * 300)),
         ("Genotype.cells", "got 300", "at most 256 cells")),
    Case("profile at 40000x40000", _profile("rlfn_ntire", "--size", "40000x40000",
                                            "--no-latency"),
         ("rlfn_ntire's forward at --size 40000x40000", "needs at least", "available",
          "smaller --size")),
    Case("retrain batch of a million", _retrain("rlfn_ntire", "data.batch_size=1000000"),
         ("data.batch_size=1000000", "needs at least", "available", "lower data.batch_size")),
    Case("retrain patch of 40000 px", _retrain("rlfn_ntire", "data.patch_size=40000"),
         ("data.patch_size=40000", "needs at least", "available", "data.patch_size")),
    Case("darts batch of ten million", _darts("data.batch_size=10000000"),
         ("data.batch_size=10000000", "needs at least", "available", "search.memory_mode=sample")),
    Case("darts batch of ten million, sampled mode",
         _darts("data.batch_size=10000000", "search.memory_mode=sample"),
         ("data.batch_size=10000000", "needs at least", "available", "lower data.batch_size")),
    Case("darts width 100000", _darts("space.width=100000"),
         ("space.width", "100000", "<= 1024")),
    Case("darts 100000 cells", _darts("space.num_cells=100000"),
         ("num_cells", "100000", "<= 256")),
    Case("study width 100000", _optuna("space.widths=[16,100000]"),
         ("widths", "100000", "<= 1024")),
    Case("study batch of a million", _optuna("proxy.batch_size=1000000"),
         ("proxy.batch_size=1000000", "needs at least", "available")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_what_cannot_fit_is_refused_in_one_line(case, tmp_path, capsys):
    _refused(case, tmp_path, capsys)


@pytest.fixture
def small_host(monkeypatch):
    """This host has 64 MiB available (the refusals, not this machine's size, are tested)."""
    monkeypatch.setattr(mem, "available_bytes",
                        lambda device="cpu": (64 * MIB, "this host has 64.0 MiB available (test)"))


SMALL_HOST_CASES = [
    Case("weights over the host (retrain)", _retrain_file(_heavy),
         ("data.batch_size=16", "needs at least", "weights", "64.0 MiB available")),
    Case("weights over the host (evaluate)", _evaluate_file(_heavy),
         ("width 256, 4 cells", "weights", "64.0 MiB available", "smaller width")),
    Case("weights over the host (export)", _export_file(_heavy),
         ("width 256, 4 cells", "weights", "64.0 MiB available", "smaller width")),
    Case("supernet step over the host", _darts("data.batch_size=64", "data.patch_size=128"),
         ("supernet", "space.width=8", "data.batch_size=64", "needs about",
          "64.0 MiB available")),
]


@pytest.mark.parametrize("case", SMALL_HOST_CASES, ids=[c.name for c in SMALL_HOST_CASES])
def test_a_net_over_the_memory_is_refused_in_one_line(case, tmp_path, capsys, small_host):
    _refused(case, tmp_path, capsys)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[4]], ids=lambda c: c.name)
def test_the_refusals_allocate_nothing_and_take_a_second(case, tmp_path, capsys):
    """The two cases of the issue: a second run (imports warm) is refused within two seconds,
    which no allocation of the 17.9 GiB input or the 40 GB of weights would allow."""
    _refused(case, tmp_path, capsys)
    start = time.perf_counter()
    line = _refused(case, tmp_path, capsys)
    assert time.perf_counter() - start < 2.0, line


def test_the_profile_command_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "proxies.profile", "rlfn_ntire", "--size",
                           "40000x40000", "--no-latency"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "GiB" in lines[0], lines
    assert not any(tmp_path.iterdir())


# -- the estimate against a measurement ----------------------------------------------------------


def test_the_forward_estimate_is_within_a_factor_of_the_measured_peak():
    from proxies.measure.memory import measure_peak_memory
    from proxies.measure.settings import MeasureSettings

    torch.manual_seed(0)
    for side in (32, 64):  # the CPU's im2col path (small inputs) and oneDNN's
        est = mem.estimate_forward(lambda: build_model(TINY), (side, side), scale=2)
        got = measure_peak_memory(build_model(TINY).eval(),
                                  MeasureSettings(device="cpu", lr_size=(side, side)))
        ratio = est.activation_bytes / MIB / got.peak_memory_mib
        assert 0.8 <= ratio <= 3.0, (side, est, got)
        assert est.method == "trace" and est.params == sum(
            p.numel() for p in build_model(TINY).parameters())
        assert est.data_bytes == 3 * side * side * 4  # the input


def test_the_training_estimate_is_within_a_factor_of_the_measured_step():
    from proxies.measure.memory import measure_callable_peak_mib

    torch.manual_seed(0)
    model = build_model(TINY).train()
    lr, hr = torch.rand(4, 3, 24, 24), torch.rand(4, 3, 48, 48)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(lr), hr).backward()

    measured = measure_callable_peak_mib(step)
    est = mem.estimate_training(lambda: build_model(TINY), (24, 24), scale=2, batch=4)
    assert 0.8 <= est.activation_bytes / MIB / measured <= 2.0, (est, measured)
    trainable = 4 * sum(p.numel() for p in model.parameters())
    assert est.optimizer_bytes == mem.OPTIMIZER_FACTOR * trainable
    assert est.data_bytes == 4 * 3 * (24 * 24 + 48 * 48) * 4  # LR patches and HR targets
    # a built net (meta stand-ins of its weights) gives the same figure as a builder
    assert mem.estimate_training(model, (24, 24), scale=2, batch=4) == est


def test_a_sampled_supernet_is_traced_and_cheaper_than_the_full_one():
    from searchers.differentiable.mixed import ArchState
    from searchers.differentiable.supernet import SuperNet, SupernetSpec

    spec = SupernetSpec(scale=2, width=8, num_cells=1, cell_types=("erb",),
                        conv_candidates=("conv3x3", "conv5x5", "sep_conv3x3"),
                        attention_candidates=("none", "pa"))
    full = mem.estimate_training(lambda: SuperNet(spec, ArchState()), (16, 16), scale=2,
                                 batch=2)
    sampled = mem.estimate_training(lambda: SuperNet(spec, ArchState(sample_k=1)), (16, 16),
                                    scale=2, batch=2)
    assert full.method == sampled.method == "trace"
    assert sampled.weights_bytes == full.weights_bytes
    assert 0 < sampled.activation_bytes < full.activation_bytes


# -- the pieces ----------------------------------------------------------------------------------


def test_the_trace_counts_new_storages_until_they_die():
    x = torch.empty(10, 10, device="meta")  # 400 bytes, there before: not counted
    with mem.AllocationTrace() as trace:
        y = x * 2                 # +400
        y.add_(1)                 # in place: +0
        v = y.view(-1)            # a view: +0
        z = y + 1                 # +400 -> 800
        del y, v                  # -400
        w = z.relu()              # +400 -> 800
        assert trace.live_bytes == 800
        del z, w
    assert trace.peak_bytes == 800 and trace.live_bytes == 0


def test_data_that_cannot_fit_are_refused_before_the_net_is_built():
    def never() -> torch.nn.Module:
        raise AssertionError("built")

    with pytest.raises(mem.InsufficientMemory, match="needs at least .* GiB"):
        mem.require_forward(never, (40000, 40000), "cpu", scale=4, what="x", fix="y")


def test_a_small_net_is_accepted_without_a_trace(monkeypatch):
    def no_trace(*args: object) -> int:
        raise AssertionError("traced")

    monkeypatch.setattr(mem, "_trace", no_trace)
    est = mem.require_forward(lambda: build_model(TINY), (16, 16), "cpu", scale=2, what="x",
                              fix="y")
    assert est is not None and est.method == "upper bound"


def test_between_the_bounds_the_trace_decides(monkeypatch):
    exact = mem.estimate_forward(lambda: build_model(TINY), (64, 64), scale=2)
    for limit, refused in ((exact.total_bytes + 1, False), (exact.total_bytes - 1, True)):
        monkeypatch.setattr(mem, "available_bytes", lambda device="cpu", n=limit: (n, "test"))
        if refused:
            with pytest.raises(mem.InsufficientMemory, match="x needs about"):
                mem.require_forward(lambda: build_model(TINY), (64, 64), "cpu", scale=2,
                                    what="x", fix="y")
        else:
            got = mem.require_forward(lambda: build_model(TINY), (64, 64), "cpu", scale=2,
                                      what="x", fix="y")
            assert got is not None and (got.total_bytes, got.method) == (
                exact.total_bytes, "trace")


def test_the_switch_turns_every_check_off(monkeypatch):
    monkeypatch.setenv(mem.ENV_SWITCH, "off")
    assert mem.require_forward(lambda: build_model(TINY), (40000, 40000), "cpu", scale=2,
                               what="x", fix="y") is None
    assert mem.require_batch(10**6, (40000, 40000), scale=2, what="x", fix="y") is None
    monkeypatch.setenv(mem.ENV_SWITCH, "on")
    with pytest.raises(mem.InsufficientMemory):
        mem.require_batch(10**6, (40000, 40000), scale=2, what="x", fix="y")


def test_build_model_counts_the_weights_first(small_host, tmp_path):
    g = Genotype.load(_heavy(tmp_path))
    with pytest.raises(mem.InsufficientMemory,
                       match=r"width 256, 4 cells\) needs about 100\.\d MiB \(weights 100"):
        build_model(g)
    assert build_model(TINY) is not None  # a small net is built


def test_what_the_host_has(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000 kB\nMemFree:  10 kB\nMemAvailable:  500 kB\n")
    assert memory_host._meminfo_available(meminfo) == 500 * 1024
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("1000000\n")
    (v2 / "memory.current").write_text("600000\n")
    (v2 / "memory.stat").write_text("anon 400000\ninactive_file 100000\n")
    assert memory_host._cgroup_available(v2) == 1000000 - (600000 - 100000)
    (v2 / "memory.max").write_text("max\n")
    assert memory_host._cgroup_available(v2) is None  # no limit
    found, where = mem.available_bytes("cpu")
    assert found is None or (found > 0 and "available" in where)
    assert mem.format_bytes(1536 * MIB) == "1.5 GiB" and mem.format_bytes(12) == "12 B"
