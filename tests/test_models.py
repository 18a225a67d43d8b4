"""Ops, cells and networks: shapes at every scale, gradients everywhere, exact re-param."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search_space import (
    ACTIVATIONS,
    ATTENTIONS,
    CELL_SLOTS,
    CONV_OPS,
    Attention,
    CellGene,
    Genotype,
    build_model,
    reparameterize,
)
from search_space.attention import ATTENTION_OPS, CEA, HFAB, AttentionProduct, ESAMab
from search_space.cells import CELLS
from search_space.genes import GroupGene
from search_space.network import super_resolve
from search_space.ops import ACTIVATION_OPS, OPS
from search_space.registry import UnknownNameError
from search_space.rep import ChannelShuffle, WeightNormConv2d, fold_shuffle
from search_space.zoo import ZOO


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # every test sees the same initialisation, whatever runs before it


def _randomise_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def _all_params_get_grad(module: nn.Module, out: torch.Tensor) -> None:
    out.square().mean().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert float(p.grad.abs().sum()) > 0, f"zero gradient at {name}"


def test_tables_match_declared_names():
    assert tuple(OPS) == CONV_OPS
    assert tuple(ATTENTION_OPS) == ATTENTIONS
    assert tuple(ACTIVATION_OPS) == ACTIVATIONS


def test_unknown_op_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="valid names: conv1x1, conv3x3"):
        OPS["conv4x4"]


@pytest.mark.parametrize("name", CONV_OPS)
@pytest.mark.parametrize("c_in, c_out", [(8, 8), (6, 10)])
def test_conv_op_shape_and_gradient(name, c_in, c_out):
    op = OPS[name](c_in, c_out)
    x = torch.randn(2, c_in, 17, 20)
    y = op(x)
    assert y.shape == (2, c_out, 17, 20)
    _all_params_get_grad(op, y)


@pytest.mark.parametrize("name", ["rep_conv3x3", "ecb3x3", "conv3xc"])
@pytest.mark.parametrize("c_in, c_out", [(8, 8), (6, 10), (3, 8)])
def test_rep_ops_merge_into_one_conv(name, c_in, c_out):
    op = OPS[name](c_in, c_out).eval()
    for p in op.parameters():  # ECB's edge scales start near 0: make every branch matter
        p.data.uniform_(-0.3, 0.3)
    merged = op.reparameterize()
    assert isinstance(merged, nn.Conv2d) and merged.kernel_size == (3, 3)
    x = torch.rand(1, c_in, 19, 23)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), op(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_conv3xc_merges_exactly_at_the_border(bias):
    # SPAN's Conv3XC pads its input before the first 1x1, so that 1x1's bias lands on the
    # padded ring: the merged zero-padded 3x3 must match there too (bias=False: no bias left).
    op = OPS["conv3xc"](5, 7, bias=bias).eval()
    assert sum(p.numel() for p in op.parameters()) == (
        5 * 7 + 5 * 10 + 10 * 14 * 9 + 14 * 7 + (7 + 10 + 14 + 7) * bias)
    for p in op.parameters():
        p.data.uniform_(-0.5, 0.5)
    merged = op.reparameterize()
    assert merged.padding == (1, 1) and (merged.bias is not None) == bias
    x = torch.randn(2, 5, 9, 11) * 3
    with torch.no_grad():
        ref, out = op(x), merged(x)
    ring = torch.ones_like(ref, dtype=torch.bool)
    ring[..., 1:-1, 1:-1] = False
    torch.testing.assert_close(out[ring], ref[ring], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_ops_that_pad_with_their_bias_refuse_bias_false():
    for name in ("rep_conv3x3", "ecb3x3"):
        with pytest.raises(ValueError, match="bias: got False.*conv3xc"):
            OPS[name](4, 4, bias=False)
    for name in CONV_OPS:
        if name not in ("rep_conv3x3", "ecb3x3"):
            op = OPS[name](4, 6, bias=False)
            assert op(torch.zeros(1, 4, 5, 5)).abs().max() == 0, name  # no bias anywhere


def test_spab_is_the_span_block():
    gene = CellGene("spab", ("conv3x3",) * 3, Attention("none"), "silu", block_residual=True)
    cell = CELLS["spab"](gene, 6).eval()
    x = torch.randn(1, 6, 9, 10)
    with torch.no_grad():
        c1, c2, c3 = cell.convs
        a1 = torch.nn.functional.silu(c1(x))
        h3 = c3(torch.nn.functional.silu(c2(a1)))
        out, tap = cell.features(x.clone())
        torch.testing.assert_close(out, (h3 + x) * (torch.sigmoid(h3) - 0.5))
        torch.testing.assert_close(tap, a1)  # post-activation: SPAN's in-place SiLU
        torch.testing.assert_close(cell(x), out)
    slow, slow_tap = cell.features(x.clone().requires_grad_())  # out-of-place path
    torch.testing.assert_close(slow.detach(), out)
    torch.testing.assert_close(slow_tap.detach(), a1)


@pytest.mark.parametrize("name", ATTENTIONS)
@pytest.mark.parametrize("size", [12, 33])
def test_attention_shape_and_gradient(name, size):
    spec = Attention(name, channels=None if name in ("pa", "none", "cea") else 4)
    op = ATTENTION_OPS[name](16, spec, "lrelu0.05")
    x = torch.randn(1, 16, size, size + 3)
    y = op(x)
    assert y.shape == x.shape
    if name != "none":
        _all_params_get_grad(op, y)


@pytest.mark.parametrize("op", ["conv3x3", "rep_conv3x3", "ecb3x3"])
def test_hfab_training_form_folds_exactly(op):
    hfab = HFAB(12, 6, blocks=2, op=op, act="lrelu0.1", bn=True)
    _randomise_bn(hfab)
    hfab.eval()
    deployed = hfab.reparameterize()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert deployed.squeeze.padding == (1, 1)
    x = torch.rand(1, 12, 21, 18)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), hfab(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_modules(act):
    m = ACTIVATION_OPS[act](4)
    assert m(torch.randn(1, 4, 3, 3)).shape == (1, 4, 3, 3)


def _genotype(cell_type: str, scale: int = 2, width: int = 16, **cell_kw) -> Genotype:
    ops = cell_kw.pop("ops", None) or ("conv3x3",) * CELL_SLOTS[cell_type][0]
    cell = CellGene(cell_type, ops, **cell_kw)
    return Genotype(scale=scale, width=width, cells=(cell, cell), fusion=True)


@pytest.mark.parametrize("cell_type", list(CELL_SLOTS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_network_shapes_at_every_scale(cell_type, scale):
    model = build_model(_genotype(cell_type, scale, attention=Attention("esa")))
    x = torch.rand(2, 3, 16, 20)
    assert model(x).shape == (2, 3, 16 * scale, 20 * scale)


@pytest.mark.parametrize("cell_type", list(CELL_SLOTS))
@pytest.mark.parametrize("act", ["prelu", "gelu"])
def test_every_parameter_of_every_cell_gets_a_gradient(cell_type, act):
    kw = dict(act=act, attention=Attention("pa"), block_residual=True)
    if cell_type == "rfdb":
        kw["shallow_residual"] = True
    model = build_model(_genotype(cell_type, width=12, **kw))
    _all_params_get_grad(model, model(torch.rand(1, 3, 16, 16)))


@pytest.mark.parametrize("cell_type", list(CELL_SLOTS))
def test_switches_change_the_function(cell_type):
    g = _genotype(cell_type)
    torch.manual_seed(1)
    a = build_model(g).eval()
    b = build_model(Genotype(**{**g.__dict__, "cells": tuple(
        CellGene(**{**c.__dict__, "block_residual": True}) for c in g.cells)})).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))


def _mixed_training_genotype() -> Genotype:
    hfab = Attention("hfab", channels=8, blocks=2, op="ecb3x3", bn=True)
    cells = (
        CellGene("rfdb", ("rep_conv3x3", "ecb3x3", "sep_conv3x3", "rep_conv3x3"),
                 Attention("esa"), "lrelu0.05", shallow_residual=True),
        CellGene("rlfb", ("ecb3x3", "rep_conv3x3", "bsconv3x3"), Attention("esa_lite"), "gelu",
                 inner=12, block_residual=True),
        CellGene("imdb", ("rep_conv3x3", "ecb3x3", "rep_conv3x3", "ecb3x3"), Attention("cca"),
                 "prelu", block_residual=True),
        CellGene("erb", ("rep_conv3x3", "ecb3x3"), hfab, "lrelu0.1"),
    )
    return Genotype(scale=3, width=16, cells=cells, fusion=True, data_range=1.0)


def test_reparameterize_matches_training_form_and_deployed_genotype():
    model = build_model(_mixed_training_genotype())
    for p in model.parameters():
        p.data.add_(torch.randn_like(p) * 0.02)
    _randomise_bn(model)
    model.eval()
    deployed = reparameterize(model)
    assert deployed.genotype == model.genotype.deployed()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    fresh = build_model(model.genotype.deployed())
    fresh.load_state_dict(deployed.state_dict())  # same structure, same keys
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        ref = model(x)
        assert (deployed(x) - ref).abs().max() <= 1e-4
        assert (fresh(x) - ref).abs().max() <= 1e-4
    assert model.training is False and any(
        isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the input model was changed"


def test_fmen_train_reparameterizes_into_fmen_s():
    train = build_model(ZOO["fmen_s_train"])
    _randomise_bn(train)
    train.eval()
    deployed = reparameterize(train)
    target = build_model(ZOO["fmen_s"])
    target.load_state_dict(deployed.state_dict())
    assert sum(p.numel() for p in deployed.parameters()) == 341_066
    assert train.data_range == 1.0 and target.data_range == 255.0  # the loaded buffer
    x = torch.rand(1, 3, 20, 20) * 255
    with torch.no_grad():
        torch.testing.assert_close(target(x), train(x / 255) * 255, atol=1e-3, rtol=1e-5)


def _conv_calls(model: nn.Module, x: torch.Tensor) -> list[nn.Conv2d]:
    calls: list[nn.Conv2d] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: calls.append(mod))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return calls


@pytest.mark.parametrize("name", ["rlfn_ntire", "rfdn_aim2020", "fmen_s", "imdn_ntire",
                                  "dipnet_ntire2023", "span_ntire2024", "edsr_baseline"])
def test_training_form_is_on_0_1_and_deployed_form_on_the_official_range(name):
    g = ZOO[name]
    model = build_model(g).eval()
    assert model.data_range == 1.0
    for p in model.parameters():
        p.data.add_(torch.randn_like(p) * 0.01)
    deployed = reparameterize(model)
    assert deployed.data_range == g.data_range and deployed.is_deployed
    assert reparameterize(deployed).data_range == g.data_range  # folded once, not twice
    x = torch.rand(1, 3, 30, 28)
    with torch.no_grad():
        ref = model(x)
        out = deployed(x * g.data_range) / g.data_range
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(super_resolve(deployed, x), super_resolve(model, x),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["rlfn_ntire", "rfdn_aim2020", "fmen_s", "dipnet_ntire2023"])
def test_official_weights_copied_conv_by_conv_reproduce_the_official_net(name):
    # The official net is the published structure run on its own range ([0, 255], DIPNet
    # [0, 1]) with its own weights: the raw module of the genotype called on values in that
    # range. Its weights, copied conv by conv in call order into the deployed form, must give
    # the same outputs on the same input. (SPAN: tests/test_zoo.py, against a clean room.)
    official = build_model(ZOO[name]).eval()
    for p in official.parameters():
        p.data.add_(torch.randn_like(p) * 0.01)
    deployed = reparameterize(build_model(ZOO[name]))
    x = torch.rand(1, 3, 30, 32) * ZOO[name].data_range
    src, dst = _conv_calls(official, x), _conv_calls(deployed, x)
    assert len(src) == len(dst)
    with torch.no_grad():
        for a, b in zip(src, dst, strict=True):
            assert a.weight.shape == b.weight.shape
            assert (a.bias is None) == (b.bias is None)
            b.weight.copy_(a.weight)
            if a.bias is not None:
                b.bias.copy_(a.bias)
        torch.testing.assert_close(deployed(x), official(x), atol=1e-4, rtol=1e-5)


def test_build_model_rejects_non_genotype():
    with pytest.raises(TypeError, match="Genotype"):
        build_model({"scale": 4})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["rfdn_aim2020", "rlfn_ntire", "fmen_s_train", "imdn_paper",
                                  "span_ntire2024_train", "maffsrn"])
def test_inplace_inference_matches_autograd_forward_and_keeps_input(name):
    model = build_model(ZOO[name]).eval()
    x = torch.rand(1, 3, 20, 24)
    x_copy = x.clone()
    with torch.inference_mode():
        fast = model(x)
    assert torch.equal(x, x_copy), "the forward pass wrote into its input"
    slow = model(x.clone().requires_grad_())  # out-of-place path, graph built
    assert slow.requires_grad
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------ MAFFSRN's pieces


def _esa_mab_prose(m: ESAMab, x: torch.Tensor) -> torch.Tensor:
    """MAFFSRN's ESA variant out of place, from the reference's prose (maps of 13 px and more,
    where the official max-pool needs no padding)."""
    f = torch.nn.functional
    rc = m.conv1(x)
    p = f.max_pool2d(m.conv2(rc), 7, stride=3)
    v = f.leaky_relu(m.conv_d1(p), 0.05) + f.leaky_relu(m.conv_d2(p), 0.05)
    up = f.interpolate(v, size=rc.shape[-2:], mode="nearest")
    return x * torch.sigmoid(f.relu(m.conv4(up + rc)))


def test_esa_mab_and_cea_are_the_prose_computation():
    esa, cea = ESAMab(12, 3).eval(), CEA(12).eval()
    assert sum(p.numel() for p in ESAMab(32, 8).parameters()) == 264 + 3 * 584 + 288
    assert sum(p.numel() for p in CEA(32).parameters()) == 1_056 + 832
    assert (esa.conv2.stride, esa.conv2.padding, esa.conv_d2.dilation) == ((2, 2), (1, 1), (2, 2))
    for h, w in ((13, 13), (13, 20), (25, 26), (40, 31)):
        x = torch.randn(2, 12, h, w)
        with torch.no_grad():
            ref = _esa_mab_prose(esa, x)
            torch.testing.assert_close(esa(x.clone()), ref, atol=1e-6, rtol=1e-6)
            gate = esa.gate(x)
            assert float(gate.min()) >= 0.5 and float(gate.max()) < 1.0  # ReLU before sigmoid
            cea_ref = x * torch.sigmoid(cea.depthwise(cea.pointwise(x)))
            torch.testing.assert_close(cea(x.clone()), cea_ref, atol=1e-6, rtol=1e-6)
        slow = esa(x.clone().requires_grad_())  # the out-of-place path
        torch.testing.assert_close(slow.detach(), ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ["esa_mab", "cea"])
def test_new_attention_ops_are_defined_at_every_small_size(name):
    op = ATTENTION_OPS[name](8, Attention(name), "lrelu0.05").eval()
    with torch.no_grad():
        for h in range(1, 16):
            for w in (1, 2, 3, 6, 7, 13, 16):
                y = op(torch.randn(1, 8, h, w))
                assert y.shape == (1, 8, h, w) and torch.isfinite(y).all(), (h, w)
    for h, w in ((1, 1), (2, 5), (6, 14)):  # training patches: gradients reach the input
        x = torch.randn(1, 8, h, w, requires_grad=True)
        op(x).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.any(), (h, w)
    half = op.half()  # the pool pads with a finite value: no NaN in fp16
    with torch.no_grad():
        for h, w in ((1, 1), (5, 9)):
            assert torch.isfinite(half(torch.randn(1, 8, h, w).half())).all(), (h, w)


def test_a_cell_attention_sequence_multiplies_gates_of_the_same_input():
    gates = (Attention("esa_mab", channels=4), Attention("cea"), Attention("cca", channels=2))
    gene = CellGene("mab", ("conv3x3", "sep_conv3x3"), gates, "lrelu0.05")
    cell = CELLS["mab"](gene, 8).eval()
    assert isinstance(cell.attention, AttentionProduct) and len(cell.attention) == 3
    x = torch.randn(1, 8, 26, 27)
    with torch.no_grad():
        y = cell.convs[1](torch.nn.functional.leaky_relu(cell.convs[0](x), 0.05))
        g = [m.gate(y) for m in cell.attention]
        assert g[2].shape == (1, 8, 1, 1)  # a channel gate broadcasts
        ref = y * g[0] * g[1] * g[2]
        torch.testing.assert_close(cell(x), ref, atol=1e-6, rtol=1e-6)
    slow = cell(x.clone().requires_grad_())
    torch.testing.assert_close(slow.detach(), ref, atol=1e-6, rtol=1e-6)
    _all_params_get_grad(cell, slow)
    residual = CELLS["mab"](CellGene("mab", gene.ops, gates, block_residual=True), 8).eval()
    residual.load_state_dict(cell.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(residual(x), ref + x, atol=1e-6, rtol=1e-6)
    with pytest.raises(TypeError, match="att.1.*Identity.*gate"):
        AttentionProduct([CEA(8), nn.Identity()], "att")


def test_weight_norm_conv_and_channel_shuffle_fold_into_plain_convs():
    wn = WeightNormConv2d(6, 5, 3, padding=1)
    assert {n: p.numel() for n, p in wn.named_parameters()} == {
        "bias": 5, "weight_v": 270, "weight_g": 5}
    torch.manual_seed(1)
    plain = nn.Conv2d(6, 5, 3, padding=1)
    torch.manual_seed(1)
    wn_same = WeightNormConv2d(6, 5, 3, padding=1)
    torch.testing.assert_close(wn_same.normalised_weight(), plain.weight)  # same initial w
    with torch.no_grad():
        wn.weight_g.mul_(torch.rand_like(wn.weight_g) + 0.5)
    x = torch.randn(2, 6, 9, 7)
    merged = wn.reparameterize()
    assert type(merged) is nn.Conv2d and merged.padding == (1, 1)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), wn(x), atol=1e-6, rtol=1e-5)
    _all_params_get_grad(wn, wn(x))
    shuffle = ChannelShuffle(2)
    t = torch.arange(6.0).view(1, 6, 1, 1)
    assert shuffle(t).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]  # a0 b0 a1 b1 ..
    for conv in (nn.Conv2d(6, 4, 1), WeightNormConv2d(6, 4, 1)):
        folded = fold_shuffle(conv, 2)
        assert type(folded) is nn.Conv2d
        with torch.no_grad():
            torch.testing.assert_close(folded(x), conv(shuffle(x)), atol=1e-6, rtol=1e-5)


def _maffsrn_like(**kw) -> Genotype:
    gates = (Attention("esa_mab"), Attention("cea"))
    mab = CellGene("mab", ("conv3x3",) * 2, gates, "lrelu0.05")
    mid = CellGene("mab", ("conv3x3",) * 2, gates, "lrelu0.05", block_residual=True)
    base = dict(scale=3, width=8, cells=(mab, mid, mab) * 2, groups=(GroupGene(3),) * 2,
                weight_norm=True, tail="dual", tail_scales=True, input_skip="bicubic",
                lr_conv_op="none", long_skip=False)
    base.update(kw)
    return Genotype(**base)


@pytest.mark.parametrize("kw", [{}, dict(data_range=255.0), dict(long_skip=True),
                                dict(lr_conv_op="conv3x3", tail="conv3x3", tail_scales=False),
                                dict(weight_norm=False, input_skip="none")])
def test_maffsrn_frame_deploys_exactly(kw):
    g = _maffsrn_like(**kw)
    model = build_model(g).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    deployed = reparameterize(model)
    assert deployed.is_deployed and deployed.genotype == g.deployed()
    assert not any(isinstance(m, (WeightNormConv2d, ChannelShuffle)) for m in deployed.modules())
    fresh = build_model(g.deployed())
    fresh.load_state_dict(deployed.state_dict())
    x = torch.rand(1, 3, 14, 17)
    with torch.no_grad():
        torch.testing.assert_close(super_resolve(deployed, x), model(x), atol=1e-4, rtol=1e-4)
    _all_params_get_grad(model, model(x))


def test_bicubic_input_skip_and_dual_tail():
    g = _maffsrn_like(weight_norm=False)
    model = build_model(g).eval()
    x = torch.rand(1, 3, 10, 12)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=3, mode="bicubic",
                                              align_corners=False)
    with torch.no_grad():
        full = model(x)
        for conv in (model.upsampler.conv3, model.upsampler.conv5):
            conv.weight.zero_()
            conv.bias.zero_()
        torch.testing.assert_close(model(x), bicubic)  # only the skip is left
        assert (full - bicubic).abs().max() > 1e-3
    assert model.lr_conv is None
    assert {n for n, _ in model.upsampler.named_parameters()} == {
        "conv3.weight", "conv3.bias", "conv5.weight", "conv5.bias", "scale3.scale",
        "scale5.scale"}


def test_cell_outputs_are_not_kept_alive_unless_fused():
    # The frame keeps a cell's output only when the fusion reads it: without a fusion the peak
    # memory of a deeper net is that of a shallow one (each cell output dies with the next).
    from proxies.measure.memory import measure_peak_memory
    from proxies.measure.settings import MeasureSettings

    def peak(n_cells: int, fusion: bool) -> float:
        cells = [{"type": "erb", "ops": ["conv3x3", "conv3x3"]} for _ in range(n_cells)]
        g = Genotype.from_dict({"scale": 2, "width": 32, "cells": cells, "fusion": fusion})
        at64 = MeasureSettings(device="cpu", lr_size=(64, 64))
        return measure_peak_memory(build_model(g), at64).peak_memory_mib

    assert peak(8, fusion=False) == pytest.approx(peak(2, fusion=False), abs=0.1)
    assert peak(8, fusion=True) > peak(2, fusion=True) + 2.0  # fused outputs must stay alive


def test_a_plain_net_keeps_no_skip_alive():
    # MemSR's point: without the long skip nothing but the running feature map is held, so the
    # plain net's peak is one 32 x 64 x 64 map (0.5 MiB) below that of the same net with it.
    from proxies.measure.memory import measure_peak_memory
    from proxies.measure.settings import MeasureSettings
    from search_space.zoo import plain_genotype

    def peak(long_skip: bool) -> float:
        g = Genotype(**{**plain_genotype(4, 32, scale=2, tail="conv3x3").__dict__,
                        "long_skip": long_skip})
        at64 = MeasureSettings(device="cpu", lr_size=(64, 64))
        return measure_peak_memory(build_model(g), at64).peak_memory_mib

    assert peak(long_skip=True) - peak(long_skip=False) == pytest.approx(0.5, abs=0.05)
