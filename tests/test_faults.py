"""Faults for real: each test starts the real command in a subprocess, SIGKILLs it at a random
point chosen from its observed progress (database rows, files), re-runs the same command and
checks the end state: an Optuna worker and a DARTS search (the pipeline's kill test lives in
tests/test_pipeline.py).

The kill points are drawn from a seed: a fresh one per test, or ``SRNAS_KILL_SEED`` to replay
the points of a failed run, whose message ends with the seed (``SRNAS_KILL_SEED=...``). The
same seed draws the same points; where the kill lands within them still depends on timing."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
ATTEMPTS = 3  # random kill points tried before a test gives up on landing one
KILL_SEED = "SRNAS_KILL_SEED"  # the seed of the kill points: set it to replay a failed run


def kill_seed() -> int:
    """The seed of a test's kill points: ``SRNAS_KILL_SEED`` if set, else a fresh one."""
    given = os.environ.get(KILL_SEED, "").strip()
    if not given:
        return random.SystemRandom().randrange(2**32)
    try:
        return int(given)
    except ValueError:
        pytest.fail(f"{KILL_SEED}: got {given!r}; give the integer seed a failed kill test "
                    "printed, or unset it for a fresh one", pytrace=False)


@contextlib.contextmanager
def kill_points() -> Iterator[random.Random]:
    """The random source of a test's kill points (:func:`kill_seed`); a failure inside ends
    with the seed and how to replay it."""
    seed = kill_seed()
    hint = f"kill points drawn from seed {seed}; replay them with {KILL_SEED}={seed}"
    print(hint)
    try:
        yield random.Random(seed)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{hint}") from exc
    except pytest.fail.Exception as exc:
        pytest.fail(f"{exc.msg}\n{hint}")


