"""Tests of proxies.measure.memory: hand-derivable peaks, scaling, determinism, validation,
bookkeeping."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

import pytest
import torch
from torch import nn

from proxies.measure.memory import MemoryResult, _stderr_to_log, measure_peak_memory
from proxies.measure.settings import MeasureSettings

MIB = 2**20
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def conv_net(width: int, kernel: int = 3) -> nn.Module:
    pad = kernel // 2
    return nn.Sequential(
        nn.Conv2d(3, width, kernel, padding=pad),
        nn.ReLU(),
        nn.Conv2d(width, 3, kernel, padding=pad),
    )


class Chain(nn.Module):
    """Three out-of-place elementwise ops: each allocates one input-sized tensor and frees the
    previous, so the peak is exactly two input-sized tensors (plus a few scalar bytes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2.0
        y = y + 1.0
        return y * 3.0


class Temporary(nn.Module):
    """Allocates (and touches) a temporary of ``mib`` MiB during the forward pass."""

    def __init__(self, mib: int) -> None:
        super().__init__()
        self.numel = mib * MIB // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(self.numel, dtype=torch.float32)
        return x + big[0]


class Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_inference_mode_enabled()))
        return self.conv(x)


def at(side: int, **kwargs: object) -> MeasureSettings:
    """Settings measuring at ``side`` x ``side`` on the CPU unless ``kwargs`` say otherwise."""
    fields: dict[str, object] = {"device": "cpu", **kwargs}
    return MeasureSettings(lr_size=(side, side), **fields)  # type: ignore[arg-type]


def peak_bytes(model: nn.Module, side: int) -> float:
    return measure_peak_memory(model, at(side)).peak_memory_mib * MIB


def can_reset_peak_rss() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def test_single_conv_matches_hand_count() -> None:
    r = measure_peak_memory(nn.Conv2d(3, 16, 3, padding=1), at(64))
    out_bytes = 16 * 64 * 64 * 4
    im2col_bytes = 3 * 9 * 64 * 64 * 4  # unfolded input of the im2col (slow_conv2d) kernel
    # At least the output; at most output + im2col buffer + one output-sized blocked-layout copy.
    assert out_bytes <= r.peak_memory_mib * MIB <= 2 * out_bytes + im2col_bytes + 64 * 1024
    assert r.output_mib * MIB == out_bytes
    assert r.input_mib * MIB == 3 * 64 * 64 * 4
    assert r.weights_mib * MIB == (16 * 3 * 9 + 16) * 4
    assert (r.method, r.device, r.input_shape) == ("cpu_profiler", "cpu", (1, 3, 64, 64))


def test_running_sum_counts_frees_and_excludes_input() -> None:
    size = 3 * 64 * 64 * 4
    # Summing allocations would give 3x, ignoring frees 3x, counting the input 3x.
    assert peak_bytes(Chain(), 64) == pytest.approx(2 * size, abs=1024)
    assert peak_bytes(nn.Identity(), 64) == 0.0


def test_batchnorm_buffers_count_as_weights() -> None:
    r = measure_peak_memory(nn.BatchNorm2d(8), at(16), channels=8)
    assert r.weights_mib * MIB == (2 * 8 + 2 * 8) * 4 + 8  # weight, bias, mean, var, counter


def test_wider_intermediate_gives_larger_peak() -> None:
    narrow, wide = peak_bytes(conv_net(4, 1), 64), peak_bytes(conv_net(16, 1), 64)
    assert wide >= 2 * 16 * 64 * 64 * 4  # conv output and ReLU output coexist
    assert wide > narrow


def test_peak_scales_with_input_area() -> None:
    small, large = (
        peak_bytes(conv_net(16), 64),
        peak_bytes(conv_net(16), 128),
    )
    assert 3.0 < large / small < 5.0


def test_cpu_peak_is_deterministic() -> None:
    net = conv_net(8)
    first = measure_peak_memory(net, at(48))
    assert measure_peak_memory(net, at(48)) == first


def test_result_fields() -> None:
    r = measure_peak_memory(conv_net(4), at(32))
    assert isinstance(r, MemoryResult) and r.rss_peak_delta_mib is None
    assert r.peak_memory_mib > 0 and r.weights_mib > 0 and r.output_mib > 0
    d = r.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(MemoryResult)}
    json.dumps(d)


def test_rss_cross_check_sees_a_large_temporary() -> None:
    r = measure_peak_memory(Temporary(48), at(16), rss_check=True)
    assert r.peak_memory_mib >= 48
    if can_reset_peak_rss():
        assert r.rss_peak_delta_mib is not None and r.rss_peak_delta_mib >= 0.8 * 48
    else:
        assert r.rss_peak_delta_mib is None


def test_rss_cross_check_roughly_agrees_with_profiler() -> None:
    # Coarse on purpose; without returning freed heap to the OS first it reads ~0 here.
    r = measure_peak_memory(conv_net(16), at(128), rss_check=True)
    if not can_reset_peak_rss():
        pytest.skip("cannot reset the peak RSS on this system")
    assert r.rss_peak_delta_mib is not None
    assert 0.5 * r.peak_memory_mib <= r.rss_peak_delta_mib <= 4 * r.peak_memory_mib + 8


