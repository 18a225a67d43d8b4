"""Tests of proxies.measure.latency: structure, validation, bookkeeping. No assertion depends on
speed."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable

import pytest
import torch
from torch import nn

import proxies.measure.latency as latency_mod
from proxies.measure.latency import (
    LatencyRatioResult,
    LatencyResult,
    measure_latency,
    measure_latency_ratio,
)
from proxies.measure.settings import resolve_device

SHAPE = (1, 3, 16, 16)
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def tiny_net(width: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1)
    )


class Recorder(nn.Module):
    """Tiny conv net that records the state it runs under; optionally logs its name."""

    def __init__(self, name: str = "net", log: list[str] | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.name, self.log = name, log
        self.calls: list[dict[str, object]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(
            {
                "training": self.training,
                "conv_training": self.conv.training,
                "inference": torch.is_inference_mode_enabled(),
                "threads": torch.get_num_threads(),
                "x_device": x.device,
                "x_dtype": x.dtype,
                "shape": tuple(x.shape),
            }
        )
        if self.log is not None:
            self.log.append(self.name)
        return self.conv(x)


class Sleeper(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x + 1


def check_stats(r: LatencyResult) -> None:
    values = [r.median_ms, r.p10_ms, r.p90_ms, r.mean_ms, r.min_ms]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert r.min_ms <= r.p10_ms <= r.median_ms <= r.p90_ms
    assert r.min_ms <= r.mean_ms and r.std_ms >= 0


def test_result_fields_and_order() -> None:
    r = measure_latency(tiny_net(), SHAPE, runs=5, warmup=1)
    assert isinstance(r, LatencyResult)
    assert (r.runs, r.warmup, r.device, r.input_shape) == (5, 1, "cpu", SHAPE)
    assert r.threads == torch.get_num_threads()
    check_stats(r)
    d = r.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(LatencyResult)}
    json.dumps(d)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.runs = 3  # type: ignore[misc]


def test_statistics_of_known_times(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ms = [float(v) for v in range(1, 11)]
    monkeypatch.setattr(latency_mod, "_time_runs", lambda fn, dev, runs, max_s=None: fake_ms)
    r = measure_latency(tiny_net(), SHAPE, runs=10, warmup=0)
    assert r.median_ms == pytest.approx(5.5) and r.mean_ms == pytest.approx(5.5)
    assert (r.p10_ms, r.p90_ms, r.min_ms) == pytest.approx((1.9, 9.1, 1.0))
    assert r.std_ms == pytest.approx(math.sqrt(8.25))  # population std
    assert r.runs == 10


def test_runs_warmup_eval_and_inference_mode() -> None:
    model = Recorder().train()
    measure_latency(model, SHAPE, runs=4, warmup=3)
    assert len(model.calls) == 7  # timed as given (already on the CPU in float32)
    for call in model.calls:
        assert call["training"] is False and call["conv_training"] is False
        assert call["inference"] is True
        assert call["shape"] == SHAPE and call["x_dtype"] == torch.float32
    assert model.training and model.conv.training


def test_mixed_module_modes_restored() -> None:
    model = Recorder().train()
    model.conv.eval()
    measure_latency(model, SHAPE, runs=1, warmup=0)
    assert model.training is True and model.conv.training is False


def test_threads_applied_and_restored() -> None:
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    model = Recorder()
    r = measure_latency(model, SHAPE, runs=2, warmup=1, threads=target)
    assert r.threads == target
    assert {c["threads"] for c in model.calls} == {target}
    assert torch.get_num_threads() == before


def test_state_restored_after_forward_error() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    before = torch.get_num_threads()
    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        measure_latency(model, SHAPE, runs=2, warmup=0, threads=2 if before == 1 else 1)
    assert torch.get_num_threads() == before and model.training


def test_max_seconds_caps_runs() -> None:
    # Each run sleeps >= 20 ms, so a 50 ms budget allows at most 3 runs whatever the load.
    r = measure_latency(Sleeper(0.02), SHAPE, runs=1000, warmup=0, max_seconds=0.05)
    assert 1 <= r.runs <= 3
    assert r.min_ms >= 19.0  # the timer reports milliseconds


def test_max_seconds_still_does_one_run() -> None:
    r = measure_latency(tiny_net(), SHAPE, runs=50, warmup=0, max_seconds=1e-9)
    assert r.runs == 1 and r.std_ms == 0.0


def test_caller_model_not_cast() -> None:
    model = Recorder()
    r = measure_latency(model, SHAPE, runs=2, warmup=0, dtype=torch.float64)
    assert model.calls == []  # a float64 copy was timed
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    check_stats(r)


@pytest.mark.parametrize(
    ("kwargs", "name", "shown"),
    [
        ({"runs": 0}, "runs", "0"),
        ({"runs": 2.5}, "runs", "2.5"),
        ({"warmup": -1}, "warmup", "-1"),
        ({"threads": 0}, "threads", "0"),
        ({"max_seconds": 0}, "max_seconds", "0"),
        ({"max_seconds": -1.5}, "max_seconds", "-1.5"),
        ({"input_shape": (3, 16, 16)}, "input_shape", "(3, 16, 16)"),
        ({"input_shape": (1, 3, 0, 16)}, "input_shape", "(1, 3, 0, 16)"),
        ({"dtype": torch.int64}, "dtype", "torch.int64"),
        ({"device": "tpu"}, "device", "'tpu'"),
        ({"device": "not a device"}, "device", "'not a device'"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], name: str, shown: str) -> None:
    kwargs = {"input_shape": SHAPE, "runs": 1, "warmup": 0, **kwargs}
    with pytest.raises(ValueError) as info:
        measure_latency(tiny_net(), **kwargs)  # type: ignore[arg-type]
    assert name in str(info.value) and shown in str(info.value)


def test_cuda_requested_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"'cuda:0'.*CUDA.*is_available\(\) is False"):
        resolve_device("cuda:0")
    with pytest.raises(RuntimeError, match="CUDA"):
        measure_latency(tiny_net(), SHAPE, device="cuda", runs=1)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_resolve_device_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_ratio_against_itself() -> None:
    net = tiny_net()
    r = measure_latency_ratio(net, net, SHAPE, rounds=4, runs_per_round=2, warmup=1)
    assert isinstance(r, LatencyRatioResult)
    assert math.isfinite(r.ratio_median) and r.ratio_median > 0
    assert r.ratio_p10 <= r.ratio_median <= r.ratio_p90
    assert len(r.round_ratios) == 4 and all(v > 0 for v in r.round_ratios)
    for part in (r.model, r.reference):
        check_stats(part)
        assert (part.runs, part.warmup, part.input_shape) == (8, 1, SHAPE)
    json.dumps(r.to_dict())


def test_ratio_interleaves_and_alternates_order() -> None:
    log: list[str] = []
    model, ref = Recorder("model", log), Recorder("ref", log)
    measure_latency_ratio(model, ref, SHAPE, rounds=3, runs_per_round=2, warmup=1)
    assert sorted(log[:2]) == ["model", "ref"]  # one warm-up run each
    r0, r1 = ["ref", "ref", "model", "model"], ["model", "model", "ref", "ref"]
    assert log[2:] == r0 + r1 + r0


def test_ratio_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    per_run_ms = {"model": 3.0, "ref": 1.5}

    def fake_time_runs(
        fn: Callable[[], object], device: torch.device, runs: int, max_seconds: float | None = None
    ) -> list[float]:
        times = []
        for _ in range(runs):
            fn()
            times.append(per_run_ms[log[-1]])
        return times

    monkeypatch.setattr(latency_mod, "_time_runs", fake_time_runs)
    model, ref = Recorder("model", log), Recorder("ref", log)
    r = measure_latency_ratio(model, ref, SHAPE, rounds=3, runs_per_round=2, warmup=0)
    assert r.round_ratios == (2.0, 2.0, 2.0) and r.ratio_median == 2.0
    assert r.model.median_ms == 3.0 and r.reference.median_ms == 1.5


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"rounds": 0}, "rounds"), ({"runs_per_round": 0}, "runs_per_round")]
)
def test_ratio_invalid_arguments(kwargs: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got 0"):
        measure_latency_ratio(tiny_net(), tiny_net(), SHAPE, **kwargs)  # type: ignore[arg-type]


@requires_cuda
def test_cuda_resolve_device() -> None:
    assert resolve_device("cuda") == torch.device("cuda", torch.cuda.current_device())
    assert resolve_device("auto").type == "cuda"
    with pytest.raises(ValueError, match="index"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@requires_cuda
def test_cuda_latency_times_a_copy_of_a_cpu_model() -> None:
    model = Recorder().train()
    r = measure_latency(model, SHAPE, device="cuda", runs=5, warmup=2)
    assert r.device.startswith("cuda") and r.threads is None and r.runs == 5
    check_stats(r)
    assert model.calls == [] and model.training
    assert all(p.device.type == "cpu" for p in model.parameters())


@requires_cuda
def test_cuda_latency_uses_a_model_already_on_the_device() -> None:
    model = Recorder().to(torch.device("cuda")).train()
    r = measure_latency(model, SHAPE, device="cuda", runs=3, warmup=1)
    assert len(model.calls) == 4
    assert all(str(c["x_device"]).startswith("cuda") and not c["training"] for c in model.calls)
    assert all(p.device.type == "cuda" for p in model.parameters()) and model.training
    check_stats(r)


@requires_cuda
def test_cuda_event_timing_reports_milliseconds() -> None:
    r = measure_latency(Sleeper(0.02), SHAPE, device="cuda", runs=2, warmup=1)
    assert r.min_ms >= 19.0  # end event is recorded after the 20 ms host sleep


@requires_cuda
def test_cuda_ratio_against_itself() -> None:
    net = tiny_net()
    r = measure_latency_ratio(net, net, SHAPE, device="cuda", rounds=3, runs_per_round=3)
    assert math.isfinite(r.ratio_median) and r.ratio_median > 0
    assert r.model.device.startswith("cuda") and r.model.runs == 9