def _kill_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 120) -> bool:
    """Start ``cmd``, poll ``ready`` every millisecond or so and SIGKILL the process as soon as
    it holds; False if the process ended (or the timeout passed) first."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                proc.send_signal(signal.SIGKILL)
                return proc.wait(timeout=30) == -signal.SIGKILL
            time.sleep(0.001)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _run(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# -- 1. Optuna: a worker killed while a trial runs ---------------------------------------------

N_TRIALS = 4


def _optuna_cmd(run_dir: Path, grace_s: int) -> list[str]:
    return [sys.executable, str(ROOT / "searchers" / "optuna_search.py"),
            f"run.dir={run_dir}", "space.scale=2", "space.widths=[8]", "space.cells_min=1",
            "space.cells_max=2", "space.conv_candidates=[conv3x3,sep_conv3x3]",
            "space.attention_candidates=[none,pa]", "proxy.steps=40", "proxy.batch_size=2",
            "proxy.patch_size=54", "proxy.val_max_side=24", "measure.lr_size=16",
            "measure.runs=1", "measure.warmup=0", "study.enqueue_zoo=false",
            "study.sampler=random", f"study.n_trials={N_TRIALS}", "study.heartbeat_s=1",
            f"study.grace_s={grace_s}", "study.retries=1"]


def _states(db: Path) -> list[tuple[int, str]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return list(con.execute("SELECT number, state FROM trials ORDER BY number"))
    except sqlite3.Error:  # the schema is being created, or the file is locked for a write
        return []


@pytest.mark.parametrize("when", ["at_once", "mid_trial"])
def test_a_killed_optuna_worker_leaves_no_trial_running_and_n_trials_count(tmp_path, when):
    """SIGKILL the worker while a trial is RUNNING (at least one COMPLETE): ``at_once`` kills
    the moment the trial appears (before or just after it got its heartbeat), then waits past
    the grace period; ``mid_trial`` kills a random time into the trial and re-runs at once
    with a grace period of 60 s, so only the dead-owner check can fail the trial in time.
    The re-run ends with exactly N_TRIALS counted trials, all COMPLETE, none RUNNING; killed
    mid-trial (its architecture sampled), it evaluates the same architectures as an
    uninterrupted run (the killed one retried with its parameters, the later draws seeded as
    before)."""
    with kill_points() as rng:
        _kill_an_optuna_worker(tmp_path, when, rng)


def _kill_an_optuna_worker(tmp_path: Path, when: str, rng: random.Random) -> None:
    grace_s = 2 if when == "at_once" else 60
    for attempt in range(ATTEMPTS):
        run_dir = tmp_path / f"try{attempt}"
        db = run_dir / "default" / "study.db"
        need_complete = rng.randint(1, N_TRIALS - 1)
        delay = 0.0 if when == "at_once" else rng.uniform(0.1, 0.6)  # sampled by then
        seen: dict[int, float] = {}

        def ready() -> bool:
            states = _states(db)  # noqa: B023 -- read while this attempt runs
            running = [n for n, s in states if s == "RUNNING"]
            for n in running:
                seen.setdefault(n, time.monotonic())  # noqa: B023
            done = sum(s == "COMPLETE" for _, s in states)
            return done >= need_complete and any(  # noqa: B023
                time.monotonic() - seen[n] >= delay for n in running)  # noqa: B023

        cmd = _optuna_cmd(run_dir, grace_s)
        if _kill_when(cmd, ready) and "RUNNING" in {s for _, s in _states(db)}:
            break  # the kill landed while a trial ran (the dead process changes nothing)
    else:
        pytest.fail(f"{ATTEMPTS} attempts: the study finished, or the running trial "
                    "completed, before the kill; the trials are too short to be killed")
    killed = [n for n, s in _states(db) if s == "RUNNING"]
    if when == "at_once":
        time.sleep(grace_s + 1)  # past the grace period: the heartbeat, if any, is stale
    t0 = time.monotonic()
    _run(cmd)
    assert time.monotonic() - t0 < grace_s + 30  # no wait for the grace period
    import optuna

    from searchers.trials.config import StudyConfig
    from searchers.trials.storage import make_storage
    from searchers.trials.study import finished_trials

    storage = make_storage(f"sqlite:///{db}", StudyConfig(heartbeat_s=1, grace_s=grace_s))
    study = optuna.load_study(study_name="srnas", storage=storage)
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and "WAITING" not in states, states
    assert states.count("COMPLETE") == N_TRIALS == finished_trials(study), states
    assert [t.number for t in trials if t.state.name == "FAIL"] == killed, states
    if when == "at_once":
        return  # the same architectures as an uninterrupted run: checked mid_trial, and for an
        # attempt killed mid-sampling by tests/test_optuna_search.py (its retry redraws them)
    whole = tmp_path / "whole"
    _run(_optuna_cmd(whole, grace_s))
    ref = optuna.load_study(study_name="srnas", storage=f"sqlite:///{whole}/default/study.db")
    genotypes = sorted(t.user_attrs["genotype"] for t in trials if t.state.name == "COMPLETE")
    assert genotypes == sorted(t.user_attrs["genotype"] for t in ref.get_trials())


# -- 2. DARTS: killed at a random step, checkpoint writes included -----------------------------

DARTS_STEPS = 16


def _darts_cmd(run_dir: Path, name: str, lut: Path) -> list[str]:
    return [sys.executable, str(ROOT / "searchers" / "darts.py"), f"run.dir={run_dir}",
            f"run.name={name}", "space.scale=2", "space.width=8", "space.num_cells=2",
            "space.conv_candidates=[conv3x3,sep_conv3x3,rep_conv3x3]",
            "space.attention_candidates=[none,pa]", "data.patch_size=16", "data.batch_size=2",
            f"search.steps={DARTS_STEPS}", "search.warmup_steps=1", "run.checkpoint_every=1",
            "run.log_every=1", "hardware.lr_size=16", "hardware.runs=2", "hardware.warmup=0",
            f"hardware.cache_dir={lut}", "profile.enabled=false", "run.plots=false"]


def test_a_sigkilled_darts_search_resumes_to_the_same_genotype(tmp_path):
    """SIGKILL at a random step, inside a checkpoint write where the poll catches one (a
    checkpoint is written every step), then ``--resume``: the same genotype, top-k and alphas
    as an uninterrupted run with the same seed (the hardware table cached by the first)."""
    with kill_points() as rng:
        _kill_a_darts_search(tmp_path, rng)


def _kill_a_darts_search(tmp_path: Path, rng: random.Random) -> None:
    import torch

    lut = tmp_path / "lut"
    _run(_darts_cmd(tmp_path, "whole", lut))
    run = tmp_path / "cut"
    log = run / "log.csv"
    kill_at = rng.randint(2, DARTS_STEPS - 4)
    caught = {"mid_write": False}

    def ready() -> bool:
        try:
            rows = len(log.read_text().splitlines()) - 1
        except FileNotFoundError:
            return False
        writing = any(run.glob(".checkpoint.pt.*.tmp"))  # the atomic writer's temporary
        caught["mid_write"] = rows >= kill_at and writing
        return rows >= kill_at + 2 or caught["mid_write"]

    cmd = _darts_cmd(tmp_path, "cut", lut)
    assert _kill_when(cmd, ready), "the DARTS search ended before it could be killed"
    assert not (run / "genotype.json").exists()
    print(f"DARTS killed after step {kill_at}, mid-write: {caught['mid_write']}")
    _run([*cmd, "--resume"])
    assert (run / "genotype.json").read_text() == (tmp_path / "whole" / "genotype.json").read_text()
    for k in (0, 1, 2):
        name = f"top_k/genotype_{k}.json"
        if (tmp_path / "whole" / name).exists():
            assert (run / name).read_text() == (tmp_path / "whole" / name).read_text()
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [int(line.split(",")[0]) for line in log.read_text().splitlines()[1:]]
    assert steps == list(range(1, DARTS_STEPS + 1))  # each step logged once
    assert not list(run.glob(".checkpoint.pt.*"))  # the killed writer's temp file is gone

