"""The Optuna search command: zoo first, failures recorded, resume, workers, storages."""

from __future__ import annotations

import json
import math
import os
import socket
from types import SimpleNamespace

import optuna
import pytest
from markdown_tables import table_rows

from searchers.trials import study as optuna_search
from searchers.trials.study import main
from searchers.trials.trial import TrialResult

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _args(tmp_path, *extra):
    return [f"run.dir={tmp_path}", "space.scale=2", "space.widths=[8]", "space.cells_min=1",
            "space.cells_max=2", "space.conv_candidates=[conv3x3,sep_conv3x3]",
            "space.attention_candidates=[none,pa]", "proxy.steps=2", "proxy.batch_size=2",
            "proxy.patch_size=54", "proxy.val_max_side=24", "measure.lr_size=16",
            "measure.runs=1", "measure.warmup=0", "study.zoo=[rlfn_ntire,fmen_s]",
            "study.zoo_outside=reference",
            "study.population_size=2", *extra]


def _study(tmp_path, name="default"):
    url = f"sqlite:///{tmp_path / name / 'study.db'}"
    return optuna.load_study(study_name="srnas", storage=url)


def test_zoo_first_then_samples_and_resume(tmp_path):
    assert main(_args(tmp_path, "study.n_trials=3")) == 0
    study = _study(tmp_path)
    trials = study.get_trials()
    assert [t.user_attrs["name"] for t in trials[:2]] == ["rlfn_ntire", "fmen_s"]
    assert trials[0].user_attrs["is_zoo"] and not trials[2].user_attrs["is_zoo"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert study.metric_names == ["psnr_db", "latency_ms", "memory_mib"]
    assert json.loads(trials[0].user_attrs["genotype"])["width"] == 46
    for key in ("params_m", "flops_g", "activations_m", "num_conv"):
        assert key in trials[2].user_attrs
    # re-running the same command resumes the study: 2 more trials, the zoo is not re-added
    assert main(_args(tmp_path, "study.n_trials=5")) == 0
    names = [t.user_attrs["name"] for t in _study(tmp_path).get_trials()]
    assert len(names) == 5 and names.count("rlfn_ntire") == 1
    assert (tmp_path / "default" / "trials.csv").exists()
    assert (tmp_path / "default" / "config.yaml").exists()


def test_failed_and_nan_trials_are_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    real = optuna_search.evaluate_genotype
    calls = {"n": 0}

    def flaky(genotype, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        result = real(genotype, *a, **kw)
        if calls["n"] == 3:
            return TrialResult(**{**result.__dict__, "psnr_db": math.nan})
        return result

    monkeypatch.setattr(optuna_search, "evaluate_genotype", flaky)
    assert main(_args(tmp_path, "study.n_trials=4", "study.enqueue_zoo=false")) == 0
    trials = _study(tmp_path).get_trials()
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert "out of memory" in trials[1].user_attrs["fail_reason"]
    assert "diverged" in trials[2].user_attrs["fail_reason"]


def test_constraints_are_set_on_the_trial(tmp_path):
    assert main(_args(tmp_path, "study.n_trials=1", "study.zoo=[fmen_s]",
                      "constraints.max_params_m=0.1", "constraints.psnr_floor_db=5")) == 0
    from search_space import build_model
    from search_space.zoo import ZOO, at_scale

    params_m = sum(p.numel() for p in build_model(at_scale(ZOO["fmen_s"], 2)).parameters()) / 1e6
    t = _study(tmp_path).get_trials()[0]
    assert t.system_attrs["constraints:params"] == pytest.approx(params_m - 0.1, abs=1e-6)
    assert t.system_attrs["constraints:psnr_floor"] < 0
    assert t.user_attrs["constraints"]["params"] > 0


def test_two_worker_processes_share_the_study(tmp_path):
    assert main(_args(tmp_path, "study.n_trials=4", "run.workers=2",
                      "study.enqueue_zoo=false")) == 0
    trials = _study(tmp_path).get_trials()
    assert len(trials) >= 4 and sum(t.state.name == "COMPLETE" for t in trials) >= 4
    # each trial records the process that ran it: two worker processes, neither this one
    from searchers.trials.storage import OWNER_ATTR

    owners = [t.system_attrs[OWNER_ATTR].split("|") for t in trials]
    pids = {int(owner[3]) for owner in owners}
    assert len(pids) == 2 and os.getpid() not in pids, owners
    assert {owner[0] for owner in owners} == {socket.gethostname()}


def test_journal_storage(tmp_path):
    url = f"journal:///{tmp_path}/j/study.log"
    assert main(_args(tmp_path, "study.n_trials=1", f"study.storage={url}",
                      "study.zoo=[fmen_s]")) == 0
    from searchers.trials.config import StudyConfig
    from searchers.trials.storage import make_storage

    study = optuna.load_study(study_name="srnas", storage=make_storage(url, StudyConfig()))
    assert len(study.trials) == 1


def test_bad_storage_and_conflicting_study(tmp_path, caplog):
    assert main(_args(tmp_path, "study.storage=redis://localhost/0")) == 2
    assert "supported schemes: sqlite, postgresql, mysql, journal" in caplog.text
    url = f"sqlite:///{tmp_path}/other.db"
    optuna.create_study(study_name="srnas", storage=url, directions=["minimize"])
    assert main(_args(tmp_path, f"study.storage={url}")) == 2
    assert "needs ('psnr_db', 'latency_ms', 'memory_mib')" in caplog.text


def test_malformed_config_is_refused(tmp_path, caplog):
    assert main(_args(tmp_path, "space.cell_types=[rrdb]")) == 2
    assert "rrdb" in caplog.text and "valid names" in caplog.text
    assert main(_args(tmp_path, "study.sampler=cmaes")) == 2
    assert "nsga2" in caplog.text


def test_postgresql_with_four_workers(tmp_path):
    """4 workers on PostgreSQL (a crowd, issue 13): the zoo trials popped once each (the row is
    locked), none lost or failed, n_trials overshot by at most the workers minus one."""
    from pg_server import start_or_skip_reason

    server, reason = start_or_skip_reason()
    if server is None:
        pytest.skip(reason)
    workers, n_trials = 4, 8
    try:
        assert main(_args(tmp_path, f"study.n_trials={n_trials}", f"run.workers={workers}",
                          f"study.storage={server.url}", "study.sampler=random",
                          "proxy.steps=1", "measure.threads=1")) == 0
        trials = optuna.load_study(study_name="srnas", storage=server.url).trials
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        assert all(t.state.name in ("COMPLETE", "FAIL") for t in trials)
        assert not [t.user_attrs.get("fail_reason") for t in trials if t.state.name == "FAIL"]
        assert n_trials <= len(complete) <= n_trials + workers - 1, len(complete)
        assert sorted(t.user_attrs["name"] for t in complete if t.user_attrs.get("is_zoo")) == [
            "fmen_s", "rlfn_ntire"]
    finally:
        server.stop()


def test_config_files():
    from pathlib import Path

    from searchers.common.config import load_config
    from searchers.trials.config import OptunaConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    assert load_config(OptunaConfig, root / "optuna.yaml") == OptunaConfig()
    from searchers.trials.tune import RayConfig

    zoo = OptunaConfig().study.zoo  # the yardstick, SPAN (the latency reference) included
    assert "span_ntire2024" in zoo and "rlfn_ntire" in zoo and RayConfig().study.zoo == zoo
    t91 = load_config(OptunaConfig, root / "optuna_t91.yaml")
    assert t91.proxy.train.endswith("T91/HR::train") and t91.study.n_trials == 40
    assert t91.proxy.val.endswith("T91/HR::holdout")


def test_trial_benchmarks_run(capsys):
    from searchers.tools.benchmark import main as bench

    args = [a for a in _args("unused") if not a.startswith("run.dir")]
    assert bench(["overhead", "--trials", "3", *args]) == 0
    (row,) = table_rows(capsys.readouterr().out, "| sampler |")
    assert row[:3] == ["nsga2 (population 2)", "SQLite", "3"] and float(row[3]) > 0


def test_random_search_is_reproducible_and_does_not_redraw_on_resume():
    from searchers.trials.config import StudyConfig
    from searchers.trials.samplers import make_sampler, random_sampler

    assert isinstance(make_sampler(StudyConfig(sampler="random")), optuna.samplers.RandomSampler)

    def draws(seed, worker, start, n=6):
        study = optuna.create_study()
        out = []
        for k in range(n):
            study.sampler = random_sampler(seed, worker, start + k)
            trial = study.ask()
            out.append(trial.suggest_int("x", 0, 10 ** 9))
            study.tell(trial, 0.0)
        return out

    first = draws(0, 0, 0)
    assert draws(0, 0, 0) == first  # one worker: the same search again
    resumed = draws(0, 0, 3, n=3)  # a re-run after 3 trials draws trials 3.. as the first did
    assert resumed == first[3:]
    assert not set(draws(0, 1, 0)) & set(first)  # a second worker draws other architectures
    assert not set(draws(1, 0, 0)) & set(first)


def test_a_relative_budget_is_a_constraint_of_every_trial(tmp_path):
    assert main(_args(tmp_path, "study.n_trials=3", "budget.reference=span_ntire2024",
                      "budget.latency_x=0.8", "budget.memory_x=1.0", "budget.rounds=1")) == 0
    for t in _study(tmp_path).get_trials():
        assert any("latency_x" in k for k in t.system_attrs), t.system_attrs  # set_constraint
        assert t.user_attrs["latency_ratio"] > 0 and t.user_attrs["memory_ratio"] > 0
        assert t.user_attrs["constraints"]["latency_x"] == pytest.approx(
            t.user_attrs["latency_ratio"] - 0.8)


def test_constraints_stored_for_optuna_and_for_the_dashboard():
    """Named constraints for Optuna 5, the old list for optuna-dashboard 0.21 (issue 12, 5a),
    and the same feasibility either way."""
    import optuna

    from searchers.trials.study import set_constraints

    study = optuna.create_study(directions=["maximize", "minimize"])
    for cons in ({"memory_x": -0.2, "latency_x": 0.5}, {"memory_x": -0.1, "latency_x": -0.3}):
        trial = study.ask()
        set_constraints(trial, cons)
        study.tell(trial, [1.0, 2.0])
    bad, good = study.trials
    assert bad.system_attrs["constraints"] == [0.5, -0.2]  # sorted names: latency_x, memory_x
    assert bad.user_attrs["constraint_names"] == ["latency_x", "memory_x"]
    assert bad.system_attrs["constraints:latency_x"] == 0.5
    assert bad.constraints["latency_x"] == 0.5 and bad.constraints["0"] == 0.5
    from optuna.study._constrained_optimization import _get_feasible_trials

    assert [t.number for t in _get_feasible_trials(study.trials)] == [good.number]


def test_a_crowd_of_eight_sqlite_workers(tmp_path):
    """8 worker processes on one SQLite study, tiny trials: none lost (left RUNNING) or failed
    on a locked database, the zoo trials run once each, and n_trials overshot by at most the
    workers minus one (issue 13, crowds)."""
    workers, n_trials = 8, 16
    assert main(_args(tmp_path, f"study.n_trials={n_trials}", f"run.workers={workers}",
                      "study.sampler=random", "proxy.steps=1", "measure.threads=1")) == 0
    trials = _study(tmp_path).get_trials()
    states = [t.state.name for t in trials]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert "RUNNING" not in states and "WAITING" not in states, states
    assert not [t.user_attrs.get("fail_reason") for t in trials if t.state.name == "FAIL"]
    assert n_trials <= len(complete) <= n_trials + workers - 1, len(complete)
    zoo = [t.user_attrs["name"] for t in complete if t.user_attrs.get("is_zoo")]
    assert sorted(zoo) == ["fmen_s", "rlfn_ntire"]  # each enqueued net evaluated once


def test_a_retry_keeps_the_draws_of_an_attempt_only_when_it_drew_them_all(tmp_path):
    """An attempt killed while it drew its architecture is retried without the parameters it
    had drawn (the retry's seeded sampler draws them all again, as the attempt did: a kept
    prefix would shift every later draw); one killed after it drew them keeps them."""
    import optuna

    from searchers.trials.config import StudyConfig
    from searchers.trials.storage import make_storage

    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}", StudyConfig(heartbeat_s=1,
                                                                         grace_s=1))
    study = optuna.create_study(storage=storage, directions=["maximize"])
    partial, whole = study.ask(), study.ask()
    partial.suggest_int("num_cells", 1, 4)  # killed here, before the rest of its draws
    whole.suggest_int("num_cells", 1, 4)
    whole.set_user_attr("genotype", "{}")  # drew its whole architecture
    callback = storage.get_heartbeat_stale_trial_callback()
    for attempt in (partial, whole):
        callback(study, study._storage.get_trial(attempt._trial_id))
    retries = [t for t in study.get_trials() if t.state.name == "WAITING"]
    assert [t.params for t in retries] == [{}, {"num_cells": whole.params["num_cells"]}]
    assert [t.system_attrs["failed_trial"] for t in retries] == [0, 1]


