"""Benchmark evaluation (``results.evaluate.command``, ``results.evaluate.sets``,
``results.evaluate.inference``): tiled
inference, per-image metrics, the CLI."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from proxies.data import imageset as data
from proxies.quality import evaluate_pair, tensor_to_uint8
from results.evaluate import command as ev
from results.evaluate import inference
from results.evaluate import sets as eval_sets
from search_space import Attention, CellGene, Genotype, build_model

DATASETS = Path(
    os.environ.get("SRNAS_DATASETS")
    or Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
)
OOM_MESSAGE = "DefaultCPUAllocator: not enough memory: you tried to allocate 4294967296 bytes."


def tiny_genotype(scale: int = 2, width: int = 8, act: str = "relu",
                  data_range: float = 1.0) -> Genotype:
    """head 3x3, one ERB (3x3, act, 3x3), LR 3x3, upsampler 3x3: receptive radius 5 LR px."""
    cell = CellGene("erb", ("conv3x3", "conv3x3"), Attention("none"), act)
    return Genotype(scale=scale, width=width, cells=(cell,), data_range=data_range)


def tiny_net(seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_genotype(**kwargs))  # type: ignore[arg-type]


def receptive_radius(model: nn.Module, side: int = 41) -> int:
    """Largest LR distance at which an impulse changes the raw output (measured, not assumed)."""
    c = side // 2
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[..., c, c] += 1.0
    with torch.no_grad():
        diff = (model.eval()(y) - model(x)).abs().sum(dim=(0, 1))
    s = diff.shape[-1] // side
    rows, cols = torch.nonzero(diff > 0, as_tuple=True)
    return int(max((rows // s - c).abs().max(), (cols // s - c).abs().max()))


class MemoryCapped(nn.Module):
    """Wraps a net; raises an allocation error for inputs of more than ``cap`` pixels."""

    def __init__(self, inner: nn.Module, cap: int, error: type[RuntimeError] = RuntimeError,
                 message: str = OOM_MESSAGE) -> None:
        super().__init__()
        self.inner, self.cap, self.error, self.message = inner, cap, error, message
        self.calls: list[tuple[int, int, bool]] = []  # (h, w, succeeded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ok = h * w <= self.cap
        self.calls.append((h, w, ok))
        if not ok:
            raise self.error(self.message)
        return self.inner(x)


class Oracle(nn.Module):
    """Returns the HR image belonging to the LR input's size, in [0, data_range]."""

    def __init__(self, hr_by_lr_size: dict[tuple[int, int], torch.Tensor],
                 data_range: float) -> None:
        super().__init__()
        self.hr, self.data_range = hr_by_lr_size, data_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hr[tuple(x.shape[-2:])] * self.data_range  # type: ignore[index]


class Bicubic(nn.Module):
    """Bicubic upsampling; no ``scale`` attribute, so evaluate_model cannot check it up front."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.factor, mode="bicubic", align_corners=False)


def _smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [0.5 + 0.4 * np.sin(xx / rng.uniform(3, 8) + rng.uniform(0, 6))
             * np.cos(yy / rng.uniform(3, 8)) for _ in range(3)]
    return np.clip(np.stack(chans, axis=2) * 255 + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two small PNGs; b is 37x50 (H x W), so x2 mod-crops it to 36x50."""
    folder = tmp_path / "mini" / "HR"
    folder.mkdir(parents=True)
    Image.fromarray(_smooth_image(48, 40, 0)).save(folder / "a.png")
    Image.fromarray(_smooth_image(37, 50, 1)).save(folder / "b.png")
    return folder


@pytest.fixture
def genotype_file(tmp_path: Path) -> Path:
    return tiny_genotype().save(tmp_path / "genotype.json")


# --------------------------------------------------------------------------------------------
# sr_forward
# --------------------------------------------------------------------------------------------


def test_tiny_net_receptive_radius_is_5():
    assert receptive_radius(tiny_net()) == 5


