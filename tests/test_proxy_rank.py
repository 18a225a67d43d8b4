"""``python -m searchers.tools.proxy_rank``: each proxy's rank correlation with a long
training, on tiny settings: the short-training proxies, successive halving replayed on recorded
curves, the supernet proxy, the resumable cache split over processes."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import optuna
import pytest
import torch
from markdown_tables import table_rows

from searchers.tools.proxy_rank import halving_scores, main, top_precision

SPACE = ["space.scale=2", "space.widths=[8]", "space.cells_min=1", "space.cells_max=2",
         "space.conv_candidates=[conv3x3,sep_conv3x3]", "space.attention_candidates=[none,pa]",
         "proxy.steps=2", "proxy.batch_size=2", "proxy.patch_size=54", "proxy.val_max_side=24",
         "measure.lr_size=16", "measure.runs=1", "measure.warmup=0"]


def test_the_table_holds_what_was_trained(capsys):
    from proxies.measure.complexity import count_params
    from search_space import build_model
    from searchers.common.config import load_config
    from searchers.differentiable.latency_table import kendall, spearman
    from searchers.trials.config import OptunaConfig
    from searchers.trials.trial import proxy_psnr, sample_genotype, study_patch_size

    assert main(["--archs", "3", "--factor", "2", *SPACE]) == 0
    out = capsys.readouterr().out
    assert "Truth: 4 steps, the mean of 1 seed(s), " in out and "; 3 nets." in out
    cfg = load_config(OptunaConfig, None, SPACE)  # the nets: 3 random nets, the study's seed
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=cfg.study.seed))
    nets = []
    for _ in range(3):
        trial = study.ask()
        nets.append(sample_genotype(trial, cfg.space))
        study.tell(trial, 0.0)
    rows = table_rows(out, "| net |")
    assert [r[:4] for r in rows] == [[f"random {i}", f"{count_params(build_model(g)):,}", "8",
                                      "/".join(c.type for c in g.cells)]
                                     for i, g in enumerate(nets)]
    short, long = [float(r[4]) for r in rows], [float(r[5]) for r in rows]
    torch.manual_seed(0)
    first = proxy_psnr(build_model(nets[0]), nets[0], replace(cfg.proxy, steps=2, seed=0),
                       torch.device("cpu"), study_patch_size(cfg.space, cfg.proxy, []))
    assert short[0] == pytest.approx(first, abs=6e-4)  # the 2-step proxy, as trained here
    baseline, proxy = table_rows(out, "| proxy |")
    params = [count_params(build_model(g)) for g in nets]  # the zero-cost baseline
    assert baseline[:5] == ["params (no training)", "3", "0", "0.0", "0"]
    assert float(baseline[5]) == pytest.approx(spearman(params, long), abs=6e-4)
    assert proxy[:3] == ["2 steps", "3", "2"] and float(proxy[3]) >= 0
    assert proxy[4].startswith("1/")
    assert float(proxy[5]) == pytest.approx(spearman(short, long), abs=6e-4)
    assert float(proxy[6]) == pytest.approx(kendall(short, long), abs=6e-4)
    assert float(proxy[7]) == top_precision(short, long)


def test_seed_means_halving_and_two_truth_seeds_resume_from_the_cache(tmp_path, capsys):
    cache = tmp_path / "runs.jsonl"
    run = ["--archs", "2", "--factor", "2", "--seeds", "2", "--long-seeds", "2", "--halving",
           "--zoo", "rlfn_ntire", "--cache", str(cache), *SPACE, "proxy.halving_min_steps=1",
           "proxy.halving_eta=2", "proxy.halving_batch=2"]
    assert main([*run, "--part", "1/2"]) == 0  # one of two processes: the table waits
    assert "trainings still to run" in capsys.readouterr().out
    assert main([*run, "--part", "0/2"]) == 0  # the other part completes it
    out = capsys.readouterr().out
    names = [r[0] for r in table_rows(out, "| proxy |")]
    assert "the truth's own seeds 0 and 1 agree with Spearman " in out
    assert names == ["params (no training)", "2 steps", "1 steps x 2 seeds",
                     "2 steps x 2 seeds", "4 steps", "halving 1/2"]
    records = [json.loads(line) for line in cache.read_text().splitlines()]
    # per net: 1 step (seeds 0, 1), 2 steps (seeds 0, 1), 4 steps x 2 truth seeds (0 = also
    # the 4-step proxy, 1), one halving curve: nothing twice
    assert len(records) == 3 * 7
    assert len({(r["genotype"], r["kind"], r["steps"], r["seed"]) for r in records}) == 21
    truth = {r["genotype"]: [] for r in records}
    for r in records:
        if r["kind"] == "train" and r["steps"] == 4:
            truth[r["genotype"]].append(r["psnr_db"])
    rows = table_rows(out, "| net |")
    assert sorted(float(r[-1]) for r in rows) == pytest.approx(
        sorted(sum(v) / 2 for v in truth.values()), abs=6e-4)
    from searchers.differentiable.latency_table import spearman

    by_seed = {g: {r["seed"]: r["psnr_db"] for r in records if r["genotype"] == g
                   and r["kind"] == "train" and r["steps"] == 4} for g in truth}
    ceiling = spearman([v[0] for v in by_seed.values()], [v[1] for v in by_seed.values()])
    assert f"agree with Spearman {ceiling:.3f}," in out
    curves = [r for r in records if r["kind"] == "curve"]
    assert all(len(c["psnrs"]) == 2 and c["psnr_db"] == c["psnrs"][-1] for c in curves)
    assert main(run) == 0  # everything cached: the table again, no training
    assert len(cache.read_text().splitlines()) == len(records)


def test_halving_replayed_keeps_the_best_of_each_bracket():
    curves = [[20.0, 25.0], [22.0, 23.0], [21.0, 30.0], [10.0, 40.0]]
    score, cost = halving_scores(curves, [1, 3], batch=4, eta=2, seed=0)
    # rung 0 keeps the best 2 of 4 by PSNR (nets 1 and 2), who then reach rung 1
    assert [c for c in cost] == [1, 3, 3, 1]
    assert score[2] > score[1] > score[0] > score[3]
    assert score[1] == 1023.0 and score[0] == 20.0
    # one bracket per net: everyone reaches the top rung
    score, cost = halving_scores(curves, [1, 3], batch=1, eta=2, seed=0)
    assert cost == [3, 3, 3, 3] and score == [1025.0, 1023.0, 1030.0, 1040.0]
    assert halving_scores([[math.nan, 1.0], [5.0, 6.0]], [1, 2], 2, 2)[0][0] < 0


def test_top_precision():
    truth = [float(i) for i in range(20)]  # top 10 %: the 2 best
    assert top_precision(truth, truth) == 1.0
    assert top_precision([-t for t in truth], truth) == 0.0
    assert top_precision([*truth[:18], 19.0, 0.5], truth) == 0.5
    assert top_precision([math.nan, *truth[1:]], truth) == 1.0


def test_the_supernet_proxy_scores_the_nets_of_its_space(tmp_path, capsys):
    from searchers.sharing.train import main as train_supernet

    run = tmp_path / "sn"
    assert train_supernet([f"run.dir={tmp_path}", "run.name=sn", "space.scale=2",
                           "space.width=8", "space.num_cells=2", "space.widths=[4,8]",
                           "space.cells_min=1", "space.cell_types=[rfdb,erb]",
                           "space.conv_candidates=[conv3x3,sep_conv3x3]",
                           "space.attention_candidates=[none,pa]", "data.patch_size=24",
                           "data.batch_size=2", "train.steps=2", "run.plots=false",
                           "run.device=cpu"]) == 0
    assert main(["--archs", "3", "--factor", "2", "--supernet", str(run), "--finetune", "0,1",
                 "--supernet-seconds", "6", "--draw", "supernet", "--zoo", "rlfn_ntire",
                 "--seeds", "2", "--seed-mean-only", *SPACE]) == 0
    out = capsys.readouterr().out
    assert "1 of 4 nets" not in out and "3 of 4 nets lie in its space" in out
    proxies = {r[0]: r for r in table_rows(out, "| proxy |")}
    assert list(proxies) == ["params (no training)", "2 steps", "1 steps x 2 seeds",
                             "supernet K=0", "supernet K=1"]
    assert "The nets in the supernet's space (3 nets)" in out
    assert proxies["supernet K=0"][1] == "3" and proxies["supernet K=1"][2] == "1"
    assert float(proxies["supernet K=0"][3]) >= 2.0  # 6 s of supernet over 3 nets, at least
    rows = table_rows(out, "| net |")
    assert rows[0][0] == "rlfn_ntire" and rows[0][-3:-1] == ["n/a", "n/a"]
    assert all(r[-2] != "n/a" for r in rows[1:])
    assert main(["--draw", "supernet"]) == 2  # no supernet named: one line, exit 2
