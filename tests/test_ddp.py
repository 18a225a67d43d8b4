"""Retraining on several processes (torchrun, DistributedDataParallel, Gloo on the CPU).

Each rank crops its share of the batch one process draws from the same seeded stream
(``sample_batch(part=...)``), so a 2-process run trains on exactly the single-process batches,
and its losses differ only by float32 rounding (the per-rank means averaged, the gradients
all-reduced): TOL below.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from search_space import Genotype
from searchers.training.retrain import main

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN_TIMEOUT_S = 60
# Same batches, same maths: only float32 summation order differs (the two per-rank means
# averaged in float64, the gradients all-reduced), measured at 4e-8 relative over the 8 steps;
# 1e-6 leaves 25x room, while any other patch split moves the loss by > 1e-2.
TOL = 1e-6
TINY = {"scale": 2, "width": 8, "cells": [  # no batch norm: its statistics are per rank
    {"type": "erb", "ops": ["conv3x3", "rep_conv3x3"], "attention": {"type": "none"}}]}


def _args(root, genotype, name, *extra):
    return [str(genotype), f"run.dir={root}", f"run.name={name}", "optim.iterations=8",
            "optim.warmup_iterations=2", "data.batch_size=4", "data.patch_size=16",
            "data.val_max_side=32", "run.checkpoint_every=2", "run.val_every=4",
            "run.log_every=1", "optim.ema=0.9", "run.device=cpu", *extra]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(root, args, nproc=2, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--nnodes=1", "--master-addr=127.0.0.1", f"--master-port={_free_port()}",
           "--monitor-interval=0.1",
           str(ROOT / "searchers" / "retrain.py"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SRNAS_ISOLATION": "on",
           "SRNAS_LOCK_DIR": str(root / "locks"), "TMPDIR": str(root)}  # torchrun's logs too
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=TORCHRUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _losses(run):
    with (run / "log.csv").open() as f:
        return {int(r["step"]): float(r["loss_train"]) for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A single-process run, and a 2-process one stopped after step 3 (checkpoint at 2),
    resumed, SIGKILLed at step 3 while both ranks wait in their joint training section (this
    fixture holds the host's measurement lock), and resumed again to the end."""
    from proxies.measure.isolation import measuring

    root = tmp_path_factory.mktemp("ddp")
    genotype = Genotype.from_dict(TINY).save(root / "tiny.json")
    assert main(_args(root, genotype, "single")) == 0
    _torchrun(root, ["--stop-after", "3", *_args(root, genotype, "cut")])
    stopped = _losses(root / "cut")
    assert max(stopped) == 3 and not (root / "cut" / "model.pt").exists()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SRNAS_LOCK_DIR", str(root / "locks"))
        with measuring(timeout=10):
            proc = _torchrun(root, ["--resume", *_args(root, genotype, "cut")], wait=False)
            try:
                deadline = time.monotonic() + TORCHRUN_TIMEOUT_S
                while (time.monotonic() < deadline and proc.poll() is None
                       and max(_losses(root / "cut")) > 2):  # rank 0 truncates to step 2
                    time.sleep(0.1)
                time.sleep(0.5)  # both ranks wait at step 3
                alive = proc.poll() is None
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    assert alive, proc.stdout.read() if proc.stdout else ""
    killed = _losses(root / "cut")
    assert max(killed) == 2 and not (root / "cut" / "model.pt").exists()
    _torchrun(root, ["--resume", *_args(root, genotype, "cut")])
    return root, genotype


def test_two_processes_train_on_the_single_process_batches(runs):
    """The 2-process run, stopped, killed and resumed twice, trained on exactly the
    single-process batches: the same losses to float32 rounding, the same weights."""
    root, _ = runs
    one, two = _losses(root / "single"), _losses(root / "cut")
    assert list(two) == list(range(1, 9))  # rank 0 alone wrote the log, once per step
    assert two == pytest.approx(one, rel=TOL)
    assert len(set(one.values())) == len(one)  # the curve moves: the comparison can fail
    cfg = yaml.safe_load((root / "cut" / "config.yaml").read_text())
    assert cfg["run"]["world_size"] == 2
    assert yaml.safe_load((root / "single" / "config.yaml").read_text())["run"][
        "world_size"] == 1
    ckpt = torch.load(root / "cut" / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and not any(k.startswith("module.") for k in ckpt["model"])
    a, b = torch.load(root / "single" / "model.pt"), torch.load(root / "cut" / "model.pt")
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5) for k in a)
    assert (root / "cut" / "deployed.pt").exists()


def test_killed_two_process_run_resumes_and_records_each_resume(runs):
    root, _ = runs
    assert (root / "cut" / "command.txt").read_text().count("# resumed with") == 2


def test_a_batch_that_does_not_split_is_refused(runs):
    from searchers.common.config import ConfigError, load_config
    from searchers.training.config import RetrainConfig
    from searchers.training.distributed import Dist
    from searchers.training.trainer import Retrainer

    root, genotype = runs
    cfg = load_config(RetrainConfig, None, ["data.batch_size=3"])
    with pytest.raises(ConfigError, match="data.batch_size is 3, the global batch, but it "
                       "does not split among 2 processes; set data.batch_size to a multiple "
                       "of 2"):
        Retrainer(cfg, Genotype.load(genotype), root / "odd", Dist(rank=0, world_size=2))


def test_rank_shares_are_the_single_process_batch():
    import numpy as np

    from proxies.data.specs import dataset_from_spec

    data = dataset_from_spec("default:train", 2, patch_size=16)
    whole_rng, rngs = np.random.default_rng(3), [np.random.default_rng(3) for _ in range(2)]
    lr, hr = data.random_patches(4, 16, whole_rng)
    parts = [data.random_patches(4, 16, rng, keep=slice(2 * r, 2 * r + 2))
             for r, rng in enumerate(rngs)]
    assert torch.equal(torch.cat([p[0] for p in parts]), lr)
    assert torch.equal(torch.cat([p[1] for p in parts]), hr)
    assert all(rng.bit_generator.state == whole_rng.bit_generator.state for rng in rngs)


def test_torchrun_environment(monkeypatch):
    from searchers.training.distributed import Dist, DistributedError, from_env

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert from_env() == Dist()
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: a plain run
    monkeypatch.setenv("RANK", "0")
    assert from_env() == Dist() and not from_env().enabled
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert from_env() == Dist(rank=1, world_size=2, local_rank=1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(DistributedError, match=r"RANK=2 is not in \[0, WORLD_SIZE=2\)"):
        from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(DistributedError, match="RANK='x'"):
        from_env()