@pytest.mark.parametrize("tile", [5, 7, 22, 64])
def test_tiled_equals_whole_when_overlap_covers_receptive_field(tile):
    model = tiny_net()
    overlap = receptive_radius(model)
    lr = torch.rand(1, 3, 29, 23, generator=torch.Generator().manual_seed(0))
    whole = inference.sr_forward(model, lr, data_range=1.0)
    tiled = inference.sr_forward(model, lr, data_range=1.0, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape == (1, 3, 58, 46)
    assert (tiled - whole).abs().max().item() < 1e-5


def test_tiles_without_enough_overlap_differ():
    """The equality above is not vacuous: with too little context the seams show."""
    model = tiny_net()
    lr = torch.rand(1, 3, 29, 23, generator=torch.Generator().manual_seed(0))
    whole = inference.sr_forward(model, lr, data_range=1.0)
    tiled = inference.sr_forward(model, lr, data_range=1.0, tile=7, overlap=2)
    assert (tiled - whole).abs().max().item() > 1e-3


def test_data_range_scaling_and_clamp():
    lr = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    up = nn.Upsample(scale_factor=2, mode="nearest")
    expected = F.interpolate(lr, scale_factor=2, mode="nearest")
    # The net sees [0, 255] and returns [0, 255]; the caller sees [0, 1] both ways.
    seen: list[float] = []
    up.register_forward_hook(lambda m, i, o: seen.append(float(i[0].max())))
    out = inference.sr_forward(up, lr, data_range=255.0)
    assert seen[0] > 1.5
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)

    class Affine(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=2) * 3.0 - 255.0

    out = inference.sr_forward(Affine(), lr, data_range=255.0)
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0
    assert (out == 0).any() and (out == 1).any()


def test_eval_mode_inside_and_training_flag_restored():
    modes: list[bool] = []
    model = tiny_net()
    model.register_forward_pre_hook(lambda m, i: modes.append(m.training))
    model.train()
    out = inference.sr_forward(model, torch.rand(1, 3, 8, 8), data_range=1.0)
    assert modes == [False] and model.training
    out += 1  # an ordinary tensor, not an inference-mode one
    assert not out.requires_grad


def test_auto_falls_back_to_smaller_tiles(caplog):
    inner = tiny_net()
    lr = torch.rand(1, 3, 160, 150, generator=torch.Generator().manual_seed(0))
    whole = inference.sr_forward(inner, lr, data_range=1.0)
    capped = MemoryCapped(inner, cap=100 * 100)
    with caplog.at_level(logging.WARNING, logger="results.evaluate"):
        out = inference.sr_forward(capped, lr, data_range=1.0, tile="auto", overlap=16)
    assert (out - whole).abs().max().item() < 1e-5
    # whole image failed, then tiles of 128 (144x144 with context) failed, tiles of 64 worked
    assert capped.calls[0] == (160, 150, False)
    assert not capped.calls[1][2]
    assert all(ok for _, _, ok in capped.calls[2:]) and len(capped.calls) > 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "tiles of 128" in warnings[0] and "tiles of 64" in warnings[1]


def test_auto_falls_back_on_cuda_oom_class():
    inner = tiny_net()
    lr = torch.rand(1, 3, 80, 70, generator=torch.Generator().manual_seed(0))
    capped = MemoryCapped(inner, cap=79 * 70, error=torch.cuda.OutOfMemoryError,
                          message="CUDA error: something")
    out = inference.sr_forward(capped, lr, data_range=1.0, tile="auto", overlap=6)
    assert (out - inference.sr_forward(inner, lr, data_range=1.0)).abs().max().item() < 1e-5
    assert capped.calls[0] == (80, 70, False) and capped.calls[-1][2]


def test_auto_does_not_swallow_other_errors():
    capped = MemoryCapped(tiny_net(), cap=10, message="Given groups=1, weight of size ...")
    with pytest.raises(RuntimeError, match="weight of size"):
        inference.sr_forward(capped, torch.rand(1, 3, 80, 70), data_range=1.0, tile="auto")
    assert len(capped.calls) == 1


