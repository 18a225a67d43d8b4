"""The onnxruntime measurement backend (proxies.measure.runtime through the latency/memory
proxies)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

ort = pytest.importorskip("onnxruntime")

from proxies.measure.backends import check_backend  # noqa: E402
from proxies.measure.latency import measure_latency, measure_latency_ratio  # noqa: E402
from proxies.measure.memory import measure_peak_memory  # noqa: E402
from proxies.measure.profile_rows import ProfileRow  # noqa: E402
from proxies.measure.runtime import _EXPORTS, _fingerprint, exported_onnx  # noqa: E402
from proxies.measure.settings import MeasureSettings  # noqa: E402
from proxies.profile.table import compare_backends  # noqa: E402


def on_ort(side: int, **kwargs: Any) -> MeasureSettings:
    """ONNX Runtime on the CPU at ``side`` x ``side``, one thread."""
    fields = {"device": "cpu", "threads": 1, "backend": "onnxruntime", **kwargs}
    return MeasureSettings(lr_size=(side, side), **fields)


def _net(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 3, 3, padding=1)).eval()


def test_bad_backends_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"backend: got 'tvm'; allowed: torch, onnxruntime"):
        check_backend("tvm")
    with pytest.raises(ValueError, match=r"measure.backend: got 'tensorrt'; .*tensorrt"):
        check_backend("tensorrt", "measure.backend")
    with pytest.raises(ValueError, match=r"backend: got 'tvm'; allowed: torch, onnxruntime"):
        MeasureSettings(backend="tvm")  # the settings run the same check, once
    with pytest.raises(ValueError, match="float32"):
        on_ort(16, dtype="float64")


@pytest.fixture
def sessions(monkeypatch):
    """Every ONNX Runtime session made while the test runs, each counting its runs and keeping
    its last input and outputs."""
    made: list[Any] = []

    class Spy(ort.InferenceSession):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.runs, self.last = 0, None
            made.append(self)

        def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
            out = super().run(output_names, input_feed, run_options)
            self.runs += 1
            self.last = (input_feed, out)
            return out

    monkeypatch.setattr(ort, "InferenceSession", Spy)
    return made


def test_onnxruntime_latency_runs_in_an_onnxruntime_session(sessions):
    """The timed runs are ONNX Runtime's: one session on the CPU provider with the settings'
    thread count ran warm-up + timed runs, and its outputs are the net's."""
    small = _net(4)
    lat = measure_latency(small, on_ort(24, rounds=1, runs_per_round=5, warmup=1))
    assert lat.backend == "onnxruntime" and lat.runs == 5 and lat.threads == 1
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    timed = [s for s in sessions if s.runs == 1 + 5]
    assert len(timed) == 1, [s.runs for s in sessions]
    (session,) = timed
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 1
    (feed,), (out,) = session.last[0].values(), session.last[1]
    assert feed.shape == (1, 3, 24, 24)
    with torch.no_grad():
        expected = small(torch.from_numpy(feed)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert _fingerprint(small, 3) in _EXPORTS  # exported once, reused below


def test_onnxruntime_latency_ratio_and_memory_are_measured(sessions):
    small, big = _net(4), _net(48)
    ratio = measure_latency_ratio(big, small, on_ort(48, rounds=3, runs_per_round=3, warmup=1))
    assert ratio.model.backend == "onnxruntime" and ratio.ratio_median > 1.0
    assert sorted(s.runs for s in sessions)[-2:] == [1 + 9, 1 + 9]  # one session per net
    mem = measure_peak_memory(big, on_ort(64))
    assert mem.backend == "onnxruntime"
    if mem.available:  # Linux: RSS high-water mark; 48 x 64 x 64 float32 = 0.75 MiB live
        assert mem.method == "onnxruntime_rss_hwm" and mem.peak_memory_mib > 0.5
        arena_off = sessions[-1]  # the memory session: one warm-up run, one measured
        assert arena_off.runs == 2 and not arena_off.get_session_options().enable_cpu_mem_arena
    else:
        assert mem.method.startswith("unavailable:") and math.isnan(mem.peak_memory_mib)


def test_export_cache_follows_the_weights_and_ops_export_with_their_width():
    op = nn.Conv2d(8, 8, 3, padding=1).eval()
    first = exported_onnx(op, channels=8)
    assert exported_onnx(op, channels=8) is first
    with torch.no_grad():
        op.weight.add_(1.0)
    assert exported_onnx(op, channels=8) is not first


def test_compare_backends_counts_rank_changes():
    def rows(ms):
        return [ProfileRow(name=f"n{i}", scale=4, params_m=0, ntire_flops_g=0, macs_g=0,
                           ntire_activations_m=0, ntire_num_conv=0, latency_ms=v,
                           latency_ratio=v / ms[0]) for i, v in enumerate(ms)]

    cmp = compare_backends({"torch": rows([1.0, 2.0, 3.0]), "onnxruntime": rows([1.0, 3.0, 2.0])})
    assert cmp["rank_changes"] == 2 and cmp["max_rank_shift"] == 1
    assert cmp["spearman"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same nets"):
        compare_backends({"torch": rows([1.0, 2.0]), "onnxruntime": rows([1.0, 2.0, 3.0])})


def test_the_export_cache_is_keyed_by_content():
    """A second live copy of a net reuses its export; a weight changed in place, or another
    activation (same tensors), gives another one."""
    import copy

    a = _net(4)
    first = exported_onnx(a)
    b = copy.deepcopy(a)
    assert _fingerprint(b, 3) == _fingerprint(a, 3) and exported_onnx(b) is first
    with torch.no_grad():
        next(b.parameters()).add_(1.0)
    assert _fingerprint(b, 3) != _fingerprint(a, 3)
    c = copy.deepcopy(a)
    c[1] = nn.SiLU()  # the same tensors, another net
    assert _fingerprint(c, 3) != _fingerprint(a, 3)


def test_a_training_form_and_its_deployed_form_share_one_export():
    from search_space import Attention, CellGene, Genotype
    from search_space.network import build_model, deployed_form

    train = build_model(Genotype(scale=2, width=8, cells=(
        CellGene("erb", ("ecb3x3", "conv3x3"), Attention("none"), "relu"),))).eval()
    deployed = deployed_form(train)
    assert deployed is not train and _fingerprint(deployed, 3) != _fingerprint(train, 3)
    assert exported_onnx(train) is exported_onnx(deployed)
