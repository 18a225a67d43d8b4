"""DARTS: the hardware gradient reaches alpha, resume is exact, bad input is refused."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from markdown_tables import table_rows

from proxies.measure.settings import MeasureSettings
from search_space import Genotype, build_model
from search_space.network import deployed_form
from searchers.differentiable.architect import Architect, HardwarePenalty
from searchers.differentiable.config import DartsConfig, LossConfig
from searchers.differentiable.expected import expected_cost
from searchers.differentiable.latency_table import (
    HardwareTable,
    fill_supernet_costs,
    predict_genotype,
    random_genotypes,
)
from searchers.differentiable.mixed import ArchState, MixedOp
from searchers.differentiable.search import DartsSearch, main
from searchers.differentiable.supernet import SuperNet, SupernetSpec

TINY = SupernetSpec(scale=2, width=8, num_cells=2, cell_types=("rfdb", "erb"),
                    conv_candidates=("conv3x3", "sep_conv3x3", "rep_conv3x3"),
                    attention_candidates=("none", "pa", "esa"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _net(table, spec=TINY, **state):
    net = SuperNet(spec, ArchState(**state))
    fill_supernet_costs(net, table)
    return net


def test_arch_and_weight_parameters_are_apart_and_saved(table):
    net = _net(table)
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert arch and weights and not arch & weights
    fixed = {id(op.alpha) for op in net.mixed_ops() if len(op.candidates) == 1}
    assert len(arch) + len(weights) + len(fixed) == len({id(p) for p in net.parameters()})
    keys = [k for k in net.state_dict() if k.endswith(".alpha")]
    assert len(keys) >= len(arch)  # alphas are in checkpoints


def test_every_alpha_and_every_candidate_gets_a_gradient(table):
    net = _net(table)
    F.l1_loss(net(torch.rand(1, 3, 16, 16)), torch.rand(1, 3, 32, 32)).backward()
    for name, p in net.named_arch_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    for op in net.mixed_ops():
        for cand, mod in zip(op.candidates, op.ops, strict=True):
            grads = [q.grad for q in mod.parameters()]
            assert all(g is not None for g in grads), f"{op.slot}/{cand} got no gradient"


def test_expected_latency_gradient_is_the_softmax_jacobian(table):
    net = _net(table, temperature=0.7)
    op = next(m for m in net.mixed_ops() if m.slot.endswith("conv1"))
    op.alpha.data = torch.tensor([0.3, -0.2, 0.5])
    t = op.latency_ms.clone()
    # rep_conv3x3 costs what it deploys as, conv3x3; sep_conv3x3 differs.
    assert t.min() > 0 and t[0] == t[2] and t[0] != t[1]
    op.expected(op.latency_ms).backward()
    w = torch.softmax(op.alpha.detach() / 0.7, 0)
    expected = w * (t - (w * t).sum()) / 0.7
    torch.testing.assert_close(op.alpha.grad, expected)


def test_a_training_form_cost_never_reaches_a_search(table):
    from proxies.measure.complexity import measure_complexity
    from proxies.measure.memory import measure_peak_memory
    from search_space.genes import Attention, CellGene
    from searchers.common.sections import MeasureSection
    from searchers.differentiable.latency_table import cost_module
    from searchers.differentiable.mixed import SlotCost
    from searchers.trials.trial import ConstraintConfig, ProxyConfig, evaluate_genotype

    # The lookup table: rep, ECB and Conv3XC share conv3x3's entry, measured on one 3x3 conv.
    for op in ("rep_conv3x3", "ecb3x3", "conv3xc"):
        cost = SlotCost("conv", op, 8, 8)
        assert table.key(cost) == table.key(SlotCost("conv", "conv3x3", 8, 8))
        assert sum(p.numel() for p in cost_module(cost, TINY).parameters()) == 8 * 8 * 9 + 8
    net = _net(table)
    for m in net.mixed_ops():
        if "rep_conv3x3" in m.candidates:
            i, j = m.candidates.index("rep_conv3x3"), m.candidates.index("conv3x3")
            assert float(m.params[i]) == float(m.params[j])
            assert float(m.latency_ms[i]) == float(m.latency_ms[j])
            assert float(m.memory_mib[i]) == float(m.memory_mib[j])

    def genotype(op: str) -> Genotype:
        cells = (CellGene("rfdb", (op,) * 4, Attention("none"), shallow_residual=True),
                 CellGene("erb", (op, op), Attention("pa"), block_residual=True))
        return Genotype(scale=2, width=8, cells=cells)

    plain, rep, ecb = genotype("conv3x3"), genotype("rep_conv3x3"), genotype("ecb3x3")
    c3xc = genotype("conv3xc")
    # Proxies: params, FLOPs, #conv and peak memory of a rep genotype are the conv3x3 one's.
    base = measure_complexity(build_model(plain))
    for g in (rep, ecb, c3xc):
        trained = build_model(g)
        assert sum(p.numel() for p in trained.parameters()) > base.params  # the training form
        c = measure_complexity(trained)
        assert (c.params, c.macs, c.ntire_num_conv) == (base.params, base.macs,
                                                        base.ntire_num_conv)
        at16 = MeasureSettings(device="cpu", lr_size=(16, 16))
        assert measure_peak_memory(trained, at16).peak_memory_mib == \
            measure_peak_memory(build_model(plain), at16).peak_memory_mib
    # Trials: the recorded params (what constraints.max_params_m checks) are deployed ones.
    measure = MeasureSection(device="cpu", lr_size=16, runs=1, warmup=0)
    proxy = ProxyConfig(steps=0, val_max_side=48)
    results = [evaluate_genotype(g, proxy, measure, ConstraintConfig(max_params_m=0.0))
               for g in (plain, rep, c3xc)]
    for r in results[1:]:
        assert results[0].params_m == r.params_m
        assert results[0].constraints == r.constraints


def test_supernet_searches_spab_cells_and_conv3xc(table):
    spec = SupernetSpec(scale=2, width=8, num_cells=2, cell_types=("spab", "erb"),
                        conv_candidates=("conv3x3", "conv3xc"), attention_candidates=("none",))
    net = _net(table, spec)
    conv_slots = [m for m in net.mixed_ops() if m.costs[0].kind == "conv"]
    assert conv_slots and all(m.candidates == ("conv3x3", "conv3xc") for m in conv_slots)
    for m in conv_slots:  # Conv3XC is costed as the conv3x3 it merges into
        assert float(m.latency_ms[0]) == float(m.latency_ms[1]) > 0
    F.l1_loss(net(torch.rand(1, 3, 12, 12)), torch.rand(1, 3, 24, 24)).backward()
    for name, p in net.named_arch_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    choice = {"cells.0.type": "spab", "cells.1.type": "spab"}
    choice |= {m.slot: "conv3xc" for m in conv_slots if ".spab." in m.slot}
    g = net.derive(choice)
    assert [c.type for c in g.cells] == ["spab", "spab"]
    assert all(c.ops == ("conv3xc",) * 3 and c.block_residual for c in g.cells)
    model = build_model(g).eval()
    assert model(torch.rand(1, 3, 12, 12)).shape == (1, 3, 24, 24)
    assert deployed_form(model).genotype == g.deployed()
    with pytest.raises(ValueError, match="cell_types.*spab"):
        SupernetSpec(cell_types=("spab", "rrdb"))


def _brute_force_expected_peak(net: SuperNet) -> float:
    import itertools

    groups: dict[int, tuple[str, list[str], torch.Tensor]] = {}
    for op in net.mixed_ops():
        if len(op.candidates) > 1:
            w = op.weights().detach()
            groups.setdefault(id(op.alpha), (op.slot, list(op.candidates), w / w.sum()))
    slots = list(groups.values())
    total = 0.0
    for pick in itertools.product(*(range(len(c)) for _, c, _ in slots)):
        prob = math.prod(float(p[i]) for (_, _, p), i in zip(slots, pick, strict=True))
        choice = {slot: c[i] for (slot, c, _), i in zip(slots, pick, strict=True)}
        total += prob * predict_genotype(net, net.derive(choice))["memory_mib"]
    return total


@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
def test_expected_peak_memory_is_the_exact_expectation_with_a_gradient(mode):
    # One position, two cell types: 11 binary choices, 2,048 genotypes to enumerate.
    spec = SupernetSpec(scale=2, width=8, num_cells=1, cell_types=("rfdb", "erb"),
                        conv_candidates=("conv1x1", "conv3x3"),
                        attention_candidates=("none", "pa"),
                        act_candidates=("relu", "gelu"))
    net = SuperNet(spec, ArchState(mode=mode))
    gen = torch.Generator().manual_seed(3)
    for op in net.mixed_ops():  # memory tables with ties and a spread of values
        n = len(op.candidates)
        op.memory_mib.copy_(torch.randint(1, 6, (n,), generator=gen).float())
        op.alpha.data = torch.randn(n, generator=gen)
    net.base_cost = (0.0, 2.5, 0.0)
    expected = expected_cost(net)["memory_mib"]
    assert float(expected) == pytest.approx(_brute_force_expected_peak(net), rel=1e-5)
    expected.backward()
    grads = [p.grad for p in net.arch_parameters()]
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    # The gradient is that of the expectation: a finite difference on one alpha agrees.
    op = next(m for m in net.mixed_ops() if m.slot.endswith("attention"))
    eps = 2e-2  # float32 tables: a larger step, central difference error O(eps^2)
    with torch.no_grad():
        op.alpha[1] += eps
        up = float(expected_cost(net)["memory_mib"])
        op.alpha[1] -= 2 * eps
        down = float(expected_cost(net)["memory_mib"])
        op.alpha[1] += eps
    assert float(op.alpha.grad[1]) == pytest.approx((up - down) / (2 * eps), rel=2e-2, abs=2e-5)
    # The base term counts: raising it above every part makes the peak the base, exactly.
    net.base_cost = (0.0, 100.0, 0.0)
    assert float(expected_cost(net)["memory_mib"]) == pytest.approx(100.0)


def test_hardware_penalty_gradient_reaches_alpha_through_the_architect(table):
    net = _net(table)
    arch = Architect(net, loss_fn=F.l1_loss, penalty=HardwarePenalty(latency_weight=1.0,
                                                                     memory_weight=1.0))
    arch.set_reference()
    hw, terms, cost = arch.hardware_loss()
    assert set(terms) == {"latency_ms", "memory_mib"} and hw.requires_grad
    assert math.isclose(float(terms["latency_ms"]), 1.0, rel_tol=1e-5)  # normalised at start
    hw.backward()
    grads = [p.grad for p in net.arch_parameters()]
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    # Descending the latency term alone moves every conv slot towards its cheapest op.
    before = float(expected_cost(net)["latency_ms"])
    for _ in range(30):
        arch.optimizer.zero_grad()
        arch.penalty.terms(expected_cost(net), arch.reference)["latency_ms"].backward()
        arch.optimizer.step()
    assert float(expected_cost(net)["latency_ms"]) < before


def test_budget_mode_penalises_only_above_the_target(table):
    net = _net(table)
    lat = float(expected_cost(net)["latency_ms"])
    for target, active in ((lat * 2, False), (lat / 2, True)):
        pen = HardwarePenalty(latency_weight=1.0, mode="budget", latency_target_ms=target)
        term = pen.terms(expected_cost(net), {})["latency_ms"]
        net.zero_grad()
        term.backward()
        g = sum(float(p.grad.abs().sum()) for p in net.arch_parameters() if p.grad is not None)
        assert (g > 0) is active and (float(term) > 0) is active


@pytest.mark.parametrize("kw", [dict(latency_weight=-0.1), dict(mode="soft"),
                                dict(memory_target_mib=0.0)])
def test_bad_penalty_settings(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        HardwarePenalty(**kw)


@pytest.mark.parametrize("order", ["first", "second"])
@pytest.mark.parametrize("mode, k", [("softmax", 0), ("softmax", 1), ("sigmoid", 0)])
def test_architect_step_moves_alpha(table, order, mode, k):
    net = _net(table, mode=mode, sample_k=k)
    arch = Architect(net, loss_fn=F.l1_loss, penalty=HardwarePenalty(latency_weight=0.1),
                     second_order=order == "second", zero_one_weight=1.0)
    arch.set_reference()
    before = [p.detach().clone() for p in net.arch_parameters()]
    batch = (torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32))
    out = arch.step(batch, batch)
    assert math.isfinite(out["loss_val"]) and "expected_latency_ms" in out
    assert any(not torch.equal(b, p) for b, p in zip(before, net.arch_parameters(), strict=True))


def test_second_order_with_fixed_choices(table):
    spec = SupernetSpec(scale=2, width=8, num_cells=1, cell_types=("erb",),
                        conv_candidates=("conv3x3", "conv1x1"), attention_candidates=("none",))
    net = _net(table, spec)
    arch = Architect(net, loss_fn=F.l1_loss, penalty=HardwarePenalty(), second_order=True)
    batch = (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16))
    before = [p.detach().clone() for p in net.arch_parameters()]
    arch.step(batch, batch)
    assert any(not torch.equal(b, p) for b, p in zip(before, net.arch_parameters(), strict=True))


def test_sampling_mode_computes_only_k_paths():
    calls = []
    ops = [torch.nn.Identity() for _ in range(4)]
    for i, o in enumerate(ops):
        o.register_forward_hook(lambda m, a, r, i=i: calls.append(i))
    from searchers.differentiable.mixed import SlotCost

    op = MixedOp("s", list("abcd"), ops, ArchState(sample_k=2),
                 [SlotCost("conv", c, 1, 1) for c in "abcd"])
    op.train()
    op(torch.ones(1, 1, 2, 2))
    assert len(calls) == 2
    op.eval()
    calls.clear()
    op(torch.ones(1, 1, 2, 2))
    assert len(calls) == 4


def test_derive_and_top_k(table):
    net = _net(table)
    for p in net.arch_parameters():
        p.data.normal_()
    g = net.derive()
    assert isinstance(g, Genotype) and build_model(g)(torch.rand(1, 3, 12, 12)).shape[-1] == 24
    top = net.top_k(4)
    assert top[0][0] == g and len({t[0] for t in top}) == 4
    assert [lp for _, lp in top] == sorted((lp for _, lp in top), reverse=True)


@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
def test_derive_takes_the_argmax_of_every_slot(mode):
    # Cell type, conv ops, attention and activation all searched; winners set by hand so that
    # neighbouring slots (and the three positions' cell types) have different ones and every
    # candidate wins somewhere: a derivation taking the first candidate, another slot's
    # winner or the argmin fails.
    spec = SupernetSpec(scale=2, width=8, num_cells=3, cell_types=("rfdb", "erb", "rlfb"),
                        conv_candidates=("conv3x3", "sep_conv3x3", "rep_conv3x3"),
                        attention_candidates=("none", "pa", "esa"),
                        act_candidates=("lrelu0.05", "relu", "gelu"))
    net = SuperNet(spec, ArchState(mode=mode, temperature=0.5))
    candidates = {op.slot: op.candidates for op in net.mixed_ops()}
    winner = {}
    for j, (slot, alpha) in enumerate(net.named_arch_parameters()):
        k = j % len(candidates[slot])
        values = torch.randn(len(candidates[slot]))
        values[k] = values.max() + 0.25
        alpha.data = values
        winner[slot] = candidates[slot][k]
    assert len(winner) == 3 * (1 + 3 * 2 + 4 + 2 + 3)  # type; act+attention per type; convs
    assert [winner[f"cells.{i}.type"] for i in range(3)] == ["rfdb", "erb", "rlfb"]
    g = net.derive()
    for i, cell in enumerate(g.cells):
        assert cell.type == winner[f"cells.{i}.type"]
        p = f"cells.{i}.{cell.type}."
        assert cell.ops == tuple(winner[f"{p}conv{s}"] for s in range(len(cell.ops)))
        assert len(cell.ops) == {"rfdb": 4, "erb": 2, "rlfb": 3}[cell.type]
        assert (cell.attention.type, cell.act) == (winner[f"{p}attention"], winner[f"{p}act"])
    assert net.top_k(1)[0][0] == g
    # the derivation follows the weights: move one slot's winner, only that gene changes
    alpha = dict(net.named_arch_parameters())["cells.1.erb.conv1"]
    old = winner["cells.1.erb.conv1"]
    new = next(c for c in candidates["cells.1.erb.conv1"] if c != old)
    alpha.data[candidates["cells.1.erb.conv1"].index(new)] = alpha.data.max() + 1.0
    moved = net.derive()
    assert moved.cells[1].ops == (g.cells[1].ops[0], new)
    assert moved.cells[0] == g.cells[0] and moved.cells[2] == g.cells[2]


def test_table_is_cached_and_predicts_derived_nets(table):
    net = _net(table)
    assert fill_supernet_costs(SuperNet(TINY), table) == 0  # everything cached
    reloaded = HardwareTable(table.settings, table.path.parent)
    assert reloaded.entries == table.entries
    for g in random_genotypes(net, 3):
        pred = predict_genotype(net, g)
        assert pred["latency_ms"] > 0
        deployed = deployed_form(build_model(g))  # the table holds deployed costs
        assert pred["params"] == sum(p.numel() for p in deployed.parameters())


# -- the command ------------------------------------------------------------------------------


def _args(tmp_path, *extra):
    return [f"run.dir={tmp_path}", "space.scale=2", "space.width=8", "space.num_cells=2",
            "space.conv_candidates=[conv3x3,sep_conv3x3,rep_conv3x3]",
            "space.attention_candidates=[none,pa]", "data.patch_size=16", "data.batch_size=2",
            "search.steps=6", "search.warmup_steps=1", "run.checkpoint_every=2",
            "run.log_every=1", "hardware.lr_size=16", "hardware.runs=2", "hardware.warmup=0",
            f"hardware.cache_dir={tmp_path}/lut", "profile.enabled=false", "run.plots=false",
            *extra]


def _alphas(path):
    state = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in state.items() if k.endswith(".alpha")}


def test_resume_reaches_the_same_architecture_as_an_uninterrupted_run(tmp_path):
    """In the sampled mode, whose paths come from torch's generator: the first run fills the
    hardware table (drawing from that generator), the second finds it cached, and a fresh run
    reseeds before its first step, so both draw the same paths."""
    sampled = "search.memory_mode=sample"
    assert main(_args(tmp_path, "run.name=full", sampled)) == 0
    assert main(["--stop-after", "3", *_args(tmp_path, "run.name=cut", sampled)]) == 0
    assert not (tmp_path / "cut" / "genotype.json").exists()
    assert main(_args(tmp_path, "run.name=cut", sampled)) == 2  # exists: needs --resume
    assert main(["--resume", *_args(tmp_path, "run.name=cut", sampled)]) == 0
    full, cut = _alphas(tmp_path / "full/checkpoint.pt"), _alphas(tmp_path / "cut/checkpoint.pt")
    assert full.keys() == cut.keys()
    for k in full:
        assert torch.equal(full[k], cut[k]), k
    g1 = Genotype.load(tmp_path / "full/genotype.json")
    assert g1 == Genotype.load(tmp_path / "cut/genotype.json")
    with open(tmp_path / "cut/log.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4, 5, 6]  # the row after the last checkpoint was re-logged once
    for name in ("config.yaml", "command.txt", "top_k/genotype_0.json"):
        assert (tmp_path / "cut" / name).exists()
    command = (tmp_path / "cut" / "command.txt").read_text()
    assert "--stop-after 3" in command and "resumed with" in command and "--resume" in command


def test_a_run_killed_after_its_last_step_selects_as_if_it_was_not(tmp_path):
    """Killed in the selection (after the last checkpoint): the resumed run selects under the
    last step's temperature, not the default 1.0, so it derives the same net with the same
    scores."""
    assert main(_args(tmp_path, "run.name=done")) == 0
    run = tmp_path / "done"
    selection = json.loads((run / "selection.json").read_text())
    for name in ("genotype.json", "selection.json"):
        (run / name).unlink()
    assert main(["--resume", *_args(tmp_path, "run.name=done")]) == 0
    assert json.loads((run / "selection.json").read_text())["scores"] == selection["scores"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, caplog):
    original = DartsSearch._batch

    def poisoned(self, data):
        lr, hr = original(self, data)
        return (lr * float("nan"), hr) if self.step >= 3 else (lr, hr)

    monkeypatch.setattr(DartsSearch, "_batch", poisoned)
    assert main(_args(tmp_path, "run.name=nan")) == 3
    assert "last good checkpoint" in caplog.text and "step 3" in caplog.text
    ckpt = torch.load(tmp_path / "nan/checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["data.train=/no/such/folder"], "/no/such/folder"),
        (["space.conv_candidates=[conv3x3,conv9x9]"], "conv9x9"),
        (["loss.latency_weight=-1"], "latency_weight"),
        (["data.patch_size=4000"], "patch_size"),
        (["search.stepz=3"], "search.steps"),
    ],
)
def test_bad_input_gives_a_clear_error(tmp_path, caplog, extra, message):
    assert main(_args(tmp_path, *extra)) == 2
    assert message in caplog.text


def test_empty_data_folder_is_refused(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    assert main(_args(tmp_path, f"data.val={tmp_path}/empty")) == 2
    assert "empty" in caplog.text and "no image" in caplog.text.lower()


def test_mixed_activation_is_one_shared_choice_per_cell(table):
    spec = SupernetSpec(scale=2, width=8, num_cells=1, cell_types=("rlfb",),
                        conv_candidates=("conv3x3",), attention_candidates=("none",),
                        act_candidates=("relu", "gelu", "prelu"))
    net = _net(table, spec)
    acts = [op for op in net.mixed_ops() if op.slot == "cells.0.act"]
    assert len(acts) == 3 and len({id(op.alpha) for op in acts}) == 1
    assert [n for n, _ in net.named_arch_parameters()] == ["cells.0.act"]
    acts[0].alpha.data = torch.tensor([0.0, 0.0, 5.0])
    assert net.derive().cells[0].act == "prelu"
    F.l1_loss(net(torch.rand(1, 3, 8, 8)), torch.rand(1, 3, 16, 16)).backward()
    assert acts[0].alpha.grad is not None and float(acts[0].alpha.grad.abs().sum()) > 0


def test_default_config_file_equals_the_built_in_defaults():
    from pathlib import Path

    from searchers.common.config import load_config

    path = Path(__file__).resolve().parents[1] / "configs" / "darts.yaml"
    assert load_config(DartsConfig, path) == DartsConfig()
    # the README's quick start: the same search, in the sampled mode, in its own run folder
    quick = load_config(DartsConfig, path.with_name("quickstart.yaml"))
    default = DartsConfig()
    assert (quick.search.memory_mode, quick.search.sample_k, quick.run.name) == (
        "sample", 2, "quickstart")
    assert (quick.data, quick.hardware, quick.profile, quick.search.steps) == (
        default.data, default.hardware, default.profile, default.search.steps)
    assert quick.space == replace(default.space, width=32, widths=[16, 24, 32])


def test_final_profile_is_against_span_with_an_rlfn_column(tmp_path, capsys, monkeypatch):
    import json
    from types import SimpleNamespace

    from searchers.differentiable import profile
    from searchers.differentiable.config import ProfileConfig
    from searchers.trials.trial import DEFAULT_ZOO

    assert "span_ntire2024" in DartsConfig().profile.yardstick and "rlfn_ntire" in DEFAULT_ZOO
    cfg = DartsConfig(profile=ProfileConfig(lr_size=16, rounds=1, runs_per_round=1, warmup=0,
                                            yardstick=["rlfn_ntire"]))
    search = SimpleNamespace(cfg=cfg, device=torch.device("cpu"), run_dir=tmp_path)
    monkeypatch.setattr(profile, "quality_estimates", lambda search, nets: [])
    derived = Genotype.from_dict({"scale": 2, "width": 8, "cells": [
        {"type": "erb", "ops": ["conv3x3", "conv3x3"], "attention": "pa"}]})
    profile.write_profile(search, derived)
    payload = json.loads((tmp_path / "profile.json").read_text())
    assert payload["reference"] == "span_ntire2024" and payload["aim"] == "rlfn_ntire"
    derived_row, rlfn = payload["rows"]
    assert rlfn["latency_ratio_aim"] == 1.0 and rlfn["scale"] == 2
    assert derived_row["latency_ratio_aim"] == pytest.approx(
        derived_row["latency_ratio"] / rlfn["latency_ratio"])
    text = (tmp_path / "profile.md").read_text()
    assert "| x rlfn_ntire |" in text and "span_ntire2024's" in text


def test_the_profile_says_whether_the_budget_holds_at_its_own_size():
    """The search bounds costs at the table's 64 px; the profile at 128 px says when the net
    exceeds a bound there (the quick start of 2026-12-07: 0.95x SPAN's memory at 64 px, 1.08x
    at 128), names the fix, and says nothing without a relative budget."""
    from types import SimpleNamespace

    from searchers.differentiable.config import LossConfig
    from searchers.differentiable.profile import budget_at_profile_size

    def row(name, ms, mib, ratio=None):
        return SimpleNamespace(name=name, latency_ms=ms, peak_memory_mib=mib,
                               latency_ratio=ratio)

    cfg = DartsConfig()  # budget mode: 0.8x span_ntire2024's latency, 1.0x its memory
    rows = [row("derived (darts)", 165.1, 17.0, 0.75), row("span_ntire2024", 223.7, 15.8, 1.0)]
    text, over = budget_at_profile_size(cfg, rows)
    assert "latency 0.75x (bound 0.80x)" in text and "peak memory 1.08x (bound 1.00x)" in text
    assert "**over the peak memory bound**" in text and "hardware.lr_size=128" in text
    assert over == ["peak memory"]
    rows[0] = row("derived (darts)", 150.0, 15.0, 0.67)
    text, over = budget_at_profile_size(cfg, rows)
    assert text.rstrip().endswith("within it.") and over == []
    assert budget_at_profile_size(cfg, rows[:1]) == ("", [])  # the reference was not profiled
    weighted = DartsConfig(loss=LossConfig(mode="weighted", reference=None, latency_x=None,
                                          memory_x=None))
    assert budget_at_profile_size(weighted, rows) == ("", [])


def test_t91_config_loads_and_points_at_the_shared_folders():
    from pathlib import Path

    from searchers.common.config import load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(DartsConfig, root / "configs" / "darts_t91.yaml")
    # Selection on T91's hold-out, never on a set the report uses.
    assert cfg.data.train.endswith("T91/HR::train") and cfg.data.val.endswith("T91/HR::holdout")
    assert cfg.search.steps == 2000 and cfg.run.name == "t91_holdout"




def test_benchmark_commands_run(capsys, tmp_path):
    from searchers.tools.benchmark import main as bench

    args = [a for a in _args(tmp_path) if not a.startswith("run.dir")]
    assert bench(["step", "--runs", "1", *args]) == 0
    out = capsys.readouterr().out
    # the space of _args, the default sample_k
    assert out.startswith("width 8, 2 cells of rfdb/erb, 3 conv x 2 attention candidates, "
                          "batch 2 x 16px HR, x2, sample_k 2\n")
    rows = table_rows(out, "| mode |")
    assert [r[0] for r in rows] == ["full", "sample"]
    for mode, step, per_100, weight, _iso, _over, peak in rows:
        assert float(step) > 0 and float(weight) > 0 and float(peak) > 0, mode
        assert float(per_100) == pytest.approx(float(step) / 10, abs=0.06), mode  # s/100 steps
    full, sample = rows
    iso, weight = float(full[4]), float(full[3])
    assert iso > 0 and (weight - 0.05) / (iso + 0.05) - 0.005 <= float(full[5]) <= (
        weight + 0.05) / (iso - 0.05) + 0.005  # overhead = weight step / isolated ops
    assert sample[4:6] == ["-", "-"]  # the isolated sum is timed in the full mode only
    assert float(sample[6]) <= float(full[6])  # 2 of 3 candidates per slot: no more memory
    assert bench(["lut", "--samples", "3", *args]) == 0
    (lut,) = table_rows(capsys.readouterr().out, "| backend |")
    assert lut[:4] == ["torch", "3", "16x16", "1"]  # backend, nets, LR size, threads
    assert -1 <= float(lut[4]) <= 1 and float(lut[5]) >= 0 and float(lut[6]) > 0
    from search_space.zoo import ZOO

    genotype = ZOO["fmen_s_train"].save(tmp_path / "fmen_s_train.json")
    assert bench(["train-form", "--rounds", "1", str(genotype)]) == 0
    rows = table_rows(capsys.readouterr().out, "| what |")
    assert [(r[0], r[3]) for r in rows] == [
        ("`conv3x3` 32->32 @ 64x64", "9,248 / 9,248"),
        ("`rep_conv3x3` 32->32 @ 64x64", "41,120 / 9,248"),
        ("`ecb3x3` 32->32 @ 64x64", "33,184 / 9,248"),
        ("`conv3xc` 32->32 @ 64x64", "42,176 / 9,248"),
        (f"{genotype} @ 128x128", "1,045,866 / 341,066"),  # FMEN-S: training vs deployed
    ]
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows)


def test_supernet_searches_mab_cells_and_maffsrn_attentions():
    # Listed in the candidates (not in the defaults), the MAB cell and MAFFSRN's ESA variant
    # and CEA are searched like any other slot; costs come from the same op tables.
    from searchers.differentiable.latency_table import cost_module
    from searchers.differentiable.mixed import SlotCost

    spec = SupernetSpec(scale=2, width=8, num_cells=2, cell_types=("mab", "erb"),
                        conv_candidates=("conv3x3", "sep_conv3x3"),
                        attention_candidates=("esa_mab", "cea", "none"))
    assert "esa_mab" not in SupernetSpec().attention_candidates
    net = SuperNet(spec)  # no hardware table: the cost buffers stay zero
    att_slots = [m for m in net.mixed_ops() if m.costs[0].kind == "attention"]
    assert {m.slot for m in att_slots} == {f"cells.{i}.{t}.attention" for i in range(2)
                                           for t in ("mab", "erb")}
    assert all(m.candidates == ("esa_mab", "cea", "none") for m in att_slots)
    F.l1_loss(net(torch.rand(1, 3, 12, 12)), torch.rand(1, 3, 24, 24)).backward()
    for name, p in net.named_arch_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    choice = {"cells.0.type": "mab", "cells.1.type": "mab",
              "cells.0.mab.attention": "esa_mab", "cells.1.mab.attention": "cea"}
    g = net.derive(choice)
    assert [c.type for c in g.cells] == ["mab", "mab"] and all(c.block_residual for c in g.cells)
    assert [c.attention.type for c in g.cells] == ["esa_mab", "cea"]
    model = build_model(g).eval()
    assert model(torch.rand(1, 3, 12, 12)).shape == (1, 3, 24, 24)
    assert deployed_form(model).genotype == g.deployed()
    esa = cost_module(SlotCost("attention", "esa_mab", 8, 8), spec)
    assert sum(p.numel() for p in esa.parameters()) == 8 * 2 + 2 + 3 * (2 * 2 * 9 + 2) + 2 * 8 + 8
    fixed = cost_module(SlotCost("cell", "mab", 8, 8), spec)  # a MAB's fixed part is free
    assert sum(p.numel() for p in fixed.parameters()) == 0


def test_budget_targets_relative_to_a_reference_net_are_measured_once_per_run(tmp_path):
    import json

    budget = ["loss.mode=budget", "loss.reference=span_ntire2024", "loss.latency_x=0.8",
              "loss.memory_x=1.0", "run.name=rel"]
    assert main(["--stop-after", "2", *_args(tmp_path, *budget)]) == 0
    path = tmp_path / "rel" / "budget.json"
    saved = json.loads(path.read_text())
    assert saved["latency_target_ms"] == pytest.approx(0.8 * saved["reference_latency_ms"])
    assert saved["memory_target_mib"] == pytest.approx(saved["reference_memory_mib"])
    assert saved["reference_latency_ms"] > 0 and saved["size"] == 16
    assert main(["--resume", *_args(tmp_path, *budget)]) == 0
    assert json.loads(path.read_text()) == saved  # the resumed run kept its targets
    # the reference is measured deployed and cached with the hardware table: another run on
    # the same table gets the same targets (a killed run re-run elsewhere derives the same net)
    lut = json.loads(next((tmp_path / "lut").glob("lut_*.json")).read_text())["entries"]
    [ref] = [v for k, v in lut.items() if k.startswith("net:span_ntire2024:x2:")]
    assert ref["latency_ms"] == saved["reference_latency_ms"]
    from search_space.zoo import ZOO, at_scale

    span = at_scale(ZOO["span_ntire2024"], 2)
    assert ref["params"] == sum(p.numel() for p in deployed_form(build_model(span)).parameters())
    again = [a if a != "run.name=rel" else "run.name=again" for a in budget]
    assert main(["--stop-after", "1", *_args(tmp_path, *again)]) == 0
    assert json.loads((tmp_path / "again" / "budget.json").read_text()) == saved
    assert (tmp_path / "rel" / "genotype.json").exists()
    with pytest.raises(ValueError, match="loss.latency_x needs loss.reference"):
        LossConfig(latency_x=0.8, reference=None)
    with pytest.raises(ValueError, match="loss.latency_x needs loss.reference"):
        LossConfig(mode="weighted")  # the default relative budget needs budget mode
    with pytest.raises(ValueError, match="not both"):
        LossConfig(mode="budget", reference="span_ntire2024", latency_x=0.8,
                   latency_target_ms=3.0)
