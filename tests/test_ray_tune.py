"""Ray Tune runs the same trials on a local Ray instance; constraints pass through."""

from __future__ import annotations

import math

import pytest

ray = pytest.importorskip("ray", reason="ray[tune] is a core dependency; install the project")

from searchers.trials.tune import main  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _shutdown_ray():
    yield
    ray.shutdown()


def _args(tmp_path, *extra):
    return [f"run.dir={tmp_path}", "space.scale=2", "space.widths=[8]", "space.cells_min=1",
            "space.cells_max=1", "space.conv_candidates=[conv3x3,sep_conv3x3]",
            "space.attention_candidates=[none,pa]", "proxy.steps=2", "proxy.batch_size=2",
            "proxy.patch_size=54", "proxy.val_max_side=24", "measure.lr_size=16",
            "measure.runs=1", "measure.warmup=0", "study.zoo=[rlfn_ntire,fmen_s]",
            "study.zoo_outside=reference",
            "study.population_size=2", "study.n_trials=3", "constraints.max_params_m=0.2",
            *extra]


def test_local_ray_runs_the_zoo_and_samples_and_restores(tmp_path):
    from results.table.ray_experiment import from_ray

    assert main(_args(tmp_path)) == 0
    table = from_ray(tmp_path / "default" / "tune")
    assert len(table) == 3 and set(table["state"]) == {"COMPLETE"}
    assert {"rlfn_ntire", "fmen_s"} <= set(table["name"])
    assert table["is_zoo"].sum() == 2 and table["name"].is_unique
    assert (table["psnr_db"] > 5).all() and (table["latency_ms"] > 0).all()
    # a re-run restores the finished experiment instead of starting over
    assert main(_args(tmp_path)) == 0
    assert len(from_ray(tmp_path / "default" / "tune")) == 3


def test_constraints_reach_the_optuna_trial():
    from searchers.trials.tune_searcher import ConstrainedOptunaSearch

    def space(trial):
        trial.suggest_float("x", 0, 1)

    search = ConstrainedOptunaSearch(space=space, metric=["psnr_db", "latency_ms", "memory_mib"],
                                     mode=["max", "min", "min"], seed=0)
    search.suggest("t1")
    search.suggest("t2")
    search.on_trial_complete("t1", {"psnr_db": 30.0, "latency_ms": 1.0, "memory_mib": 2.0,
                                    "constraints": {"params": 0.5}})
    search.on_trial_complete("t2", {"psnr_db": math.nan, "latency_ms": math.nan,
                                    "memory_mib": math.nan, "fail_reason": "x"})
    trials = search._ot_study.trials
    assert trials[0].system_attrs["constraints:params"] == 0.5
    assert trials[0].state.name == "COMPLETE" and trials[1].state.name == "FAIL"


def test_missing_ray_is_explained(monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["study.n_trials=1"]) == 2
    assert 'pip install "ray[tune]"' in caplog.text


def _space(trial):
    trial.suggest_float("x", 0, 1)


def test_the_nsga2_searcher_survives_a_checkpoint(tmp_path):
    # Optuna 5's GA samplers hold a thread lock; Tune pickles the searcher at start and at
    # every checkpoint, so an unpicklable sampler stops the run before its first trial.
    from searchers.trials.tune_searcher import ConstrainedOptunaSearch, PicklableNSGAIISampler

    search = ConstrainedOptunaSearch(
        space=_space, metric=["psnr_db", "latency_ms", "memory_mib"], mode=["max", "min", "min"],
        sampler=PicklableNSGAIISampler(population_size=2, seed=0), seed=0)
    search.suggest("t1")
    search.on_trial_complete("t1", {"psnr_db": 30.0, "latency_ms": 1.0, "memory_mib": 2.0})
    search.save(str(tmp_path / "searcher.pkl"))
    restored = ConstrainedOptunaSearch(
        space=_space, metric=["psnr_db", "latency_ms", "memory_mib"], mode=["max", "min", "min"],
        sampler=PicklableNSGAIISampler(population_size=2, seed=0), seed=0)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert len(restored._ot_study.trials) == 1
    assert restored.suggest("t2") is not None  # the fresh lock works
    assert restored._ot_study.sampler._thread_lock.acquire(blocking=False)


def test_cluster_auth_mode_follows_the_token(tmp_path, monkeypatch):
    """A driver joining by address turns token authentication on when a token is at hand,
    and leaves an explicit RAY_AUTH_MODE alone (issue 13: InvalidAuthToken with Ray 2.60)."""
    from searchers.trials.tune import cluster_auth_mode

    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cluster_auth_mode() == "disabled"
    import os

    assert "RAY_AUTH_MODE" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("secret\n")
    assert cluster_auth_mode() == "token" and os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert cluster_auth_mode() == "disabled"
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert cluster_auth_mode() == "disabled"


def test_a_config_evaluated_before_is_reported_from_its_record(tmp_path, monkeypatch):
    """A trial that Tuner.restore runs again, under its own id or a new one, with a config
    evaluated before reports the recorded result instead of evaluating again; a config that
    raised is not recorded, so its next trial tries again."""
    from ray import tune

    import searchers.trials.tune as rt
    from searchers.common.config import to_dict
    from searchers.trials.trial import TrialResult

    class Context:
        trial_id = ""

        def get_trial_id(self) -> str:
            return self.trial_id

    context, reports, calls = Context(), [], []
    monkeypatch.setattr(tune, "get_context", lambda: context)
    monkeypatch.setattr(tune, "report", reports.append)

    def evaluate(genotype, *args):
        calls.append(genotype)
        if len(calls) == 2:
            raise RuntimeError("node died")
        return TrialResult(psnr_db=30.0, latency_ms=1.0, memory_mib=2.0, params_m=0.1,
                           flops_g=1.0, macs_g=1.0, activations_m=1.0, num_conv=3, device="cpu",
                           duration_s=0.5, genotype="{}", constraints={})

    monkeypatch.setattr(rt, "evaluate_genotype", evaluate)
    cfg = rt.RayConfig()
    cfg.measure.device = "cpu"
    base = {"_cfg": to_dict(cfg), "_measure_cuda": False, "_evaluated": str(tmp_path / "ev")}
    for trial_id, zoo in (("a_00000", "rlfn_ntire"), ("b_00000", "rlfn_ntire"),
                          ("c_00001", "fmen_s"), ("d_00001", "fmen_s")):
        context.trial_id = trial_id  # a new id each time, as a restore without the state gives
        rt.trainable({**base, "zoo": zoo})
    assert len(calls) == 3  # rlfn once; fmen_s raised, then was evaluated again
    assert [r["psnr_db"] for r in reports][:2] == [30.0, 30.0]
    assert math.isnan(reports[2]["psnr_db"]) and reports[3]["psnr_db"] == 30.0
    assert len(list((tmp_path / "ev").glob("*.json"))) == 2