def test_model_mode_and_dtype_untouched() -> None:
    model = Recorder().train()
    measure_peak_memory(model, at(16))
    assert model.calls and all(c == (False, True) for c in model.calls)  # eval + inference mode
    assert model.training and model.conv.training
    calls = len(model.calls)
    r = measure_peak_memory(model, at(16, dtype="float64"))
    assert len(model.calls) == calls  # a float64 copy was measured
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert r.input_mib * MIB == 3 * 16 * 16 * 8


def test_profiler_stderr_goes_to_log(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="proxies.measure.memory"):
        with _stderr_to_log():
            os.write(2, b"native message\n")
        measure_peak_memory(conv_net(4), at(16))
    err = capfd.readouterr().err
    assert "native message" not in err and "profiler_start" not in err
    assert any(
        "native message" in rec.getMessage() and rec.levelno == logging.WARNING
        for rec in caplog.records
    )


def test_invalid_channels_and_settings() -> None:
    """The net's channels are checked per call; the settings were checked when built (their
    table of bad values is tests/test_latency.py's)."""
    with pytest.raises(ValueError, match=r"channels must be an integer >= 1, got 0"):
        measure_peak_memory(conv_net(4), at(16), channels=0)
    with pytest.raises(ValueError, match=r"lr_size must be 2 positive ints .*\(0, 0\)"):
        at(0)
    with pytest.raises(ValueError, match=r"dtype .*'int32'"):
        at(16, dtype="int32")


def test_cuda_requested_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"CUDA.*is_available\(\) is False"):
        measure_peak_memory(conv_net(4), at(16, device="cuda"))


@requires_cuda
def test_cuda_running_chain_is_exact() -> None:
    size = 3 * 64 * 64 * 4  # a multiple of the allocator's 512-byte rounding
    r = measure_peak_memory(Chain(), at(64, device="cuda"))
    assert r.method == "cuda_max_allocated" and r.device.startswith("cuda")
    assert r.peak_memory_mib * MIB == pytest.approx(2 * size, abs=1024)
    assert r.output_mib * MIB == size


@requires_cuda
def test_cuda_conv_peak_and_cpu_model_untouched() -> None:
    model = conv_net(16).train()
    r = measure_peak_memory(model, at(64, device="cuda"), rss_check=True)
    assert r.peak_memory_mib * MIB >= 2 * 16 * 64 * 64 * 4  # conv and ReLU outputs coexist
    assert r.rss_peak_delta_mib is None  # host-memory check only applies on the CPU
    assert r.weights_mib * MIB == (16 * 27 + 16 + 3 * 16 * 9 + 3) * 4
    assert model.training and all(p.device.type == "cpu" for p in model.parameters())


@requires_cuda
def test_cuda_model_on_device_stays_there() -> None:
    model = Recorder().to(torch.device("cuda")).train()
    measure_peak_memory(model, at(32, device="cuda"))
    assert model.calls and all(c == (False, True) for c in model.calls)
    assert model.training and all(p.device.type == "cuda" for p in model.parameters())


def test_callable_peak_sees_a_training_step():
    from proxies.measure.memory import measure_callable_peak_mib

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 3, 3, padding=1))
    x = torch.rand(1, 3, 64, 64)

    def step():
        net.zero_grad(set_to_none=True)
        net(x).square().mean().backward()

    train_peak = measure_callable_peak_mib(step)
    with torch.inference_mode():
        infer_peak = measure_callable_peak_mib(lambda: net(x))
    assert train_peak > infer_peak >= 16 * 64 * 64 * 4 / 2**20  # backward keeps activations


def test_profiler_sessions_run_in_the_calling_thread_one_at_a_time() -> None:
    """A CPU profiler session runs in the thread that asks for it, under its grad and
    inference modes (a session in a thread of its own left the training that followed 2.3x
    slower: BENCHMARKS.md, quick start), and sessions of one process never overlap, though
    Ray runs each trial in a thread of its own."""
    import threading
    import time

    from proxies.measure.memory import _cpu_profiler_peak_of

    seen: list[tuple[str, bool, bool]] = []
    spans: list[tuple[float, float]] = []

    def fn() -> torch.Tensor:
        start = time.perf_counter()
        seen.append((threading.current_thread().name, torch.is_inference_mode_enabled(),
                     torch.is_grad_enabled()))
        time.sleep(0.05)
        spans.append((start, time.perf_counter()))
        return torch.ones(64, 64) * 2

    def caller(inference: bool) -> None:
        with torch.inference_mode(inference):
            _cpu_profiler_peak_of(fn)

    threads = [threading.Thread(target=caller, args=(mode,), name=f"trial-{mode}")
               for mode in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _cpu_profiler_peak_of(fn)
    by_thread = {name: (inf, grad) for name, inf, grad in seen}
    assert by_thread == {"trial-True": (True, False), "trial-False": (False, True),
                         threading.main_thread().name: (False, True)}
    assert len(seen) == 6  # a warm-up call and the profiled one per session
    spans.sort()
    gaps = [b[0] - a[1] for a, b in zip(spans[:-1], spans[1:], strict=True)]
    assert min(gaps) >= 0, spans  # one session at a time
