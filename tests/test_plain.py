"""MemSR's plain nets: the plain family, the exact teacher-to-plain conversion, MemSR's
initialisation, and the scheme end to end in ``searchers/retrain.py``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from search_space import Genotype, build_model, reparameterize
from search_space.checks import GenotypeError
from search_space.genes import Attention, CellGene
from search_space.network import super_resolve
from search_space.plain import (
    check_convertible,
    check_plain,
    plain_form,
    plain_genotype,
    plain_layers,
)
from search_space.zoo import SPAN_MEAN, ZOO
from searchers.training.memsr_init import memsr_init
from searchers.training.retrain import main


def _teacher(act="relu", residual=True, long_skip=True, tail="edsr", width=12, cells=3,
             scale=4, seed=0):
    torch.manual_seed(seed)
    cell = CellGene("erb", ("conv3x3", "conv3x3"), Attention("none"), act,
                    block_residual=residual)
    g = Genotype(scale=scale, width=width, cells=(cell,) * cells, long_skip=long_skip, tail=tail,
                 data_range=255.0, input_mean=SPAN_MEAN, output_mean=True)
    return reparameterize(build_model(g))


@pytest.mark.parametrize("kwargs", [
    {}, {"act": "lrelu0.05"}, {"residual": False}, {"long_skip": False},
    {"tail": "conv3x3", "scale": 2}, {"scale": 3},
])
def test_the_plain_form_equals_the_teacher_on_unseen_images(kwargs):
    teacher = _teacher(**kwargs)
    plain, offset = plain_form(teacher, torch.rand(4, 3, 12, 12))
    assert offset > 0
    # no skip left: every layer is one conv, and nothing but the chain is called
    assert all(isinstance(m, nn.Conv2d) for m in plain.convs)
    x = torch.rand(2, 3, 20, 17)
    with torch.no_grad():
        diff = (super_resolve(plain, x) - super_resolve(teacher, x)).abs().max()
    assert diff < 1e-4
    g = teacher.genotype
    carried = g.long_skip + any(c.block_residual for c in g.cells)
    assert plain.convs[1].out_channels == (1 + carried) * g.width


def test_a_net_with_attention_or_silu_skips_has_no_plain_form():
    with pytest.raises(GenotypeError, match="type: got 'rfdb'; allowed: 'erb' cells"):
        check_convertible(ZOO["rfdn_aim2020"])
    silu = _teacher().genotype
    esa = tuple(CellGene("erb", c.ops, Attention("esa"), "relu") for c in silu.cells)
    with pytest.raises(GenotypeError, match="attention: got \\['esa'\\]; allowed: none"):
        check_convertible(Genotype(**{**silu.__dict__, "cells": esa}))
    cells = tuple(CellGene("erb", c.ops, c.attention, "silu", block_residual=True)
                  for c in silu.cells)
    with pytest.raises(GenotypeError, match="cells\\[0\\].act: got 'silu'"):
        check_convertible(Genotype(**{**silu.__dict__, "cells": cells}))
    with pytest.raises(GenotypeError, match="block_residual: got True; allowed: false in a "
                       "plain net. MemSR's student"):
        check_plain(ZOO["edsr_baseline"])
    with pytest.raises(GenotypeError, match="long_skip: got True"):
        check_plain(Genotype(**{**ZOO["memsr_plain"].__dict__, "long_skip": True}))
    with pytest.raises(GenotypeError, match="type: got 'spab'"):
        check_plain(ZOO["span_ntire2024"])
    check_plain(ZOO["memsr_plain"])


def test_memsr_init_brings_a_narrow_student_close_to_the_teacher():
    teacher = _teacher(width=16, cells=3)
    lr = torch.rand(8, 3, 16, 16)
    plain, _ = plain_form(teacher, lr)
    genotype = plain_genotype(3, 8, scale=4, input_mean=SPAN_MEAN, output_mean=True)
    torch.manual_seed(1)
    student, fresh = build_model(genotype), build_model(genotype)
    result = memsr_init(student, plain, lr)
    assert len(result.errors) == len(plain_layers(student)) == len(plain.convs)
    assert all(0 <= e < 1 for e in result.errors)
    # one bridge per intermediate feature, from the student's 8 channels to the teacher's
    assert [b.in_channels for b in result.bridges] == [8] * (len(result.errors) - 1)
    widths = [c.out_channels // s ** 2 for c, s in zip(plain.convs, plain.shuffles, strict=True)]
    assert [b.out_channels for b in result.bridges] == widths[:-1]
    x = torch.rand(2, 3, 24, 24)  # unseen
    with torch.no_grad():
        want = super_resolve(teacher, x)
        got, base = (super_resolve(m, x) for m in (student, fresh))
    assert (got - want).abs().mean() < 0.5 * (base - want).abs().mean()


def test_memsr_init_refuses_a_student_of_another_depth():
    plain, _ = plain_form(_teacher(cells=3), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="the student has 9 plain layers and the teacher's plain "
                       "form 11"):
        memsr_init(build_model(plain_genotype(2, 8)), plain, torch.rand(2, 3, 8, 8))


class CleanRoomEDSR(nn.Module):
    """EDSR-baseline x4 (EDSR-PyTorch's ``EDSR``, 16 blocks, 64 ch, res_scale 1) written from
    its paper: sub_mean -> head -> 16 x [conv, ReLU, conv, + x] -> conv, + head -> [conv to
    256, PixelShuffle(2)] x 2 -> conv to 3 -> add_mean, at 0-255."""

    def __init__(self) -> None:
        super().__init__()
        c = 64
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(33))
        self.tail = nn.ModuleList([nn.Conv2d(c, 4 * c, 3, padding=1),
                                   nn.Conv2d(c, 4 * c, 3, padding=1),
                                   nn.Conv2d(c, 3, 3, padding=1)])
        self.mean = torch.tensor(SPAN_MEAN).view(1, 3, 1, 1) * 255

    def forward(self, x):
        f = self.head(x - self.mean)
        h = f
        for k in range(16):
            h = h + self.body[2 * k + 1](torch.relu(self.body[2 * k](h)))
        h = self.body[32](h) + f
        h = nn.functional.pixel_shuffle(self.tail[0](h), 2)
        h = nn.functional.pixel_shuffle(self.tail[1](h), 2)
        return self.tail[2](h) + self.mean


def test_edsr_baseline_matches_a_clean_room_edsr_conv_by_conv():
    ours = reparameterize(build_model(ZOO["edsr_baseline"]))
    theirs = CleanRoomEDSR().eval()
    mine = [m for m in ours.modules() if isinstance(m, nn.Conv2d)]
    ref = [theirs.head, *theirs.body, *theirs.tail]
    assert [tuple(m.weight.shape) for m in mine] == [tuple(m.weight.shape) for m in ref]
    for a, b in zip(mine, ref, strict=True):  # the official weights would be copied like this
        a.weight.data.copy_(b.weight)
        a.bias.data.copy_(b.bias)
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), rtol=1e-4, atol=1e-2)
    assert ours.data_range == 255.0


def _run_args(tmp_path, genotype, *extra):
    return [str(genotype), f"run.dir={tmp_path}", "optim.iterations=4",
            "optim.warmup_iterations=1", "data.batch_size=2", "data.patch_size=32",
            "data.val_max_side=32", "run.checkpoint_every=2", "run.val_every=4", *extra]


def test_the_memsr_scheme_trains_a_plain_student_end_to_end(tmp_path):
    cell = CellGene("erb", ("conv3x3", "conv3x3"), Attention("none"), "relu",
                    block_residual=True)
    teacher = Genotype(scale=4, width=8, cells=(cell,) * 2, tail="edsr").save(tmp_path / "t.json")
    student = plain_genotype(2, 6).save(tmp_path / "s.json")
    assert main(_run_args(tmp_path, teacher, "run.name=teacher")) == 0
    kd = ["--teacher", str(tmp_path / "teacher"), "kd.init=memsr", "kd.init_patches=4"]
    assert main(_run_args(tmp_path, student, "run.name=student", *kd)) == 0
    init = json.loads((tmp_path / "student" / "init.json").read_text())
    assert init["patches"] == 4 and init["offset"] > 0 and len(init["relative_errors"]) == 9
    assert json.loads((tmp_path / "student" / "deploy.json").read_text())["equivalent"]
    # resuming does not initialise again: the weights are the checkpoint's
    assert main(["--stop-after", "2", *_run_args(tmp_path, student, "run.name=cut", *kd)]) == 0
    (tmp_path / "cut" / "init.json").unlink()
    assert main(["--resume", *_run_args(tmp_path, student, "run.name=cut", *kd)]) == 0
    assert not (tmp_path / "cut" / "init.json").exists()
    a, b = (torch.load(tmp_path / n / "model.pt") for n in ("student", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_memsr_init_refuses_a_student_that_is_not_plain_before_writing(tmp_path, caplog):
    cell = CellGene("erb", ("conv3x3", "conv3x3"), Attention("none"), "relu",
                    block_residual=True)
    teacher = Genotype(scale=4, width=8, cells=(cell,), tail="edsr").save(tmp_path / "t.json")
    assert main(_run_args(tmp_path, teacher, "run.name=teacher", "optim.iterations=1")) == 0
    kd = ["--teacher", str(tmp_path / "teacher"), "kd.init=memsr"]
    assert main(_run_args(tmp_path, teacher, "run.name=student", *kd)) == 2
    assert "kd.init=memsr: student genotype cells[0].block_residual: got True" in caplog.text
    assert not (tmp_path / "student").exists()
