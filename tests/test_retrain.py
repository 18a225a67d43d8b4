"""Retraining: resume is exact, deployment matches, bad input is refused."""

from __future__ import annotations

import json

import pytest
import torch

from search_space import Genotype
from searchers.retrain import RetrainOptim, loss_fn, lr_lambda, main

TINY = {"scale": 2, "width": 8, "cells": [
    {"type": "erb", "ops": ["rep_conv3x3", "ecb3x3"],
     "attention": {"type": "hfab", "channels": 4, "op": "rep_conv3x3", "bn": True}}]}


def _args(tmp_path, genotype, *extra):
    return [str(genotype), f"run.dir={tmp_path}", "optim.iterations=6", "optim.warmup_iterations=2",
            "data.batch_size=2", "data.patch_size=16", "data.val_max_side=32",
            "run.checkpoint_every=2", "run.val_every=3", "run.log_every=1", "optim.ema=0.9",
            *extra]


@pytest.fixture
def genotype_file(tmp_path):
    return Genotype.from_dict(TINY).save(tmp_path / "tiny.json")


def test_resume_gives_the_same_weights_and_deployment_matches(tmp_path, genotype_file):
    assert main(_args(tmp_path, genotype_file, "run.name=full")) == 0
    assert main(["--stop-after", "3", *_args(tmp_path, genotype_file, "run.name=cut")]) == 0
    assert not (tmp_path / "cut" / "model.pt").exists()
    assert main(["--resume", *_args(tmp_path, genotype_file, "run.name=cut")]) == 0
    a = torch.load(tmp_path / "full" / "model.pt")
    b = torch.load(tmp_path / "cut" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    deploy = json.loads((tmp_path / "cut" / "deploy.json").read_text())
    assert deploy["equivalent"] and deploy["max_abs_diff_0_1"] <= 1e-4
    assert deploy["psnr_y_db_deployed"] == pytest.approx(deploy["psnr_y_db_trained"], abs=1e-3)
    deployed = Genotype.load(tmp_path / "cut" / "deployed_genotype.json")
    assert deployed == Genotype.from_dict(TINY).deployed()
    for name in ("training.html", "log.csv", "config.yaml", "command.txt", "deployed.pt"):
        assert (tmp_path / "cut" / name).exists()


def test_checkpoint_of_another_genotype_names_both(tmp_path, genotype_file, caplog):
    assert main(["--stop-after", "2", *_args(tmp_path, genotype_file, "run.name=x")]) == 0
    other = Genotype.from_dict({**TINY, "width": 12}).save(tmp_path / "other.json")
    assert main(["--resume", *_args(tmp_path, other, "run.name=x")]) == 2
    assert '"width": 8' in caplog.text and '"width": 12' in caplog.text


@pytest.mark.parametrize("extra, message", [
    (["data.scale=4"], "data.scale is 4 but the genotype is x2"),
    (["data.val=/no/such/benchmark"], "/no/such/benchmark"),
    (["optim.loss=huber"], "charbonnier"),
    (["optim.ema=1.5"], "ema"),
])
def test_bad_input(tmp_path, genotype_file, caplog, extra, message):
    assert main(_args(tmp_path, genotype_file, *extra)) == 2
    assert message in caplog.text


def test_losses_and_schedules():
    sr, hr = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    assert float(loss_fn("l1", 1e-3)(sr, hr)) == 1.0
    assert float(loss_fn("l2", 1e-3)(sr, hr)) == 1.0
    assert float(loss_fn("charbonnier", 1e-3)(sr, hr)) == pytest.approx(1.0, abs=1e-6)
    cos = lr_lambda(RetrainOptim(iterations=100, warmup_iterations=10))
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(10) == pytest.approx(1.0) and cos(100) == pytest.approx(0.01)
    step = lr_lambda(RetrainOptim(iterations=100, warmup_iterations=0, schedule="step",
                                  step_size=30, gamma=0.5))
    assert [step(i) for i in (0, 29, 30, 60)] == [1.0, 1.0, 0.5, 0.25]