def test_the_params_proxy_trains_nothing_and_scores_the_deployed_size(tmp_path, monkeypatch):
    """``proxy.kind=params``, the zero-cost baseline: each trial's score is its deployed
    parameter count (M), no training runs, and the pipeline's ``params`` method hands over the
    largest feasible net it drew."""
    import searchers.trials.trial as trial_module
    from searchers.stages.pipeline import Pipeline, PipelineConfig, Search
    from searchers.trials.study import main

    def no_training(*args, **kwargs):
        raise AssertionError("proxy.kind=params trained a net")

    monkeypatch.setattr(trial_module, "proxy_psnr", no_training)
    args = _args(tmp_path, "proxy.kind=params", "study.sampler=random", "study.n_trials=5",
                 "study.enqueue_zoo=false", "space.conv_candidates=[conv3x3,conv5x5,sep_conv3x3]")
    assert main(args) == 0
    trials = _study(tmp_path).trials
    assert len(trials) == 5 and len({t.values[0] for t in trials}) > 1
    for t in trials:
        assert t.values[0] == pytest.approx(t.user_attrs["params_m"])
        assert t.user_attrs["proxy_steps"] == 0
    pipe = Pipeline(PipelineConfig(), ["pipeline"])
    cfg = pipe.trials(Search("params_search1", "params", 1))
    assert (cfg.proxy.kind, cfg.study.sampler, cfg.study.seed) == ("params", "random", 1)
    best, _ = Pipeline._best_trial(SimpleNamespace(  # type: ignore[arg-type]
        storage=lambda s: f"sqlite:///{tmp_path / 'default' / 'study.db'}",
        cfg=SimpleNamespace(trials=SimpleNamespace(study=cfg.study))), Search("srnas", "params"))
    largest = max(trials, key=lambda t: t.values[0])
    assert best.to_json(indent=None) == largest.user_attrs["genotype"]


