"""Tests of proxies.measure.latency and of the one settings object it takes
(proxies.measure.settings.MeasureSettings): structure, validation, bookkeeping, and ratios that
must hold (a net against itself is near 1, a net doing 8 times the work is far above it)."""

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
from proxies.measure.settings import MeasureSettings, resolve_device

SIZE = (16, 16)
SHAPE = (1, 3, *SIZE)
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


def alone(runs: int = 1, warmup: int = 0, **kwargs: object) -> MeasureSettings:
    """Settings timing a net alone: one round of ``runs`` runs after ``warmup``, on the CPU at
    16x16 unless ``kwargs`` say otherwise."""
    fields: dict[str, object] = {"device": "cpu", "lr_size": SIZE, **kwargs}
    return MeasureSettings(rounds=1, runs_per_round=runs, warmup=warmup, **fields)  # type: ignore[arg-type]


def interleaved(rounds: int, runs_per_round: int, warmup: int = 0,
                **kwargs: object) -> MeasureSettings:
    fields: dict[str, object] = {"device": "cpu", "lr_size": SIZE, **kwargs}
    return MeasureSettings(rounds=rounds, runs_per_round=runs_per_round,  # type: ignore[arg-type]
                           warmup=warmup, **fields)


def check_stats(r: LatencyResult) -> None:
    values = [r.median_ms, r.p10_ms, r.p90_ms, r.mean_ms, r.min_ms]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert r.min_ms <= r.p10_ms <= r.median_ms <= r.p90_ms
    assert r.min_ms <= r.mean_ms and r.std_ms >= 0


def test_result_fields_and_order() -> None:
    r = measure_latency(tiny_net(), alone(5, 1))
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
    r = measure_latency(tiny_net(), alone(10))
    assert r.median_ms == pytest.approx(5.5) and r.mean_ms == pytest.approx(5.5)
    assert (r.p10_ms, r.p90_ms, r.min_ms) == pytest.approx((1.9, 9.1, 1.0))
    assert r.std_ms == pytest.approx(math.sqrt(8.25))  # population std
    assert r.runs == 10


def test_runs_warmup_eval_and_inference_mode() -> None:
    model = Recorder().train()
    measure_latency(model, alone(4, 3))
    assert len(model.calls) == 7  # timed as given (already on the CPU in float32)
    for call in model.calls:
        assert call["training"] is False and call["conv_training"] is False
        assert call["inference"] is True
        assert call["shape"] == SHAPE and call["x_dtype"] == torch.float32
    assert model.training and model.conv.training


def test_mixed_module_modes_restored() -> None:
    model = Recorder().train()
    model.conv.eval()
    measure_latency(model, alone())
    assert model.training is True and model.conv.training is False


def test_threads_applied_and_restored() -> None:
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    model = Recorder()
    r = measure_latency(model, alone(2, 1, threads=target))
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
        measure_latency(model, alone(2, threads=2 if before == 1 else 1))
    assert torch.get_num_threads() == before and model.training


def test_max_seconds_caps_runs() -> None:
    # Each run sleeps >= 20 ms, so a 50 ms budget allows at most 3 runs whatever the load.
    r = measure_latency(Sleeper(0.02), alone(1000), max_seconds=0.05)
    assert 1 <= r.runs <= 3
    assert r.min_ms >= 19.0  # the timer reports milliseconds


def test_max_seconds_still_does_one_run() -> None:
    r = measure_latency(tiny_net(), alone(50), max_seconds=1e-9)
    assert r.runs == 1 and r.std_ms == 0.0


def test_caller_model_not_cast() -> None:
    model = Recorder()
    r = measure_latency(model, alone(2, dtype="float64"))
    assert model.calls == []  # a float64 copy was timed
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    check_stats(r)


@pytest.mark.parametrize(
    ("kwargs", "name", "shown"),
    [
        ({"runs_per_round": 0}, "runs_per_round", "0"),
        ({"rounds": 2.5}, "rounds", "2.5"),
        ({"rounds": True}, "rounds", "True"),
        ({"warmup": -1}, "warmup", "-1"),
        ({"threads": 0}, "threads", "0"),
        ({"lr_size": (16,)}, "lr_size", "(16,)"),
        ({"lr_size": (0, 16)}, "lr_size", "(0, 16)"),
        ({"complexity_size": (256, -1)}, "complexity_size", "(256, -1)"),
        ({"dtype": "int64"}, "dtype", "'int64'"),
        ({"dtype": torch.float64}, "dtype", "torch.float64"),
        ({"device": "tpu"}, "device", "'tpu'"),
        ({"device": "not a device"}, "device", "'not a device'"),
        ({"backend": "tvm"}, "backend", "'tvm'"),
        ({"backend": "tensorrt"}, "backend", "'tensorrt'"),
        ({"latency": "yes"}, "latency", "'yes'"),
    ],
)
def test_settings_are_validated_when_built(kwargs: dict[str, object], name: str,
                                           shown: str) -> None:
    """Every field is checked once, where the settings are built; the message names the field
    and the value received."""
    with pytest.raises(ValueError) as info:
        MeasureSettings(**kwargs)  # type: ignore[arg-type]
    assert name in str(info.value) and shown in str(info.value)


def test_settings_are_stored_normalised() -> None:
    s = MeasureSettings(device=" AUTO ", lr_size=[24, 32], rounds=3,  # type: ignore[arg-type]
                        runs_per_round=4)
    assert (s.device, s.lr_size, s.runs, s.input_shape(8)) == ("auto", (24, 32), 12,
                                                               (1, 8, 24, 32))
    assert MeasureSettings(device=torch.device("cpu")).device == "cpu"  # type: ignore[arg-type]
    assert MeasureSettings(device="cuda:1").device == "cuda:1"  # its form only: no GPU needed
    assert MeasureSettings(dtype="float16").torch_dtype == torch.float16


