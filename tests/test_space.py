"""The sampled space holds the yardstick: every zoo net is a point of it, with parameters
inside the sampler's distributions (so the enqueued zoo trials seed NSGA-II's population)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from search_space import Genotype, build_model
from search_space.zoo import YARDSTICK, ZOO
from searchers.common.config import ConfigError, load_config
from searchers.trials.config import OptunaConfig
from searchers.trials.sampled_space import (
    NotInSpace,
    SampleSpace,
    genotype_params,
    normalise_interface,
    sample_genotype,
)
from searchers.trials.study import open_study, zoo_params

optuna.logging.set_verbosity(optuna.logging.WARNING)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def preset(name: str) -> SampleSpace:
    return load_config(OptunaConfig, CONFIGS / "spaces" / f"{name}.yaml").space


def _replayed(genotype, space):
    """Enqueue the genotype's parameters in a fresh study, ask, and sample from that trial."""
    params = genotype_params(genotype, space)
    study = optuna.create_study(sampler=optuna.samplers.NSGAIISampler(seed=0))
    study.enqueue_trial(params)
    trial = study.ask()
    sampled = sample_genotype(trial, space)
    return params, trial, sampled


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_net_is_a_point_of_the_full_space(name):
    space = preset("full")
    params, trial, sampled = _replayed(normalise_interface(ZOO[name]), space)
    assert sampled == normalise_interface(ZOO[name])
    assert trial.params == params  # every enqueued value was taken, none replaced
    for key, value in params.items():  # ... and lies inside its distribution
        dist = trial.distributions[key]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            assert value in dist.choices, key
        else:
            assert dist.low <= value <= dist.high, key


@pytest.mark.parametrize("name", YARDSTICK)
def test_the_cpu_preset_holds_the_yardstick(name):
    space = preset("cpu")
    assert space.cells_max <= 8 and max(space.widths) <= 64
    _, _, sampled = _replayed(normalise_interface(ZOO[name]), space)
    assert sampled == normalise_interface(ZOO[name])
    assert "data_range" not in sampled.to_dict() or sampled.data_range == 1.0


def test_a_net_outside_the_space_is_named_with_the_value_and_the_choices():
    with pytest.raises(NotInSpace, match=r"width=46; the space allows \[16, 24, 32\]"):
        genotype_params(ZOO["rlfn_ntire"], SampleSpace(), "zoo net 'rlfn_ntire'")
    wide = SampleSpace(widths=[46], cells_max=4, cell_types=["rlfb"])
    with pytest.raises(NotInSpace, match=r"attention='esa_lite'; the space allows \['esa', "):
        genotype_params(ZOO["rlfn_ntire"], SampleSpace(
            widths=[46], cells_max=4, data_ranges=[1.0, 255.0], inners=[None, 48],
            attention_candidates=["esa", "none"], attention_channels=[None, 16]))
    with pytest.raises(NotInSpace, match="data_range is 255.0, the space gives 1.0"):
        genotype_params(ZOO["rlfn_ntire"], wide)  # a single-valued field: no parameter


def test_the_default_space_draws_the_parameters_it_drew_before():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(10):
        trial = study.ask()
        g = sample_genotype(trial, SampleSpace())
        study.tell(trial, 0.0)
        assert {k.split(".")[-1] for k in trial.params} <= {
            "width", "num_cells", "fusion", "act", "type", "attention", "conv0", "conv1",
            "conv2", "conv3"}
        assert g.data_range == 1.0 and g.long_skip and g.tail == "conv3x3"
        assert all(c.shallow_residual == (c.type == "rfdb") for c in g.cells)


def test_random_nets_of_the_cpu_preset_are_valid_and_run():
    space = preset("cpu")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(6):
        trial = study.ask()
        g = sample_genotype(trial, space)
        study.tell(trial, 0.0)
        seen |= {g.long_skip}
        assert normalise_interface(g) == g  # conventions are not sampled
        assert _replayed(g, space)[2] == g  # every drawn net has parameters that rebuild it
        with torch.no_grad():
            assert build_model(g).eval()(torch.rand(1, 3, 28, 28)).shape == (1, 3, 112, 112)
    assert len(seen) > 1


def test_the_study_enqueues_the_zoo_with_parameters_inside_the_space(tmp_path):
    cfg = load_config(OptunaConfig, CONFIGS / "spaces" / "cpu.yaml",
                      ["study.zoo=[rlfn_ntire,span_ntire2024,maffsrn]",
                       "study.zoo_outside=reference"])
    assert zoo_params(cfg.space, ["maffsrn"]) == {"maffsrn": None}  # 16 cells > 8
    study = open_study(cfg, f"sqlite:///{tmp_path / 'study.db'}")
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    by_name = {t.user_attrs["zoo"]: t for t in waiting}
    assert by_name["rlfn_ntire"].user_attrs["in_space"]
    fixed = {name: t.system_attrs["fixed_params"] for name, t in by_name.items()}
    assert fixed["rlfn_ntire"]["width"] == 46
    assert fixed["span_ntire2024"]["cells.5.spab.conv2"] == "conv3x3"
    assert not by_name["maffsrn"].user_attrs["in_space"] and not fixed["maffsrn"]