def test_a_candidate_over_budget_can_be_told_untrained(tmp_path, monkeypatch):
    """``proxy.train_over_budget=false``: a searched net that breaks a cost constraint is told
    PSNR -inf untrained (NSGA-II ranks it by its violation), a zoo net is trained anyway."""
    import searchers.trials.trial as trial_module
    from searchers.trials.study import main

    trained = []
    real = trial_module.proxy_psnr

    def counted(model, genotype, *args, **kwargs):
        trained.append(genotype)
        return real(model, genotype, *args, **kwargs)

    monkeypatch.setattr(trial_module, "proxy_psnr", counted)
    args = _args(tmp_path, "proxy.train_over_budget=false", "space.widths=[8,24]",
                 "constraints.max_params_m=0.012", "study.n_trials=8", "study.sampler=nsga2",
                 "study.zoo=[span_ntire2024]")
    assert main(args) == 0
    trials = _study(tmp_path).trials
    over = [t for t in trials if t.user_attrs["params_m"] > 0.012 and not t.user_attrs["is_zoo"]]
    under = [t for t in trials if t.user_attrs["params_m"] <= 0.012]
    assert over and under, [t.user_attrs["params_m"] for t in trials]
    assert all(t.values[0] == -math.inf and t.user_attrs["proxy_steps"] == 0 for t in over)
    assert all(t.user_attrs["constraints"]["params"] > 0 for t in over)
    assert all(math.isfinite(t.values[0]) for t in under)
    zoo = trials[0]
    assert zoo.user_attrs["is_zoo"] and math.isfinite(zoo.values[0])  # trained, over or not
    assert len(trained) == len(trials) - len(over)
