"""Weight sharing: subnets of the one supernet (elastic width and depth), supernet training
(resume, rules, run folder) and the trials' ``proxy.kind: supernet``."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import optuna
import pytest
import torch
from torch.func import functional_call

from results.run_folder import RunFolder
from search_space import Genotype, build_model
from search_space.zoo import YARDSTICK, ZOO
from searchers.common.checkpoints import save_checkpoint
from searchers.common.config import dump_yaml, load_config
from searchers.differentiable.config import DartsConfig
from searchers.differentiable.elastic import (
    SubnetError,
    check_subnet,
    extract_subnet,
    subnet_names,
    subnet_parameters,
    subnet_structure,
)
from searchers.differentiable.mixed import MixedOp
from searchers.differentiable.paths import largest_subnet, sample_subnet, smallest_subnet
from searchers.differentiable.supernet import MixedCell, SuperNet, SupernetSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = SupernetSpec(scale=2, width=8, num_cells=2, cell_types=("rfdb", "erb"),
                    conv_candidates=("conv3x3", "sep_conv3x3"),
                    attention_candidates=("none", "pa"), act_candidates=("lrelu0.05", "relu"))
SPACE = ["space.scale=2", "space.width=8", "space.num_cells=2", "space.widths=[4,8]",
         "space.cells_min=1", "space.cell_types=[rfdb,erb]",
         "space.conv_candidates=[conv3x3,sep_conv3x3]", "space.attention_candidates=[none,pa]",
         "space.act_candidates=[lrelu0.05,relu]"]


def _genotypes(n: int, seed: int = 0) -> list[Genotype]:
    rng = np.random.default_rng(seed)
    return [sample_subnet(SPEC, [4, 6, 8], 1, rng) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Subnets
# --------------------------------------------------------------------------------------------


def test_functional_call_equals_the_extracted_subnet():
    torch.manual_seed(0)
    net = SuperNet(SPEC)
    x = torch.rand(2, 3, 12, 12)
    seen = set()
    for g in [*_genotypes(6), largest_subnet(SPEC), smallest_subnet(SPEC, [4, 8], 1)]:
        seen.add((g.width, g.num_cells))
        model = build_model(g).eval()
        with torch.no_grad():
            y = functional_call(model, subnet_parameters(net, g), (x,))
            torch.testing.assert_close(y, extract_subnet(net, g).eval()(x), rtol=0, atol=0)
            assert not torch.equal(y, build_model(g).eval()(x))  # not the net's own weights
    assert {w for w, _ in seen} >= {4, 8} and {n for _, n in seen} == {1, 2}


@pytest.mark.parametrize("cells", [1, 2])
def test_a_step_through_functional_call_changes_the_slices_and_only_them(cells):
    torch.manual_seed(0)
    net = SuperNet(SPEC)
    g = next(g for g in _genotypes(40, seed=1) if g.width == 6 and g.num_cells == cells)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    out = functional_call(subnet_structure(net, g).eval(), subnet_parameters(net, g),
                          (torch.rand(2, 3, 12, 12),))
    out.abs().mean().backward()
    opt.step()
    inside: dict[str, torch.Tensor] = {k: torch.zeros_like(v, dtype=torch.bool)
                                       for k, v in before.items()}
    for ours, theirs in subnet_names(net, g).items():
        shape = build_model(g).state_dict()[ours].shape
        if theirs == "fusion.0.weight":  # one block of width 8 per cell: the first 6 of each
            inside[theirs].view(8, 2, 8, 1, 1)[:6, :cells, :6] = True
        else:
            inside[theirs][tuple(slice(0, d) for d in shape)] = True
    after = net.state_dict()
    changed = {k: before[k] != after[k] for k in before}
    assert all(not (changed[k] & ~inside[k]).any() for k in before)  # only the slices moved
    assert changed["head.weight"][:6].any() and not changed["head.weight"][6:].any()
    assert changed["fusion.0.weight"].view(8, 2, 8)[:6, cells - 1, :6].any()
    assert any(changed[k].any() for k in changed if k.startswith(f"cells.{cells - 1}."))
    if cells == 1:  # cell 1 is not in the subnet
        assert not any(changed[k].any() for k in changed if k.startswith("cells.1."))
    alphas = [k for k in before if k.endswith("alpha")]
    assert alphas and not any(changed[k].any() for k in alphas)


def _old_inherit(model: torch.nn.Module, net: SuperNet, g: Genotype) -> None:
    """The copy inherit_supernet_weights made before the one mapping (kept as the reference)."""
    spec = net.spec
    choice: dict[str, str] = {}
    for i, cell in enumerate(g.cells):
        p = spec.slot_prefix(i, cell.type)
        choice[f"cells.{i}.type"] = cell.type
        choice.update({f"{p}conv{j}": op for j, op in enumerate(cell.ops)})
        choice[f"{p}attention"] = cell.single_attention().type
        choice[f"{p}act"] = cell.act

    def copy(dst: torch.nn.Module, src: torch.nn.Module) -> None:
        if isinstance(src, MixedOp):
            src = src.ops[src.candidates.index(choice[src.slot])]
        own = dict(src.named_parameters(recurse=False))
        for k, v in dst.named_parameters(recurse=False):
            v.copy_(own[k])
        for name, child in dst.named_children():
            copy(child, src._modules[name])  # type: ignore[arg-type]

    with torch.no_grad():
        for name in ("head", "lr_conv", "upsampler", "fusion"):
            getattr(model, name).load_state_dict(getattr(net, name).state_dict())
        for dst_cell, src_cell, gene in zip(model.cells, net.cells, g.cells, strict=True):
            assert isinstance(src_cell, MixedCell)
            mixed = src_cell.mixed
            copy(dst_cell, mixed.ops[mixed.candidates.index(gene.type)])


def test_full_size_inheritance_is_the_old_copy(tmp_path):
    from searchers.trials.inherit import inherit_supernet_weights

    torch.manual_seed(0)
    net = SuperNet(SPEC)
    cfg = load_config(DartsConfig, None, [o for o in SPACE if "widths" not in o
                                          and "cells_min" not in o])
    folder = RunFolder(tmp_path / "darts")
    folder.record(dump_yaml(cfg), ["darts"])
    save_checkpoint({"step": 1, "model": net.state_dict()}, folder.checkpoint)
    full = [g for g in _genotypes(30) if g.width == 8 and g.num_cells == 2]
    assert {c.type for g in full for c in g.cells} == {"rfdb", "erb"}
    for g in full[:4]:
        torch.manual_seed(1)
        new, old = build_model(g), build_model(g)
        inherit_supernet_weights(new, folder.path)
        _old_inherit(old, net, g)
        for (k, a), (_, b) in zip(new.state_dict().items(), old.state_dict().items(),
                                  strict=True):
            assert torch.equal(a, b), k
        assert torch.equal(new.head.weight, net.head.weight)


def _with(g: Genotype, **cell: object) -> Genotype:
    return replace(g, cells=(replace(g.cells[0], **cell), *g.cells[1:]))


def test_check_subnet_names_the_first_field_outside():
    g = largest_subnet(SPEC)
    check_subnet(SPEC, g)
    erb = {"type": "erb", "shallow_residual": False, "block_residual": True, "inner": None}
    cases = [
        (replace(g, scale=3), "genotype.scale"),
        (replace(g, long_skip=False), "genotype.long_skip"),
        (replace(g, fusion=False), "genotype.fusion"),
        (replace(g, width=12), "genotype.width: got 12; the supernet allows at most 8"),
        (replace(g, cells=g.cells * 2), "genotype.cells: got '4 cells'"),
        (_with(g, ops=("conv3x3", "conv3x3"), **erb), None),
        (_with(g, type="imdb", shallow_residual=False, block_residual=True),
         r"cells\[0\].type: got 'imdb'"),
        (_with(g, ops=("conv5x5",) * 4), r"cells\[0\].ops\[0\]: got 'conv5x5'"),
        (_with(g, attention="esa"), r"cells\[0\].attention.type: got 'esa'"),
        (_with(g, act="gelu"), r"cells\[0\].act: got 'gelu'"),
        (_with(g, inner=3), r"cells\[0\].inner: got 3"),
        (_with(g, shallow_residual=False), r"cells\[0\].\(shallow_residual"),
        (_with(g, ops=("conv3x3",), **erb), r"cells\[0\].ops: got \['conv3x3'\]"),
    ]
    for genotype, match in cases:
        if match is None:
            check_subnet(SPEC, genotype)  # another type among the candidates: inside
            continue
        with pytest.raises(SubnetError, match=match):
            check_subnet(SPEC, genotype)
    # deployed-only interfaces are free; an explicit inner equal to the default is inside
    check_subnet(SPEC, replace(g, data_range=255.0))
    check_subnet(SPEC, _with(g, inner=4))


def test_which_yardstick_nets_are_subnets():
    """The claim of the elastic module's docstring: IMDN and RFDN are subnets of a supernet
    whose frame fits them; RLFN, FMEN-S and SPAN are no subnet of any template frame."""
    fits = {
        "imdn_ntire": SupernetSpec(width=64, num_cells=8, cell_types=("imdb",), fusion=False),
        "rfdn_aim2020": SupernetSpec(width=50, num_cells=4, cell_types=("rfdb",)),
    }
    for name, spec in fits.items():
        check_subnet(spec, ZOO[name])
    outside = {"rlfn_ntire": (False, r"cells\[0\].inner: got 48"),
               "fmen_s": (False, r"cells\[0\].ops: got \['conv3x3'\]"),
               "span_ntire2024": (True, "genotype.fusion_act")}
    assert set(fits) | set(outside) == set(YARDSTICK)
    for name, (fusion, match) in outside.items():
        g = ZOO[name]
        spec = SupernetSpec(width=64, num_cells=8, cell_types=(g.cells[0].type,), fusion=fusion,
                            act_candidates=(g.cells[0].act,))
        with pytest.raises(SubnetError, match=match):
            check_subnet(spec, g)


# --------------------------------------------------------------------------------------------
# Supernet training
# --------------------------------------------------------------------------------------------


def _train_args(tmp_path, *extra):
    return [f"run.dir={tmp_path}", *SPACE, "data.patch_size=24", "data.batch_size=2",
            "train.steps=4", "run.checkpoint_every=2", "run.log_every=1", "run.plots=false",
            "run.device=cpu", *extra]


def _model(run) -> dict[str, torch.Tensor]:
    return torch.load(RunFolder(run).checkpoint, weights_only=True)["model"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny supernet trained with the sandwich rule and distillation: 4 steps, uninterrupted."""
    from searchers.sharing.train import main

    root = tmp_path_factory.mktemp("supernet")
    assert main(_train_args(root, "run.name=whole", "train.distill=0.5",
                            "run.plots=true")) == 0
    return root / "whole"