def test_auto_gives_up_with_a_clear_error():
    capped = MemoryCapped(tiny_net(), cap=10)
    with pytest.raises(RuntimeError, match="every size tried") as info:
        inference.sr_forward(capped, torch.rand(1, 3, 300, 280), data_range=1.0, tile="auto")
    assert "tiles of 64" in str(info.value)


def test_auto_goes_straight_to_tiles_above_max_pixels():
    capped = MemoryCapped(tiny_net(), cap=10**9)
    lr = torch.rand(1, 3, 300, 280)
    inference.sr_forward(capped, lr, data_range=1.0, tile="auto", overlap=4, max_pixels=200 * 200)
    assert all(h <= 256 + 8 and w <= 256 + 8 for h, w, _ in capped.calls)
    assert len(capped.calls) == 4  # 2 x 2 tiles of 256
    capped.calls.clear()
    inference.sr_forward(capped, lr, data_range=1.0, tile="auto")  # under the default budget: whole
    assert capped.calls == [(300, 280, True)]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"tile": 0}, "tile"),
        ({"tile": "big"}, "tile"),
        ({"tile": True}, "tile"),
        ({"overlap": -1}, "overlap"),
        ({"data_range": 0.0}, "data_range"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"device": "meta"}, "device"),
    ],
)
def test_sr_forward_rejects_bad_arguments(kwargs, name):
    args: dict[str, object] = {"data_range": 1.0, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name}: got"):
        inference.sr_forward(tiny_net(), torch.rand(1, 3, 8, 8), **args)


def test_sr_forward_rejects_non_image_input():
    with pytest.raises(ValueError, match=r"^lr: got \(3, 8, 8\)"):
        inference.sr_forward(tiny_net(), torch.rand(3, 8, 8), data_range=1.0)


# --------------------------------------------------------------------------------------------
# evaluate_model and summarise
# --------------------------------------------------------------------------------------------


def test_evaluate_model_rows_and_saved_images(image_folder, tmp_path):
    save = tmp_path / "sr"
    df = eval_sets.evaluate_model(tiny_net(), [str(image_folder)], scale=2, data_range=1.0,
                                  save_dir=save)
    assert list(df.columns) == list(eval_sets.ROW_COLUMNS)
    assert df["set"].tolist() == ["mini", "mini"]  # an .../<name>/HR folder is labelled <name>
    assert df["image"].tolist() == ["a", "b"]
    assert df[["lr_h", "lr_w"]].values.tolist() == [[24, 20], [18, 25]]
    assert np.isfinite(df[["psnr_y_db", "ssim_y", "psnr_rgb_db", "seconds"]].to_numpy()).all()
    assert (df["seconds"] > 0).all() and not df["tiled"].any()
    assert df["tiled"].dtype == bool and df["lr_h"].dtype == np.int64
    for name, (h, w) in {"a": (48, 40), "b": (36, 50)}.items():
        with Image.open(save / "mini" / f"{name}.png") as im:
            assert im.size == (w, h) and im.mode == "RGB"


def test_evaluate_model_tiled_flag(image_folder):
    df = eval_sets.evaluate_model(tiny_net(), [str(image_folder)], scale=2, data_range=1.0, tile=12,
                                  overlap=6)
    assert df["tiled"].all()
    whole = eval_sets.evaluate_model(tiny_net(), [str(image_folder)], scale=2, data_range=1.0)
    np.testing.assert_allclose(df["psnr_y_db"], whole["psnr_y_db"], rtol=0, atol=1e-9)


