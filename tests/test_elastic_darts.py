"""DARTS with an elastic width (``space.widths``): the trunk width as one more searched choice,
FBNetV2's channel masking on the one supernet; its costs at each width, its selection and the
matched-latency draws over it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from search_space import Genotype
from searchers.differentiable import select
from searchers.differentiable.config import SpaceConfig
from searchers.differentiable.expected import expected_cost
from searchers.differentiable.latency_table import fill_supernet_costs, predict_genotype
from searchers.differentiable.search import main
from searchers.differentiable.supernet import WIDTH_SLOT, SuperNet, SupernetSpec
from searchers.stages.matched import random_derived

SPEC = SupernetSpec(scale=2, width=8, num_cells=2, cell_types=("erb",),
                    conv_candidates=("conv1x1", "conv3x3"), attention_candidates=("none", "pa"),
                    widths=(4, 8))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def net(table):
    supernet = SuperNet(SPEC)
    fill_supernet_costs(supernet, table)
    return supernet


@pytest.mark.parametrize("widths, message", [
    ((4, 12), "the largest equal to space.width"), ((8, 4), "increasing order"),
    ((2, 8), "each at least 4")])
def test_bad_widths_are_refused_with_the_fix(widths, message):
    with pytest.raises(ValueError, match=message):
        SupernetSpec(width=8, widths=widths)
    with pytest.raises(ValueError, match="space.widths: got"):
        SpaceConfig(width=8, widths=list(widths)).supernet_spec()
    assert not SupernetSpec(width=8, widths=(8,)).elastic and SPEC.elastic


def test_a_narrower_width_switches_the_trunk_channels_off():
    """With the width decided at 4, the head's channels 4-7 reach nothing: changing their
    weights leaves the output as it was; at width 8 they count."""
    net = SuperNet(SPEC).eval()
    x = torch.rand(1, 3, 12, 12)
    gate = net.width_gate
    assert gate is not None and gate.candidates == ("4", "8")
    outs = {}
    for i, width in enumerate(gate.widths):
        gate.fixed = i
        before = net(x)
        with torch.no_grad():
            net.head.weight[4:] += 1.0
        outs[width] = (before, net(x))
        with torch.no_grad():
            net.head.weight[4:] -= 1.0
    gate.fixed = None
    torch.testing.assert_close(*outs[4])
    assert not torch.allclose(*outs[8])
    # the mixed mask: each width's weight on the channels it keeps
    p = gate.weights().detach()
    mask = gate.mask(torch.device("cpu")).flatten()
    torch.testing.assert_close(mask, torch.cat([torch.ones(4), torch.full((4,), float(p[1]))]))


def test_each_width_has_its_own_costs_and_the_expectation_mixes_them(net):
    narrow, wide = (net.derive({WIDTH_SLOT: w}) for w in ("4", "8"))
    assert (narrow.width, wide.width) == (4, 8) and narrow.cells == wide.cells
    assert predict_genotype(net, narrow)["params"] < predict_genotype(net, wide)["params"]
    gate = net.width_gate
    assert gate is not None
    per_width = []
    with torch.no_grad():
        for i in range(2):
            gate.alpha.copy_(torch.tensor([50.0, -50.0]) * (1 if i == 0 else -1))
            per_width.append({k: float(v) for k, v in expected_cost(net).items()})
        gate.alpha.zero_()
        half = {k: float(v) for k, v in expected_cost(net).items()}
    for key in ("latency_ms", "params", "memory_mib"):
        assert per_width[0][key] <= per_width[1][key]
        assert half[key] == pytest.approx((per_width[0][key] + per_width[1][key]) / 2, rel=1e-5)
    gate.alpha.requires_grad_(True)
    expected_cost(net)["params"].backward()
    assert gate.alpha.grad is not None and gate.alpha.grad[1] > 0  # wider costs more
    gate.alpha.grad = None
    with pytest.raises(ValueError, match="this supernet's widths are"):
        net.cost_net(6)


def test_random_nets_of_the_space_cover_its_widths(net):
    rng = np.random.default_rng(0)
    assert {random_derived(net, rng).width for _ in range(40)} == {4, 8}


def test_the_fit_narrows_the_width_when_that_loses_least(net):
    """A selection at width 8 over a target only width 4 meets: the fit swaps to width 4
    (the selection loss it adds is small) rather than cheapening every op first."""
    choice = {WIDTH_SLOT: "8"}
    choice.update({f"cells.{i}.conv{j}": "conv3x3" for i in range(2) for j in range(2)})
    choice.update({f"cells.{i}.attention": "none" for i in range(2)})
    scores = {WIDTH_SLOT: {"8": -0.10, "4": -0.1001}}
    scores.update({s: {"conv3x3": 1.0, "conv1x1": 0.0} for s in choice if "conv" in s})
    sel = select.Selection(choice=choice, scores=scores)
    target = predict_genotype(net, net.derive({**choice, WIDTH_SLOT: "4"}))["latency_ms"]
    fitted, swaps = select.fit_budget(net, sel, target * 1.001)
    assert fitted[WIDTH_SLOT] == "4" and swaps[0] == "width: 8 -> 4"


def _args(tmp_path, name, *extra):
    return [f"run.dir={tmp_path}", f"run.name={name}", "space.scale=2", "space.width=8",
            "space.widths=[4,8]", "space.num_cells=2", "space.cell_types=[erb]",
            "space.conv_candidates=[conv1x1,conv3x3,sep_conv3x3]",
            "space.attention_candidates=[none,pa]", "data.patch_size=16", "data.batch_size=2",
            "search.steps=8", "search.warmup_steps=2", "run.checkpoint_every=4",
            "run.log_every=4", "hardware.lr_size=16", "hardware.runs=2", "hardware.warmup=0",
            f"hardware.cache_dir={tmp_path}/lut", "profile.enabled=false", "run.plots=false",
            *extra]


@pytest.mark.parametrize("rule, training", [("perturbation", "uniform"), ("alpha", "mixture")])
def test_a_search_over_widths_hands_over_a_net_at_one_of_them(tmp_path, rule, training):
    assert main(_args(tmp_path, rule, f"search.select={rule}",
                      f"search.width_training={training}")) == 0
    genotype = Genotype.load(tmp_path / rule / "genotype.json")
    selection = json.loads((tmp_path / rule / "selection.json").read_text())
    assert genotype.width == int(selection["choice"][WIDTH_SLOT]) and genotype.width in (4, 8)
    assert set(selection["scores"][WIDTH_SLOT]) == {"4", "8"}
    assert selection["predicted"]["latency_ms"] <= selection["latency_target_ms"]
    assert "alpha/width/4" in (tmp_path / rule / "log.csv").read_text().splitlines()[0]


def test_uniform_width_training_resumes_to_the_same_net(tmp_path, monkeypatch):
    """Each weight step trains one width drawn from torch's generator (the gate's hard mask),
    and a run stopped after step 4 (a checkpoint) and resumed draws the same widths and ends
    the same."""
    from searchers.differentiable.supernet import WidthGate

    seen: list[int | None] = []
    mask = WidthGate.mask

    def spy(self, device):
        seen.append(self.fixed)
        return mask(self, device)

    monkeypatch.setattr(WidthGate, "mask", spy)
    assert main(_args(tmp_path, "full")) == 0
    drawn = [w for w in seen if w is not None]
    assert set(drawn) == {0, 1}  # both widths trained, each alone
    assert main(["--stop-after", "4", *_args(tmp_path, "cut")]) == 0
    assert main(["--resume", *_args(tmp_path, "cut")]) == 0
    full, cut = (torch.load(tmp_path / n / "checkpoint.pt", weights_only=False)["model"]
                 for n in ("full", "cut"))
    for k in full:
        assert torch.equal(full[k], cut[k]), k
    assert (Genotype.load(tmp_path / "full" / "genotype.json")
            == Genotype.load(tmp_path / "cut" / "genotype.json"))