def test_a_stopped_run_resumes_bit_identically(trained, tmp_path):
    from searchers.sharing.train import main

    args = _train_args(tmp_path, "run.name=split", "train.distill=0.5")
    assert main([*args, "--stop-after", "2"]) == 0
    assert main([*args, "--resume"]) == 0
    ours, theirs = _model(tmp_path / "split"), _model(trained)
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    log = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log] == ["step", "1", "2", "3", "4"]
    assert log == (trained / "log.csv").read_text().splitlines()


def test_the_run_folder_and_the_alphas(trained):
    folder = RunFolder(trained)
    assert folder.missing(folder.config, folder.command, folder.log, folder.checkpoint,
                          folder.supernet, trained / "losses.html") == []
    assert "run.name=whole" in folder.read_command()
    from searchers.sharing.load import read_supernet_space

    space = read_supernet_space(trained)
    assert space.spec == SPEC and space.widths == (4, 8) and space.cells_min == 1
    state = _model(trained)
    torch.manual_seed(0)
    fresh = SuperNet(SPEC).state_dict()
    alphas = [k for k in state if k.endswith("alpha")]
    assert alphas and all(torch.equal(state[k], fresh[k]) for k in alphas)  # never trained
    assert not torch.equal(state["head.weight"], fresh["head.weight"])  # the weights were
    header, *rows = (trained / "log.csv").read_text().splitlines()
    kd = header.split(",").index("loss_kd")
    assert all(float(r.split(",")[kd]) > 0 for r in rows)