def test_oracle_scores_infinite_and_saves_the_ground_truth(image_folder, tmp_path):
    """Pairs each LR with its own HR and round-trips data_range: PSNR inf, SSIM 1."""
    images = data.SRImageSet.from_folder(image_folder, 2)
    oracle = Oracle({tuple(lr.shape[-2:]): hr for _, lr, hr in images}, 255.0)
    df = eval_sets.evaluate_model(oracle, [str(image_folder)], scale=2, data_range=255.0,
                                  save_dir=tmp_path / "sr")
    assert df["psnr_y_db"].tolist() == [math.inf, math.inf]
    assert df["psnr_rgb_db"].tolist() == [math.inf, math.inf]
    np.testing.assert_allclose(df["ssim_y"], 1.0, atol=1e-12)
    for name, _, hr in images:
        saved = np.asarray(Image.open(tmp_path / "sr" / "mini" / f"{name}.png"))
        np.testing.assert_array_equal(saved, tensor_to_uint8(hr))


def test_bicubic_metrics_match_evaluate_pair(image_folder):
    df = eval_sets.evaluate_model(Bicubic(2), [str(image_folder)], scale=2, data_range=1.0)
    for (name, lr, hr), row in zip(data.SRImageSet.from_folder(image_folder, 2),
                                   df.itertuples(), strict=True):
        sr = F.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
        q = evaluate_pair(sr, hr, scale=2)
        assert row.image == name
        assert row.psnr_y_db == pytest.approx(q.psnr_y_db, abs=1e-9)
        assert row.ssim_y == pytest.approx(q.ssim_y, abs=1e-12)
        assert row.psnr_rgb_db == pytest.approx(q.psnr_rgb_db, abs=1e-9)
        assert 20.0 < row.psnr_y_db < 60.0


def test_scale_mismatch_names_both(image_folder):
    with pytest.raises(ValueError, match=r"scale: got 3 but the model's scale is 2"):
        eval_sets.evaluate_model(tiny_net(), [str(image_folder)], scale=3, data_range=1.0)
    with pytest.raises(ValueError, match=r"data_range: got 255.0 but the model's data_range is"):
        eval_sets.evaluate_model(tiny_net(), [str(image_folder)], scale=2, data_range=255.0)


def test_output_of_the_wrong_size_is_reported(image_folder):
    with pytest.raises(ValueError, match=r"image 'a'.*scale=2"):
        eval_sets.evaluate_model(Bicubic(3), [str(image_folder)], scale=2, data_range=1.0)


def test_missing_benchmark_folder_names_it_and_the_fix(tmp_path, image_folder):
    with pytest.raises(FileNotFoundError) as info:
        eval_sets.evaluate_model(tiny_net(), ["Set5"], scale=2, data_range=1.0,
                                 datasets_root=tmp_path / "nowhere")
    msg = str(info.value)
    assert str(tmp_path / "nowhere" / "Set5" / "HR") in msg
    assert "--datasets-root" in msg and "SRNAS_DATASETS" in msg
    # checked before any set runs: the good folder first does not get evaluated
    with pytest.raises(FileNotFoundError, match="does not exist"):
        eval_sets.evaluate_model(MemoryCapped(tiny_net(), cap=0),
                                 [str(image_folder), "no/such/dir"], scale=2, data_range=1.0)


def test_set_resolution(tmp_path, monkeypatch):
    (tmp_path / "Set14" / "HR").mkdir(parents=True)
    assert eval_sets.resolve_set("Set14", tmp_path) == tmp_path / "Set14" / "HR"
    monkeypatch.setenv("SRNAS_DATASETS", str(tmp_path))
    assert eval_sets.default_datasets_root() == tmp_path
    assert eval_sets.resolve_set("Set14") == tmp_path / "Set14" / "HR"
    monkeypatch.delenv("SRNAS_DATASETS")
    repo = Path(ev.__file__).resolve().parents[2]
    assert eval_sets.default_datasets_root() == repo.parent / "shared" / "datasets"
    assert eval_sets.resolve_set(str(tmp_path)) == tmp_path  # any other string is a folder
    with pytest.raises(TypeError, match="single string"):
        eval_sets.evaluate_model(tiny_net(), "Set14", scale=2, data_range=1.0)


