"""Retraining: resume is exact (with KD too), deployment matches, bad input is refused."""

from __future__ import annotations

import copy
import csv
import json
import shutil

import pytest
import torch
import yaml

from search_space import Genotype, build_model
from searchers.training.config import RetrainOptim, lr_lambda
from searchers.training.loop import TrainStep, loss_fn
from searchers.training.retrain import main
from searchers.training.teacher import load_teacher

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


# ---------------------------------------------------------------- knowledge distillation


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A tiny x2 run trained for 2 iterations: the teacher of the KD tests."""
    root = tmp_path_factory.mktemp("teacher")
    genotype = Genotype.from_dict(TINY).save(root / "tiny.json")
    assert main([str(genotype), f"run.dir={root}", "run.name=teacher", "optim.iterations=2",
                 "optim.warmup_iterations=1", "data.batch_size=2", "data.patch_size=16",
                 "data.val_max_side=32", "run.val_every=2", "optim.ema=0.9",
                 "run.seed=7"]) == 0
    return root / "teacher"


def _grads(model, teacher=None, kd_weight=0.0):
    """The gradients of one TrainStep on a fixed batch (the model is left unchanged)."""
    torch.manual_seed(1)
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    model = copy.deepcopy(model).requires_grad_(True)
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.0), teacher=teacher,
                     kd_weight=kd_weight)
    step(lr, hr)
    return [p.grad.clone() for p in model.parameters()], step.last_kd


def test_kd_changes_the_gradient_and_is_zero_for_the_teacher_itself(teacher_run):
    teacher = load_teacher(str(teacher_run))
    torch.manual_seed(0)
    student = build_model(Genotype.from_dict(TINY))
    plain, kd_none = _grads(student)
    zero, kd_zero = _grads(student, teacher.model, 0.0)
    half, kd_half = _grads(student, teacher.model, 0.5)
    assert kd_none is None and kd_zero == pytest.approx(kd_half) and kd_half > 1e-4
    assert all(torch.equal(a, b) for a, b in zip(plain, zero, strict=True))  # weight 0: no effect
    assert not all(torch.allclose(a, b) for a, b in zip(plain, half, strict=True))
    # the student is the teacher: the KD term and its gradient vanish
    same_plain, _ = _grads(teacher.model)
    same_kd, kd_same = _grads(teacher.model, teacher.model, 1.0)
    assert kd_same == 0.0
    assert all(torch.equal(a, b) for a, b in zip(same_plain, same_kd, strict=True))
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_every_form_of_a_run_is_the_same_teacher(teacher_run, tmp_path):
    want = load_teacher(str(teacher_run))
    assert want.source.endswith("deployed.pt") and want.genotype.is_deployed
    undeployed = tmp_path / "undeployed"
    shutil.copytree(teacher_run, undeployed)
    (undeployed / "deployed.pt").unlink()
    for spec in (teacher_run / "checkpoint.pt", teacher_run / "model.pt",
                 teacher_run / "deployed.pt", undeployed):
        got = load_teacher(str(spec))
        assert (got.weights_sha256, got.genotype) == (want.weights_sha256, want.genotype), spec
    assert load_teacher(str(undeployed)).source.endswith("model.pt")


def test_resume_with_kd_is_exact_and_the_run_records_the_teacher(tmp_path, genotype_file,
                                                                  teacher_run):
    kd = ["--teacher", str(teacher_run), "kd.weight=0.5"]
    assert main(_args(tmp_path, genotype_file, "run.name=full", *kd)) == 0
    assert main(["--stop-after", "3", *_args(tmp_path, genotype_file, "run.name=cut", *kd)]) == 0
    assert main(["--resume", *_args(tmp_path, genotype_file, "run.name=cut", *kd)]) == 0
    a = torch.load(tmp_path / "full" / "model.pt")
    b = torch.load(tmp_path / "cut" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sha = load_teacher(str(teacher_run)).weights_sha256
    cfg = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    assert cfg["kd"] == {"teacher": str(teacher_run), "weight": 0.5, "init": "none",
                         "init_patches": 16}
    recorded = json.loads((tmp_path / "cut" / "teacher.json").read_text())
    assert recorded["weights_sha256"] == sha and recorded["path"] == str(teacher_run)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt",
                      weights_only=True)["teacher"]["weights_sha256"] == sha
    with (tmp_path / "cut" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(float(r["loss_kd"]) > 0 for r in rows)
    # the term reaches the weights: kd.weight=0 trains exactly as no teacher, 0.5 does not
    assert main(_args(tmp_path, genotype_file, "run.name=plain")) == 0
    assert main(_args(tmp_path, genotype_file, "run.name=zero", *kd[:2], "kd.weight=0")) == 0
    plain = torch.load(tmp_path / "plain" / "model.pt")
    zero = torch.load(tmp_path / "zero" / "model.pt")
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert not all(torch.equal(plain[k], a[k]) for k in plain)
    with (tmp_path / "plain" / "log.csv").open() as f:
        assert "loss_kd" not in next(csv.reader(f))


def test_resume_refuses_another_teacher(tmp_path, genotype_file, teacher_run, caplog):
    kd = ["--teacher", str(teacher_run)]
    assert main(["--stop-after", "2", *_args(tmp_path, genotype_file, "run.name=x", *kd)]) == 0
    other = tmp_path / "other_teacher"
    shutil.copytree(teacher_run, other)
    weights = torch.load(other / "deployed.pt")
    first = next(iter(weights))
    weights[first] = weights[first] + 0.01
    torch.save(weights, other / "deployed.pt")
    assert main(["--resume", *_args(tmp_path, genotype_file, "run.name=x",
                                    "--teacher", str(other))]) == 2
    assert str(teacher_run) in caplog.text and str(other) in caplog.text
    assert "sha256" in caplog.text
    caplog.clear()
    assert main(["--resume", *_args(tmp_path, genotype_file, "run.name=x")]) == 2
    assert "not without a teacher" in caplog.text and f"--teacher {teacher_run}" in caplog.text
    # the refused resumes left the run's record alone
    cfg = yaml.safe_load((tmp_path / "x" / "config.yaml").read_text())
    assert cfg["kd"]["teacher"] == str(teacher_run)
    assert "resumed" not in (tmp_path / "x" / "command.txt").read_text()


def _x3_checkpoint(tmp_path):
    g = Genotype.from_dict({**TINY, "scale": 3})
    path = tmp_path / "x3.pt"
    torch.save({"genotype": g.to_json(indent=None), "model": build_model(g).state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("teacher, extra, message", [
    (_x3_checkpoint, [], "is a x3 net but the net being retrained is x2"),
    (lambda tmp: "/no/such/teacher", [], "'/no/such/teacher' does not exist; pass a finished "
                                         "run folder"),
    (lambda tmp: str(tmp), [], "is a folder without deployed.pt"),
    (lambda tmp: str(tmp / "tiny.json"), [], "tiny.json': weights: cannot read"),
    (None, ["kd.weight=0.5"], "weight is 0.5 but there is no teacher"),
    (None, ["kd.weight=-1", "kd.teacher=x"], "weight: got -1.0"),
    (None, ["kd.init=memsr"], "init is 'memsr' but there is no teacher"),
    (None, ["kd.init=svd"], "kd.init"),
    (lambda tmp: "unused", ["kd.init_patches=0"], "init_patches: got 0"),
])
def test_bad_teacher_is_refused_before_the_run_folder_is_written(tmp_path, genotype_file,
                                                                 caplog, teacher, extra,
                                                                 message):
    extra = [*extra, *(["--teacher", teacher(tmp_path)] if teacher else [])]
    assert main(_args(tmp_path, genotype_file, *extra)) == 2
    assert message in caplog.text
    assert not list(tmp_path.rglob("config.yaml"))


def test_run_label_names_file_runs_after_source_and_content(tmp_path):
    """Two different ``genotype.json`` files get two run folders; the same genotype gets the
    same one wherever its file is; a zoo net keeps its name (issue 12, 5b)."""
    from search_space.zoo import ZOO
    from searchers.training.retrain import run_label

    a, b = tmp_path / "darts" / "a" / "genotype.json", tmp_path / "darts" / "b" / "genotype.json"
    for path, name in ((a, "rlfn_ntire"), (b, "span_ntire2024")):
        path.parent.mkdir(parents=True)
        ZOO[name].save(path)
    label_a = run_label(str(a), "genotype", ZOO["rlfn_ntire"])
    label_b = run_label(str(b), "genotype", ZOO["span_ntire2024"])
    assert label_a.startswith("a-") and label_b.startswith("b-") and len(label_a) == 10
    copy = tmp_path / "mine.json"
    ZOO["rlfn_ntire"].save(copy)
    assert run_label(str(copy), "mine", ZOO["rlfn_ntire"]) == "mine-" + label_a[2:]
    assert run_label("rlfn_ntire", "rlfn_ntire", ZOO["rlfn_ntire"]) == "rlfn_ntire"