def test_the_uniform_rule_and_the_refusals(tmp_path, caplog):
    from searchers.sharing.train import main

    args = _train_args(tmp_path, "train.rule=uniform", "train.steps=2")
    assert main(args) == 0
    header, *rows = (tmp_path / "default" / "log.csv").read_text().splitlines()
    cols = header.split(",")
    assert len(rows) == 2 and all(r.split(",")[cols.index("width")] in ("4", "8") for r in rows)
    caplog.set_level(logging.ERROR)
    for extra, match in ((args, "already holds a run"),
                         ([*args, "run.name=new", "--resume"], "no checkpoint"),
                         ([*args, "run.name=x", "space.widths=[4,16]"], "space.widths"),
                         ([*args, "run.name=x", "train.distill=1"], "train.rule=sandwich")):
        caplog.clear()
        assert main(extra) == 2
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(lines) == 1 and "\n" not in lines[0] and match in lines[0], lines
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------------------------
# The trials' proxy.kind: supernet
# --------------------------------------------------------------------------------------------


def _study_args(run_dir, supernet, *extra):
    return [f"run.dir={run_dir}", "space.scale=2", "space.widths=[4,8]", "space.cells_min=1",
            "space.cells_max=2", "space.cell_types=[rfdb,erb]",
            "space.conv_candidates=[conv3x3,sep_conv3x3]", "space.attention_candidates=[none,pa]",
            "space.act_candidates=[relu]", "space.fusion=[true]", "proxy.kind=supernet",
            f"proxy.supernet={supernet}", "proxy.batch_size=2", "proxy.patch_size=24",
            "proxy.val_max_side=24", "measure.lr_size=16", "measure.runs=1", "measure.warmup=0",
            "study.enqueue_zoo=false", "study.n_trials=2", "study.population_size=2", *extra]


