"""Deployment export (proxies/export/onnx_file.py, proxies/export/pt2_file.py and the
results/export/command.py
command): ONNX via ONNX Runtime and torch.export programs.

Every file is checked twice: by the export function itself, and here, independently, at an
input size (and batch) that the export function did not use.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import results.export.command as export_module
from proxies.data.downsample import bicubic_downsample
from proxies.data.specs import default_images
from proxies.export.check import ExportCheckError
from proxies.export.onnx_file import export_onnx
from proxies.export.pt2_file import PROGRAM_META, export_pt2
from results.export.command import load_state_dict, main
from search_space import Attention, CellGene, Genotype, SRNet, build_model, reparameterize
from search_space.attention import ESA, ESALite
from search_space.genes import GroupGene
from search_space.rep import ECB, RRRB, ChannelShuffle, Conv3XC, WeightNormConv2d
from search_space.zoo import ZOO

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

ATOL = 1e-4  # relative to the data range, as the export functions use it

# One small net per cell type, covering every attention and the re-parameterised ops.
NETS: dict[str, Genotype] = {
    "rfdb_esa": Genotype(
        scale=2, width=12, data_range=255.0,
        cells=(CellGene("rfdb", ("conv3x3", "rep_conv3x3", "ecb3x3", "conv1x1"),
                        Attention("esa", channels=4), "lrelu0.05", shallow_residual=True),),
    ),
    "rlfb_esa_lite": Genotype(
        scale=3, width=12, data_range=255.0,
        cells=(CellGene("rlfb", ("ecb3x3", "conv3x3", "sep_conv3x3"),
                        Attention("esa_lite", channels=8), "lrelu0.05", inner=8,
                        block_residual=True),),
    ),
    "imdb_cca": Genotype(
        scale=4, width=16, data_range=1.0, fusion=True,
        cells=(CellGene("imdb", ("conv3x3", "bsconv3x3", "dil_conv3x3_d2", "rep_conv3x3"),
                        Attention("cca", channels=4), "prelu", inner=4, block_residual=True),),
    ),
    "erb_hfab_pa": Genotype(
        scale=4, width=12, data_range=255.0,
        cells=(CellGene("erb", ("rep_conv3x3", "ecb3x3"),
                        Attention("hfab", channels=8, op="rep_conv3x3", bn=True), "lrelu0.1"),
               CellGene("erb", ("conv3x3",), Attention("pa"), "silu", block_residual=True)),
    ),
    # SPAN's frame: Conv3XC head/LR conv, mean shift with a deployed input scale, fusion taps
    # (with a first-slot tap), LR conv before the fusion, no long skip; no biases (DIPNet).
    "spab_span_taps": Genotype(
        scale=2, width=8, data_range=1.0, fusion=True, fusion_act="none",
        cells=(CellGene("spab", ("conv3xc", "conv3x3", "conv3xc"), Attention("none"), "silu",
                        block_residual=True),
               CellGene("spab", ("conv3x3",) * 3, Attention("none"), "silu", inner=6,
                        block_residual=True)),
        fusion_taps=("head", "lr_conv", "cells.0", "cells.1.act0"), lr_conv_before_fusion=True,
        long_skip=False, input_mean=(0.4488, 0.4371, 0.4040), input_scale=255.0, bias=False,
        head_op="conv3xc", lr_conv_op="conv3xc",
    ),
    # MAFFSRN's pieces: MAB cells with an ESA-variant + CEA gate sequence, feature-fusion
    # groups with shuffles and scalars, weight norm, no LR conv, dual tail, bicubic skip.
    "mab_ffg_dual_bicubic": Genotype(
        scale=2, width=8, data_range=1.0, long_skip=False, lr_conv_op="none",
        cells=(CellGene("mab", ("conv3x3", "conv3x3"),
                        (Attention("esa_mab", channels=4), Attention("cea")), "lrelu0.05"),
               CellGene("mab", ("conv3x3", "sep_conv3x3"),
                        (Attention("esa_mab", channels=4), Attention("cea")), "lrelu0.05",
                        block_residual=True),
               CellGene("mab", ("conv3x3", "conv3x3"), Attention("cea"), "lrelu0.05")),
        groups=(GroupGene(3),), weight_norm=True, tail="dual", tail_scales=True,
        input_skip="bicubic",
    ),
}
HAS_ESA = {"rfdb_esa", "rlfb_esa_lite", "mab_ffg_dual_bicubic"}


def trained_like(genotype: Genotype, seed: int = 0) -> SRNet:
    """A net with every parameter and batch-norm statistic moved off its initial value."""
    torch.manual_seed(seed)
    model = build_model(genotype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def deployed(genotype: Genotype, seed: int = 0) -> SRNet:
    net = reparameterize(trained_like(genotype, seed))
    merged_away = (ECB, RRRB, Conv3XC, nn.BatchNorm2d, WeightNormConv2d, ChannelShuffle)
    assert not any(isinstance(m, merged_away) for m in net.modules())
    return net


def eager(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x.clone()).numpy()


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut, 512x512), float32 HxWx3 in [0, 1]."""
    return default_images()[0][1]


