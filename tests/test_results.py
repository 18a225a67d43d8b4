"""Trial tables (Optuna, Ray Tune), Pareto fronts, hypervolumes, Pareto plots and the CLI."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from results.plots.page import write_figures_html
from results.plots.pareto import (
    parallel_coordinates_figure,
    pareto_figure_2d,
    pareto_figure_3d,
    write_pareto_report,
)
from results.plots.pareto_data import pareto_data
from results.summary.command import main
from results.table.optuna_study import from_optuna
from results.table.pareto import (
    aim_candidates,
    eligible_mask,
    front_summary,
    hypervolume,
    pareto_mask,
    zoo_reference_point,
)
from results.table.ray_experiment import _ray_trial_status, from_ray
from results.table.schema import (
    OBJECTIVES,
    SCHEMA,
    TRIAL_COLUMNS,
    empty_table,
    read_csv,
    to_csv,
    validate_table,
)
from search_space import Genotype
from search_space.zoo import resolve_genotype

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

MAX, MIN = optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE
METRICS = ["psnr_db", "latency_ms", "memory_mib"]
_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc\s*=", re.IGNORECASE)


# --------------------------------------------------------------------------- hand-made tables


def make_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A trial table from partial rows (defaults: a complete, feasible searched trial)."""
    full = []
    for i, row in enumerate(rows):
        base: dict[str, Any] = {
            "source": "optuna",
            "study": "hand",
            "trial": i,
            "state": "COMPLETE",
            "name": f"trial_{i}",
            "is_zoo": False,
            "psnr_db": math.nan,
            "latency_ms": math.nan,
            "memory_mib": math.nan,
            "params_m": 0.1 * (i + 1),
            "flops_g": 1.0 * (i + 1),
            "macs_g": 0.5 * (i + 1),
            "activations_m": 2.0 * (i + 1),
            "num_conv": 10 + i,
            "feasible": True,
            "constraints": "{}",
            "genotype": None,
            "fail_reason": None,
            "duration_s": 1.0,
            "device": "cpu",
        }
        base.update(row)
        full.append(base)
    df = pd.DataFrame(full, columns=list(TRIAL_COLUMNS))
    for column, spec in SCHEMA.items():
        if spec.dtype == "object":
            df[column] = pd.Series(df[column].tolist(), dtype=object)
        else:
            df[column] = df[column].astype(spec.dtype)
    return df


def point(name: str, psnr: float, lat: float, mem: float, **kw: Any) -> dict[str, Any]:
    return {"name": name, "psnr_db": psnr, "latency_ms": lat, "memory_mib": mem, **kw}


# Zoo reference point: (psnr 30, latency 20, memory 20). Only z3 adds zoo volume: 1 * 8 * 8.
# Searched volume (hand-computed): s1 and s7 share psnr [30, 31]; their lat x mem union is
# 72 + 76.5 - 68 = 80.5; s2 adds 3 minus an overlap of 1 -> 82.5.
SUMMARY_ROWS = [
    point("z1", 30.0, 10.0, 20.0, is_zoo=True),
    point("z2", 32.0, 20.0, 10.0, is_zoo=True),
    point("z3", 31.0, 12.0, 12.0, is_zoo=True),
    point("z4", 35.0, 1.0, 1.0, is_zoo=True, feasible=False),  # infeasible: no zoo volume
    point("z5", math.nan, math.nan, math.nan, is_zoo=True, state="FAIL", feasible=False),
    point("s1", 31.0, 11.0, 12.0),
    point("s2", 33.0, 19.0, 19.0),
    point("s3", 40.0, 1.0, 1.0, feasible=False),  # would dominate everything
    point("s4", math.nan, math.nan, math.nan, state="FAIL", feasible=False),
    point("s5", 29.0, 5.0, 5.0),  # on the front, below the reference PSNR
    point("s6", 30.5, 15.0, 15.0),  # dominated by s1
    point("s7", 31.0, 11.5, 11.0),
]


def test_aim_candidates_are_front_nets_faster_and_leaner_than_the_references():
    df = make_table([
        point("rlfn_ntire", 30.0, 10.0, 8.0, is_zoo=True),
        point("fmen_s", 30.5, 14.0, 9.0, is_zoo=True),
        point("fast", 29.0, 5.0, 5.0),
        point("better", 29.5, 9.0, 8.5),
        point("hungry", 31.0, 9.5, 9.5),  # on the front, but more memory than fmen_s
        point("slow", 32.0, 12.0, 4.0),  # on the front, but slower than rlfn_ntire
        point("dominated", 28.0, 9.0, 8.5),
        point("infeasible", 33.0, 1.0, 1.0, feasible=False),
    ])
    assert aim_candidates(df)["name"].tolist() == ["better", "fast"]
    with pytest.raises(ValueError, match="imdn_ntire"):
        aim_candidates(df, latency_reference="imdn_ntire")


@pytest.fixture()
def summary_table() -> pd.DataFrame:
    return make_table(SUMMARY_ROWS)


# --------------------------------------------------------------------------- Optuna studies


def zoo_attrs(name: str, i: int) -> dict[str, Any]:
    _, genotype = resolve_genotype(name)
    return {
        "genotype": genotype.to_json(indent=None),
        "name": name,
        "is_zoo": True,
        "params_m": 0.5 + 0.1 * i,
        "flops_g": 30.0 + i,
        "macs_g": 15.0 + i,
        "activations_m": 100.0 + i,
        "num_conv": 40 + i,
        "device": "cpu",
        "duration_s": 12.5,
        "constraints": {"params": -0.1},
    }


