"""Budgets in CPU-seconds and search seeds (issue 27): a study stops starting trials once its
trials have spent ``study.cpu_seconds``, a DARTS search fixes its length from
``search.cpu_seconds`` after a few timed steps (kept over a resume), and the pipeline gives
every method and search seed the same ``pipeline.cpu_seconds`` and reports each method's mean
and spread over its searches, with the recipe's fidelity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bad_input import Case, _darts, _optuna, _pipeline, _ray, _refused  # noqa: E402
from test_pipeline import _args as _pipeline_args  # noqa: E402
from test_pipeline import _hr  # noqa: E402

from searchers.common.config import load_config  # noqa: E402
from searchers.common.spend import SpendMeter, spent_seconds  # noqa: E402
from searchers.stages.pipeline import Pipeline, PipelineConfig, Search, equal_budgets  # noqa: E402
from searchers.stages.progress import Progress  # noqa: E402
from searchers.trials.study import SPENT_ATTR  # noqa: E402


def test_the_meter_counts_cpu_time_not_sleep():
    import time

    meter = SpendMeter("cpu")
    time.sleep(0.2)
    assert meter.peek() < 0.1  # a sleeping process spends no CPU-seconds
    x = torch.rand(300, 300)
    deadline = time.perf_counter() + 30  # work until 0.2 CPU-s are counted, however loaded
    while meter.peek() < 0.2 and time.perf_counter() < deadline:
        x = (x @ x).tanh()
    lap = meter.lap()
    assert lap >= 0.2 and meter.peek() < lap
    assert spent_seconds("cuda:0") == pytest.approx(time.perf_counter(), abs=1.0)  # wall


def test_a_study_stops_starting_trials_once_its_trials_spent_the_budget(tmp_path):
    from searchers.trials.study import main

    args = [f"run.dir={tmp_path}", "space.scale=2", "space.widths=[8]", "space.cells_min=1",
            "space.cells_max=1", "space.conv_candidates=[conv3x3,sep_conv3x3]",
            "space.attention_candidates=[none]", "proxy.steps=4", "proxy.batch_size=2",
            "proxy.patch_size=32", "proxy.val_max_side=24", "measure.lr_size=16",
            "measure.runs=1", "measure.warmup=0", "study.zoo=[span_ntire2024]",
            "study.zoo_outside=reference", "study.sampler=random", "study.n_trials=200",
            "study.cpu_seconds=5"]
    assert main(args) == 0
    study = optuna.load_study(study_name="srnas",
                              storage=f"sqlite:///{tmp_path / 'default' / 'study.db'}")
    zoo, *searched = study.trials
    assert zoo.user_attrs["is_zoo"] and zoo.user_attrs[SPENT_ATTR] > 0  # recorded, not counted
    spent = [t.user_attrs[SPENT_ATTR] for t in searched]
    assert 2 <= len(spent) < 200 and all(s > 0 for s in spent)
    # the last trial started with at least half a mean trial left; none after it could
    assert 5 - sum(spent[:-1]) >= 0.5 * np.mean(spent[:-1])
    assert sum(spent) >= 5 or 5 - sum(spent) < 0.5 * np.mean(spent)
    assert main(args) == 0  # re-run: the study has spent its budget, no trial starts
    again = optuna.load_study(study_name="srnas", storage=study._storage).trials
    assert len(again) == 1 + len(spent)


DARTS = ["space.scale=2", "space.width=8", "space.num_cells=1", "space.cell_types=[erb]",
         "space.conv_candidates=[conv3x3,sep_conv3x3]", "space.attention_candidates=[none,pa]",
         "data.patch_size=16", "data.batch_size=2", "search.steps=100000",
         "search.warmup_steps=1", "hardware.lr_size=16", "hardware.runs=1", "hardware.warmup=0",
         "profile.enabled=false", "run.plots=false", "run.checkpoint_every=1",
         "loss.mode=weighted", "loss.reference=null", "loss.latency_x=null",
         "loss.memory_x=null"]


def _darts_run(tmp_path: Path, name: str, budget: float, *extra: str) -> int:
    from searchers.differentiable.search import main

    return main([*extra, f"run.dir={tmp_path}", f"run.name={name}",
                 f"hardware.cache_dir={tmp_path / 'lut'}", f"search.cpu_seconds={budget}",
                 *DARTS])


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)


class VirtualMeter(SpendMeter):
    """A meter on a virtual clock that the test advances (20 ms per weight step): a search's
    spend becomes a count of its steps, the same on a busy machine."""

    clock = 0.0

    def __init__(self, device: object = "cpu") -> None:
        self.device, self.mark = device, VirtualMeter.clock

    def peek(self) -> float:
        return VirtualMeter.clock - self.mark

    def lap(self) -> float:
        lap, self.mark = self.peek(), VirtualMeter.clock
        return lap


def test_darts_fixes_its_length_from_the_budget_and_keeps_it_over_a_resume(tmp_path,
                                                                          monkeypatch):
    import searchers.differentiable.search as search

    step = search.TrainStep.__call__

    def timed_step(self, *args, **kwargs):
        VirtualMeter.clock += 0.02
        return step(self, *args, **kwargs)

    monkeypatch.setattr(search, "SpendMeter", VirtualMeter)
    monkeypatch.setattr(search.TrainStep, "__call__", timed_step)
    assert _darts_run(tmp_path, "small", 0.5) == 0
    assert _darts_run(tmp_path, "large", 1.0) == 0
    small, large = _checkpoint(tmp_path / "small"), _checkpoint(tmp_path / "large")
    assert small["calibrated"] and large["calibrated"]
    assert small["total_steps"] >= 8 and large["total_steps"] > 1.7 * small["total_steps"]
    assert small["step"] == small["total_steps"]
    assert small["spent_s"] == pytest.approx(small["total_steps"] * 0.02)
    # the selection's reserve kept back: 3 slots (2 convs, the attention) of (1 + 2) evaluations
    # of 4 batches, a sixth of a step each: 0.12 s
    assert 0.5 - 0.12 - 0.02 <= small["spent_s"] <= 0.5 - 0.12
    assert (tmp_path / "large" / "genotype.json").exists()
    steps = [int(r.split(",")[0]) for r in (tmp_path / "large" / "log.csv").read_text()
             .splitlines()[1:]]
    assert steps[-1] == large["total_steps"] and steps == sorted(set(steps))
    # killed after the calibration: the resumed run keeps the length it fixed
    assert _darts_run(tmp_path, "cut", 1.0, "--stop-after", "6") == 0
    fixed = _checkpoint(tmp_path / "cut")
    assert fixed["calibrated"] and fixed["step"] == 6
    assert search.main(["--resume", f"run.dir={tmp_path}", "run.name=cut"]) == 0
    done = _checkpoint(tmp_path / "cut")
    assert done["step"] == done["total_steps"] == fixed["total_steps"]
    assert done["spent_s"] > fixed["spent_s"]  # the resumed process's spend is added
    rule = json.loads((tmp_path / "large" / "selection.json").read_text())["rule"]
    assert rule == "perturbation"
    # a budget whose selection would cost more than the steps it leaves: selected by alpha
    assert _darts_run(tmp_path, "tight", 0.25) == 0
    assert json.loads((tmp_path / "tight" / "selection.json").read_text())["rule"] == "alpha"
    assert _checkpoint(tmp_path / "tight")["spent_s"] <= 0.25
    # a budget spent in the warm-up: no architecture step, the search stops there
    assert _darts_run(tmp_path, "warm", 0.1, "search.warmup_steps=50") == 0
    warm = _checkpoint(tmp_path / "warm")
    assert warm["calibrated"] and warm["step"] == warm["total_steps"] < 50


def test_a_study_starts_a_trial_while_half_a_mean_trial_is_left():
    from searchers.trials.study import starts_another

    assert starts_another([], 10.0)  # the first trial
    assert starts_another([4.0, 4.0], 10.0)  # 2 left, half a trial is 2
    assert not starts_another([4.0, 4.5], 10.0)  # 1.5 left: the next ends past it
    assert not starts_another([10.0], 10.0) and not starts_another([12.0], 10.0)


def test_equal_cpu_seconds_become_each_searchers_budget(tmp_path):
    cfg = load_config(PipelineConfig, None, [f"pipeline.dir={tmp_path}", "pipeline.name=p",
                                             "pipeline.cpu_seconds=600",
                                             "pipeline.search_seeds=[3,4]",
                                             "pipeline.methods=[random,darts,oneshot]"])
    out = equal_budgets(cfg)
    assert out.trials.study.cpu_seconds == 600 and out.trials.study.n_trials >= 10_000
    assert out.darts.search.cpu_seconds == 600
    pipe = Pipeline(cfg, ["pipeline"])
    assert [s.label for s in pipe.searches()] == [
        "random_search3", "darts_search3", "oneshot_search3",
        "random_search4", "darts_search4", "oneshot_search4"]
    oneshot = Search("oneshot_search4", "oneshot", 4)
    assert pipe.trials(oneshot).study.seed == 4
    assert pipe.supernet_dir(oneshot).name == "supernet_search4"
    # the oneshot study gets what its supernet's training left of the budget
    pipe.root.mkdir(parents=True)
    state = {"seconds": {}, "cpu_seconds": {"supernet.oneshot_search4": 250.0}, "done": []}
    pipe.state_path.write_text(json.dumps(state))
    assert pipe.trials(oneshot).study.cpu_seconds == pytest.approx(350.0)
    state["cpu_seconds"]["supernet.oneshot_search4"] = 601.0
    pipe.state_path.write_text(json.dumps(state))
    with pytest.raises(RuntimeError, match="nothing is left for its study"):
        pipe.trials(oneshot)
    # the progress: the estimate left goes by the budget, then by the stages done
    stages = pipe.stages()
    assert stages[:2] == ["search.random_search3", "search.darts_search3"]
    state = {"seconds": {}, "cpu_seconds": {}, "done": []}
    assert Progress(pipe).estimate(state, stages[:6]) == (pytest.approx(6 * 600), 0)
    state = {"seconds": {"search.random_search3": 100.0}, "cpu_seconds": {},
             "done": ["search.random_search3"]}
    assert Progress(pipe).estimate(state, stages[:6]) == (pytest.approx(5 * 100), 0)
    untimed = len(stages) - 6 - 1  # the retrainings (the selection takes no time to speak of)
    assert Progress(pipe).left_text(state, stages) == (
        f"about 8m20s + {untimed} stages not yet timed left")
    assert Progress(pipe).estimate(state, stages)[1] == untimed  # not all can be timed
    # a stage another process did (done here in no time) does not pull the estimate down
    state["seconds"]["search.darts_search3"] = 0.01
    state["done"].append("search.darts_search3")
    assert Progress(pipe).estimate(state, stages[:6]) == (pytest.approx(4 * 100), 0)
    state["seconds"].pop("search.darts_search3")
    state["done"].remove("search.darts_search3")
    status = Progress(pipe).status(state)
    assert "(in progress: 1 of" in status and "| search.random_search3 | done |" in status
    assert "| search.darts_search3 | to run |" in status


def test_the_pipeline_searches_each_method_per_search_seed_at_equal_cpu_seconds(tmp_path):
    from searchers.stages.pipeline import run_pipeline

    _hr(tmp_path)
    args = [a for a in _pipeline_args(tmp_path, "seeds") if not a.startswith("pipeline.patches")]
    cfg = load_config(PipelineConfig, None, [
        *args, "pipeline.methods=[random,darts]", "pipeline.search_seeds=[0,1]",
        "pipeline.cpu_seconds=2", "darts.search.warmup_steps=1"])
    summary = run_pipeline(cfg, command=["pipeline"]).read_text()
    root = tmp_path / "seeds"
    state = json.loads((root / "state.json").read_text())
    for label in ("random_search0", "darts_search0", "random_search1", "darts_search1"):
        assert f"| {label} |" in summary
        assert 0 < state["cpu_seconds"][f"search.{label}"] < 60
    s0 = json.loads((root / "selected" / "selected.json").read_text())
    assert s0["random_search1"]["search_seed"] == 1 and s0["darts_search0"]["method"] == "darts"
    assert "| random | 2 of 2 |" in summary and "| darts | 2 of 2 |" in summary  # per method
    assert " over random: " in summary or " over darts: " in summary
    assert "Recipe fidelity: not measured" in summary  # one zoo net: no rank correlation
    assert "Short-recipe results" in summary
    darts = torch.load(root / "search" / "darts_search1" / "checkpoint.pt", weights_only=True)
    assert darts["calibrated"] and darts["step"] == darts["total_steps"]


BUDGET_CASES = [
    Case("pipeline: zero CPU-seconds", _pipeline("pipeline.cpu_seconds=0"),
         ("pipeline.cpu_seconds", "0")),
    Case("pipeline: CPU-seconds and patches", _pipeline("pipeline.cpu_seconds=60",
                                                        "pipeline.patches=100"),
         ("pipeline.cpu_seconds=60", "pipeline.patches=100", "null")),
    Case("pipeline: a search seed twice", _pipeline("pipeline.search_seeds=[0,0]"),
         ("pipeline.search_seeds", "[0, 0]", "distinct")),
    Case("study: negative CPU-seconds", _optuna("study.cpu_seconds=-5"),
         ("study.cpu_seconds", "-5")),
    Case("study: CPU-seconds with halving", _optuna("study.cpu_seconds=60", "proxy.kind=halving"),
         ("study.cpu_seconds=60", "halving", "proxy.kind=train")),
    Case("darts: zero CPU-seconds", _darts("search.cpu_seconds=0"), ("search.cpu_seconds", "0")),
    Case("ray: CPU-seconds", _ray("study.cpu_seconds=60"),
         ("study.cpu_seconds", "60", "optuna_search.py")),
]


@pytest.mark.parametrize("case", BUDGET_CASES, ids=[c.name for c in BUDGET_CASES])
def test_a_bad_budget_is_refused_in_one_line(case, tmp_path, capsys):
    _refused(case, tmp_path, capsys)


def test_a_search_that_finds_no_net_under_the_budget_hands_over_none(tmp_path, monkeypatch):
    """A study whose searched trials all break the budget is a result (no net), not a crash:
    the select stage records it, nothing of it is retrained, the other searches go on; only
    when no search hands over a net does the pipeline stop, saying why."""
    from search_space.zoo import ZOO, at_scale
    from searchers.stages.pipeline import NoFeasibleNet

    cfg = load_config(PipelineConfig, None, [f"pipeline.dir={tmp_path}", "pipeline.name=p",
                                             "pipeline.methods=[random,nsga2]",
                                             "pipeline.zoo=[span_ntire2024]"])
    pipe = Pipeline(cfg, ["pipeline"])
    net = at_scale(ZOO["rlfn_ntire"], 4)

    def best(search):
        if search.method == "random":
            raise NoFeasibleNet("the random study has no feasible searched trial")
        return net, {"trial": 3, "proxy_psnr_db": 27.0}

    monkeypatch.setattr(pipe, "_best_trial", best)
    pipe.root.mkdir(parents=True)
    pipe.select()
    chosen = json.loads((pipe.root / "selected" / "selected.json").read_text())
    assert "no feasible" in chosen["random"]["none"] and chosen["nsga2"]["trial"] == 3
    assert [label for label, _ in pipe.retrain_jobs()] == ["nsga2", "span_ntire2024"]
    assert not any(s.startswith("retrain.random") for s in pipe.stages())
    status = Progress(pipe).status({"seconds": {}, "cpu_seconds": {}, "done": ["select"]})
    assert "- random: no net under the budget" in status and "- nsga2: trial 3" in status
    monkeypatch.setattr(pipe, "_best_trial", lambda s: best(Search("x", "random")))
    with pytest.raises(RuntimeError, match="no search handed over a net"):
        pipe.select()


def test_the_recipe_fidelity_vouches_only_with_five_zoo_nets(tmp_path):
    """Four zoo nets in the converged order (a perfect Spearman by chance once in 24) do not
    vouch for a recipe; five that are mark the verdicts as holding; one out of order below 0.9
    marks them short-recipe."""
    from searchers.stages.summary import fidelity_line

    converged = tmp_path / "converged.md"
    nets = {"imdn_ntire": 32.2, "rfdn_aim2020": 32.1, "rlfn_ntire": 32.0, "fmen_s": 31.9,
            "span_ntire2024": 31.7}
    converged.write_text("| zoo name | Set5 Y-PSNR |\n|---|---|\n" + "".join(
        f"| `{n}` | {v} |\n" for n, v in nets.items()))

    def rows(order):
        return [{"name": n, "kind": "zoo", "psnr_y_Set5": 28.0 - 0.1 * i}
                for i, n in enumerate(order)]

    line, short = fidelity_line(rows(list(nets)[:4]), converged)
    assert short and "over only 4 nets" in line and "Spearman 1.000" in line
    line, short = fidelity_line(rows(list(nets)), converged)
    assert not short and "the verdicts below hold" in line
    swapped = ["span_ntire2024", *list(nets)[1:4], "imdn_ntire"]
    line, short = fidelity_line(rows(swapped), converged)
    assert short and "short-recipe results" in line


def test_the_running_page_says_what_each_search_handed_over(tmp_path):
    from searchers.stages.progress import _chosen_text

    assert _chosen_text({"source": None, "none": "no feasible trial"}) == "no net under the budget"
    assert _chosen_text({"source": "DARTS derived genotype"}) == "DARTS derived genotype"
    assert _chosen_text({"trial": 3, "proxy_psnr_db": 0.1034, "method": "params",
                         "latency_ratio": None}) == "trial 3, proxy 0.103 M params, latency xnan"
    assert "27.000 dB, latency x0.50" in _chosen_text(
        {"trial": 1, "proxy_psnr_db": 27.0, "method": "nsga2", "latency_ratio": 0.5})
