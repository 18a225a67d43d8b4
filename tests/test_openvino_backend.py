"""The openvino measurement backend (proxies.measure.runtime through the latency/memory
proxies, the profile command, the DARTS lookup table and a trial's measurement).

The tests that run OpenVINO skip with the reason when the optional package is not installed
(``pip install -e ".[openvino]"``; CI installs it); the refusals run without it.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import proxies.measure.runtime as rt
from proxies.export.check import ExportCheckError
from proxies.measure.backends import backend_reason, check_backend
from proxies.measure.latency import measure_latency, measure_latency_ratio
from proxies.measure.memory import measure_peak_memory, measure_peak_memory_or_torch
from proxies.measure.settings import DeviceUnavailable, MeasureSettings

MISSING = 'the openvino package is not installed (pip install -e ".[openvino]")'


def on_ov(side: int, **kwargs: Any) -> MeasureSettings:
    """OpenVINO on the CPU at ``side`` x ``side``, one thread."""
    fields = {"device": "cpu", "threads": 1, "backend": "openvino", **kwargs}
    return MeasureSettings(lr_size=(side, side), **fields)


def _net(width: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 3, 3, padding=1)).eval()


@pytest.fixture
def ov() -> Any:
    return pytest.importorskip(
        "openvino", reason='the openvino package is not installed; pip install -e ".[openvino]"')


@pytest.fixture
def no_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import openvino`` fails and ``find_spec`` finds nothing, as without the package."""
    for name in [m for m in sys.modules if m == "openvino" or m.startswith("openvino.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setattr(rt, "_OV_CORE", [])


# -- refusals (no OpenVINO needed) -------------------------------------------------------------


def test_bad_settings_for_openvino_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"got 'tvm'; allowed: torch, onnxruntime, openvino"):
        check_backend("tvm")
    with pytest.raises(ValueError, match=r"got 'tensorrt'; .*tensorrt backend is not implemented"):
        check_backend("tensorrt", "measure.backend")
    if backend_reason("openvino") is not None:
        pytest.skip("the dtype and device checks need the openvino package")
    with pytest.raises(ValueError, match=r"dtype: got 'float16'; backend openvino .*'float32'"):
        on_ov(16, dtype="float16")
    with pytest.raises(ValueError, match=r"device: got 'cuda:0'; backend openvino measures on "
                                         r"the CPU only .*Intel GPUs"):
        on_ov(16, device="cuda:0")
    # "auto" resolved to CUDA reaches the runner: refused there before anything is compiled
    cuda = torch.device("cuda", 0)
    with pytest.raises(DeviceUnavailable, match=r"device=cuda:0: backend openvino .*'cpu'"), \
            rt.ov_runner(_net(4), on_ov(16), cuda):
        pass


def test_without_the_package_openvino_is_refused_with_the_pip_install(no_openvino, capsys):
    from proxies.profile.command import main

    assert backend_reason("openvino") == MISSING
    with pytest.raises(ValueError, match=r"backend: got 'openvino'; the openvino package is not "
                                         r"installed \(pip install -e \"\.\[openvino\]\"\)"):
        MeasureSettings(backend="openvino")
    with pytest.raises(ValueError, match=r'pip install -e "\.\[openvino\]"'):
        rt._openvino()
    # the profile command: the only backend asked for is skipped, exit status 2 with the reason
    assert main(["span_ntire2024", "--backend", "openvino", "--no-memory"]) == 2
    assert f"error: --backend: no backend can measure here: openvino: {MISSING}" in (
        capsys.readouterr().err)


# -- measuring on OpenVINO ------------------------------------------------------------------------


@pytest.fixture
def compiled(ov, monkeypatch) -> list[dict[str, Any]]:
    """Every model OpenVINO compiles while the test runs, and how many inferences each ran
    through the runner (no ONNX Runtime session may run a timed net meanwhile)."""
    made: list[dict[str, Any]] = []
    real_runner = rt.ov_runner

    @contextlib.contextmanager
    def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with real_runner(*args, **kwargs) as (run, used):
            record = made[-1]

            def counted() -> object:
                record["runs"] += 1
                return run()

            yield counted, used

    real_compile = rt._ov_compiled

    def spy(data: bytes, shape: tuple[int, ...], threads: int) -> Any:
        model = real_compile(data, shape, threads)
        made.append({"model": model, "shape": shape, "runs": 0})
        return model

    def no_ort(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("ONNX Runtime timed a net on backend openvino")

    monkeypatch.setattr(rt, "_ov_compiled", spy)
    monkeypatch.setattr(rt, "ov_runner", counting)
    monkeypatch.setattr(rt, "ort_runner", no_ort)
    return made


def test_openvino_latency_runs_a_compiled_model_with_the_settings(ov, compiled):
    """The timed runs are OpenVINO's: one model compiled for the CPU at the input size with
    one inference thread, one stream, the latency hint and f32 ran warm-up + timed runs."""
    small = _net(4)
    lat = measure_latency(small, on_ov(24, rounds=1, runs_per_round=5, warmup=1))
    assert lat.backend == "openvino" and lat.runs == 5 and lat.threads == 1
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    (made,) = compiled
    assert made["runs"] == 1 + 5 and made["shape"] == (1, 3, 24, 24)
    model = made["model"]
    assert model.get_property("EXECUTION_DEVICES") == ["CPU"]
    assert model.get_property("INFERENCE_NUM_THREADS") == 1
    assert model.get_property("NUM_STREAMS") == 1
    assert str(model.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert model.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    x = torch.randn(1, 3, 24, 24)
    got = model({"lr": x.numpy()})["sr"]
    with torch.no_grad():
        np.testing.assert_allclose(got, small(x).numpy(), rtol=1e-4, atol=1e-5)
    assert rt._fingerprint(small, 3) in rt._EXPORTS  # the export cache ONNX Runtime uses too


def test_openvino_ratio_interleaves_and_memory_is_na_with_the_reason(compiled):
    small, big = _net(4), _net(48)
    ratio = measure_latency_ratio(big, small, on_ov(48, rounds=3, runs_per_round=3, warmup=1))
    assert ratio.model.backend == ratio.reference.backend == "openvino"
    assert ratio.ratio_median > 1.0 and len(ratio.round_ratios) == 3
    assert [m["runs"] for m in compiled] == [1 + 9, 1 + 9]  # one compiled model per net
    mem = measure_peak_memory(big, on_ov(48))
    assert (mem.backend, mem.method) == ("openvino", rt.OV_PEAK_MEMORY_REASON)
    assert not mem.available and math.isnan(mem.peak_memory_mib) and mem.weights_mib > 0
    assert len(compiled) == 2  # nothing compiled for a figure that is not taken
    # a caller that needs a number (lookup table, trial) gets torch eager's, and is told so
    fallback = measure_peak_memory_or_torch(big, on_ov(48))
    assert fallback.backend == "torch" and fallback.peak_memory_mib > 0
    assert fallback.method.endswith(f"(fallback: {rt.OV_PEAK_MEMORY_REASON})")


def test_a_wrong_openvino_output_is_refused_before_timing(ov, monkeypatch):
    """The compiled model's output is checked against PyTorch's on the timed input: another
    net's file (different weights) is refused, naming the difference and the bound."""
    net, other = _net(4), _net(4, seed=1)
    wrong = rt.exported_onnx(other)
    monkeypatch.setattr(rt, "exported_onnx", lambda model, channels=3: wrong)
    with pytest.raises(ExportCheckError, match=r"backend openvino: Sequential's OpenVINO output "
                       r"for input \[1, 3, 16, 16\] differs from PyTorch's on the same input by "
                       r"max abs [0-9.e-]+; allowed: <= 0\.0001 \(0\.0001 x data range\)"):
        measure_latency(net, on_ov(16, rounds=1, runs_per_round=1, warmup=0))


# -- the places that measure ------------------------------------------------------------------


def test_profile_command_compares_every_pair_of_runtimes(ov, tmp_path, capsys):
    from proxies.profile.command import main
    from search_space import CellGene, Genotype

    path = tmp_path / "tiny.json"
    path.write_text(Genotype(scale=2, width=8, cells=(
        CellGene("erb", ("conv3x3", "conv3x3"), act="relu"),)).to_json())
    argv = [str(path), "--reference", "none", "--size", "16", "--rounds", "1",
            "--runs-per-round", "2", "--warmup", "1", "--threads", "1",
            "--backend", "torch", "onnxruntime", "openvino"]
    assert main([*argv, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["settings"]["backend"] == "torch" and payload["skipped_backends"] == {}
    (row,) = payload["backends"]["openvino"]
    assert row["latency_ms"] > 0 and math.isnan(row["peak_memory_mib"])
    assert [c["backends"] for c in payload["comparisons"]] == [  # every pair, in order
        ["torch", "onnxruntime"], ["torch", "openvino"], ["onnxruntime", "openvino"]]
    assert payload["comparison"] == payload["comparisons"][0]
    assert main(argv) == 0  # the table: n/a for the memory, and the footer says why
    out = capsys.readouterr().out
    table = out.split("### openvino")[1]
    assert "n/a" in table.splitlines()[4]
    assert "backend openvino " in table and "inference threads 1, 1 stream" in table
    assert "peak memory: n/a (OpenVINO's CPU plugin" in table
    assert "### torch vs openvino (same process)" in out
    assert "### onnxruntime vs openvino (same process)" in out


def test_lookup_table_and_trial_measure_on_openvino(ov, tmp_path, compiled):
    """The DARTS lookup table (own cache file, memory from torch eager) and a trial's
    measurement (``measure.backend=openvino``) time their nets on OpenVINO."""
    from search_space import CellGene, Genotype
    from searchers.common.sections import MeasureSection
    from searchers.differentiable.latency_table import HardwareTable
    from searchers.trials.trial import measure_genotype
    from searchers.trials.trial_config import ProxyConfig

    table = HardwareTable(on_ov(16, rounds=1, runs_per_round=2, warmup=1), cache_dir=tmp_path)
    assert table.path is not None and table.path.name.endswith("_openvino.json")
    entry = table.measure("conv:conv3x3:8x8@16x16", nn.Conv2d(8, 8, 3, padding=1), channels=8)
    assert entry.latency_ms > 0 and entry.memory_mib > 0  # torch eager's figure
    assert compiled[-1]["shape"] == (1, 8, 16, 16) and compiled[-1]["runs"] == 1 + 2

    section = MeasureSection(device="cpu", lr_size=16, runs=2, warmup=1, threads=1,
                             backend="openvino")
    genotype = Genotype(scale=2, width=8, cells=(
        CellGene("erb", ("conv3x3", "conv3x3"), act="relu"),))
    measured = measure_genotype(genotype, ProxyConfig(), section)
    assert measured.latency_ms > 0 and measured.memory_mib > 0
    assert compiled[-1]["shape"] == (1, 3, 16, 16) and compiled[-1]["runs"] == 1 + 2