def searched_attrs(number: int, constraint: float = -1.0) -> dict[str, Any]:
    return {
        "genotype": json.dumps({"searched": number}),
        "name": f"trial_{number}",
        "is_zoo": False,
        "params_m": 0.2,
        "flops_g": 10.0,
        "macs_g": 5.0,
        "activations_m": 50.0,
        "num_conv": 20,
        "device": "cpu",
        "duration_s": 3.0,
        "constraints": {"params": constraint, "latency": -2.0},
    }


def fill_study(study: optuna.Study) -> None:
    """Zoo x3, two searched (one dominating rfdn, one infeasible), a FAIL and a RUNNING trial."""
    zoo = [
        ("imdn_ntire", [28.0, 20.0, 200.0]),
        ("rfdn_aim2020", [28.2, 15.0, 150.0]),
        ("rlfn_ntire", [28.4, 12.0, 180.0]),
    ]
    for i, (name, values) in enumerate(zoo):
        study.add_trial(optuna.trial.create_trial(values=values, user_attrs=zoo_attrs(name, i)))
    # trial 3 dominates rfdn_aim2020 (and imdn_ntire); trial 4 is infeasible
    study.add_trial(
        optuna.trial.create_trial(values=[28.3, 14.0, 140.0], user_attrs=searched_attrs(3))
    )
    study.add_trial(
        optuna.trial.create_trial(values=[29.0, 5.0, 50.0], user_attrs=searched_attrs(4, 0.5))
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            user_attrs={
                "name": "trial_5",
                "is_zoo": False,
                "fail_reason": "CUDA out of memory",
                "genotype": json.dumps({"searched": 5}),
            },
        )
    )
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING))


def make_study(storage: str | optuna.storages.BaseStorage, name: str = "nas") -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, directions=[MAX, MIN, MIN])
    study.set_metric_names(METRICS)
    fill_study(study)
    return study


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/s.db"
    make_study(url)
    return url


# --------------------------------------------------------------------------- from_optuna


def test_from_optuna_rows_follow_the_schema(sqlite_url):
    df = from_optuna(sqlite_url)  # the only study: no name needed
    validate_table(df)
    assert list(df.columns) == list(TRIAL_COLUMNS)
    assert df["trial"].tolist() == list(range(7))
    assert df["state"].tolist() == ["COMPLETE"] * 5 + ["FAIL", "RUNNING"]
    assert df["name"].tolist() == [
        "imdn_ntire",
        "rfdn_aim2020",
        "rlfn_ntire",
        "trial_3",
        "trial_4",
        "trial_5",
        "trial_6",
    ]
    assert df["is_zoo"].tolist() == [True, True, True, False, False, False, False]
    assert set(df["source"]) == {"optuna"} and set(df["study"]) == {"nas"}
    assert df.loc[1, ["psnr_db", "latency_ms", "memory_mib"]].tolist() == [28.2, 15.0, 150.0]
    assert df.loc[5:, "psnr_db"].isna().all()
    assert df["feasible"].tolist() == [True, True, True, True, False, False, False]
    assert json.loads(df.loc[4, "constraints"]) == {"latency": -2.0, "params": 0.5}
    assert df.loc[6, "constraints"] == "{}"
    assert Genotype.from_json(df.loc[0, "genotype"]) == resolve_genotype("imdn_ntire")[1]
    assert df.loc[6, "genotype"] is None
    assert df.loc[5, "fail_reason"] == "CUDA out of memory"
    assert df.loc[0, "fail_reason"] is None
    assert df["num_conv"].tolist()[:5] == [40, 41, 42, 20, 20]
    assert df["num_conv"].isna().tolist()[5:] == [True, True]
    assert df.loc[0, "duration_s"] == 12.5 and df.loc[1, "params_m"] == pytest.approx(0.6)
    assert df.loc[0, "device"] == "cpu" and df.loc[6, "device"] is None


def test_from_optuna_maps_values_by_metric_name():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="swapped", directions=[MIN, MAX, MIN])
    study.set_metric_names(["latency_ms", "psnr_db", "memory_mib"])
    study.add_trial(optuna.trial.create_trial(values=[7.0, 30.0, 99.0]))
    df = from_optuna(storage)
    assert df.loc[0, ["psnr_db", "latency_ms", "memory_mib"]].tolist() == [30.0, 7.0, 99.0]
    assert df.loc[0, "name"] == "trial_0" and not df.loc[0, "is_zoo"]
    assert df.loc[0, "feasible"]  # no constraints recorded


@pytest.mark.parametrize(
    ("directions", "names", "match"),
    [
        ([MAX], ["psnr_db"], r"not multi-objective.*\['MAXIMIZE'\]"),
        ([MAX, MIN, MIN], None, r"metric names None"),
        ([MAX, MIN, MIN], ["psnr", "latency_ms", "memory_mib"], r"metric names \['psnr',"),
        ([MAX, MIN], ["psnr_db", "latency_ms"], r"metric names \['psnr_db', 'latency_ms'\]"),
        ([MAX, MAX, MIN], METRICS, r"latency_ms: MAXIMIZE the wrong way"),
    ],
)
def test_from_optuna_rejects_other_objectives(directions, names, match):
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="x", directions=directions)
    if names is not None:
        study.set_metric_names(names)
    with pytest.raises(ValueError, match=match):
        from_optuna(storage, "x")


