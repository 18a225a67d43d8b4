"""The identity-centred init of plain chains (issue 27, "a baseline that trains"): a plain
net (:func:`search_space.plain.plain_genotype`, no skip of any kind) built by
:func:`search_space.network.build_model` starts as its nearest-upsampled input, its gradients
reach the head and it trains where PyTorch's default init stalls; ``init="torch"``
(``kd.init=torch`` in a retrain) gives the old init back, and every other net's init is
PyTorch's default, bit for bit."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from search_space import Genotype, build_model, reparameterize
from search_space.genes import Attention, CellGene
from search_space.network import INITS, init_plain_chain, super_resolve
from search_space.plain import plain_form, plain_genotype, plain_layers
from search_space.zoo import SPAN_MEAN, ZOO, is_plain_chain
from searchers.common.config import load_config
from searchers.training.config import RetrainConfig
from searchers.training.memsr_init import memsr_init
from searchers.training.trainer import Retrainer

PLAINS = {
    "edsr_x4": plain_genotype(2, 8),
    "conv3x3_x3": plain_genotype(2, 8, scale=3, tail="conv3x3"),
    "mean_x2": plain_genotype(2, 6, scale=2, input_mean=SPAN_MEAN, output_mean=True),
    "dil_conv": plain_genotype(1, 6, op="dil_conv3x3_d2"),
}


def _edsr_like(**kw) -> Genotype:
    cell = CellGene("erb", ("conv3x3", "conv3x3"), Attention("none"), "relu",
                    block_residual=kw.pop("block_residual", True))
    return Genotype(**{"scale": 4, "width": 8, "cells": (cell,) * 2, "tail": "edsr", **kw})


def _build(genotype: Genotype, init: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(genotype, init=init)


def _digest(net: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


@pytest.mark.parametrize("name", list(PLAINS))
def test_a_plain_chain_starts_as_its_nearest_upsampled_input(name):
    g = PLAINS[name]
    torch.manual_seed(1)
    lr = torch.rand(2, 3, 12, 12)
    nearest = F.interpolate(lr, scale_factor=g.scale, mode="nearest")
    with torch.no_grad():
        new, old = (super_resolve(_build(g, init), lr) for init in INITS)
    assert _corr(new, nearest) > 0.95 and float((new - nearest).abs().mean()) < 0.1
    assert abs(_corr(old, nearest)) < 0.5  # PyTorch's default: a near-constant output


def test_gradients_reach_the_head_of_a_deep_plain_chain():
    g = plain_genotype(8, 8)
    torch.manual_seed(1)
    hr = torch.rand(1, 3, 32, 32)
    ratios = {}
    for init in INITS:
        net = _build(g, init)
        F.l1_loss(super_resolve(net, F.avg_pool2d(hr, 4)), hr).backward()
        ratios[init] = float(net.head.weight.grad.norm() / net.upsampler[-1].weight.grad.norm())
    assert ratios["standard"] > 0.05, ratios
    assert ratios["torch"] < 1e-4, ratios  # the default init's gradient vanishes on the way


def test_a_plain_chain_trains_where_the_default_init_stalls():
    g = plain_genotype(8, 8)
    torch.manual_seed(0)
    hr = F.interpolate(torch.rand(2, 3, 6, 6), size=(32, 32), mode="bicubic",
                       align_corners=False).clamp(0, 1)
    lr = F.avg_pool2d(hr, 4)
    final = {}
    for init in INITS:
        net = _build(g, init)
        opt = torch.optim.Adam(net.parameters(), lr=5e-4)
        for _ in range(30):
            loss = F.l1_loss(super_resolve(net, lr), hr)
            opt.zero_grad()
            loss.backward()
            opt.step()
        final[init] = float(loss.detach())
    assert final["standard"] < 0.5 * final["torch"], final


# sha256 (first 16 hex) of the state_dict under torch.manual_seed(0), recorded with
# torch 2.13.0+cpu before issue 27's init existed (memsr_plain then equalled edsr_baseline,
# whose convs it shares, draw for draw).
RECORDED = {"rlfn_ntire": "8b97adb32343a700", "span_ntire2024": "ac42d5ec078b0139",
            "edsr_baseline": "a4a6df85cbf518bf"}
OLD_PLAIN_8_24 = "2d06d922dadc9f40"  # plain_genotype(8, 24) (configs/memsr/plain_student.json)


@pytest.mark.skipif(not torch.__version__.startswith("2.13."),
                    reason="digests recorded with torch 2.13; other versions may draw otherwise")
def test_other_nets_keep_their_init_bit_for_bit_and_the_old_plain_init_is_reproducible():
    for name, digest in RECORDED.items():
        assert _digest(_build(ZOO[name], "standard")) == digest, name
    assert _digest(_build(ZOO["memsr_plain"], "torch")) == RECORDED["edsr_baseline"]
    assert _digest(_build(plain_genotype(8, 24), "torch")) == OLD_PLAIN_8_24
    assert _digest(_build(plain_genotype(8, 24), "standard")) != OLD_PLAIN_8_24


@pytest.mark.parametrize("genotype", [
    _edsr_like(), _edsr_like(block_residual=False, long_skip=True),
    _edsr_like(block_residual=False, long_skip=False, weight_norm=True),
    plain_genotype(2, 8, op="rep_conv3x3"), plain_genotype(2, 8, op="conv3xc"),
], ids=["residual", "long_skip", "weight_norm", "rep_conv", "conv3xc"])
def test_a_net_that_is_not_a_plain_chain_gets_pytorchs_default(genotype):
    assert not is_plain_chain(genotype)
    a, b = _build(genotype, "standard"), _build(genotype, "torch")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(ValueError, match="not a plain chain"):
        init_plain_chain(a)


def test_the_init_draws_no_random_number_and_keeps_the_noise():
    g = plain_genotype(2, 8)
    states = []
    for init in INITS:
        _build(g, init)
        states.append(torch.get_rng_state())
    assert torch.equal(*states)  # same training batches after either init
    assert is_plain_chain(g) and is_plain_chain(ZOO["memsr_plain"])
    old, new = _build(g, "torch"), _build(g, "standard")
    layers = plain_layers(new)
    assert len(layers) == 1 + 2 * 2 + 1 + 3  # head, cells, LR conv, EDSR tail x2 x2
    mid = layers[2].conv.weight  # a Dirac plus 0.1 x the default weights
    eye = torch.zeros_like(mid)
    eye[range(8), range(8), 1, 1] = 1.0
    assert torch.allclose(mid - eye, 0.1 * plain_layers(old)[2].conv.weight, atol=1e-6)


def test_a_bad_init_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="init: got 'dirac'; allowed: standard, torch"):
        build_model(plain_genotype(1, 6), init="dirac")
    with pytest.raises(ValueError, match="noise: got -1"):
        init_plain_chain(build_model(plain_genotype(1, 6)), noise=-1)


@pytest.mark.parametrize("kd_init", ["none", "torch"])
def test_retraining_builds_the_init_kd_init_names(tmp_path, kd_init):
    g = plain_genotype(2, 6)
    cfg = load_config(RetrainConfig, None, [f"kd.init={kd_init}", "data.patch_size=16"])
    model = Retrainer(cfg, g, tmp_path / "run").model
    ref = _build(g, "torch" if kd_init == "torch" else "standard", seed=cfg.run.seed)
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())


def test_memsr_init_overwrites_either_init_alike():
    teacher = reparameterize(_build(_edsr_like(long_skip=True), "standard"))
    torch.manual_seed(1)
    lr = torch.rand(4, 3, 12, 12)
    plain, _ = plain_form(teacher, lr)
    a, b = (_build(plain_genotype(2, 6), init) for init in INITS)
    for student in (a, b):
        memsr_init(student, plain, lr)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
