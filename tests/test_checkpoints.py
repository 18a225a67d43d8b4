"""Checkpoints under real faults: the one before the newest is kept, a torn one is refused with
its name and the last good one, and a retraining SIGKILLed at a random point (checkpoint writes
included) resumes to bit-identical weights (issue 13)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from search_space import Genotype
from searchers.common.checkpoints import load_checkpoint, previous_checkpoint, save_checkpoint
from searchers.common.config import ConfigError
from searchers.training.retrain import main

ROOT = Path(__file__).resolve().parents[1]
TINY = {"scale": 2, "width": 8, "cells": [{"type": "erb", "ops": ["conv3x3"]}]}


ITERATIONS = 16


def _args(root, genotype, name, *extra):
    return [str(genotype), f"run.dir={root}", f"run.name={name}",
            f"optim.iterations={ITERATIONS}",
            "optim.warmup_iterations=2", "data.batch_size=2", "data.patch_size=16",
            "data.val_max_side=32", "run.checkpoint_every=1", "run.val_every=6",
            "run.log_every=1", *extra]


def test_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1}, path)
    assert not previous_checkpoint(path).exists()
    save_checkpoint({"step": 2}, path)
    assert load_checkpoint(path)["step"] == 2
    assert load_checkpoint(previous_checkpoint(path))["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint"])
def test_a_torn_checkpoint_is_refused_naming_it_and_the_last_good_one(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1, "model": {}}, path)
    save_checkpoint({"step": 2, "model": {"w": torch.zeros(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b""}.get(damage, b"x"))
    if damage == "not a checkpoint":
        torch.save([1, 2, 3], path)
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path, keys=("step", "model"))
    msg = str(err.value)
    assert str(path) in msg and str(previous_checkpoint(path)) in msg and "damaged" in msg
    previous_checkpoint(path).unlink()
    with pytest.raises(ConfigError, match="no earlier checkpoint is kept"):
        load_checkpoint(path, keys=("step", "model"))


def test_resume_from_a_torn_checkpoint_exits_2_and_changes_nothing(tmp_path, caplog):
    genotype = Genotype.from_dict(TINY).save(tmp_path / "tiny.json")
    assert main(["--stop-after", "4", *_args(tmp_path, genotype, "torn")]) == 0
    ckpt = tmp_path / "torn" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    before = {p.name: p.read_bytes() for p in (tmp_path / "torn").iterdir() if p.is_file()}
    assert main(["--resume", *_args(tmp_path, genotype, "torn")]) == 2
    assert f"checkpoint {ckpt} is damaged" in caplog.text and "checkpoint.prev.pt" in caplog.text
    after = {p.name: p.read_bytes() for p in (tmp_path / "torn").iterdir() if p.is_file()}
    assert after == before
    os.replace(previous_checkpoint(ckpt), ckpt)  # the fix the message gives
    assert main(["--resume", *_args(tmp_path, genotype, "torn")]) == 0


def test_a_sigkilled_retraining_resumes_to_bit_identical_weights(tmp_path):
    genotype = Genotype.from_dict(TINY).save(tmp_path / "tiny.json")
    script = str(ROOT / "searchers" / "retrain.py")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    whole = subprocess.run([sys.executable, script, *_args(tmp_path, genotype, "whole")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert whole.returncode == 0, whole.stderr[-2000:]  # the same process settings as the cut
    cmd = [sys.executable, script, *_args(tmp_path, genotype, "cut")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run = tmp_path / "cut"
    kill_at = random.Random().randint(2, ITERATIONS - 8)  # a logged step; checkpoints each step
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        log = run / "log.csv"
        if log.exists() and len(log.read_text().splitlines()) > kill_at:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the retraining ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run / "model.pt").exists()
    done = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    a = torch.load(tmp_path / "whole" / "model.pt")
    b = torch.load(run / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not [p.name for p in run.iterdir() if p.name.endswith((".tmp", ".new", ".prev"))]
