"""The zoo reproduces the published parameter counts and the NTIRE 2022 counters exactly.

Reference figures: ``../shared/reference/architectures.md`` section 2 ("meas. ch." = the
challenge's own counter on the challenge's model files; 4 decimals where it gives them), and
``../shared/reference/architectures_2023_2026.md`` section 0 for DIPNet, SPAN, DSCLoRA and
MAFFSRN (section 4).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from proxies.measure.complexity import count_macs, count_ntire2022, count_params, measure_complexity
from search_space import build_model, reparameterize
from search_space.network import super_resolve
from search_space.rep import ChannelShuffle, WeightNormConv2d
from search_space.zoo import AIM_NET, REFERENCE_NET, YARDSTICK, ZOO

#            params      ch. FLOPs G  acts M     #conv  conv MACs G
PUBLISHED = {
    "imdn_ntire": (893_936, 58.5315, 154.1407, 43, 58.4308),
    "rfdn_aim2020": (433_448, 27.1026, 112.0342, 64, 27.0336),
    "rlfn_ntire": (317_218, 19.6953, 80.0452, 39, 19.6581),
    "fmen_s": (341_066, 22.2800, 72.0896, 34, 22.2800),
    "imdn_paper": (715_176, 46.5987, 122.68, 46, 46.5190),
    "rlfn_paper": (543_740, 33.9928, 126.49, 57, 33.9314),
    "fmen_s_train": (1_045_866, 68.3188, 223.08, 74, 68.2433),
    "dipnet_ntire2023": (243_252, 14.9011, 72.9673, 39, 14.8696),
    "span_ntire2024": (150_688, 9.8338, 41.6809, 22, 9.8338),
    "span_ntire2024_train": (634_048, 41.3617, 223.0049, 82, 41.3617),
    "dsclora_ntire2025": (130_828, 8.5350, 38.9284, 22, 8.5350),
    # Training form (weight norm, shuffles, scalars), as the official MAFFSRN class counts.
    # MAFFSRN-L's conv MACs are not in the reference: its FLOPs less the act modules' numel.
    "maffsrn": (441_706, 27.1161, 212.2427, 159, 27.0486),
    "maffsrn_l": (830_066, 50.7531, 416.0968, 315, 50.6180),
}


# Nets the reference sizes but does not count (architectures_2023_2026.md section 5.2: EDSR-
# baseline x4 has 1,517,571 params). The rest is derived by hand at 256 x 256 LR: 34 LR convs
# (head 3->64, 33 x 64->64), 64->256 at 256^2 and at 512^2, 64->3 at 1024^2 = 129.9689 G MACs;
# the ReLUs are functional (invisible to the counter), so FLOPs = MACs; the acts are the conv
# outputs, 229.6381 M (the reference's 232.98 M and 39 convs add the two MeanShift 1x1 convs,
# which are a subtraction and an addition here). MemSR's plain student has the same convs.
DERIVED = {
    "edsr_baseline": (1_517_571, 129.9689, 229.6381, 37, 129.9689),
    "memsr_plain": (1_517_571, 129.9689, 229.6381, 37, 129.9689),
}
PUBLISHED_OR_DERIVED = PUBLISHED | DERIVED


def _decimals(x: float) -> int:
    text = repr(x)
    return len(text.split(".")[1]) if "." in text else 0


def test_every_zoo_net_has_a_reference():
    assert set(PUBLISHED_OR_DERIVED) == set(ZOO)
    assert set(YARDSTICK) <= set(ZOO)


def test_span_is_the_latency_reference_and_rlfn_the_aim():
    # Two roles: latency ratios ("x ref") are to SPAN; the aim's PSNR bar stays RLFN. Both are
    # in the yardstick, so every search and profile measures them.
    assert REFERENCE_NET == "span_ntire2024" and AIM_NET == "rlfn_ntire"
    assert {REFERENCE_NET, AIM_NET, "fmen_s"} <= set(YARDSTICK)
    assert ZOO[REFERENCE_NET].is_deployed


@pytest.mark.parametrize("name", list(PUBLISHED_OR_DERIVED))
def test_zoo_reproduces_published_figures(name):
    params, flops_g, acts_m, n_conv, macs_g = PUBLISHED_OR_DERIVED[name]
    model = build_model(ZOO[name])
    assert count_params(model) == params
    ntire = count_ntire2022(model)
    assert round(ntire.flops_g, _decimals(flops_g)) == pytest.approx(flops_g, abs=1e-9)
    assert round(ntire.activations_m, _decimals(acts_m)) == pytest.approx(acts_m, abs=1e-9)
    assert ntire.num_conv == n_conv
    assert round(count_macs(model) / 1e9, 4) == pytest.approx(macs_g, abs=1e-9)


# ------------------------------------------------------------------------------------ SPAN

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class CleanRoomSPAN(nn.Module):
    """SPAN's deployed forward in plain PyTorch, written from the prose of
    ``architectures_2023_2026.md`` sections 1.3-1.4 (not from any code of this project).

    z = (x - DIV2K mean) * 255; F0 = conv_1(z); six SPABs B1..B6, each
    a1 = SiLU(c1(b)), a2 = SiLU(c2(a1)), h3 = c3(a2), out = (h3 + b) * (sigmoid(h3) - 0.5);
    F6 = conv_2(B6); conv_cat(concat[F0, F6, B1, a1 of block 6]) with no activation;
    conv3x3 -> PixelShuffle(4), returned as it is.
    """

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(3)) for _ in range(6))
        self.conv_2 = nn.Conv2d(c, c, 3, padding=1)
        self.conv_cat = nn.Conv2d(4 * c, c, 1)
        self.upsampler = nn.Conv2d(c, 3 * 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1)) * 255.0
        f0 = self.conv_1(z)
        b, outs, first_act = f0, [], None
        for c1, c2, c3 in self.blocks:
            a1 = F.silu(c1(b))
            h3 = c3(F.silu(c2(a1)))
            b = (h3 + b) * (torch.sigmoid(h3) - 0.5)
            outs.append(b)
            first_act = a1
        f6 = self.conv_2(b)
        fused = self.conv_cat(torch.cat([f0, f6, outs[0], first_act], dim=1))
        return F.pixel_shuffle(self.upsampler(fused), 4)


def _conv_calls(model: nn.Module, x: torch.Tensor) -> list[nn.Conv2d]:
    calls: list[nn.Conv2d] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: calls.append(mod))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return calls


@pytest.mark.parametrize("name, width", [("span_ntire2024", 28), ("dsclora_ntire2025", 26)])
def test_span_deployed_matches_a_clean_room_span_conv_by_conv(name, width):
    # The official checkpoint is deployed weights in the official structure: random weights in
    # the clean-room structure (head scaled for 255-range inputs, as trained weights are),
    # copied conv by conv in call order into reparameterize(build_model(...)), must give the
    # clean-room outputs on the same [0, 1] input.
    torch.manual_seed(0)
    official = CleanRoomSPAN(width).eval()
    with torch.no_grad():
        official.conv_1.weight.div_(255.0)
    ours = reparameterize(build_model(ZOO[name]))
    assert ours.data_range == 1.0 and ours.input_factor == 255.0 and ours.is_deployed
    x = torch.rand(1, 3, 20, 24)
    src, dst = _conv_calls(official, x), _conv_calls(ours, x)
    assert len(src) == len(dst) == 22
    with torch.no_grad():
        for a, b in zip(src, dst, strict=True):
            assert a.weight.shape == b.weight.shape and a.padding == b.padding
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
        ref = official(x)
        assert ref.shape == (1, 3, 80, 96) and ref.abs().max() > 1e-2
        torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(super_resolve(ours, x), ref, atol=1e-5, rtol=1e-4)


def test_span_training_form_reparameterizes_into_the_deployed_entry():
    torch.manual_seed(0)
    train = build_model(ZOO["span_ntire2024_train"]).eval()
    with torch.no_grad():
        for p in train.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    deployed = reparameterize(train)
    assert deployed.genotype == ZOO["span_ntire2024"]
    assert ZOO["span_ntire2024_train"].deployed() == ZOO["span_ntire2024"]
    target = build_model(ZOO["span_ntire2024"])
    target.load_state_dict(deployed.state_dict())  # same structure and keys, input scale too
    assert count_params(target) == 150_688 and target.input_factor == 255.0
    assert train.input_factor == 1.0 and train.data_range == target.data_range == 1.0
    x = torch.rand(1, 3, 21, 18)
    with torch.no_grad():
        ref = train(x)
        torch.testing.assert_close(target(x), ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(super_resolve(deployed, x), super_resolve(train, x),
                                   atol=1e-4, rtol=1e-4)
    assert reparameterize(deployed).input_factor == 255.0  # folded once, not twice


def test_dipnet_trunk_convs_have_no_bias_and_its_esa_convs_do():
    model = build_model(ZOO["dipnet_ntire2023"])
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert len(convs) == 39
    for name, conv in convs.items():
        assert (conv.bias is not None) == (".attention." in name), name


# --------------------------------------------------------------------------------- MAFFSRN


class CleanRoomMAFFSRN(nn.Module):
    """MAFFSRN's forward (training form, x4, C = 32, f = 8) in plain PyTorch, written from the
    prose of ``architectures_2023_2026.md`` section 4 (not from any code of this project).

    head conv3x3; n FFGs, each: x0 = MAB(x), x1 = MAB(x0) + x0, x2 = MAB(x1) + x1,
    x3 = MAB(x2); r1 = R1(shuffle(cat[x0, x1])), r2 = R2(shuffle(cat[r1, x2])),
    r = R3(shuffle(cat[r2, x3])); out = l_res * r + l_x * x. MAB: y = conv00(lrelu(conv01(x)));
    ESA: rc = 1x1(y), pooled = maxpool(7, 3)(3x3 s2 p1(rc)), v = lrelu(d1(p)) + lrelu(d2(p)),
    gate sigmoid(relu(1x1(nearest(v) + rc))); CEA: sigmoid(dw5x5(1x1(y))); y * gates. Tail:
    PS(a * conv3x3(h)) + PS(b * conv5x5(h)), plus bicubic x4 of the input. Plain convs (the
    weight norm is only a parameterisation of their kernels).
    """

    def __init__(self, groups: int, c: int = 32, f: int = 8) -> None:
        super().__init__()

        def mab() -> nn.ModuleDict:
            return nn.ModuleDict({
                "conv01": nn.Conv2d(c, c, 3, padding=1), "conv00": nn.Conv2d(c, c, 3, padding=1),
                "rc": nn.Conv2d(c, f, 1), "rs": nn.Conv2d(f, f, 3, stride=2, padding=1),
                "d1": nn.Conv2d(f, f, 3, padding=1), "d2": nn.Conv2d(f, f, 3, padding=2,
                                                                     dilation=2),
                "inc": nn.Conv2d(f, c, 1), "pw": nn.Conv2d(c, c, 1),
                "dw": nn.Conv2d(c, c, 5, padding=2, groups=c)})

        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.mabs = nn.ModuleList(nn.ModuleList(mab() for _ in range(4)) for _ in range(groups))
        self.reduce = nn.ModuleList(nn.ModuleList(nn.Conv2d(2 * c, c, 1) for _ in range(3))
                                    for _ in range(groups))
        self.lam = nn.Parameter(torch.ones(groups, 2))  # (l_res, l_x) per group
        self.tail3 = nn.Conv2d(c, 48, 3, padding=1)
        self.tail5 = nn.Conv2d(c, 48, 5, padding=2)
        self.tail_lam = nn.Parameter(torch.full((2,), 0.5))

    @staticmethod
    def _mab(m: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        y = m["conv00"](F.leaky_relu(m["conv01"](x), 0.05))
        rc = m["rc"](y)
        p = F.max_pool2d(m["rs"](rc), 7, stride=3)
        v = F.leaky_relu(m["d1"](p), 0.05) + F.leaky_relu(m["d2"](p), 0.05)
        up = F.interpolate(v, size=rc.shape[-2:], mode="nearest")
        esa = torch.sigmoid(F.relu(m["inc"](up + rc)))
        cea = torch.sigmoid(m["dw"](m["pw"](y)))
        return y * esa * cea

    @staticmethod
    def _shuffle(t: torch.Tensor) -> torch.Tensor:
        a, b = t.chunk(2, dim=1)
        return torch.stack([a, b], dim=2).flatten(1, 2)  # a0, b0, a1, b1, ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        for j, (mabs, (r1, r2, r3)) in enumerate(zip(self.mabs, self.reduce, strict=True)):
            x0 = self._mab(mabs[0], h)
            x1 = self._mab(mabs[1], x0) + x0
            x2 = self._mab(mabs[2], x1) + x1
            x3 = self._mab(mabs[3], x2)
            r = r1(self._shuffle(torch.cat([x0, x1], 1)))
            r = r2(self._shuffle(torch.cat([r, x2], 1)))
            r = r3(self._shuffle(torch.cat([r, x3], 1)))
            h = self.lam[j, 0] * r + self.lam[j, 1] * h
        out = (F.pixel_shuffle(self.tail_lam[0] * self.tail3(h), 4)
               + F.pixel_shuffle(self.tail_lam[1] * self.tail5(h), 4))
        return out + F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)


def _maffsrn_trained_like(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ZOO[name]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.03)
        scalars = [p for n, p in model.named_parameters() if n.endswith(".scale")]
        assert len(scalars) == 2 * len(ZOO[name].groups or ()) + 2
        for p in scalars:  # far from their initial values, so a lost scalar shows
            p.uniform_(0.3, 1.7)
    return model


def test_maffsrn_matches_a_clean_room_maffsrn_conv_by_conv():
    # No official weights exist: our training form, with every parameter moved off its
    # initial value, has its effective kernels (weight norm resolved) copied conv by conv in
    # call order, and its scalars, into the clean room. The clean room must then match both
    # our training form and our deployed form (weight norm, shuffles, scalars folded).
    ours = _maffsrn_trained_like("maffsrn")
    official = CleanRoomMAFFSRN(groups=4).eval()
    x = torch.rand(1, 3, 28, 30)  # LR >= 25 px: the official max-pool needs no padding
    src, dst = _conv_calls(ours, x), _conv_calls(official, x)
    assert len(src) == len(dst) == 159
    with torch.no_grad():
        for a, b in zip(src, dst, strict=True):
            w = a.normalised_weight() if isinstance(a, WeightNormConv2d) else a.weight
            assert w.shape == b.weight.shape, (a, b)
            assert (a.padding, a.stride, a.dilation, a.groups) == (
                b.padding, b.stride, b.dilation, b.groups), (a, b)
            b.weight.copy_(w)
            b.bias.copy_(a.bias)
        assert ours.groups is not None
        for j, g in enumerate(ours.groups):
            official.lam[j, 0] = g.res_scale.scale
            official.lam[j, 1] = g.skip_scale.scale
        official.tail_lam[0] = ours.upsampler.scale3.scale
        official.tail_lam[1] = ours.upsampler.scale5.scale
        ref = official(x)
        assert ref.shape == (1, 3, 112, 120)
        bicubic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        assert (ref - bicubic).abs().max() > 1e-2  # the body contributes
        torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-4)
        deployed = reparameterize(ours)
        torch.testing.assert_close(deployed(x), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name, deployed_params", [("maffsrn", 441_188),
                                                   ("maffsrn_l", 829_160)])
def test_maffsrn_deployed_form_folds_weight_norm_shuffles_and_scalars(name, deployed_params):
    # Deployed: 512 (-L: 896) weight-norm gains and every scalar but the groups' skip scales
    # fold away: MAFFSRN 441,706 - 512 - 4 - 2 = 441,188 params, MAFFSRN-L 830,066 - 896 - 8 - 2
    # = 829,160. FLOPs, activations and #conv are those of the training form.
    g = ZOO[name]
    train = _maffsrn_trained_like(name)
    deployed = reparameterize(train)
    assert deployed.genotype == g.deployed() and deployed.is_deployed and not g.is_deployed
    assert not any(isinstance(m, (WeightNormConv2d, ChannelShuffle)) for m in deployed.modules())
    target = build_model(g.deployed())  # same structure and keys as the folded net
    target.load_state_dict(deployed.state_dict())
    assert count_params(target) == deployed_params
    assert [n for n, _ in target.named_parameters() if n.endswith(".scale")] == [
        f"groups.{j}.skip_scale.scale" for j in range(len(g.groups or ()))]
    params, flops_g, acts_m, n_conv, _ = PUBLISHED[name]
    c = measure_complexity(train)  # the costs a search sees are the deployed form's
    assert c.params == deployed_params
    assert round(c.ntire_flops_g, 4) == flops_g and round(c.ntire_activations_m, 4) == acts_m
    assert c.ntire_num_conv == n_conv
    if name == "maffsrn":
        x = torch.rand(2, 3, 26, 19)
        with torch.no_grad():
            ref = train(x)
            torch.testing.assert_close(target(x), ref, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(super_resolve(deployed, x), ref, atol=1e-5, rtol=1e-4)