def test_summarise_means_per_set_in_order():
    df = pd.DataFrame({
        "set": ["B", "B", "A"], "image": ["x", "y", "z"],
        "psnr_y_db": [30.0, 32.0, 25.0], "ssim_y": [0.9, 0.8, 0.5],
        "psnr_rgb_db": [29.0, 31.0, 24.0], "lr_h": [8, 8, 8], "lr_w": [8, 8, 8],
        "seconds": [0.1, 0.3, 0.2], "tiled": [False, True, False],
    })
    s = eval_sets.summarise(df)
    assert list(s.columns) == list(eval_sets.SUMMARY_COLUMNS)
    assert s["set"].tolist() == ["B", "A"] and s["images"].tolist() == [2, 1]
    np.testing.assert_allclose(s["psnr_y_db"], [31.0, 25.0])
    np.testing.assert_allclose(s["ssim_y"], [0.85, 0.5])
    np.testing.assert_allclose(s["psnr_rgb_db"], [30.0, 24.0])
    np.testing.assert_allclose(s["seconds"], [0.2, 0.2])
    table = eval_sets.summary_markdown(s)
    assert "| B | 2 | 31.00 | 0.8500 | 30.00 | 0.200 |" in table.splitlines()
    with pytest.raises(ValueError, match="missing columns"):
        eval_sets.summarise(df.drop(columns=["ssim_y"]))


# --------------------------------------------------------------------------------------------
# Checkpoints and the command line
# --------------------------------------------------------------------------------------------