def test_optuna_trials_inherit_the_supernet(trained, tmp_path):
    from proxies.data.specs import dataset_from_spec
    from searchers.sharing.load import load_supernet
    from searchers.training.loop import validate
    from searchers.trials.study import main

    val = dataset_from_spec("default:val", 2)
    net = load_supernet(trained).net
    for steps in (0, 2):
        assert main(_study_args(tmp_path, trained, f"run.name=ft{steps}",
                                f"proxy.finetune_steps={steps}")) == 0
        study = optuna.load_study(study_name="srnas",
                                  storage=f"sqlite:///{tmp_path / f'ft{steps}' / 'study.db'}")
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        assert len(done) == 2 and all(math.isfinite(t.values[0]) for t in done)
        for t in done:
            g = Genotype.from_json(t.user_attrs["genotype"])
            inherited = validate(extract_subnet(net, g), val, scale=2,
                                 device=torch.device("cpu"), side=24)
            assert t.user_attrs["proxy_steps"] == steps
            if steps == 0:  # the inherited weights as they are
                assert t.values[0] == pytest.approx(inherited, abs=1e-4)
            else:
                assert t.values[0] != pytest.approx(inherited, abs=1e-4)


def test_a_study_space_outside_the_supernet_is_refused(trained, tmp_path, caplog):
    from searchers.trials.study import main
    from searchers.trials.trial import ConstraintConfig, ProxyConfig, evaluate_genotype

    caplog.set_level(logging.ERROR)
    for extra, match in (("space.widths=[4,16]", "space.widths has 16 but the supernet in"),
                         ("space.cells_max=3", "space.cells_max is 3"),
                         ("space.act_candidates=[gelu]", "space.act_candidates has 'gelu'"),
                         ("space.long_skip=[true,false]", "space.long_skip has false"),
                         ("study.enqueue_zoo=true study.zoo=[imdn_ntire]",
                          "study.zoo: 'imdn_ntire' is no subnet")):
        caplog.clear()
        assert main(_study_args(tmp_path, trained, *extra.split())) == 2
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(lines) == 1 and match in lines[0], lines
    assert not (tmp_path / "default").exists()
    assert main(_study_args(tmp_path, tmp_path / "nowhere")) == 2
    assert "neither supernet.json nor config.yaml" in caplog.records[-1].getMessage()
    # a genotype that still lands outside fails its trial with the GenotypeError subclass
    from searchers.common.sections import MeasureSection

    wide = replace(largest_subnet(SPEC), width=16)
    with pytest.raises(SubnetError, match="genotype.width: got 16"):
        evaluate_genotype(wide, ProxyConfig(kind="supernet", supernet=str(trained)),
                          MeasureSection(device="cpu", lr_size=16, runs=1, warmup=0),
                          ConstraintConfig())
    with pytest.raises(ValueError, match="proxy.supernet unset"):
        ProxyConfig(kind="supernet")


def test_a_ray_tune_trial_inherits_the_supernet(trained, tmp_path, monkeypatch):
    """Tune's trainable gets the proxy config as a plain dict and runs in a trial folder of its
    own (another working directory): ``proxy.kind=supernet`` reaches evaluate_genotype."""
    from ray import tune

    import searchers.trials.tune as rt
    from searchers.common.config import to_dict
    from searchers.trials.sampled_space import genotype_params

    reports: list[dict] = []
    monkeypatch.setattr(tune, "get_context", lambda: type(
        "Context", (), {"get_trial_id": lambda self: "t_00000"})())
    monkeypatch.setattr(tune, "report", reports.append)
    cfg = load_config(rt.RayConfig, None, [a for a in _study_args(tmp_path, trained.resolve())
                                           if not a.startswith("run.dir")])
    g = replace(smallest_subnet(SPEC, [4, 8], 1), cells=(replace(
        smallest_subnet(SPEC, [4, 8], 1).cells[0], act="relu"),))
    params = genotype_params(g, cfg.space)
    monkeypatch.chdir(tmp_path)
    rt.trainable({"_cfg": to_dict(cfg), "_measure_cuda": False, "_evaluated": None, **params})
    assert len(reports) == 1 and "fail_reason" not in reports[0], reports
    assert math.isfinite(reports[0]["psnr_db"]) and reports[0]["proxy_steps"] == 0