def test_from_optuna_study_choice(tmp_path):
    url = f"sqlite:///{tmp_path}/two.db"
    make_study(url, "alpha")
    make_study(url, "beta")
    with pytest.raises(ValueError, match=r"found 2: \['alpha', 'beta'\].*study_name"):
        from_optuna(url)
    with pytest.raises(ValueError, match=r"study_name='gamma'.*\['alpha', 'beta'\]"):
        from_optuna(url, "gamma")
    assert set(from_optuna(url, "beta")["study"]) == {"beta"}
    with pytest.raises(ValueError, match=r"found 0: \[\]"):
        from_optuna(optuna.storages.InMemoryStorage())


def test_from_optuna_missing_sqlite_file_is_not_created(tmp_path):
    db = tmp_path / "nope.db"
    with pytest.raises(FileNotFoundError, match="nope.db.*does not exist"):
        from_optuna(f"sqlite:///{db}")
    assert not db.exists()


# --------------------------------------------------------------------------- schema and CSV


def test_validate_table_names_what_is_wrong(summary_table):
    assert OBJECTIVES == {"psnr_db": "max", "latency_ms": "min", "memory_mib": "min"}
    assert TRIAL_COLUMNS[:5] == ("source", "study", "trial", "state", "name")
    validate_table(summary_table)
    validate_table(empty_table())
    with pytest.raises(ValueError, match=r"lacks the columns \['feasible', 'device'\]"):
        validate_table(summary_table.drop(columns=["feasible", "device"]))
    with pytest.raises(ValueError, match=r"unexpected columns \['pareto'\]"):
        validate_table(summary_table.assign(pareto=True))
    validate_table(summary_table.assign(pareto=True), allow_extra=True)
    bad = summary_table.assign(psnr_db=summary_table["psnr_db"].astype(str))
    with pytest.raises(ValueError, match=r"psnr_db: dtype .* \(expected float64"):
        validate_table(bad)
    with pytest.raises(ValueError, match=r"name: dtype object \(expected object, no missing"):
        validate_table(summary_table.assign(name=[None] * len(summary_table)))
    with pytest.raises(ValueError, match=r"state: values \['DONE'\] \(allowed: \['COMPLETE'"):
        validate_table(summary_table.assign(state="DONE"))
    with pytest.raises(ValueError, match=r"is_zoo: dtype"):
        validate_table(summary_table.assign(is_zoo=summary_table["is_zoo"].astype(int)))


def test_csv_round_trip(sqlite_url, tmp_path):
    df = from_optuna(sqlite_url)
    path = to_csv(df, tmp_path / "deep" / "trials.csv")
    assert [p.name for p in path.parent.iterdir()] == ["trials.csv"]
    pd.testing.assert_frame_equal(read_csv(path), df)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        read_csv(tmp_path / "other.csv")


# --------------------------------------------------------------------------- from_ray (files)


def _ray_trial(
    folder: Path,
    result_lines: list[dict[str, Any]] | None,
    error: str | None,
    params: dict[str, Any] | None = None,
) -> None:
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params or {}))
    if result_lines is not None:
        text = "".join(json.dumps(r) + "\n" for r in result_lines)
        (folder / "result.json").write_text(text)
    if error is not None:
        (folder / "error.txt").write_text(error)


RAY_ERROR = """Failure # 1 (occurred at 2026-01-01_00-00-00)
\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1, ip=127.0.0.1, repr=objective)
  File "/x/function_trainable.py", line 249, in _trainable_func
    output = fn()
             ^^^^
  File "/x/objective.py", line 7, in objective
    raise ValueError("bad genotype")
ValueError: bad genotype
cells[2] is empty
"""


def _result(name: str, psnr: float, **kw: Any) -> dict[str, Any]:
    return {
        "psnr_db": psnr,
        "latency_ms": 3.0,
        "memory_mib": 40.0,
        "name": name,
        "constraints": {"params": -1.0},
        "time_total_s": 9.0,
        **kw,
    }


def test_from_ray_infers_states_from_files(tmp_path):
    exp = tmp_path / "exp1"
    _ray_trial(exp / "objective_ab12c_00000_0_2026", [_result("x", 1.0), _result("t0", 30.0)], None)
    _ray_trial(exp / "objective_ab12c_00001_1_2026", [], RAY_ERROR, {"genotype": {"w": 3}})
    _ray_trial(exp / "objective_ab12c_00002_2_2026", None, None)
    _ray_trial(
        exp / "objective_ab12c_00003_3_2026",
        [_result("t3", math.nan, fail_reason="diverged")],
        None,
    )
    _ray_trial(
        exp / "objective_ab12c_00004_4_2026", [_result("t4", 31.0, latency_ms=math.nan)], None
    )
    (exp / "not_a_trial").mkdir()
    df = from_ray(exp)
    validate_table(df)
    assert df["trial"].tolist() == [0, 1, 2, 3, 4]
    assert df["state"].tolist() == ["COMPLETE", "FAIL", "RUNNING", "FAIL", "FAIL"]
    assert df.loc[0, "name"] == "t0" and df.loc[0, "psnr_db"] == 30.0  # the last line wins
    assert df.loc[0, "duration_s"] == 9.0 and df.loc[0, "feasible"]
    assert df.loc[1, "fail_reason"] == "ValueError: bad genotype | cells[2] is empty"
    assert df.loc[1, "genotype"] == '{"w": 3}'  # from params.json
    assert df.loc[1, "name"] == "trial_1"
    assert df.loc[3, "fail_reason"] == "diverged"
    assert "latency_ms" in df.loc[4, "fail_reason"]
    assert set(df["study"]) == {"exp1"} and set(df["source"]) == {"ray"}


