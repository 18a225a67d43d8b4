"""The NTIRE 2024-2026 protocol beside ours (tiny images, CPU; timings are not asserted)."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from proxies.data.downsample import bicubic_downsample
from proxies.data.images import load_image
from proxies.measure.complexity import count_macs
from proxies.profile.command import main
from proxies.protocol import ntire as protocol
from proxies.protocol.compare import compare
from proxies.protocol.images import open_images
from proxies.protocol.ntire import ProtocolError, measure_ntire
from search_space import build_model
from search_space.zoo import ZOO, at_scale

FAST = ["--rounds", "1", "--runs-per-round", "1", "--warmup", "0", "--threads", "1"]


def _write(folder, n=2, size=32, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, (size, size + 4 * i, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")
    return folder


def test_cli_on_lr_images_prints_both_protocols(tmp_path, capsys):
    lr = _write(tmp_path / "lr", n=2, size=32)
    code = main(["--protocol", "ntire2024", "--images", str(lr), "span_ntire2024",
                 "rlfn_ntire", "--scale", "2", "--json", *FAST])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "ntire2024" and "forwarded as given" in out["images"]
    assert "LR images" in out["images"] and "fvcore" in out["flops"]
    ntire = {r["name"]: r for r in out["ntire"]}
    assert set(ntire) == {"span_ntire2024", "rlfn_ntire"}
    for name, r in ntire.items():
        assert r["images"] == 2 and len(r["times_ms"]) == 2
        assert r["mean_ms"] == pytest.approx(statistics.fmean(r["times_ms"]))  # first kept
        assert r["first_ms"] == r["times_ms"][0] and r["rest_mean_ms"] == r["times_ms"][1]
        assert r["memory_mib"] is None  # max_memory_allocated is CUDA only
        assert r["dtype"] == "float32" and r["channels_last"] is False
        model = build_model(at_scale(ZOO[name], 2))
        assert r["flops_g"] == pytest.approx(count_macs(model) / 1e9)  # at 256x256
    steady = {r["name"]: r for r in out["steady"]}
    assert set(steady) == set(ntire) and out["reference"] == "span_ntire2024"
    assert steady["span_ntire2024"]["latency_ratio"] > 0
    assert steady["rlfn_ntire"]["latency_ratio_aim"] == 1.0
    assert out["steady_lr_size"] == [32, 32]  # the first of two equally common sizes
    assert any("first image" in n for n in out["notes"])


def test_hr_folder_is_downscaled_with_the_projects_degradation(tmp_path, capsys):
    hr = _write(tmp_path / "set" / "HR", n=2, size=32)
    source = open_images(str(hr))
    assert source.kind == "hr"
    images = dict(source.lr_images(2))
    expected = bicubic_downsample(load_image(hr / "img1.png"), 2)
    assert images["img1"].shape == (16, 18, 3) and np.array_equal(images["img1"], expected)
    plain = _write(tmp_path / "plain", n=1)
    assert open_images(str(plain)).kind == "lr" and open_images(f"hr:{plain}").kind == "hr"
    assert open_images(f"lr:{hr}").kind == "lr"
    code = main(["--protocol", "ntire2024", "--images", str(hr), "span_ntire2024",
                 "--scale", "2", "--reference", "none", *FAST])
    assert code == 0
    text = capsys.readouterr().out
    assert "2 HR images from" in text and "downscaled x2 with proxies.data.downsample" in text
    assert "NTIRE mean [ms]" in text and "ours median [ms]" in text
    assert "Why the columns differ:" in text and "16x16" in text


class _Counting(nn.Module):
    """x2 net that counts its forwards and records the largest input value."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.scale, self.data_range = 2, 255.0
        self.calls: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "meta":  # the complexity counters run a meta copy
            self.calls.append(float(x.max()))
        return self.shuffle(self.conv(x))


def test_every_image_is_forwarded_once_without_warm_up_in_the_nets_range(monkeypatch):
    images = [(f"i{k}", np.full((16, 20, 3), 0.5, np.float32)) for k in range(3)]
    made, real = [], protocol.prepare

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(protocol, "prepare", spy)
    r = measure_ntire("counting", _Counting(), images, device="cpu", threads=1)
    assert r.images == 3 and len(r.times_ms) == 3
    (net,) = made
    calls = net.calls
    assert len(calls) == 3  # no warm-up forward
    assert calls[0] == pytest.approx(127.5)  # scaled into [0, data_range] on the host
    assert r.num_conv == 1 and r.scale == 2