def test_a_config_takes_a_preset_as_its_base(tmp_path):
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "p.yaml").write_text("space: {widths: [40], cells_max: 6}\n")
    (tmp_path / "run.yaml").write_text("base: spaces/p.yaml\nspace: {cells_max: 5}\n")
    cfg = load_config(OptunaConfig, tmp_path / "run.yaml", ["space.cells_min=3"])
    assert (cfg.space.widths, cfg.space.cells_max, cfg.space.cells_min) == ([40], 5, 3)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ConfigError, match="include it again"):
        load_config(OptunaConfig, tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: 3\n")
    with pytest.raises(ConfigError, match="base: expected a path"):
        load_config(OptunaConfig, tmp_path / "c.yaml")
    from searchers.stages.pipeline import PipelineConfig

    (tmp_path / "pipe.yaml").write_text("base: {trials: spaces/p.yaml}\n")
    assert load_config(PipelineConfig, tmp_path / "pipe.yaml").trials.space.widths == [40]


def test_an_enqueued_zoo_trial_runs_with_its_parameters_and_ray_seeds_them_too(tmp_path):
    from searchers.trials.study import main
    from searchers.trials.tune import DefineSpace

    args = [f"--config={CONFIGS / 'spaces' / 'cpu.yaml'}", f"run.dir={tmp_path}",
            "study.zoo=[span_ntire2024,maffsrn]", "study.zoo_outside=reference",
            "study.n_trials=2", "proxy.steps=1",
            "proxy.batch_size=1", "proxy.val_max_side=24", "measure.lr_size=16",
            "measure.runs=1", "measure.warmup=0"]
    assert main(args) == 0
    study = optuna.load_study(study_name="srnas",
                              storage=f"sqlite:///{tmp_path / 'default' / 'study.db'}")
    span, maffsrn = study.get_trials()
    assert span.state == maffsrn.state == optuna.trial.TrialState.COMPLETE
    assert span.params == genotype_params(normalise_interface(ZOO["span_ntire2024"]),
                                          preset("cpu"))
    assert Genotype.from_json(span.user_attrs["genotype"]) == ZOO["span_ntire2024"]  # as published
    assert maffsrn.user_attrs["name"] == "maffsrn" and not maffsrn.params
    cfg = load_config(OptunaConfig, CONFIGS / "spaces" / "cpu.yaml",
                      ["study.zoo=[rlfn_ntire,maffsrn]", "study.zoo_outside=reference"])
    space = DefineSpace(cfg)
    assert space.points_to_evaluate == [genotype_params(normalise_interface(ZOO["rlfn_ntire"]),
                                                        cfg.space)]
    ray_study = optuna.create_study()
    ray_study.enqueue_trial(space.points_to_evaluate[0])
    assert space(ray_study.ask()) == {"zoo": "rlfn_ntire"}
    assert space(ray_study.ask()) == {"zoo": "maffsrn"}
    assert space(ray_study.ask()) is None


def test_the_default_study_enqueues_only_zoo_nets_inside_its_space(tmp_path, caplog):
    cfg = load_config(OptunaConfig, None, ["study.zoo=[rlfn_ntire,span_ntire2024]",
                                           "space.cell_types=[rlfb]", "space.widths=[46]",
                                           "space.attention_candidates=[esa_lite]",
                                           "space.inners=[null,48]",
                                           "space.attention_channels=[null,16]"])
    assert cfg.study.zoo_outside == "skip" == OptunaConfig().study.zoo_outside
    with caplog.at_level("WARNING", logger="searchers.trials.study"):
        study = open_study(cfg, f"sqlite:///{tmp_path / 'study.db'}")
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["zoo"] for t in waiting] == ["rlfn_ntire"]  # RLFN: 255 range dropped
    assert waiting[0].user_attrs["in_space"]
    assert study.user_attrs["zoo_outside_space"] == ["span_ntire2024"]
    assert "zoo nets outside the sampled space: span_ntire2024; not enqueued" in caplog.text
    from results.table.optuna_study import from_optuna

    assert from_optuna(f"sqlite:///{tmp_path / 'study.db'}").attrs["zoo_outside_space"] == [
        "span_ntire2024"]


@pytest.mark.parametrize("name", ["rfdn_aim2020", "span_ntire2024", "edsr_baseline"])
def test_a_normalised_zoo_net_computes_the_same_functions(name):
    """Same weights (data range, input scale), or a head bias and last-conv bias moved by the
    means: the normalised net gives the zoo net's output (away from the head's padded border
    where the input mean is dropped)."""
    from search_space.network import _tail_convs, reparameterize, super_resolve

    zoo = ZOO[name]
    torch.manual_seed(0)
    net = build_model(zoo).eval()
    norm = build_model(normalise_interface(zoo)).eval()
    state = {k: v for k, v in net.state_dict().items() if k in norm.state_dict()}
    assert set(norm.state_dict()) <= set(net.state_dict())  # no parameter of its own
    norm.load_state_dict(state)
    with torch.no_grad():
        if zoo.input_mean is not None:  # (x - m) conv == conv(x) - W m inside the image
            mean = torch.tensor(zoo.input_mean).view(1, 3, 1, 1).expand(1, 3, 3, 3)
            head = norm.head
            head.bias -= (head.weight * mean).sum(dim=(1, 2, 3))
        if zoo.output_mean:
            last = _tail_convs(norm)[-1]
            last.bias += torch.tensor(zoo.input_mean).repeat_interleave(
                last.out_channels // 3)
        x = torch.rand(1, 3, 12, 12)
        a, b = super_resolve(net, x), super_resolve(norm, x)
        deployed = super_resolve(reparameterize(net), x)
    s = zoo.scale * (zoo.num_cells + 4)  # the border a padded head reaches at the output
    inner = (slice(None), slice(None), slice(s, -s), slice(s, -s)) if zoo.input_mean else ...
    assert torch.allclose(a, deployed, atol=1e-4)
    assert torch.allclose(a[inner], b[inner], atol=1e-4)