def as_input(img: np.ndarray, data_range: float, batch: int = 1) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None] * data_range
    return x.repeat(batch, 1, 1, 1)


# ------------------------------------------------------------------------------- small nets


@pytest.fixture(scope="module")
def export_of(photo: np.ndarray, tmp_path_factory: pytest.TempPathFactory
              ) -> Callable[[str], dict[str, Any]]:
    """``export_of(name)``: the small net ``name`` exported once per module, as a dict with
    ``net`` and the results of ``export_onnx`` (checked on a 33x17 photo crop) and
    ``export_pt2`` (traced at 20x24)."""
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            net = deployed(NETS[name])
            out = tmp_path_factory.mktemp(name)
            onnx_res = export_onnx(net, out / "m.onnx", check_image=photo[200:233, 240:257])
            example = as_input(photo[100:120, 300:324], net.data_range)
            pt2_res = export_pt2(net, out / "m.pt2", example=example)
            cache[name] = {"name": name, "net": net, "onnx": onnx_res, "pt2": pt2_res}
        return cache[name]

    return get


@pytest.fixture(params=sorted(NETS))
def exported(request: pytest.FixtureRequest,
             export_of: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return export_of(request.param)


def test_onnx_matches_pytorch_at_two_sizes(exported: dict[str, Any], photo: np.ndarray) -> None:
    net, res = exported["net"], exported["onnx"]
    tol = ATOL * net.data_range
    first, second, smallest = (c["input_shape"] for c in res["checks"])
    assert first == [1, 3, 33, 17]
    assert second[:2] == [2, 3] and second[2] != 33 and second[3] != 17  # dynamic axes
    assert smallest == [1, 3, 1, 1]  # the recorded minimum, checked too
    assert res["max_abs_diff"] <= tol and res["opset"] == 18 and res["file_bytes"] > 0
    # Independently: ONNX Runtime at another batch and size, on a real photo crop.
    session = ort.InferenceSession(res["path"], providers=["CPUExecutionProvider"])
    for img in (photo[300:320, 100:124], photo[10:47, 400:421]):  # 20x24 and 37x21
        x = as_input(img, net.data_range, batch=3)
        got = session.run(["sr"], {"lr": x.numpy()})[0]
        assert got.shape == (3, 3, img.shape[0] * net.scale, img.shape[1] * net.scale)
        assert max_diff(got, eager(net, x)) <= tol
    proto = onnx.load(res["path"])
    onnx.checker.check_model(proto)
    for value in (proto.graph.input[0], proto.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert [bool(d.dim_param) for d in dims] == [True, False, True, True]
        assert dims[1].dim_value == 3
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["srnas.min_input_height"] == meta["srnas.min_input_width"] == "1"  # ESA too
    assert Genotype.from_json(meta["srnas.genotype"]) == net.genotype


def test_pt2_matches_pytorch_at_another_size(exported: dict[str, Any], photo: np.ndarray) -> None:
    net, res = exported["net"], exported["pt2"]
    tol = ATOL * net.data_range
    assert res["checks"][0]["input_shape"] == [1, 3, 20, 24]
    assert res["checks"][1]["input_shape"][:2] == [2, 3]
    assert res["checks"][1]["input_shape"][2:] != [20, 24]
    assert res["checks"][2]["input_shape"] == [1, 3, 1, 1]
    assert res["max_abs_diff"] <= tol
    program = torch.export.load(res["path"]).module()
    x = as_input(photo[50:83, 60:77], net.data_range, batch=3)  # 33x17, not the example size
    with torch.no_grad():
        got = program(x.clone()).numpy()
    assert got.shape == (3, 3, 33 * net.scale, 17 * net.scale)
    assert max_diff(got, eager(net, x)) <= tol
    assert res["min_input_hw"] == [1, 1]  # ESA nets too


# ------------------------------------------------------------------ ESA at every input size

# Below 15 px ESA pads its maps (see search_space.attention._pool): sizes that used to crash
# ONNX Runtime (SIGFPE at 5, 7, 9, 10 px) or to differ from PyTorch (non-square under 15 px).
SMALL_HW = [(7, 7), (1, 1), (2, 2), (5, 5), (10, 10), (14, 20), (9, 13), (20, 14), (1, 6)]

_ORT_RUN = textwrap.dedent("""
    import numpy as np, onnxruntime as ort
    session = ort.InferenceSession("m.onnx", providers=["CPUExecutionProvider"])
    inputs = np.load("inputs.npz")
    np.savez("outputs.npz", **{k: session.run(["sr"], {"lr": v})[0] for k, v in inputs.items()})
""")


@pytest.mark.parametrize("name", sorted(HAS_ESA))
def test_esa_onnx_matches_pytorch_below_15_px(
    name: str, export_of: Callable[[str], dict[str, Any]], tmp_path: Path
) -> None:
    exp = export_of(name)
    net = exp["net"]
    shutil.copy(exp["onnx"]["path"], tmp_path / "m.onnx")
    gen = torch.Generator().manual_seed(5)
    inputs = {f"{h}x{w}": torch.rand(2, 3, h, w, generator=gen) * net.data_range
              for h, w in SMALL_HW}
    np.savez(tmp_path / "inputs.npz", **{k: v.numpy() for k, v in inputs.items()})
    # In a child process: an ONNX Runtime crash (SIGFPE) fails this test, not the whole run.
    proc = subprocess.run([sys.executable, "-c", _ORT_RUN], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"ONNX Runtime failed ({proc.returncode}): {proc.stderr[-2000:]}"
    outputs = np.load(tmp_path / "outputs.npz")
    program = torch.export.load(exp["pt2"]["path"]).module()
    tol = ATOL * net.data_range  # 1e-4 of the data range (0.0255 here); measured <= 2.2e-4
    for key, x in inputs.items():
        expected = eager(net, x)
        assert expected.shape == (2, 3, x.shape[2] * net.scale, x.shape[3] * net.scale)
        assert np.isfinite(expected).all(), key
        assert max_diff(outputs[key], expected) <= tol, key
        with torch.no_grad():
            assert max_diff(program(x.clone()).numpy(), expected) <= tol, key


def test_esa_programs_accept_small_inputs_and_small_tracing_inputs(
    export_of: Callable[[str], dict[str, Any]], tmp_path: Path
) -> None:
    net = export_of("rlfb_esa_lite")["net"]
    # Traced at 1x3 px (batch 1): the program is still not specialised to that size.
    res = export_pt2(net, tmp_path / "small.pt2", example=torch.rand(1, 3, 1, 3) * 255.0)
    assert res["min_input_hw"] == [1, 1] and res["max_abs_diff"] <= ATOL * 255.0
    program = torch.export.load(res["path"]).module()
    for h, w in ((14, 20), (2, 1), (37, 29)):
        x = torch.rand(3, 3, h, w) * 255.0
        with torch.no_grad():
            assert max_diff(program(x.clone()).numpy(), eager(net, x)) <= ATOL * 255.0


def _official_esa(m: ESA, x: torch.Tensor) -> torch.Tensor:
    """RFDN's ESA.forward (Liu et al., ECCVW 2020), out of place. The pool window is
    ``min(7, map)``: 7, the official one, from 15 px on; the map itself for square inputs
    under 15 px (what this repository has always computed there)."""
    c1_ = m.conv1(x)
    c1 = m.conv2(c1_)
    v_max = F.max_pool2d(c1, kernel_size=min(7, c1.shape[-2], c1.shape[-1]), stride=3)
    v_range = m.relu(m.conv_max(v_max))
    c3 = m.conv3_(m.relu(m.conv3(v_range)))
    c3 = F.interpolate(c3, (x.size(2), x.size(3)), mode="bilinear", align_corners=False)
    return x * torch.sigmoid(m.conv4(c3 + m.conv_f(c1_)))


def _official_esa_lite(m: ESALite, x: torch.Tensor) -> torch.Tensor:
    """RLFN's ESA.forward (Kong et al., CVPRW 2022), out of place; window as above."""
    c1_ = m.conv1(x)
    c1 = m.conv2(c1_)
    v_max = F.max_pool2d(c1, kernel_size=min(7, c1.shape[-2], c1.shape[-1]), stride=3)
    c3 = F.interpolate(m.conv3(v_max), (x.size(2), x.size(3)), mode="bilinear",
                       align_corners=False)
    return x * torch.sigmoid(m.conv4(c3 + m.conv_f(c1_)))


OFFICIAL_HW = [(15, 15), (15, 16), (16, 15), (15, 40), (21, 22), (33, 47)]


@pytest.mark.parametrize("cls, reference", [(ESA, _official_esa), (ESALite, _official_esa_lite)])
def test_esa_is_the_official_computation_from_15_px(cls: type[nn.Module],
                                                    reference: Callable[..., torch.Tensor]
                                                    ) -> None:
    torch.manual_seed(0)
    m = cls(12, 6).eval()
    squares = [(n, n) for n in (3, 4, 5, 8, 13, 14)]  # padded, the same as the shrunk window
    for h, w in OFFICIAL_HW + squares:
        x = torch.randn(2, 12, h, w)
        with torch.no_grad():
            expected = reference(m, x)
            assert torch.equal(m(x.clone()), expected), (h, w)  # in-place inference path
        if (h, w) in OFFICIAL_HW[:3]:
            assert torch.equal(m(x.clone().requires_grad_()).detach(), expected), (h, w)


@pytest.mark.parametrize("cls", [ESA, ESALite])
def test_esa_is_defined_at_every_size(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    m = cls(8, 4).eval()
    with torch.no_grad():
        for h in range(1, 16):
            for w in (1, 2, 3, 6, 7, 13, 16):
                y = m(torch.randn(1, 8, h, w))
                assert y.shape == (1, 8, h, w) and torch.isfinite(y).all(), (h, w)
    for h, w in ((1, 1), (2, 5), (6, 14)):  # training patches: gradients reach the input
        x = torch.randn(1, 8, h, w, requires_grad=True)
        m(x).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.any(), (h, w)
    half = m.half()  # the max-pool's padding value is finite: no NaN in fp16 either
    with torch.no_grad():
        for h, w in ((1, 1), (5, 9), (14, 20)):
            assert torch.isfinite(half(torch.randn(1, 8, h, w).half())).all(), (h, w)


class _ExportOnlyOffset(nn.Module):
    """A conv whose exported form adds 1: the checks must notice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + 1.0 if torch.compiler.is_exporting() else y


def test_checks_catch_a_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ExportCheckError, match="differs from PyTorch"):
        export_onnx(_ExportOnlyOffset(), tmp_path / "m.onnx")
    with pytest.raises(ExportCheckError, match="differs from PyTorch"):
        export_pt2(_ExportOnlyOffset(), tmp_path / "m.pt2", example=torch.rand(1, 3, 8, 8))


def test_bad_arguments_name_the_parameter(tmp_path: Path) -> None:
    net = _ExportOnlyOffset()
    with pytest.raises(ValueError, match="opset: got 9"):
        export_onnx(net, tmp_path / "m.onnx", opset=9)
    with pytest.raises(ValueError, match=r"check_image: got \(8, 8\)"):
        export_onnx(net, tmp_path / "m.onnx", check_image=np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="atol: got -1"):
        export_pt2(net, tmp_path / "m.pt2", example=torch.rand(1, 3, 8, 8), atol=-1)
    with pytest.raises(ValueError, match="example: got"):
        export_pt2(net, tmp_path / "m.pt2", example=torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="model: got str"):
        export_pt2("net", tmp_path / "m.pt2", example=torch.rand(1, 3, 8, 8))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- zoo net


def test_zoo_net_matches_on_a_real_image(photo: np.ndarray, tmp_path: Path) -> None:
    net = deployed(ZOO["rlfn_ntire"], seed=1)
    lr = bicubic_downsample(photo, 4)[32:96, 40:104]  # a real 64x64 LR crop
    res = export_onnx(net, tmp_path / "rlfn.onnx", check_image=lr)
    assert res["checks"][0]["input_shape"] == [1, 3, 64, 64]
    assert res["checks"][0]["output_shape"] == [1, 3, 256, 256]
    assert res["max_abs_diff"] <= ATOL * 255.0
    session = ort.InferenceSession(res["path"], providers=["CPUExecutionProvider"])
    x = as_input(lr, 255.0)
    assert max_diff(session.run(["sr"], {"lr": x.numpy()})[0], eager(net, x)) <= ATOL * 255.0


# The 2023-2026 entries and MemSR's nets themselves (the small nets above cover their pieces;
# MAFFSRN's frame is "mab_ffg_dual_bicubic", and its full export is in BENCHMARKS.md: 18 s).
NEW_ZOO = ("span_ntire2024_train", "dipnet_ntire2023", "edsr_baseline", "memsr_plain")


@pytest.mark.parametrize("name", NEW_ZOO)
def test_new_zoo_entries_export_to_onnx(name: str, photo: np.ndarray, tmp_path: Path) -> None:
    torch.manual_seed(2)  # perturbed relative to each tensor: 0.05 absolute blows EDSR's 37 up
    model = build_model(ZOO[name]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2 * p.abs().mean())
    net = reparameterize(model)
    lr = bicubic_downsample(photo, 4)[40:52, 60:76]  # a real 12x16 LR crop
    res = export_onnx(net, tmp_path / f"{name}.onnx", check_image=lr)
    assert res["checks"][0]["output_shape"] == [1, 3, 48, 64]
    tol = ATOL * net.data_range
    assert res["max_abs_diff"] <= tol
    session = ort.InferenceSession(res["path"], providers=["CPUExecutionProvider"])
    x = as_input(photo[300:310, 100:114], net.data_range)  # a size the export did not check
    assert max_diff(session.run(["sr"], {"lr": x.numpy()})[0], eager(net, x)) <= tol


# --------------------------------------------------------------- standalone load (no repo)

_STANDALONE = textwrap.dedent("""
    import importlib.abc, json, sys

    REPO = {repo!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in REPO:
                raise ModuleNotFoundError(f"blocked: {{name}}")
            return None

    sys.meta_path.insert(0, Block())
    try:
        import search_space  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the repository is importable: the test would prove nothing")

    import torch

    extra = {{{meta!r}: ""}}
    program = torch.export.load("model.pt2", extra_files=extra).module()
    data = torch.load("io.pt")
    with torch.no_grad():
        out = program(data["x"])
    assert not [m for m in sys.modules if m.split(".")[0] in REPO], "repo code was imported"
    diff = (out - data["expected"]).abs().max().item()
    meta = json.loads(extra[{meta!r}])
    print(json.dumps({{"diff": diff, "shape": list(out.shape), "meta": meta}}))
""")


def test_pt2_loads_in_a_fresh_process_without_the_repo(
    export_of: Callable[[str], dict[str, Any]], tmp_path: Path
) -> None:
    exp = export_of("rfdb_esa")
    net = exp["net"]
    shutil.copy(exp["pt2"]["path"], tmp_path / "model.pt2")
    x = torch.rand(2, 3, 37, 29) * 255.0
    torch.save({"x": x, "expected": torch.from_numpy(eager(net, x))}, tmp_path / "io.pt")
    code = _STANDALONE.format(repo=("search_space", "proxies", "results", "searchers"),
                              meta=PROGRAM_META)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [2, 3, 74, 58]
    assert result["diff"] <= ATOL * 255.0
    assert result["meta"]["min_input_hw"] == [1, 1] and result["meta"]["scale"] == 2


# ------------------------------------------------------------------------------------- CLI

CLI_NET = Genotype(
    scale=2, width=8, data_range=255.0,
    cells=(CellGene("erb", ("ecb3x3", "conv3x3"), Attention("pa"), "relu", block_residual=True),),
)


def test_cli_end_to_end(photo: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        ) -> None:
    genotype_path = CLI_NET.save(tmp_path / "net.json")
    ema, raw = trained_like(CLI_NET, seed=3), trained_like(CLI_NET, seed=4)
    ckpt = {"step": 10, "genotype": CLI_NET.to_json(indent=None),
            "model": raw.state_dict(), "ema": ema.state_dict()}
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    lr = photo[150:186, 250:290]  # 36x40
    Image.fromarray(np.round(lr * 255).astype(np.uint8)).save(tmp_path / "lr.png")
    out = tmp_path / "export"
    rc = main([str(genotype_path), "--weights", str(tmp_path / "checkpoint.pt"),
               "--out", str(out), "--image", str(tmp_path / "lr.png")])
    assert rc == 0
    assert "model.onnx" in capsys.readouterr().out
    report = json.loads((out / "export.json").read_text())
    assert report["weights_entry"] == "ema" and report["reparameterized"] is True
    assert Genotype.from_dict(report["genotype"]) == CLI_NET.deployed()
    for key in ("onnx", "pt2"):
        assert report[key]["checks"][0]["input_shape"] == [1, 3, 36, 40]
        assert report[key]["max_abs_diff"] <= ATOL * 255.0
    # The files hold the EMA weights, re-parameterised.
    x = as_input(lr, 255.0)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["sr"], {"lr": x.numpy()})[0]
    with torch.no_grad():
        got_pt2 = torch.export.load(out / "model.pt2").module()(x.clone()).numpy()
    assert max_diff(got, eager(reparameterize(ema), x)) <= ATOL * 255.0
    assert max_diff(got_pt2, eager(reparameterize(ema), x)) <= ATOL * 255.0
    assert max_diff(got, eager(raw, x)) > 1.0


def test_cli_without_weights_uses_the_default_image(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The exports themselves are tested above; here only what the CLI hands them.
    seen: dict[str, Any] = {}

    def fake_export(kind: str) -> Callable[..., dict[str, Any]]:
        def run(model: nn.Module, path: Path, **kwargs: Any) -> dict[str, Any]:
            seen[kind] = {"model": model, **kwargs}
            check = {"input_shape": [1, 3, 48, 48], "max_abs_diff": 0.0}
            return {"path": str(path), "file_bytes": 1, "max_abs_diff": 0.0, "tolerance": 0.0,
                    "checks": [check], "min_input_hw": [1, 1]}
        return run

    monkeypatch.setattr(export_module, "export_onnx", fake_export("onnx"))
    monkeypatch.setattr(export_module, "export_pt2", fake_export("pt2"))
    with caplog.at_level(logging.WARNING, logger="results.export"):
        rc = main([str(CLI_NET.save(tmp_path / "net.json")), "--out", str(tmp_path / "o"),
                   "--crop", "48"])
    assert rc == 0
    assert "no --weights" in caplog.text
    report = json.loads((tmp_path / "o" / "export.json").read_text())
    assert report["weights"] is None and report["image"]["source"] == "default:astronaut"
    assert report["image"]["shape"] == [48, 48, 3]
    # The scikit-image photo, bicubic-downscaled by the net's scale, centre crop 48x48.
    lr = bicubic_downsample(default_images()[0][1], CLI_NET.scale)
    top, left = (lr.shape[0] - 48) // 2, (lr.shape[1] - 48) // 2
    np.testing.assert_array_equal(seen["onnx"]["check_image"], lr[top:top + 48, left:left + 48])
    assert torch.equal(seen["pt2"]["example"], as_input(seen["onnx"]["check_image"], 255.0))
    assert seen["onnx"]["model"].genotype == CLI_NET.deployed()


def test_cli_rejects_weights_of_another_net(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(build_model(NETS["imdb_cca"]).state_dict(), tmp_path / "other.pt")
    rc = main([str(CLI_NET.save(tmp_path / "net.json")), "--weights",
               str(tmp_path / "other.pt"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "does not fit the genotype" in capsys.readouterr().err
    torch.save({"genotype": NETS["imdb_cca"].to_json(), "model": 3}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a state_dict"):
        load_state_dict(tmp_path / "bad.pt")


def test_deployed_weights_load_for_a_training_form_genotype(tmp_path: Path) -> None:
    from results.export.command import build_from_checkpoint

    net = deployed(NETS["erb_hfab_pa"])
    torch.save({"ema": None, "model": net.state_dict()}, tmp_path / "deployed.pt")
    state, where, _ = load_state_dict(tmp_path / "deployed.pt")
    assert where == "model"  # "ema" is None: the next entry is taken
    model = build_from_checkpoint(NETS["erb_hfab_pa"], state)
    assert model.genotype == NETS["erb_hfab_pa"].deployed()
    x = torch.rand(1, 3, 16, 16) * 255.0
    assert max_diff(eager(model, x), eager(net, x)) == 0.0