def test_channels_last_and_fp16_run_on_cpu(tmp_path):
    source = open_images(f"lr:{_write(tmp_path / 'lr', n=1, size=24)}")
    nets = [("span", at_scale(ZOO["span_ntire2024"], 2))]
    cmp = compare(nets, source, device="cpu", channels_last=True,
                  reference=nets[0], rounds=1, runs_per_round=1, warmup=0,
                  threads=1, memory=False)
    assert cmp.ntire[0].channels_last and cmp.settings["channels_last"]
    assert cmp.steady[0].latency_ratio is not None
    assert any("One image only" in n for n in cmp.notes)
    try:
        half = compare(nets, source, device="cpu", dtype=torch.float16,
                       reference=nets[0], rounds=1, runs_per_round=1, warmup=0,
                       threads=1, memory=False)
    except ProtocolError as exc:
        assert "--fp16" in str(exc) and "--device cuda" in str(exc)
        pytest.skip(f"float16 is not supported on this CPU: {exc}")
    assert half.ntire[0].dtype == "float16" and half.steady[0].latency_ms is not None
    alone = compare(nets, source, device="cpu", dtype=torch.float16, rounds=1,
                    runs_per_round=1, warmup=0, threads=1, memory=False)
    assert alone.steady[0].latency_ms is not None and alone.steady[0].latency_ratio is None


def test_fp16_unsupported_is_a_clear_error(tmp_path, capsys, monkeypatch):
    lr = _write(tmp_path / "lr", n=1, size=24)

    class NoHalf(nn.Module):
        def forward(self, x):
            raise RuntimeError('"slow_conv2d_cpu" not implemented for \'Half\'')

    monkeypatch.setattr(protocol, "prepare", lambda *a, **k: NoHalf())
    code = main(["--protocol", "ntire2024", "--images", str(lr), "span_ntire2024", "--fp16",
                 *FAST])
    err = capsys.readouterr().err
    assert code == 2
    assert "--fp16: span_ntire2024 does not run in float16 on cpu" in err
    assert "not implemented for 'Half'" in err and "drop --fp16" in err


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("text", "not an image file: notes.txt"),
    ("broken", "cannot decode image file"),
    ("file", "is a file, not a folder"),
])
def test_bad_images_exit_2_naming_the_problem(tmp_path, capsys, case, expected):
    folder = tmp_path / "imgs"
    if case != "missing":
        folder.mkdir()
    if case == "text":
        _write(folder, n=1)
        (folder / "notes.txt").write_text("hi")
    if case == "broken":
        (folder / "bad.png").write_bytes(b"not a png")
    target = folder
    if case == "file":
        target = _write(folder, n=1) / "img0.png"
    code = main(["--protocol", "ntire2024", "--images", str(target), "span_ntire2024", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --images") and expected in err
    assert str(target.name) in err and "--images" in err


@pytest.mark.parametrize("argv, expected", [
    (["--protocol", "ntire2023", "--images", "x"], "--protocol: got 'ntire2023'; known: ntire2024"),
    (["--protocol", "ntire2024"], "needs --images DIR"),
    (["--fp16"], "--fp16 given without --protocol"),
    (["--images", "x", "--channels-last"], "--images, --channels-last given without --protocol"),
    (["--protocol", "ntire2024", "--images", "x", "--no-latency"], "drop --no-latency"),
])
def test_bad_options_exit_2(capsys, argv, expected):
    assert main([*argv, "span_ntire2024"]) == 2
    assert expected in capsys.readouterr().err


class _NeedsSeven(nn.Module):
    """Fails on inputs under 7 px, as a net with an unpadded 7x7 pooling does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool2d(x, 7)


def test_an_image_too_small_for_the_net_is_named():
    images = [("big", np.zeros((8, 8, 3), np.float32)), ("tiny", np.zeros((4, 5, 3), np.float32))]
    with pytest.raises(ProtocolError, match=r"pool cannot upscale image 'tiny' \(LR 4x5\)"):
        measure_ntire("pool", _NeedsSeven(), images, device="cpu", threads=1)
