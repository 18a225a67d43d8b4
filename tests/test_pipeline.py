"""The one-command pipeline: search (random, NSGA-II, DARTS), select, retrain, report; a run
killed with SIGKILL mid-way and re-run with the same command ends as an uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from PIL import Image

from searchers.common.config import load_config
from searchers.stages.pipeline import PipelineConfig, equal_budgets
from searchers.stages.tables import hypervolume_line

ROOT = Path(__file__).resolve().parents[1]
# pipeline.patches=16 in equal budgets: 16 / (2 steps x 1 seed x 2 per batch) trials per study,
# 16 / (2 x 2 per batch) DARTS steps
TRIALS, DARTS_STEPS = 4, 4


def _hr(tmp_path):
    from proxies.data.specs import default_images

    folder = tmp_path / "hr"
    folder.mkdir()
    for name, im in default_images()[-2:]:
        Image.fromarray((np.asarray(im[:96, :96]) * 255).round().astype("uint8")).save(
            folder / f"{name}.png")
    return folder


def _args(tmp_path, name):
    return [
        f"pipeline.dir={tmp_path}", f"pipeline.name={name}", "pipeline.seeds=[0]",
        "pipeline.zoo=[span_ntire2024]", f"pipeline.sets=[{tmp_path / 'hr'}]",
        "pipeline.datasets_root=null", "pipeline.report_size=16", "pipeline.report_rounds=1",
        "pipeline.patches=16",
        "trials.space.widths=[8]", "trials.space.cells_min=1", "trials.space.cells_max=2",
        "trials.space.conv_candidates=[conv3x3,sep_conv3x3]",
        "trials.space.attention_candidates=[none,pa]", "trials.proxy.steps=2",
        "trials.proxy.batch_size=2", "trials.proxy.patch_size=32", "trials.proxy.val_max_side=32",
        "trials.measure.lr_size=16", "trials.measure.runs=1", "trials.measure.warmup=0",
        "trials.study.zoo=[span_ntire2024]",
        "trials.study.zoo_outside=reference", "trials.study.population_size=2",
        "trials.study.heartbeat_s=1", "trials.study.grace_s=2", "darts.run.log_every=1",
        "darts.space.width=8", "darts.space.num_cells=2",
        "darts.space.conv_candidates=[conv3x3,sep_conv3x3]",
        "darts.space.attention_candidates=[none,pa]", "darts.data.patch_size=32",
        "darts.data.batch_size=2", "darts.search.warmup_steps=1", "darts.hardware.lr_size=16",
        "darts.hardware.runs=2", "darts.hardware.warmup=0",
        f"darts.hardware.cache_dir={tmp_path / 'lut'}", "darts.profile.enabled=false",
        "darts.run.plots=false", "darts.run.checkpoint_every=2",
        "retrain.optim.iterations=4", "retrain.optim.warmup_iterations=1",
        "retrain.data.patch_size=32", "retrain.data.batch_size=2", "retrain.data.val_max_side=32",
        "retrain.run.val_every=2", "retrain.run.checkpoint_every=2"]


def test_equal_budgets_in_trained_patches():
    cfg = PipelineConfig()
    cfg.pipeline.patches = 12_000
    cfg.trials.proxy.steps, cfg.trials.proxy.seeds, cfg.trials.proxy.batch_size = 50, 2, 3
    cfg.darts.data.batch_size = 4
    out = equal_budgets(cfg)
    assert out.trials.study.n_trials == 12_000 // (50 * 2 * 3) == 40
    assert out.darts.search.steps == 12_000 // 8 and out.darts.search.warmup_steps <= 300
    with pytest.raises(ValueError, match="pipeline.methods"):
        type(cfg.pipeline)(methods=["random", "random"])
    with pytest.raises(ValueError, match="pipeline.zoo: got unknown"):
        type(cfg.pipeline)(zoo=["spam"])


@pytest.mark.parametrize("name", ["pipeline.yaml", "pipeline_t91.yaml"])
def test_the_shipped_pipeline_configs_load_with_equal_budgets(name):
    cfg = equal_budgets(load_config(PipelineConfig, str(ROOT / "configs" / name), []))
    p, t = cfg.pipeline, cfg.trials
    per_trial = t.proxy.steps * t.proxy.seeds * t.proxy.batch_size
    darts_patches = cfg.darts.search.steps * 2 * cfg.darts.data.batch_size
    assert abs(t.study.n_trials * per_trial - darts_patches) <= per_trial, (name, p.patches)
    assert set(p.methods) == {"random", "nsga2", "darts"}


def test_the_hypervolume_line_compares_searched_nets_with_the_zoo():
    def row(name, kind, psnr, lat, mem):
        return {"name": name, "kind": kind, "psnr_y_Set5": psnr, "psnr_y_B100": psnr - 3,
                "latency_ratio": lat, "peak_memory_mib": mem}

    zoo = [row("span", "zoo", 30.0, 1.0, 10.0), row("rlfn", "zoo", 30.2, 1.5, 12.0)]
    worse = hypervolume_line([*zoo, row("random", "search", 29.0, 1.2, 11.0)])
    better = hypervolume_line([*zoo, row("nsga2", "search", 30.3, 0.8, 9.0)])
    assert "searched nets on the combined front: none" in worse
    assert "zoo nets dominated in these three: none" in worse
    assert "span by nsga2; rlfn by nsga2" in better
    ratio = float(better.split(", ratio ")[1].split(";")[0])
    assert ratio > 1.0


def test_the_pipeline_runs_end_to_end_and_a_killed_one_resumes(tmp_path):
    """The whole pipeline, then the same command SIGKILLed at a random point (inside a study's
    trial, a DARTS step, a retraining, the report) and re-run: the same final report, both
    runs as subprocesses with the same thread settings. The kill point is drawn from a seed
    that every failure message names; ``SRNAS_KILL_SEED=<seed>`` replays it (and
    ``SRNAS_KILL_POINT=<stage>`` forces the stage)."""
    _hr(tmp_path)
    script = str(ROOT / "searchers" / "pipeline.py")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    first = subprocess.run([sys.executable, script, *_args(tmp_path, "whole")], cwd=ROOT,
                           env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    whole = tmp_path / "whole"
    summary = (whole / "pipeline.md").read_text()
    for row in ("| random |", "| nsga2 |", "| darts |", "| span_ntire2024 | zoo |",
                "Hypervolume ("):
        assert row in summary
    assert (whole / "report" / "report.html").exists()
    assert json.loads((whole / "selected" / "selected.json").read_text())["random"]["trial"] >= 1

    cmd = [sys.executable, script, *_args(tmp_path, "cut")]
    cut = tmp_path / "cut"
    seed = int(os.environ.get("SRNAS_KILL_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    for _attempt in range(3):  # a new random kill point if the chosen one was never reached
        if cut.exists():
            shutil.rmtree(cut)
        drawn = rng.choice(["random", "nsga2", "darts", "retrain", "report"])
        point = os.environ.get("SRNAS_KILL_POINT") or drawn
        ready = _kill_point(cut, point, rng)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.001)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if killed:
            break
    else:
        pytest.fail(f"3 random kill points: the pipeline ended before each was reached "
                    f"(SRNAS_KILL_SEED={seed})")
    where = f"killed in {point}; replay: SRNAS_KILL_SEED={seed}"
    status = (cut / "pipeline.md").read_text() if (cut / "pipeline.md").exists() else ""
    assert status == "" or "(in progress:" in status, where  # the final summary is not written
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, (where, done.stderr[-3000:])
    state = cut / "state.json"
    done_stages = json.loads(state.read_text())["done"]
    assert len(done_stages) == len(set(done_stages)) == 3 + 1 + 4, where  # 3 searches, select,
    for method in ("random", "nsga2"):  # 4 retrainings
        study = optuna.load_study(study_name=method,
                                  storage=f"sqlite:///{cut / 'search' / method / 'study.db'}")
        states = [t.state.name for t in study.trials]
        assert states.count("COMPLETE") == TRIALS and "RUNNING" not in states, (where, states)
    # the same final report as the uninterrupted run: the same selected genotypes and the same
    # table numbers, timing columns aside (latency is measured afresh; search_trial names a
    # trial by number, which a retried trial changes)
    for method in ("random", "nsga2", "darts"):
        assert (cut / "selected" / f"{method}.json").read_text() == (
            whole / "selected" / f"{method}.json").read_text(), (where, method)
    for table in ("table.csv", "seeds.csv"):
        a, b = (pd.read_csv(run / "report" / table) for run in (whole, cut))
        keep = [c for c in a.columns if not c.startswith("latency") and c != "search_trial"]
        assert list(a.columns) == list(b.columns), where
        pd.testing.assert_frame_equal(a[keep], b[keep], check_exact=True,
                                      obj=f"{table}, {where}")
    assert "| darts |" in (cut / "pipeline.md").read_text()


def _kill_point(cut, point, rng):
    """A predicate on the pipeline folder that holds at a random point of stage ``point``: a
    trial RUNNING in a study after k complete ones, a DARTS step, a retraining step, the
    report being written."""
    if point in ("random", "nsga2"):
        db, k = cut / "search" / point / "study.db", rng.randint(0, TRIALS - 1)

        def ready():
            if not db.exists():
                return False
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                    states = [s for (s,) in con.execute("SELECT state FROM trials")]
            except sqlite3.Error:
                return False
            return "RUNNING" in states and states.count("COMPLETE") >= k
        return ready
    if point == "darts":
        log, k = cut / "search" / "darts" / "log.csv", rng.randint(1, DARTS_STEPS - 1)
        return lambda: log.exists() and len(log.read_text().splitlines()) > k
    if point == "retrain":
        name = rng.choice(["random_s0", "nsga2_s0", "darts_s0", "span_ntire2024_s0"])
        log = cut / "retrain" / name / "log.csv"
        return lambda: log.exists() and len(log.read_text().splitlines()) > 1
    return lambda: (cut / "report").exists()


ONESHOT = ["pipeline.methods=[oneshot]", "supernet.space.width=8", "supernet.space.num_cells=2",
           "supernet.space.widths=[4,8]", "supernet.space.cells_min=1",
           "supernet.space.cell_types=[erb,rfdb]",
           "supernet.space.conv_candidates=[conv3x3,sep_conv3x3]",
           "supernet.space.attention_candidates=[none,pa]", "supernet.data.patch_size=32",
           "supernet.data.batch_size=2", "supernet.run.checkpoint_every=1",
           "supernet.run.log_every=1", "supernet.run.plots=false", "supernet.run.device=cpu",
           "trials.proxy.finetune_steps=1", "pipeline.patches=48"]


def test_the_oneshot_method_trains_one_supernet_and_searches_its_subnets(tmp_path):
    """``oneshot``: the supernet trained once in search/supernet (patches / (batch x 4 paths)
    steps), then a study over its own space whose trials inherit its weights; the selected
    net is one of its subnets and is retrained and reported like every method's."""
    from search_space import Genotype
    from searchers.differentiable.elastic import check_subnet
    from searchers.sharing.load import read_supernet_space
    from searchers.stages.pipeline import main

    _hr(tmp_path)
    assert main([*_args(tmp_path, "one"), *ONESHOT]) == 0
    root = tmp_path / "one"
    supernet = root / "search" / "supernet"
    steps = pd.read_csv(supernet / "log.csv")["step"].max()
    assert steps == 48 // (2 * 4)  # sandwich: largest, smallest and 2 random paths per step
    study = optuna.load_study(study_name="oneshot",
                              storage=f"sqlite:///{root / 'search' / 'oneshot' / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and not any(t.user_attrs.get("is_zoo") for t in done)
    assert {t.user_attrs["proxy_steps"] for t in done} == {1}
    selected = Genotype.load(root / "selected" / "oneshot.json")
    check_subnet(read_supernet_space(str(supernet)).spec, selected)  # raises if outside
    summary = (root / "pipeline.md").read_text()
    assert "| oneshot |" in summary and "supernet steps" in summary
    # re-run: the finished supernet is not trained again, nothing is redone
    mtime = (supernet / "checkpoint.pt").stat().st_mtime
    assert main([*_args(tmp_path, "one"), *ONESHOT]) == 0
    assert (supernet / "checkpoint.pt").stat().st_mtime == mtime


def test_a_method_added_to_a_finished_pipeline_is_searched_selected_and_retrained(tmp_path):
    """``tpe`` and ``gp`` are studies of the sampled space with that sampler; added to a
    finished folder, only the new searches run, the select stage runs again for them, and
    their nets are retrained beside the old ones (which are not redone)."""
    import yaml

    from searchers.stages.pipeline import main

    _hr(tmp_path)
    base = [*_args(tmp_path, "grow"), "pipeline.zoo=[]"]
    assert main([*base, "pipeline.methods=[random]"]) == 0
    root = tmp_path / "grow"
    first = (root / "retrain" / "random_s0" / "deployed.pt").stat().st_mtime
    assert main([*base, "pipeline.methods=[random,tpe,gp]"]) == 0
    chosen = json.loads((root / "selected" / "selected.json").read_text())
    assert set(chosen) == {"random", "tpe", "gp"}
    for method in ("tpe", "gp"):
        cfg = yaml.safe_load((root / "search" / method / "config.yaml").read_text())
        assert cfg["study"]["sampler"] == method
        assert (root / "retrain" / f"{method}_s0" / "deployed.pt").exists()
    assert (root / "retrain" / "random_s0" / "deployed.pt").stat().st_mtime == first
    summary = (root / "pipeline.md").read_text()
    assert "| tpe |" in summary and "| gp |" in summary


MATCHED = ["pipeline.methods=[random,darts]", "pipeline.zoo=[]", "matched.n=2",
           "matched.tolerance=0.9", "matched.max_draws=12", "trials.budget.rounds=1"]


def test_the_matched_check_ranks_each_searched_net_among_random_nets_of_its_space(tmp_path):
    """``matched.n``: per space (the studies' sampled space, DARTS's supernet) one pool of
    uniform draws timed against the reference; each searched net gets the first n within the
    tolerance, those are retrained with the recipe, and pipeline.md ranks it among them. A
    re-run redoes nothing; a tolerance no draw meets leaves a corner, without a verdict."""
    from searchers.common.config import load_config
    from searchers.stages.matched import Matched
    from searchers.stages.pipeline import Pipeline, main

    _hr(tmp_path)
    args = [*_args(tmp_path, "m"), *MATCHED]
    assert main(args) == 0
    root = tmp_path / "m"
    for space in ("trials", "darts"):
        saved = json.loads((root / "matched" / space / "draws.json").read_text())
        assert saved["done"] and 2 <= len(saved["draws"]) <= 12
        assert all(r > 0 for r in saved["targets"].values())
    pipeline = Pipeline(load_config(PipelineConfig, None, args), ["test"])
    rows = {r["search"]: r for r in Matched(pipeline).rows()}
    assert set(rows) == {"random", "darts"}
    for r in rows.values():
        assert r["found"] == 2 and not r["corner"]
        assert 1 <= r["rank"] <= 3 and r["of"] == 3
        assert all(np.isfinite(r["random_db"]))
    jobs = Matched(pipeline).jobs()
    assert 2 <= len(jobs) <= 4 and all(
        (root / "retrain" / f"{label}_s0" / "deployed.pt").exists() for label, _ in jobs)
    summary = (root / "pipeline.md").read_text()
    assert "Matched-latency check" in summary and "| random | trials |" in summary
    assert "P(top quarter)" in summary and summary.count("| one seed | one seed |") == 2
    state = json.loads((root / "state.json").read_text())
    assert {"matched.trials", "matched.darts"} <= set(state["done"])
    mtime = (root / "matched" / "trials" / "draws.json").stat().st_mtime
    assert main(args) == 0
    assert (root / "matched" / "trials" / "draws.json").stat().st_mtime == mtime

    corner = Pipeline(load_config(PipelineConfig, None, [*args, "matched.tolerance=1e-9"]),
                      ["test"])
    row = next(r for r in Matched(corner).rows() if r["search"] == "random")
    assert row["corner"] and row["found"] == 0 and "rank" not in row


def test_the_matched_rank_and_its_top_quarter():
    from searchers.stages.matched import rank_of

    assert rank_of(29.0, [30.0, 28.0, 27.0]) == (2, 4, False)  # top quarter of 4: rank 1
    assert rank_of(29.0, [28.0] * 8) == (1, 9, True)
    assert rank_of(29.0, [30.0, 31.0] + [28.0] * 6) == (3, 9, False)  # 9 // 4 = 2
    assert rank_of(29.0, [29.5] + [28.0] * 7) == (2, 9, True)


def test_the_matched_verdict_says_how_much_of_it_is_seed_noise():
    """Nets far apart next to their seed spread: reliability near 1 and the verdict stands
    (P(top quarter) near 1 or 0), unless the searched net sits at the quarter's edge. Nets
    within their seed spread: reliability 0, a first place that a redraw of the noise reverses
    about as often as not, and no verdict."""
    from searchers.stages.matched import noise_line, rank_noise

    apart = [[28.0 + 0.1 * k, 28.02 + 0.1 * k] for k in range(8)]
    best = rank_noise([29.5, 29.52], apart)
    assert best["seed_sd"] == pytest.approx(math.sqrt(2 * 0.01 ** 2))  # each run 0.01 off
    assert best["reliability"] > 0.99 and best["p_top_quarter"] == 1.0
    assert rank_noise([27.5, 27.52], apart)["p_top_quarter"] == 0.0
    assert "the verdict stands" in noise_line(best, 2)
    edge = rank_noise([28.6, 28.62], apart)  # level with the third best (28.61)
    assert edge["reliability"] > 0.99 and 0.2 < edge["p_top_quarter"] < 0.8
    assert "within the seed noise" in noise_line(edge, 2)

    level = [[28.3, 27.7, 28.0 + 0.01 * k] for k in range(8)]  # means 28.00-28.02
    lucky = rank_noise([28.4, 27.8, 28.1], level)  # first of 9, by 0.08 dB: the seeds' luck
    assert lucky["reliability"] == 0.0 and 0.2 < lucky["p_top_quarter"] < 0.8
    assert "no verdict" in noise_line(lucky, 3)

    one = rank_noise([29.0], [[28.0], [28.5]])
    assert all(math.isnan(v) for v in one.values()) and "One retraining seed" in noise_line(
        one, 1)
    assert math.isnan(rank_noise([29.0, math.nan], [[28.0, 28.1]])["se"])


def test_the_pipeline_table_gives_no_verdict_where_the_ranks_are_seed_noise(tmp_path,
                                                                            monkeypatch):
    from types import SimpleNamespace

    from searchers.stages.config import MatchedSection
    from searchers.stages.matched import Matched, rank_noise

    pipeline = SimpleNamespace(
        cfg=SimpleNamespace(matched=MatchedSection(n=8), pipeline=SimpleNamespace(seeds=[0, 1])),
        root=tmp_path, searches=lambda: [SimpleNamespace(label=m, method=m)
                                         for m in ("darts", "random", "nsga2")])
    level = [[28.3, 27.7 + 0.01 * k] for k in range(8)]
    apart = [[28.0 + 0.1 * k, 28.02 + 0.1 * k] for k in range(8)]
    rows = [{"search": label, "space": "x", "latency_ratio": 1.0, "found": 8, "draws": 20,
             "psnr_db": sum(own) / 2, "random_db": [sum(v) / 2 for v in others],
             "corner": False, "rank": rank, "of": 9, "top_quarter": rank <= 2,
             "noise": rank_noise(own, others)}
            for label, own, others, rank in (("darts", [28.4, 27.8], level, 1),
                                             ("random", [29.5, 29.52], apart, 1),
                                             ("nsga2", [28.6, 28.62], apart, 3))]
    monkeypatch.setattr(Matched, "rows", lambda self: rows)
    table = Matched(pipeline).table()
    darts = next(line for line in table.splitlines() if line.startswith("| darts |"))
    random_ = next(line for line in table.splitlines() if line.startswith("| random |"))
    assert "no verdict" in darts and "| 0.00 |" in darts
    assert "no verdict" not in random_ and "| 100% | 1.00 |" in random_
    assert "random | x | 1.00 | 8 of 8 (20) | 29.51 |" in random_ and "| yes |" in random_
    edge = next(line for line in table.splitlines() if line.startswith("| nsga2 |"))
    assert "(within the seed noise)" in edge and "no verdict" not in edge
    tally = next(line for line in table.splitlines() if line.startswith("In the top quarter"))
    assert "darts 1 of 1 (verdicts beyond the seed noise: 0 in, 0 out)" in tally
    assert "random 1 of 1 (verdicts beyond the seed noise: 1 in, 0 out)" in tally
    assert "nsga2 0 of 1 (verdicts beyond the seed noise: 0 in, 0 out)" in tally


def test_the_matched_check_refuses_bad_settings(tmp_path, capsys):
    """In one line, exit 2, nothing written (the bad-input table's checker)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_bad_input import Case, _pipeline, _refused

    from searchers.stages.config import MatchedSection

    for bad, word in (({"n": -1}, "matched.n"), ({"tolerance": 1.5}, "matched.tolerance"),
                      ({"n": 8, "max_draws": 3}, "matched.max_draws")):
        with pytest.raises(ValueError, match=word):
            MatchedSection(**bad)
    _refused(Case("matched: tolerance", _pipeline("matched.n=8", "matched.tolerance=1.5"),
                  ("matched.tolerance", "1.5", "(0, 1)")), tmp_path, capsys)


def test_the_matched_check_takes_the_searches_of_its_search_seeds(tmp_path):
    from searchers.stages.matched import Matched
    from searchers.stages.pipeline import Pipeline
    from searchers.trials.trial_config import zoo_genotype

    args = [*_args(tmp_path, "seeds"), "pipeline.methods=[random,oneshot,darts]",
            "pipeline.search_seeds=[0,1]", "matched.n=8", "matched.search_seeds=[1]"]
    pipeline = Pipeline(load_config(PipelineConfig, None, args), ["test"])
    sel = pipeline.root / "selected"
    sel.mkdir(parents=True)
    for label in ("random_search0", "random_search1", "darts_search1", "oneshot_search0"):
        zoo_genotype("span_ntire2024", 4).save(sel / f"{label}.json")
    spaces = {k: [label for label, _ in v] for k, v in Matched(pipeline).searched().items()}
    assert spaces == {"trials": ["random_search1"], "darts": ["darts_search1"]}
