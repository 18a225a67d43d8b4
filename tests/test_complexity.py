"""Counters: FlopCounterMode exactness, the NTIRE 2022 conventions, and the thop cross-check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from proxies.measure.complexity import (
    count_macs,
    count_ntire2022,
    count_params,
    count_thop_macs,
    measure_complexity,
)
from search_space import CONV_OPS, build_model
from search_space.ops import OPS
from search_space.zoo import ZOO


def _hand_macs(c_in, c_out, k, h, w, groups=1):
    return k * k * (c_in // groups) * c_out * h * w


@pytest.mark.parametrize(
    "conv, expected",
    [
        (nn.Conv2d(8, 16, 3, padding=1), _hand_macs(8, 16, 3, 20, 24)),
        (nn.Conv2d(8, 8, 5, padding=2, groups=8), _hand_macs(8, 8, 5, 20, 24, groups=8)),
        (nn.Conv2d(8, 4, 3, padding=2, dilation=2), _hand_macs(8, 4, 3, 20, 24)),
        (nn.Conv2d(8, 4, 3, stride=2), _hand_macs(8, 4, 3, 9, 11)),
    ],
)
def test_true_macs_are_exact_for_grouped_dilated_strided(conv, expected):
    assert count_macs(conv, (1, 8, 20, 24)) == expected
    assert count_ntire2022(conv, (1, 8, 20, 24)).conv_macs == expected


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.act = nn.LeakyReLU(0.05)

    def forward(self, x):
        return self.act(F.relu(F.conv2d(x, self.w, padding=1)))


def test_ntire_counts_modules_only_as_the_challenge_did():
    # A functional conv is invisible to the challenge counter but not to FlopCounterMode;
    # F.relu is invisible; the LeakyReLU module adds its output numel.
    m = _Functional()
    ntire = count_ntire2022(m, (1, 3, 10, 10))
    assert ntire.num_conv == 0 and ntire.activations == 0
    assert ntire.flops == 4 * 10 * 10
    assert count_macs(m, (1, 3, 10, 10)) == 3 * 4 * 9 * 100


def test_ntire_counts_bn_twice_when_affine_and_module_calls_each_time():
    act = nn.ReLU()
    m = nn.Sequential(nn.Conv2d(3, 4, 1, bias=True), nn.BatchNorm2d(4), act, act)
    ntire = count_ntire2022(m, (1, 3, 5, 5))
    assert ntire.num_conv == 1 and ntire.activations == 100
    assert ntire.flops == 3 * 4 * 25 + 2 * 100 + 2 * 100


@pytest.mark.parametrize("name", CONV_OPS)
def test_every_conv_op_counts_on_meta_without_touching_the_model(name):
    op = OPS[name](8, 8)
    before = {k: v.clone() for k, v in op.state_dict().items()}
    assert count_macs(op, (1, 8, 16, 16)) > 0
    assert all(v.device.type == "cpu" for v in op.state_dict().values())
    for k, v in op.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("name", ["rlfn_ntire", "rfdn_aim2020", "imdn_paper", "fmen_s",
                                  "dipnet_ntire2023", "span_ntire2024"])
def test_thop_agrees_with_flop_counter_on_plain_nets(name):
    model = build_model(ZOO[name])
    shape = (1, 3, 48, 48)
    assert count_thop_macs(model, shape) == count_macs(model, shape)
    assert not any("total_ops" in k for k in model.state_dict()), "thop touched the model"


def test_thop_disagreements_are_the_documented_ones():
    # thop adds 4*numel for affine BN (2 for the normalisation, x2 for affine) ...
    model = build_model(ZOO["fmen_s_train"])
    shape = (1, 3, 32, 32)
    bn_elems = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert count_thop_macs(model, shape) - count_macs(model, shape) == 4 * bn_elems * 32 * 32
    # ... and misses functional convs (ECB's Sobel/Laplacian depthwise filters).
    ecb = OPS["ecb3x3"](8, 8)
    missed = 3 * 9 * 8 * 16 * 16
    assert count_macs(ecb, (1, 8, 16, 16)) - count_thop_macs(ecb, (1, 8, 16, 16)) == missed


def test_measure_complexity_and_bad_shape():
    model = build_model(ZOO["rlfn_ntire"])
    c = measure_complexity(model)
    assert c.params == count_params(model) == 317_218
    assert c.flops_g == pytest.approx(2 * c.macs_g)
    assert c.to_dict()["ntire_num_conv"] == 39
    with pytest.raises(ValueError, match=r"input_shape: got \(3, 256, 256\)"):
        count_macs(model, (3, 256, 256))
