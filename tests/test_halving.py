"""Successive halving (``proxy.kind=halving``) and the samplers reading the budget.

Halving: a candidate over budget is measured, never trained (its PSNR -inf, ``proxy_steps`` 0);
survivors train further than the eliminated, from their weights; only the top rung can be
selected. Samplers: nsga2, tpe and gp each run a study to completion and read the trials'
constraints.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from types import SimpleNamespace

import optuna
import pytest

from results.table.optuna_study import from_optuna
from results.table.pareto import eligible_mask
from search_space.genotype import Genotype
from searchers.common.config import load_config
from searchers.stages.pipeline import Pipeline, Search
from searchers.training import loop
from searchers.trials import trial as trial_module
from searchers.trials.config import OptunaConfig, StudyConfig
from searchers.trials.halving import rung_steps, survivors
from searchers.trials.samplers import make_sampler
from searchers.trials.study import main, set_constraints, storage_url

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = ["space.scale=2", "space.widths=[8]", "space.cells_min=1", "space.cells_max=2",
        "space.conv_candidates=[conv3x3,sep_conv3x3]", "space.attention_candidates=[none,pa]",
        "proxy.batch_size=1", "proxy.patch_size=24", "proxy.val_max_side=24",
        "measure.lr_size=16", "measure.runs=1", "measure.warmup=0", "study.enqueue_zoo=false",
        "study.population_size=2"]
HALVING = ["proxy.kind=halving", "proxy.halving_min_steps=1", "proxy.halving_eta=2",
           "proxy.halving_batch=4"]  # rungs of 1, 2, 4 steps: 4 -> 2 -> 1


def _cfg(tmp_path, *extra):
    return load_config(OptunaConfig, None, [f"run.dir={tmp_path}", *TINY, *extra])


def _run(tmp_path, *extra):
    assert main([f"run.dir={tmp_path}", *TINY, *extra]) == 0
    cfg = _cfg(tmp_path, *extra)
    return cfg, optuna.load_study(study_name="srnas", storage=storage_url(cfg))


@pytest.fixture
def train_steps(monkeypatch):
    """Counts the optimisation steps of the one training loop."""
    calls = {"n": 0}
    real = loop.TrainStep.__call__

    def counted(self, *a, **kw):
        calls["n"] += 1
        return real(self, *a, **kw)

    monkeypatch.setattr(loop.TrainStep, "__call__", counted)
    return calls


def test_rungs_and_survivors():
    proxy = trial_module.ProxyConfig(kind="halving", halving_min_steps=25, halving_eta=3,
                                     halving_batch=9)
    assert rung_steps(proxy) == [25, 75, 225]
    assert rung_steps(replace(proxy, halving_batch=8, halving_eta=2)) == [25, 50, 100, 200]
    assert [survivors(n, 3) for n in (9, 3, 2, 1)] == [3, 1, 1, 1]
    for bad, match in (({"halving_eta": 1}, "halving_eta: got 1"),
                       ({"halving_min_steps": 0}, "halving_min_steps: got 0"),
                       ({"seeds": 2}, "proxy.seeds: got 2 with proxy.kind=halving"),
                       ({"supernet": "runs/darts/x"}, "halving trains from scratch")):
        with pytest.raises(ValueError, match=match):
            trial_module.ProxyConfig(kind="halving", **bad)


def test_ray_tune_refuses_halving_with_the_fix():
    from searchers.trials.tune import RayConfig

    with pytest.raises(ValueError, match="only in searchers/optuna_search.py"):
        load_config(RayConfig, None, ["proxy.kind=halving"])


def test_a_candidate_over_budget_is_measured_but_never_trained(tmp_path, train_steps):
    _, study = _run(tmp_path, *HALVING, "study.n_trials=3", "constraints.max_params_m=0.0")
    trials = study.get_trials()
    assert len(trials) == 3 and train_steps["n"] == 0
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.values[0] == -math.inf and t.values[1] > 0 and t.values[2] > 0
        assert t.user_attrs["proxy_steps"] == 0 and t.user_attrs["rung"] == -1
        assert t.constraints["params"] > 0  # what the samplers read
        assert t.user_attrs["constraints"]["params"] == pytest.approx(t.user_attrs["params_m"])
    table = from_optuna(storage_url(_cfg(tmp_path)), "srnas")
    assert not table["feasible"].any() and not eligible_mask(table).any()


def test_survivors_train_on_from_their_weights_and_only_the_top_rung_is_selected(
        tmp_path, train_steps):
    cfg, study = _run(tmp_path, *HALVING, "study.n_trials=4")
    trials = sorted(study.get_trials(), key=lambda t: t.user_attrs["rung"])
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [t.user_attrs["rung"] for t in trials] == [0, 0, 1, 2]
    assert [t.user_attrs["proxy_steps"] for t in trials] == [1, 1, 2, 4]
    assert train_steps["n"] == 1 + 1 + 2 + 4  # each survivor went on, none restarted
    # the top rung's PSNR is the point of one training curve: that of 4 steps in one go
    top = trials[-1]
    again = trial_module.evaluate_genotype(
        Genotype.from_json(top.user_attrs["genotype"]), replace(cfg.proxy, kind="train", steps=4),
        cfg.measure, cfg.constraints, cfg.proxy.patch_size)
    assert top.values[0] == pytest.approx(again.psnr_db, abs=1e-9)
    # below the top rung: not selectable (the table, the fronts, the pipeline)
    assert [t.user_attrs["constraints"].get("rung") for t in trials] == [2, 2, 1, None]
    assert all(not t.constraints for t in trials)  # the samplers see the budget only (none)
    table = from_optuna(storage_url(cfg), "srnas").set_index("trial")
    assert table["feasible"].to_dict() == {t.number: t is top for t in trials}
    pipe = SimpleNamespace(storage=lambda m: storage_url(cfg), cfg=SimpleNamespace(
        trials=SimpleNamespace(study=cfg.study)))
    _, info = Pipeline._best_trial(pipe, Search("srnas", "halving"))  # type: ignore[arg-type]
    assert info["trial"] == top.number


def test_selection_takes_the_top_rung_over_a_higher_early_psnr(tmp_path, monkeypatch):
    # a PSNR that falls with training: the eliminated trials hold the higher values
    monkeypatch.setattr(trial_module.ProxyTraining, "psnr", lambda self: 30.0 - self.steps_done)
    cfg, study = _run(tmp_path, *HALVING, "study.n_trials=4")
    best = max(study.get_trials(), key=lambda t: t.values[0])
    assert best.user_attrs["rung"] == 0
    pipe = SimpleNamespace(storage=lambda m: storage_url(cfg), cfg=SimpleNamespace(
        trials=SimpleNamespace(study=cfg.study)))
    _, info = Pipeline._best_trial(pipe, Search("srnas", "halving"))  # type: ignore[arg-type]
    chosen = study.trials[info["trial"]]
    assert chosen.user_attrs["rung"] == 2 and chosen.values[0] == 26.0


def test_a_killed_bracket_keeps_its_told_trials_and_is_rerun(tmp_path, monkeypatch):
    real = trial_module.ProxyTraining.advance
    calls = {"n": 0}

    def killed(self, steps):
        calls["n"] += 1
        if calls["n"] == 6:  # rung 1, after rung 0 told two trials
            raise KeyboardInterrupt
        return real(self, steps)

    monkeypatch.setattr(trial_module.ProxyTraining, "advance", killed)
    beat = ["study.heartbeat_s=1", "study.grace_s=1"]
    with pytest.raises(KeyboardInterrupt):
        main([f"run.dir={tmp_path}", *TINY, *HALVING, *beat, "study.n_trials=4"])
    cfg = _cfg(tmp_path)
    study = optuna.load_study(study_name="srnas", storage=storage_url(cfg))
    told = {t.number: t.values for t in study.get_trials()
            if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(told) == 2 and len(study.get_trials()) == 4
    monkeypatch.setattr(trial_module.ProxyTraining, "advance", real)
    time.sleep(2.5)  # the killed bracket's heartbeats go stale (heartbeat 1 s + grace 1 s)
    cfg, study = _run(tmp_path, *HALVING, *beat, "study.n_trials=4")
    trials = study.get_trials()
    assert {n: v for n, v in ((t.number, t.values) for t in trials) if n in told} == told
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4 and max(t.user_attrs["rung"] for t in complete) == 2
    retried = [t for t in complete if t.number >= 4]  # the two re-run with their parameters
    failed = {t.number: t.params for t in trials if t.state == optuna.trial.TrialState.FAIL}
    assert sorted(map(json.dumps, failed.values())) == sorted(
        json.dumps(t.params) for t in retried)


# ------------------------------------------------------------------------------ samplers


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp"])
def test_each_sampler_runs_a_tiny_study_with_the_budget(tmp_path, sampler):
    _, study = _run(tmp_path, f"study.sampler={sampler}", "study.n_trials=4", "proxy.steps=2",
                    "study.startup_trials=2", "constraints.max_params_m=0.0008")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 4
    assert all("params" in t.constraints for t in complete)  # what the sampler reads


def _toy_study(sampler: str, constrained: bool, n: int = 16) -> int:
    """A study whose best PSNR lies where the budget forbids (``x == 'big'``); returns how
    often the model-based trials (after 4 random ones) drew it."""
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=make_sampler(StudyConfig(
                                    sampler=sampler, startup_trials=4, population_size=4,
                                    seed=0)))
    for _ in range(n):
        t = study.ask()
        x = t.suggest_categorical("x", ["small", "mid", "big"])
        y = t.suggest_categorical("y", ["a", "b"])
        gain = {"small": 0.0, "mid": 0.5, "big": 2.0}[x] + (0.1 if y == "a" else 0.0)
        if constrained:
            set_constraints(t, {"params": 1.0 if x == "big" else -1.0})
        study.tell(t, [25.0 + gain, 1.0, 1.0])
    return sum(t.params["x"] == "big" for t in study.trials[4:])


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp"])
def test_the_samplers_steer_away_from_the_budget_they_read(sampler):
    assert _toy_study(sampler, constrained=True) < _toy_study(sampler, constrained=False)