@pytest.mark.parametrize(
    ("kwargs", "name", "shown"),
    [
        ({"max_seconds": 0}, "max_seconds", "0"),
        ({"max_seconds": -1.5}, "max_seconds", "-1.5"),
        ({"channels": 0}, "channels", "0"),
    ],
)
def test_invalid_call_arguments(kwargs: dict[str, object], name: str, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        measure_latency(tiny_net(), alone(), **kwargs)  # type: ignore[arg-type]
    assert name in str(info.value) and shown in str(info.value)


def test_cuda_requested_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"'cuda:0'.*CUDA.*is_available\(\) is False"):
        resolve_device("cuda:0")
    with pytest.raises(RuntimeError, match="CUDA"):
        measure_latency(tiny_net(), alone(device="cuda"))
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_resolve_device_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


class Repeat(nn.Module):
    """``net`` applied ``k`` times to the same input: ``k`` times its work."""

    def __init__(self, net: nn.Module, k: int) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.k):
            out = self.net(x)
        return out


# About a millisecond of conv work per run at 64x64, one thread: well above the timer's jitter.
# Tolerances are wide, for a loaded 2-core machine: the median over 11 rounds of a net against
# itself lies within [2/3, 3/2] (it did with two busy loops on the two cores, where single rounds
# went from 0.24 to 4.07); 8 times the work is above 3 (it gave 4.7 to 12.4 under that load).
WORK = {"lr_size": (64, 64), "threads": 1}


def test_ratio_against_itself_is_near_one() -> None:
    net = tiny_net(32)
    r = measure_latency_ratio(net, net, interleaved(11, 3, 1, **WORK))
    assert isinstance(r, LatencyRatioResult)
    assert 2 / 3 <= r.ratio_median <= 3 / 2, r.round_ratios
    assert r.ratio_p10 <= r.ratio_median <= r.ratio_p90
    assert len(r.round_ratios) == 11 and all(v > 0 for v in r.round_ratios)
    for part in (r.model, r.reference):
        check_stats(part)
        assert (part.runs, part.warmup, part.input_shape) == (33, 1, (1, 3, 64, 64))
    json.dumps(r.to_dict())


def test_ratio_of_eight_times_the_work_is_far_above_one() -> None:
    net = tiny_net(32)
    r = measure_latency_ratio(Repeat(net, 8), net, interleaved(5, 2, 1, **WORK))
    assert r.ratio_median > 3.0, r.round_ratios
    assert r.model.median_ms > 3.0 * r.reference.median_ms


def test_ratio_interleaves_and_alternates_order() -> None:
    log: list[str] = []
    model, ref = Recorder("model", log), Recorder("ref", log)
    measure_latency_ratio(model, ref, interleaved(3, 2, 1))
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
    r = measure_latency_ratio(model, ref, interleaved(3, 2))
    assert r.round_ratios == (2.0, 2.0, 2.0) and r.ratio_median == 2.0
    assert r.model.median_ms == 3.0 and r.reference.median_ms == 1.5


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"rounds": 0}, "rounds"), ({"runs_per_round": 0}, "runs_per_round")]
)
def test_ratio_invalid_settings(kwargs: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got 0"):
        MeasureSettings(**kwargs)  # type: ignore[arg-type]


@requires_cuda
def test_cuda_resolve_device() -> None:
    assert resolve_device("cuda") == torch.device("cuda", torch.cuda.current_device())
    assert resolve_device("auto").type == "cuda"
    with pytest.raises(ValueError, match="index"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@requires_cuda
def test_cuda_latency_times_a_copy_of_a_cpu_model() -> None:
    model = Recorder().train()
    r = measure_latency(model, alone(5, 2, device="cuda"))
    assert r.device.startswith("cuda") and r.threads is None and r.runs == 5
    check_stats(r)
    assert model.calls == [] and model.training
    assert all(p.device.type == "cpu" for p in model.parameters())


@requires_cuda
def test_cuda_latency_uses_a_model_already_on_the_device() -> None:
    model = Recorder().to(torch.device("cuda")).train()
    r = measure_latency(model, alone(3, 1, device="cuda"))
    assert len(model.calls) == 4
    assert all(str(c["x_device"]).startswith("cuda") and not c["training"] for c in model.calls)
    assert all(p.device.type == "cuda" for p in model.parameters()) and model.training
    check_stats(r)


@requires_cuda
def test_cuda_event_timing_reports_milliseconds() -> None:
    r = measure_latency(Sleeper(0.02), alone(2, 1, device="cuda"))
    assert r.min_ms >= 19.0  # end event is recorded after the 20 ms host sleep


@requires_cuda
def test_cuda_ratio_against_itself_and_of_eight_times_the_work() -> None:
    net = tiny_net(32)
    cuda = {"device": "cuda", "lr_size": (256, 256)}  # enough work to dwarf launch overhead
    r = measure_latency_ratio(net, net, interleaved(11, 3, 2, **cuda))
    assert 2 / 3 <= r.ratio_median <= 3 / 2, r.round_ratios
    assert r.model.device.startswith("cuda") and r.model.runs == 33
    more = measure_latency_ratio(Repeat(net, 8), net, interleaved(5, 3, 2, **cuda))
    assert more.ratio_median > 3.0, more.round_ratios
