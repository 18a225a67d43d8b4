"""Trials shared by Optuna and Ray Tune: sampling, evaluation, constraints, weight inheritance."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from search_space import Genotype, build_model
from searchers.common.sections import MeasureSection
from searchers.trials.trial import (
    ConstraintConfig,
    ProxyConfig,
    SampleSpace,
    constraint_values,
    evaluate_genotype,
    sample_genotype,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY_PROXY = ProxyConfig(steps=3, batch_size=2, patch_size=16, val_max_side=32)
TINY_MEASURE = MeasureSection(device="cpu", lr_size=16, runs=1, warmup=0)


def test_every_sample_is_a_valid_genotype_within_bounds():
    space = SampleSpace(scale=3, widths=[8, 12], cells_min=1, cells_max=3)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_types = set()
    for _ in range(40):
        trial = study.ask()
        g = sample_genotype(trial, space)
        study.tell(trial, 0.0)
        assert isinstance(g, Genotype) and g.scale == 3 and g.width in (8, 12)
        assert 1 <= g.num_cells <= 3
        seen_types |= {c.type for c in g.cells}
        assert Genotype.from_json(g.to_json()) == g
    assert seen_types == {"rfdb", "rlfb", "erb", "imdb"}
    model = build_model(g)
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 24, 24)


def test_spab_cells_and_conv3xc_can_be_sampled():
    space = SampleSpace(scale=2, widths=[8], cells_min=1, cells_max=2,
                        cell_types=["spab", "rlfb"], conv_candidates=["conv3x3", "conv3xc"],
                        attention_candidates=["none", "pa"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_types, seen_ops, spab = set(), set(), None
    for _ in range(12):
        trial = study.ask()
        g = sample_genotype(trial, space)
        study.tell(trial, 0.0)
        seen_types |= {c.type for c in g.cells}
        seen_ops |= {op for c in g.cells for op in c.ops}
        if any(c.type == "spab" and "conv3xc" in c.ops for c in g.cells):
            spab = g
        assert Genotype.from_json(g.to_json()) == g
    assert seen_types == {"spab", "rlfb"} and seen_ops == {"conv3x3", "conv3xc"}
    assert spab is not None
    assert all(c.block_residual for c in spab.cells if c.type == "spab")
    model = build_model(spab)
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("kw, key", [(dict(widths=[]), "widths"),
                                     (dict(cell_types=["rrdb"]), "rrdb"),
                                     (dict(cells_min=3, cells_max=2), "cells_min"),
                                     (dict(conv_candidates=[]), "conv_candidates")])
def test_malformed_space_is_refused(kw, key):
    with pytest.raises(ValueError, match=key):
        SampleSpace(**kw)


def test_evaluate_measures_trains_and_records():
    g = Genotype.from_dict({"scale": 2, "width": 8, "cells": [
        {"type": "erb", "ops": ["conv3x3", "conv3x3"], "attention": "pa"}]})
    r = evaluate_genotype(g, TINY_PROXY, TINY_MEASURE, ConstraintConfig(psnr_floor_db=100.0,
                                                                        max_params_m=1.0))
    assert 5 < r.psnr_db < 60 and r.latency_ms > 0 and r.memory_mib > 0
    assert r.params_m == pytest.approx(sum(p.numel() for p in build_model(g).parameters()) / 1e6)
    assert r.constraints["psnr_floor"] > 0 and r.constraints["params"] < 0
    assert Genotype.from_json(r.genotype) == g
    # the proxy is deterministic: same seed, same PSNR
    again = evaluate_genotype(g, TINY_PROXY, TINY_MEASURE, ConstraintConfig())
    assert again.psnr_db == pytest.approx(r.psnr_db, abs=1e-6) and again.constraints == {}


def test_the_deployed_span_of_the_default_zoo_trains_in_the_proxy():
    # SPAN is enqueued like the other zoo nets: no attention to degenerate on small patches,
    # and the net (not the loop) owns its input mean and deployed input scale.
    from dataclasses import replace

    from searchers.trials.trial import DEFAULT_ZOO, study_patch_size, zoo_genotype

    assert "span_ntire2024" in DEFAULT_ZOO
    g = zoo_genotype("span_ntire2024", 2)
    space = SampleSpace(scale=2, attention_candidates=("none",))
    assert study_patch_size(space, TINY_PROXY, ["span_ntire2024"]) == 16  # no larger patch
    trained = evaluate_genotype(g, TINY_PROXY, TINY_MEASURE, ConstraintConfig())
    untrained = evaluate_genotype(g, replace(TINY_PROXY, steps=0), TINY_MEASURE,
                                  ConstraintConfig())
    assert 5 < trained.psnr_db < 60 and trained.latency_ms > 0 and trained.memory_mib > 0
    assert trained.psnr_db != pytest.approx(untrained.psnr_db, abs=1e-3)  # the steps moved it


def test_constraint_values_sign_convention():
    row = {"psnr_db": 30.0, "params_m": 0.5, "latency_ms": 10.0, "memory_mib": 20.0}
    c = constraint_values(row, ConstraintConfig(psnr_floor_db=29.0, max_params_m=0.4,
                                                max_latency_ms=12.0, max_memory_mib=20.0))
    assert c == pytest.approx({"psnr_floor": -1.0, "params": 0.1, "latency": -2.0,
                               "memory": 0.0})


def test_weights_are_inherited_from_a_darts_supernet(tmp_path):
    from proxies.data.specs import dataset_from_spec
    from searchers.differentiable.search import main as darts_main
    from searchers.differentiable.supernet import SuperNet, SupernetSpec
    from searchers.training.loop import validate

    args = [f"run.dir={tmp_path}", "space.scale=2", "space.width=8", "space.num_cells=1",
            "space.cell_types=[erb]", "space.conv_candidates=[conv3x3,sep_conv3x3]",
            "space.attention_candidates=[none,pa]", "data.patch_size=16", "data.batch_size=2",
            "search.steps=2", "search.warmup_steps=0", "hardware.lr_size=16", "hardware.runs=1",
            "hardware.warmup=0", f"hardware.cache_dir={tmp_path}/lut", "profile.enabled=false",
            "run.plots=false"]
    assert darts_main(args) == 0
    run = tmp_path / "default"
    from searchers.trials.inherit import inherit_supernet_weights

    g = Genotype.from_dict({"scale": 2, "width": 8, "fusion": True, "cells": [
        {"type": "erb", "ops": ["sep_conv3x3", "conv3x3"], "attention": "pa",
         "block_residual": True}]})
    model = build_model(g)
    inherit_supernet_weights(model, run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert torch.equal(model.head.weight, state["head.weight"])
    src = [k for k in state if k.endswith("convs.0.ops.1.pointwise.weight")]
    assert len(src) == 1
    assert torch.equal(model.cells[0].body.convs[0].pointwise.weight, state[src[0]])
    wrong = Genotype.from_dict({"scale": 2, "width": 16, "fusion": True, "cells": [
        {"type": "erb", "ops": ["conv3x3", "conv3x3"], "attention": "pa"}]})
    with pytest.raises(ValueError, match="width is 16 but the supernet's is 8"):
        inherit_supernet_weights(build_model(wrong), run)
    # Every weight of the derived net is the supernet's at that choice: the supernet with
    # one-hot mixing weights on the genotype's candidates computes the same function.
    net = SuperNet(SupernetSpec(scale=2, width=8, num_cells=1, cell_types=("erb",),
                                conv_candidates=("conv3x3", "sep_conv3x3"),
                                attention_candidates=("none", "pa")))
    net.load_state_dict(state)
    chosen = {"cells.0.conv0": "sep_conv3x3", "cells.0.conv1": "conv3x3",
              "cells.0.attention": "pa"}
    assert {slot for slot, _ in net.named_arch_parameters()} == set(chosen)
    for slot, alpha in net.named_arch_parameters():
        op = next(m for m in net.mixed_ops() if m.slot == slot)
        alpha.data = torch.tensor([1e4 if c == chosen[slot] else -1e4 for c in op.candidates])
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), net.eval()(x), rtol=1e-5, atol=1e-6)
    # the trial's proxy PSNR is that net's, untrained (no steps when inheriting)
    r = evaluate_genotype(g, ProxyConfig(supernet=str(run), val_max_side=32), TINY_MEASURE,
                          ConstraintConfig())
    val = dataset_from_spec("default:val", 2)
    cpu = torch.device("cpu")
    assert r.psnr_db == pytest.approx(validate(net, val, scale=2, device=cpu, side=32), abs=1e-4)
    assert r.proxy_seeds == 1 and Genotype.from_json(r.genotype) == g
    torch.manual_seed(0)
    scratch = validate(build_model(g), val, scale=2, device=cpu, side=32)
    assert abs(r.psnr_db - scratch) > 1e-3  # not the net as initialised


def test_mab_cells_and_maffsrn_attentions_can_be_sampled():
    assert "mab" not in SampleSpace().cell_types
    assert not {"esa_mab", "cea"} & set(SampleSpace().attention_candidates)
    space = SampleSpace(scale=2, widths=[8], cells_min=1, cells_max=2,
                        cell_types=["mab", "erb"], attention_candidates=["esa_mab", "cea"],
                        conv_candidates=["conv3x3", "sep_conv3x3"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_types, seen_atts, mab = set(), set(), None
    for _ in range(12):
        trial = study.ask()
        g = sample_genotype(trial, space)
        study.tell(trial, 0.0)
        seen_types |= {c.type for c in g.cells}
        seen_atts |= set(g.attentions)
        if any(c.type == "mab" and c.attention.type == "esa_mab" for c in g.cells):
            mab = g
        assert Genotype.from_json(g.to_json()) == g
    assert seen_types == {"mab", "erb"} and seen_atts == {"esa_mab", "cea"}
    assert mab is not None and all(len(c.ops) == 2 for c in mab.cells if c.type == "mab")
    model = build_model(mab)
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_the_proxy_can_average_seeds():
    from dataclasses import replace

    g = Genotype.from_dict({"scale": 2, "width": 8, "cells": [
        {"type": "erb", "ops": ["conv3x3", "conv3x3"], "attention": "none"}]})
    one = [evaluate_genotype(g, replace(TINY_PROXY, seed=s), TINY_MEASURE, ConstraintConfig())
           for s in (0, 1)]
    both = evaluate_genotype(g, replace(TINY_PROXY, seeds=2), TINY_MEASURE, ConstraintConfig())
    assert both.proxy_seeds == 2 and one[0].proxy_seeds == 1
    assert both.psnr_db == pytest.approx((one[0].psnr_db + one[1].psnr_db) / 2, abs=1e-9)
    assert both.psnr_std_db == pytest.approx(abs(one[0].psnr_db - one[1].psnr_db) / 2, abs=1e-9)
    with pytest.raises(ValueError, match="proxy.seeds: got 0"):
        ProxyConfig(seeds=0)


def test_a_budget_relative_to_a_reference_net_is_measured_beside_each_trial(tmp_path):
    from searchers.trials.trial import BudgetConfig

    g = Genotype.from_dict({"scale": 4, "width": 8, "cells": [
        {"type": "erb", "ops": ["conv3x3", "conv3x3"], "attention": "none"}]})
    budget = BudgetConfig(reference="span_ntire2024", latency_x=0.8, memory_x=1.0, rounds=2)
    r = evaluate_genotype(g, replace_steps(TINY_PROXY, 1), TINY_MEASURE, ConstraintConfig(),
                          budget=budget)
    # the latency ratio is a timing: measured and finite here, its value is the benchmarks'
    # (beside a loaded suite this 0.005 M net once read 1.69x SPAN at the tiny measure size)
    assert 0 < r.latency_ratio < math.inf
    assert 0 < r.memory_ratio < 1.2  # a far smaller net than SPAN
    assert r.constraints == {"latency_x": pytest.approx(r.latency_ratio - 0.8),
                             "memory_x": pytest.approx(r.memory_ratio - 1.0)}
    ref = evaluate_genotype(g, replace_steps(TINY_PROXY, 1), TINY_MEASURE, ConstraintConfig())
    assert math.isnan(ref.latency_ratio) and ref.constraints == {}
    with pytest.raises(ValueError, match="budget.reference: got None"):
        BudgetConfig(latency_x=0.8)
    with pytest.raises(ValueError, match="budget.latency_x: got -1"):
        BudgetConfig(reference="span_ntire2024", latency_x=-1)
    with pytest.raises(ValueError, match="valid names"):
        BudgetConfig(reference="spam")


def replace_steps(proxy, steps):
    from dataclasses import replace

    return replace(proxy, steps=steps)