def _params_equal(model: nn.Module, sd: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


def test_checkpoint_forms_and_ema_preference(tmp_path):
    sd_model, sd_ema = tiny_net(1).state_dict(), tiny_net(2).state_dict()
    path = tmp_path / "ckpt.pt"
    torch.save({"step": 5, "model": sd_model, "ema": sd_ema, "optimizer": {}}, path)
    m = tiny_net(3)
    assert ev.load_checkpoint(m, path, genotype_name="g") == "ema" and _params_equal(m, sd_ema)
    assert ev.load_checkpoint(m, path, genotype_name="g", prefer_ema=False) == "model"
    assert _params_equal(m, sd_model)
    torch.save({"model": sd_model, "ema": None}, path)  # EMA switched off in training
    assert ev.load_checkpoint(tiny_net(3), path, genotype_name="g") == "model"
    torch.save(sd_ema, path)
    m = tiny_net(3)
    assert ev.load_checkpoint(m, path, genotype_name="g") == "state_dict"
    assert _params_equal(m, sd_ema)
    torch.save({"ema": sd_ema}, path)
    with pytest.raises(ev.CheckpointError, match="drop --no-ema"):
        ev.load_checkpoint(tiny_net(3), path, genotype_name="g", prefer_ema=False)
    torch.save({"weights": sd_ema}, path)
    with pytest.raises(ev.CheckpointError, match=r"keys \['weights'\]"):
        ev.read_state_dict(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ev.CheckpointError, match="cannot read"):
        ev.read_state_dict(path)


def test_checkpoint_of_another_genotype_names_both_files(tmp_path, genotype_file):
    other = tmp_path / "other.pt"
    torch.save({"model": tiny_net(width=12).state_dict()}, other)
    with pytest.raises(ev.CheckpointError) as info:
        ev.load_checkpoint(tiny_net(), other, genotype_name=str(genotype_file))
    msg = str(info.value)
    assert str(other) in msg and str(genotype_file) in msg and "shape mismatches" in msg
    torch.save({"model": {**tiny_net().state_dict(), "extra.weight": torch.zeros(1)}}, other)
    with pytest.raises(ev.CheckpointError, match=r"unexpected keys \[extra.weight\]"):
        ev.load_checkpoint(tiny_net(), other, genotype_name=str(genotype_file))


def test_checkpoint_recording_another_genotype_is_refused(tmp_path, genotype_file):
    """Same keys and shapes (only the activation differs): the recorded genotype catches it."""
    g2 = tiny_genotype(act="lrelu0.1")
    path = tmp_path / "run.pt"
    torch.save({"model": build_model(g2).state_dict(), "genotype": g2.to_json(indent=None)}, path)
    with pytest.raises(ev.CheckpointError, match="trained for genotype") as info:
        ev.load_checkpoint(tiny_net(), path, genotype_name=str(genotype_file))
    assert str(path) in str(info.value) and str(genotype_file) in str(info.value)
    g = tiny_genotype()
    torch.save({"model": build_model(g).state_dict(), "genotype": g.to_json(indent=None)}, path)
    assert ev.load_checkpoint(tiny_net(), path, genotype_name=str(genotype_file)) == "model"


def test_cli_loads_checkpoint_and_writes_csv(tmp_path, genotype_file, image_folder, capsys):
    trained = tiny_net(7)
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"step": 1, "model": trained.state_dict(), "ema": None,
                "genotype": tiny_genotype().to_json(indent=None)}, ckpt)
    out = tmp_path / "res" / "per_image.csv"
    rc = ev.main([str(genotype_file), "--weights", str(ckpt), "--sets", str(image_folder),
                  "--out", str(out), "--tile", "auto"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "| set | images | PSNR-Y [dB]" in stdout and "| mini | 2 |" in stdout
    df = pd.read_csv(out)
    assert list(df.columns) == list(eval_sets.ROW_COLUMNS) and len(df) == 2
    # the numbers are those of the checkpoint's weights, not of a fresh init
    expected = eval_sets.evaluate_model(trained, [str(image_folder)], scale=2, data_range=1.0)
    np.testing.assert_allclose(df["psnr_y_db"], expected["psnr_y_db"], rtol=0, atol=1e-9)
    fresh = eval_sets.evaluate_model(tiny_net(8), [str(image_folder)], scale=2, data_range=1.0)
    assert not np.allclose(df["psnr_y_db"], fresh["psnr_y_db"])


def test_cli_wrong_checkpoint_missing_folder_and_no_weights(
    tmp_path, genotype_file, image_folder, capsys, caplog
):
    other = tmp_path / "other_genotype.pt"
    torch.save({"model": tiny_net(width=12).state_dict()}, other)
    rc = ev.main([str(genotype_file), "--weights", str(other), "--sets", str(image_folder)])
    err = capsys.readouterr().err
    assert rc == 2 and str(other) in err and str(genotype_file) in err

    missing = tmp_path / "no_such_set"
    rc = ev.main([str(genotype_file), "--sets", str(missing)])
    assert rc == 2 and str(missing) in capsys.readouterr().err

    with caplog.at_level(logging.WARNING, logger="results.evaluate"):
        rc = ev.main([str(genotype_file), "--sets", str(image_folder)])
    assert rc == 0 and "randomly initialised" in caplog.text

    with pytest.raises(SystemExit) as exit_info:
        ev.main([str(genotype_file), "--tile", "0"])
    assert exit_info.value.code == 2
    assert ("argument --tile: got '0'; allowed: an LR tile side >= 1 (e.g. 128) or 'auto'"
            in capsys.readouterr().err)


@pytest.mark.skipif(
    not (DATASETS / "Set5" / "HR").is_dir(),
    reason=f"shared benchmark folder {DATASETS / 'Set5' / 'HR'} absent (set SRNAS_DATASETS)",
)
def test_tiny_net_on_set5():
    df = eval_sets.evaluate_model(tiny_net(scale=4), ["Set5"], scale=4, data_range=1.0,
                                  datasets_root=DATASETS)
    assert df["image"].tolist() == ["baby", "bird", "butterfly", "head", "woman"]
    assert df[["lr_h", "lr_w"]].values.tolist() == [
        [128, 128], [72, 72], [64, 64], [70, 70], [86, 57]
    ]
    assert np.isfinite(df["psnr_y_db"]).all() and (df["set"] == "Set5").all()
    summary = eval_sets.summarise(df)
    assert summary["images"].tolist() == [5]