def _experiment_state(exp: Path, statuses: dict[str, str]) -> None:
    trial_data = [
        [
            json.dumps(
                {
                    "trial_id": f"ab12c_{folder.split('_')[2]}",
                    "status": status,
                    "relative_logdir": folder,
                }
            ),
            "{}",
        ]
        for folder, status in statuses.items()
    ]
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": trial_data, "runner_data": {}, "stats": {}})
    )


def test_from_ray_prefers_the_experiment_state(tmp_path):
    exp = tmp_path / "exp2"
    folders = [f"objective_ab12c_0000{i}_{i}_2026" for i in range(4)]
    _ray_trial(exp / folders[0], [_result("retried", 30.0)], RAY_ERROR)  # failed once, then ok
    _ray_trial(exp / folders[1], [_result("crashed", 30.0)], RAY_ERROR)  # reported, then crashed
    _ray_trial(exp / folders[2], [_result("live", 30.0)], None)
    _ray_trial(exp / folders[3], [], None)
    _experiment_state(
        exp, dict(zip(folders, ["TERMINATED", "ERROR", "RUNNING", "TERMINATED"], strict=True))
    )
    df = from_ray(exp)
    assert df["state"].tolist() == ["COMPLETE", "FAIL", "RUNNING", "FAIL"]
    assert df.loc[0, "fail_reason"] is None
    assert df.loc[1, "fail_reason"].startswith("ValueError: bad genotype")
    assert "without any reported result" in df.loc[3, "fail_reason"]
    # without the state file the same folders read differently
    next(exp.glob("experiment_state-*")).unlink()
    assert from_ray(exp)["state"].tolist() == ["COMPLETE", "COMPLETE", "COMPLETE", "RUNNING"]


def test_from_ray_leaves_out_a_killed_drivers_unsaved_trial(tmp_path):
    """A trial folder the newest experiment state does not list, though the state was saved
    after the trial started, belongs to a driver killed before it saved the trial (restore ran
    it again under a new id): left out. One that started after the save is a new trial."""
    import os

    exp = tmp_path / "exp3"
    folders = [f"objective_ab12c_0000{i}_{i}_2026" for i in range(3)]
    _ray_trial(exp / folders[0], [_result("kept", 30.0)], None)
    _ray_trial(exp / folders[1], [], None)  # the killed driver's, never saved
    _ray_trial(exp / folders[2], [], None)  # started after the newest save
    _experiment_state(exp, {folders[0]: "TERMINATED"})
    state = next(exp.glob("experiment_state-*"))
    saved = state.stat().st_mtime
    for name, when in ((folders[0], saved - 20), (folders[1], saved - 10),
                       (folders[2], saved + 10)):
        for f in (exp / name).iterdir():
            os.utime(f, (when, when))
    df = from_ray(exp)
    assert df["name"].tolist() == ["kept", "trial_2"]
    assert df["state"].tolist() == ["COMPLETE", "RUNNING"]
    state.unlink()  # without the state nothing says the folder is not part of the experiment
    assert len(from_ray(exp)) == 3


def test_from_ray_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.*not an existing folder"):
        from_ray(tmp_path / "missing")
    storage = tmp_path / "storage"
    (storage / "exp_a").mkdir(parents=True)
    (storage / "exp_a" / "experiment_state-x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"no trial folder.*experiments \['exp_a'\]"):
        from_ray(storage)


# --------------------------------------------------------------------------- from_ray (real Tune)


def _make_tune_objective() -> Any:
    """The trainable, built as a closure: Ray pickles it by value, so its workers need not
    import this test module."""

    def objective(config: dict[str, Any]) -> None:
        from ray import tune

        kind = config["kind"]
        if kind == "raises":
            raise RuntimeError("objective exploded\nwhile building the model")
        report: dict[str, Any] = {
            "psnr_db": 28.0 if kind == "zoo" else 28.5,
            "latency_ms": 10.0 if kind == "zoo" else 8.0,
            "memory_mib": 100.0,
            "genotype": json.dumps({"kind": kind}),
            "name": "imdn_ntire" if kind == "zoo" else f"searched_{kind}",
            "is_zoo": kind == "zoo",
            "params_m": 0.7,
            "flops_g": 40.0,
            "macs_g": 20.0,
            "activations_m": 90.0,
            "num_conv": 43,
            "device": "cpu",
            "duration_s": 1.5,
            "constraints": {"params": -0.3 if kind != "infeasible" else 0.2},
        }
        if kind == "failed":
            report.update(
                psnr_db=math.nan,
                latency_ms=math.nan,
                memory_mib=math.nan,
                fail_reason="latency measurement failed",
            )
        tune.report(report)

    return objective


@pytest.fixture(scope="module")
def ray_experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) Ray Tune run: zoo, searched, infeasible, failed-in-objective, raising."""
    ray = pytest.importorskip("ray")
    from ray import tune

    storage = tmp_path_factory.mktemp("ray_results")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            _make_tune_objective(),
            param_space={
                "kind": tune.grid_search(["zoo", "searched", "infeasible", "failed", "raises"])
            },
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(name="nas_ray", storage_path=str(storage), verbose=0),
        )
        results = tuner.fit()
        assert len(results.errors) == 1
    finally:
        ray.shutdown()
    return storage / "nas_ray"


def test_ray_folder_layout(ray_experiment):
    """What Ray Tune writes (the layout from_ray relies on)."""
    assert list(ray_experiment.glob("experiment_state-*.json"))
    trials = sorted(p for p in ray_experiment.iterdir() if p.is_dir())
    assert len(trials) == 5
    for folder in trials:
        assert (folder / "params.json").is_file()
        assert re.search(r"_[0-9a-f]{5}_\d{5}_\d+_kind=", folder.name), folder.name
    raised = [f for f in trials if (f / "error.txt").exists()]
    assert len(raised) == 1 and "kind=raises" in raised[0].name
    result = raised[0] / "result.json"
    assert not result.exists() or not result.read_text().strip()  # nothing reported
    statuses = {status for _, status in _ray_trial_status(ray_experiment)[0].values()}
    assert statuses == {"TERMINATED", "ERROR"}


def test_from_ray_reads_a_real_tune_experiment(ray_experiment):
    df = from_ray(ray_experiment)
    validate_table(df)
    assert df["trial"].tolist() == [0, 1, 2, 3, 4]
    by_kind = {
        json.loads(g)["kind"] if g else "raises": row
        for g, (_, row) in zip(df["genotype"], df.iterrows(), strict=True)
    }
    assert by_kind["zoo"]["state"] == "COMPLETE" and by_kind["zoo"]["is_zoo"]
    assert by_kind["zoo"]["name"] == "imdn_ntire" and by_kind["zoo"]["feasible"]
    assert by_kind["searched"]["psnr_db"] == 28.5 and by_kind["searched"]["num_conv"] == 43
    assert by_kind["searched"]["duration_s"] == 1.5 and by_kind["searched"]["device"] == "cpu"
    assert json.loads(by_kind["searched"]["constraints"]) == {"params": -0.3}
    assert by_kind["infeasible"]["state"] == "COMPLETE" and not by_kind["infeasible"]["feasible"]
    assert by_kind["failed"]["state"] == "FAIL"
    assert by_kind["failed"]["fail_reason"] == "latency measurement failed"
    raised = by_kind["raises"]
    assert raised["state"] == "FAIL" and math.isnan(raised["psnr_db"])
    assert raised["fail_reason"] == ("RuntimeError: objective exploded | while building the model")
    assert set(df["study"]) == {"nas_ray"}
    assert pareto_mask(df).sum() == 1  # searched dominates the zoo net


# --------------------------------------------------------------------------- pareto_mask


def test_pareto_mask_handles_dominance_ties_and_ineligible_rows():
    df = make_table(
        [
            point("a", 30.0, 10.0, 10.0),
            point("b", 29.0, 11.0, 11.0),  # dominated by a
            point("c", 30.0, 10.0, 10.0),  # identical to a: both stay
            point("d", 40.0, 1.0, 1.0, feasible=False),
            point("e", math.nan, math.nan, math.nan, state="FAIL", feasible=False),
            point("f", 50.0, math.nan, 1.0),  # complete, but a value is missing
            point("g", 31.0, 12.0, 10.0),  # trade-off with a
            point("h", 30.0, 10.0, 12.0),  # equal to a but worse memory: dominated
            point("i", 45.0, 0.5, 0.5, state="RUNNING", feasible=False),
            point("j", 45.0, 0.5, math.inf),  # not finite
        ],
    )
    df.index = [f"r{i}" for i in range(len(df))]  # the mask keeps the table's index
    mask = pareto_mask(df)
    assert mask.index.equals(df.index) and mask.dtype == bool
    assert df.loc[mask, "name"].tolist() == ["a", "c", "g"]
    assert eligible_mask(df).sum() == 5
    # two objectives only: finiteness counts on those only, so j (infinite memory) is now the
    # best; without j, h ties with a (its worse memory is ignored)
    two = {"psnr_db": "max", "latency_ms": "min"}
    assert df.loc[pareto_mask(df, two), "name"].tolist() == ["j"]
    no_j = df.drop(index="r9")
    assert no_j.loc[pareto_mask(no_j, two), "name"].tolist() == ["a", "c", "g", "h"]
    two = {"latency_ms": "min", "memory_mib": "min"}
    assert no_j.loc[pareto_mask(no_j, two), "name"].tolist() == ["a", "c"]
    # d becomes feasible: it dominates everything else
    df.loc["r3", "feasible"] = True
    assert df.loc[pareto_mask(df), "name"].tolist() == ["d"]


def test_pareto_mask_many_rows_matches_pairwise_check():
    rng = np.random.default_rng(0)
    n = 1200  # more than one comparison chunk
    values = rng.integers(0, 15, size=(n, 3)).astype(float)
    df = make_table([point(f"p{i}", *v) for i, v in enumerate(values)])
    mask = pareto_mask(df).to_numpy()
    signs = np.array([-1.0, 1.0, 1.0])
    m = values * signs
    sample = rng.choice(n, size=150, replace=False)
    for i in sample:
        dominated = ((m <= m[i]).all(axis=1) & (m < m[i]).any(axis=1)).any()
        assert mask[i] == (not dominated)


def test_pareto_mask_errors(summary_table):
    with pytest.raises(ValueError, match=r"\['ssim'\] are not columns"):
        pareto_mask(summary_table, {"ssim": "max"})
    with pytest.raises(ValueError, match=r"contain \['maximize'\]; allowed: \['min', 'max'\]"):
        pareto_mask(summary_table, {"psnr_db": "maximize"})
    assert not pareto_mask(empty_table()).any()


# --------------------------------------------------------------------------- hypervolume


def test_hypervolume_hand_computed():
    assert hypervolume(np.array([[3.0], [5.0]]), np.array([10.0]), ["min"]) == 7.0
    assert hypervolume(np.array([[3.0], [5.0]]), np.array([1.0]), ["max"]) == 4.0
    # one point: a box
    assert hypervolume(np.array([[1.0, 2.0]]), np.array([4.0, 6.0]), ["min", "min"]) == 12.0
    # two points: union of boxes 3 + 6 - overlap 2
    pts = np.array([[1.0, 3.0], [2.0, 1.0]])
    assert hypervolume(pts, np.array([4.0, 4.0]), ["min", "min"]) == 7.0
    # the same with y maximised (y -> -y)
    assert hypervolume(pts * [1, -1], np.array([4.0, -4.0]), ["min", "max"]) == 7.0
    # a dominated point and a point not strictly better than the reference add nothing
    more = np.vstack([pts, [[3.0, 3.5], [0.0, 4.0], [5.0, 0.0], [0.5, 4.5]]])
    assert hypervolume(more, np.array([4.0, 4.0]), ["min", "min"]) == 7.0
    # 3-D box and union 4 + 2 - 1
    assert hypervolume(np.array([[1.0, 1.0, 2.0]]), np.full(3, 3.0), ["min"] * 3) == 4.0
    pts3 = np.array([[1.0, 1.0, 2.0], [2.0, 2.0, 1.0]])
    assert hypervolume(pts3, np.full(3, 3.0), ["min"] * 3) == 5.0
    beyond = np.vstack([pts3, [[0.0, 0.0, 4.0], [0.0, 3.0, 0.0]]])
    assert hypervolume(beyond, np.full(3, 3.0), ["min"] * 3) == 5.0
    # psnr-like: (max, min, min) with duplicates
    pts3 = np.array([[31.0, 2.0, 5.0], [31.0, 2.0, 5.0]])
    ref = np.array([30.0, 4.0, 10.0])
    assert hypervolume(pts3, ref, ["max", "min", "min"]) == 1.0 * 2.0 * 5.0
    assert hypervolume(np.empty((0, 3)), ref, ["max", "min", "min"]) == 0.0


def _grid_hypervolume(points: np.ndarray, size: int) -> int:
    """Exact count of the unit cells of [0, size)^d dominated by integer points (minimised)."""
    d = points.shape[1]
    count = 0
    for cell in itertools.product(range(size), repeat=d):
        if (points <= np.array(cell)).all(axis=1).any():
            count += 1
    return count


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hypervolume_matches_a_grid_count(d, seed):
    rng = np.random.default_rng(seed)
    size = 7
    points = rng.integers(0, size + 1, size=(12, d)).astype(float)  # some on the reference
    expected = _grid_hypervolume(points, size)
    reference = np.full(d, float(size))
    assert hypervolume(points, reference, ["min"] * d) == expected
    # flip a random subset of objectives to "max": negate points and reference
    flip = rng.random(d) < 0.5
    signs = np.where(flip, -1.0, 1.0)
    directions = ["max" if f else "min" for f in flip]
    assert hypervolume(points * signs, reference * signs, directions) == expected


@pytest.mark.parametrize("seed", [0, 1])
def test_hypervolume_matches_optuna(seed):
    try:
        from optuna._hypervolume import compute_hypervolume
    except ImportError:
        pytest.skip("optuna._hypervolume.compute_hypervolume is not available")
    rng = np.random.default_rng(seed)
    for d in (2, 3):
        points = rng.random((40, d))
        reference = np.full(d, 1.1)
        expected = compute_hypervolume(points, reference)
        assert hypervolume(points, reference, ["min"] * d) == pytest.approx(expected, rel=1e-12)


def test_hypervolume_errors():
    ref = np.zeros(3)
    with pytest.raises(ValueError, match=r"shape \(4,\); expected \(d,\) with 1 <= d <= 3"):
        hypervolume(np.zeros((1, 4)), np.zeros(4), ["min"] * 4)
    with pytest.raises(ValueError, match=r"points have shape \(2, 2\); expected \(n, 3\)"):
        hypervolume(np.zeros((2, 2)), ref, ["min"] * 3)
    with pytest.raises(ValueError, match="has 2 entries; expected 3"):
        hypervolume(np.zeros((2, 3)), ref, ["min"] * 2)
    with pytest.raises(ValueError, match=r"contain \['up'\]"):
        hypervolume(np.zeros((2, 3)), ref, ["min", "up", "max"])
    with pytest.raises(ValueError, match=r"rows \[1\] are not finite"):
        hypervolume(np.array([[0, 0, 0], [0, np.nan, 0]]), ref, ["min"] * 3)


# --------------------------------------------------------------------------- zoo comparison


def test_zoo_reference_point(summary_table):
    # worst psnr among complete zoo rows (z4 is infeasible but measured), worst latency/memory
    np.testing.assert_array_equal(zoo_reference_point(summary_table), [30.0, 20.0, 20.0])
    np.testing.assert_allclose(zoo_reference_point(summary_table, margin=0.1), [27.0, 22.0, 22.0])
    two = zoo_reference_point(summary_table, {"memory_mib": "min", "psnr_db": "max"})
    np.testing.assert_array_equal(two, [20.0, 30.0])
    with pytest.raises(ValueError, match="margin=-0.1"):
        zoo_reference_point(summary_table, margin=-0.1)
    only_failed_zoo = summary_table.loc[~summary_table["is_zoo"] | (summary_table["name"] == "z5")]
    with pytest.raises(ValueError, match=r"no complete zoo row.*1 zoo rows, states \{'FAIL': 1\}"):
        zoo_reference_point(only_failed_zoo)


def test_front_summary(summary_table):
    summary = front_summary(summary_table)
    json.dumps(summary, allow_nan=False)  # JSON-ready
    assert summary["reference_point"] == {"psnr_db": 30.0, "latency_ms": 20.0, "memory_mib": 20.0}
    assert summary["hypervolume_zoo"] == pytest.approx(64.0)
    assert summary["hypervolume_search"] == pytest.approx(82.5)
    assert summary["hypervolume_ratio"] == pytest.approx(82.5 / 64.0)
    assert summary["front"] == ["s1", "s2", "s5", "s7"] and summary["n_front"] == 4
    assert summary["zoo_front"] == ["z1", "z2", "z3"]
    assert summary["zoo_dominated"] == {"z3": ["s1", "s7"]}
    assert summary["zoo_not_dominated"] == ["z1", "z2", "z4"]
    assert summary["front_combined_searched"] == ["s1", "s2", "s5", "s7"]
    assert summary["n_front_combined"] == 6  # z1 z2 s1 s2 s5 s7
    assert (summary["n_trials"], summary["n_complete"], summary["n_feasible"]) == (12, 10, 8)
    assert (summary["n_failed"], summary["n_zoo"]) == (2, 4)

    # a searched net better than every zoo net in everything: ratio > 1, all feasible zoo beaten
    better = make_table([*SUMMARY_ROWS, point("s8", 36.0, 0.5, 0.5)])
    summary = front_summary(better)
    assert summary["front"] == ["s8"]
    assert summary["zoo_dominated"] == {z: ["s8"] for z in ("z1", "z2", "z3", "z4")}
    assert summary["hypervolume_search"] == pytest.approx(6.0 * 19.5 * 19.5)

    # only one zoo net: it is the reference, zoo volume 0, no ratio unless a margin is given
    one_zoo = summary_table.loc[summary_table["name"].isin(["z3", "s1"])]
    assert front_summary(one_zoo)["hypervolume_ratio"] is None
    with_margin = front_summary(one_zoo, margin=0.5)
    assert with_margin["hypervolume_ratio"] == pytest.approx(
        (15.5 * 7.0 * 6.0) / (15.5 * 6.0 * 6.0)
    )
    explicit = front_summary(one_zoo, reference=[0.0, 100.0, 100.0])
    assert explicit["reference_point"]["latency_ms"] == 100.0
    with pytest.raises(ValueError, match="one value per objective"):
        front_summary(one_zoo, reference=[0.0, 1.0])


# --------------------------------------------------------------------------- plots


def test_pareto_data_2d(summary_table):
    data = pareto_data(summary_table, x="latency_ms", y="psnr_db")
    assert data.axes == {"latency_ms": "min", "psnr_db": "max"}
    assert data.line_shape == "hv"
    complete = summary_table["state"] == "COMPLETE"
    assert data.points["name"].tolist() == summary_table.loc[complete, "name"].tolist()
    # the 2-D front of latency/psnr, sorted by latency; s7 (better memory only) is not on it
    assert data.front["name"].tolist() == ["s5", "z1", "s1", "s2"]
    assert data.front["latency_ms"].is_monotonic_increasing
    assert data.front["psnr_db"].is_monotonic_increasing
    assert data.zoo["name"].tolist() == ["z1", "z2", "z3", "z4"]
    on_front = data.points.set_index("name")["on_front"]
    assert on_front["s1"] and not on_front["s7"] and not on_front["z3"]
    flipped = pareto_data(summary_table, x="psnr_db", y="latency_ms")
    assert flipped.line_shape == "vh"
    assert (
        pareto_data(summary_table, "latency_ms", "memory_mib", "psnr_db").line_shape is None
    )
    with pytest.raises(ValueError, match="repeat"):
        pareto_data(summary_table, x="psnr_db", y="psnr_db")
    with pytest.raises(ValueError, match=r"axis 'state' is neither"):
        pareto_data(summary_table, x="state")


def test_pareto_figures(summary_table):
    fig = pareto_figure_2d(summary_table)
    assert [t.name for t in fig.data] == ["trials", "infeasible", "Pareto front", "zoo"]
    trials, infeasible, front, zoo = fig.data
    assert len(trials.x) == 5 and len(infeasible.x) == 1  # s1 s2 s5 s6 s7 / s3
    assert front.line.shape == "hv" and front.mode == "lines+markers+text"
    assert list(front.text) == ["s5", "", "s1", "s2"]  # searched points named; z1 by the zoo
    assert list(front.x) == [5.0, 10.0, 11.0, 19.0]
    assert list(zoo.text) == ["z1", "z2", "z3", "z4"]
    assert "params" in zoo.hovertemplate and "FLOPs" in zoo.hovertemplate
    assert zoo.customdata[0][0] == "z1"
    assert fig.layout.xaxis.title.text == "latency (ms)"

    fig3 = pareto_figure_3d(summary_table)
    assert [t.name for t in fig3.data] == ["trials", "Pareto front", "zoo"]
    assert len(fig3.data[1].x) == int(pareto_mask(summary_table).sum())
    assert list(fig3.data[2].text) == ["z1", "z2", "z3", "z4"]
    assert fig3.data[2].marker.symbol == "diamond-open"  # a searched corner point shows through
    assert fig3.data[1].marker.size > fig3.data[2].marker.size - 3
    front3 = fig3.data[1]
    names = list(front3.customdata[:, 0])  # every searched front point is named, zoo ones not
    assert list(front3.text) == ["" if n.startswith("z") else n for n in names]

    par = parallel_coordinates_figure(summary_table)
    dims = par.data[0].dimensions
    assert [d.label for d in dims] == [
        "PSNR (dB)",
        "latency (ms)",
        "memory (MiB)",
        "params (M)",
        "FLOPs (G)",
        "activations (M)",
        "source",
    ]
    assert len(dims[0].values) == 10
    assert list(par.data[0].line.color) == list(dims[0].values)
    assert list(dims[-1].values) == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def _offline_html(path: Path) -> str:
    """The page loads plotly.js only from plotly.min.js beside it (no CDN), and that is there."""
    html = path.read_text(encoding="utf-8")
    sources = re.findall(r"<script\b[^>]*\bsrc\s*=\s*\"([^\"]*)\"", html, re.IGNORECASE)
    assert sources == ["plotly.min.js"], f"script sources {sources}"
    assert "plotly.js v" in (path.parent / "plotly.min.js").read_text(encoding="utf-8")[:500]
    return html


def test_write_pareto_report_single_file(summary_table, tmp_path):
    paths = write_pareto_report(summary_table, tmp_path / "report")
    assert paths == [tmp_path / "report" / "pareto_report.html"]
    html = _offline_html(paths[0])
    assert html.count("Plotly.newPlot") == 4
    assert len(html) < 1_000_000  # plotly.js in the folder's plotly.min.js
    assert "z3" in html and "parcoords" in html and "scatter3d" in html
    assert "Hypervolume, searched front / zoo front" in html and "is dominated by" in html
    assert sorted(p.name for p in paths[0].parent.iterdir()) == [
        "pareto_report.html", "plotly.min.js"]


def test_write_pareto_report_separate_files(summary_table, tmp_path):
    paths = write_pareto_report(summary_table, tmp_path, single_file=False)
    assert [p.name for p in paths] == [
        "pareto_latency.html",
        "pareto_memory.html",
        "pareto_3d.html",
        "parallel.html",
    ]
    for path in paths:
        assert _offline_html(path).count("Plotly.newPlot") == 1
    assert len(list(tmp_path.glob("*.js"))) == 1  # one plotly.js for the four pages
    assert "memory (MiB)" in paths[1].read_text(encoding="utf-8")


def test_write_figures_html_needs_figures(tmp_path):
    with pytest.raises(ValueError, match="figures is empty"):
        write_figures_html([], tmp_path / "x.html")


# --------------------------------------------------------------------------- CLI


def test_cli_end_to_end(sqlite_url, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--storage", sqlite_url, "--out", str(out)]) == 0
    trials = read_csv(out / "trials.csv")
    assert len(trials) == 7
    front = read_csv(out / "front.csv")
    # trial_4 (fastest) is infeasible; trial_3 dominates rfdn and imdn; rlfn trades off
    assert front["name"].tolist() == ["rlfn_ntire", "trial_3"]
    genotypes = sorted(p.name for p in (out / "front_genotypes").iterdir())
    assert genotypes == ["rlfn_ntire.json", "trial_3.json"]
    assert (
        Genotype.load(out / "front_genotypes" / "rlfn_ntire.json")
        == (resolve_genotype("rlfn_ntire")[1])
    )
    assert json.loads((out / "front_genotypes" / "trial_3.json").read_text()) == {"searched": 3}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference_point"] == {"psnr_db": 28.0, "latency_ms": 20.0, "memory_mib": 200.0}
    assert summary["zoo_dominated"] == {"imdn_ntire": ["trial_3"], "rfdn_aim2020": ["trial_3"]}
    assert summary["hypervolume_ratio"] == pytest.approx(
        (0.3 * 6.0 * 60.0) / (0.2 * 5.0 * 50.0 + 0.4 * 8.0 * 20.0 - 0.2 * 5.0 * 20.0)
    )
    _offline_html(out / "pareto_report.html")
    printed = capsys.readouterr().out
    assert "7 trials" in printed and "hypervolume search / zoo" in printed
    assert "rfdn_aim2020 dominated by trial_3" in printed


def test_cli_without_zoo_still_writes_everything(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/nozoo.db"
    study = optuna.create_study(storage=url, study_name="s", directions=[MAX, MIN, MIN])
    study.set_metric_names(METRICS)
    study.add_trial(
        optuna.trial.create_trial(values=[28.0, 5.0, 50.0], user_attrs=searched_attrs(0))
    )
    out = tmp_path / "out"
    assert main(["--storage", url, "--study", "s", "--out", str(out), "--separate-html"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "no complete zoo row" in summary["error"] and summary["n_trials"] == 1
    assert (out / "pareto_3d.html").is_file() and not (out / "pareto_report.html").exists()
    assert "no zoo comparison" in capsys.readouterr().out


def test_cli_reads_a_ray_experiment(ray_experiment, tmp_path):
    out = tmp_path / "out"
    assert main(["--ray", str(ray_experiment), "--out", str(out)]) == 0
    assert read_csv(out / "front.csv")["name"].tolist() == ["searched_searched"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["zoo_dominated"] == {"imdn_ntire": ["searched_searched"]}


def test_cli_errors(tmp_path, capsys):
    db = tmp_path / "missing.db"
    assert main(["--storage", f"sqlite:///{db}", "--out", str(tmp_path / "o")]) == 2
    assert "missing.db" in capsys.readouterr().err
    assert not db.exists() and not (tmp_path / "o").exists()
    assert main(["--ray", str(tmp_path / "nodir"), "--out", str(tmp_path / "o")]) == 2
    assert "nodir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--ray", str(tmp_path), "--study", "x", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "error: --study applies to --storage only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "o")])  # neither --storage nor --ray
    assert exit_info.value.code == 2
    assert "one of the arguments --storage --ray is required" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_python_dash_m_results(tmp_path):
    db = tmp_path / "gone.db"
    proc = subprocess.run(
        [sys.executable, "-m", "results.summary", "--storage", f"sqlite:///{db}",
         "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert proc.returncode == 2
    assert "error: storage=" in proc.stderr and "gone.db" in proc.stderr
