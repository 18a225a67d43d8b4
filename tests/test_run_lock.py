"""The run-folder lock (``results.run_lock``, issue 28): one process at a time writes a run folder.

Real processes: a retraining SIGKILLed while it holds the lock is taken over by the next one,
which refuses a third writer of the folder (exit 2, one line naming the folder and its PID) and
ends normally. Each is the real command, paused where it takes the lock or holding it before its
first write (``RunFolder.lock``/``record`` wait for a file), so the overlaps do not depend on
timing. Then the lock itself: re-entrant within a process,
nothing left behind, a forked child that outlives its parent keeps nobody out, the file systems
without ``flock``, and every command refusing a folder in use as a bad-input row.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from results import run_lock
from results.run_folder import RunFolder, RunFolderBusy

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_input import Case, _darts, _optuna, _pipeline, _refused, _retrain  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = {"scale": 2, "width": 8, "cells": [{"type": "erb", "ops": ["conv3x3", "conv3x3"],
                                           "attention": {"type": "none"}}]}
RETRAIN = ["optim.iterations=1", "optim.warmup_iterations=0", "data.batch_size=2",
           "data.patch_size=16", "data.val_max_side=16", "run.val_every=1"]
WAIT_S = 90  # the longest a test waits for a process to reach a point

PAUSED = """
import runpy, sys, time
from pathlib import Path
from results.run_folder import RunFolder

gate, script = Path(sys.argv[1]), sys.argv[3]

def pause(where):
    original = getattr(RunFolder, where)

    def paused(self, *args, **kwargs):  # tell the test, then wait for its go (at most 90 s)
        (gate / f"ready_{where}").touch()
        deadline = time.monotonic() + 90
        while not (gate / f"go_{where}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return original(self, *args, **kwargs)

    setattr(RunFolder, where, paused)

for where in sys.argv[2].split(","):
    pause(where)
sys.argv = sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""
"""``python -c PAUSED GATE WHERE[,WHERE] SCRIPT ARGS...``: the command ``SCRIPT ARGS...``,
paused where it calls ``RunFolder.WHERE`` (``lock``: before it takes the lock; ``record``:
holding it, before its first write) until the file ``GATE/go_WHERE`` exists;
``GATE/ready_WHERE`` says it got there."""

HOLD = """
import sys, time
from results.run_lock import RunLock
RunLock(sys.argv[1], sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""
"""``python -c HOLD FOLDER LOCK_FILE SECONDS``: a process that holds a folder's lock."""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _genotype(tmp: Path) -> Path:
    path = tmp / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def _retrain_cmd(tmp: Path, name: str) -> list[str]:
    return ["searchers/retrain.py", str(_genotype(tmp)), f"run.dir={tmp / 'runs'}",
            f"run.name={name}", *RETRAIN]


class _Paused:
    """The retraining ``name`` in a process of its own, paused at each of ``wheres``."""

    def __init__(self, tmp: Path, gate: str, name: str, wheres: str) -> None:
        self.gate = tmp / gate
        self.gate.mkdir()
        self.proc = subprocess.Popen([sys.executable, "-c", PAUSED, str(self.gate), wheres,
                                      *_retrain_cmd(tmp, name)], cwd=ROOT, env=_env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.pid = self.proc.pid

    def ready(self, where: str) -> None:
        """Wait until it waits at ``where``."""
        deadline = time.monotonic() + WAIT_S
        while not (self.gate / f"ready_{where}").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"it never reached {where}: {self.proc.communicate()[1][-2000:]}")
            time.sleep(0.02)

    def go(self, where: str) -> None:
        (self.gate / f"go_{where}").touch()

    def end(self) -> tuple[int, str]:
        """Its exit status and stderr, once it ended (let go everywhere)."""
        for where in ("lock", "record"):
            self.go(where)
        err = self.proc.communicate(timeout=WAIT_S)[1]
        return self.proc.returncode, err


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


# -- real processes -----------------------------------------------------------------------------


def test_a_killed_run_is_taken_over_and_a_second_writer_refused(tmp_path):
    """Three retrainings of one folder, started at once: the first holds the lock and is
    SIGKILLed; the next takes the lock over (one line naming the dead PID) and, holding it,
    refuses the third (exit 2, one line: the folder, its PID, its host, the fix); then it runs
    to the end as if alone."""
    killed = _Paused(tmp_path, "killed", "twin", "record")
    survivor = _Paused(tmp_path, "survivor", "twin", "lock,record")
    second = _Paused(tmp_path, "second", "twin", "lock")
    run = RunFolder(tmp_path / "runs" / "twin")
    try:
        killed.ready("record")  # holds the lock
        survivor.ready("lock")
        second.ready("lock")
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.communicate(timeout=WAIT_S)
        assert json.loads(run.lock_file.read_text())["pid"] == killed.pid  # left behind
        survivor.go("lock")
        survivor.ready("record")  # holds the lock
        status, err = second.end()
    finally:
        survivor_status, survivor_err = survivor.end()
        for paused in (killed, second):  # ended already, unless a step above failed
            if paused.proc.poll() is None:
                paused.proc.kill()
                paused.proc.communicate()
    assert status == 2, err[-2000:]
    errors = _errors(err)
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    for fragment in (str(run.path), f"PID {survivor.pid} ", socket.gethostname(), "run.name="):
        assert fragment in errors[0], (fragment, errors[0])
    assert survivor_status == 0, survivor_err[-2000:]
    taken = [line for line in survivor_err.splitlines() if "took over the lock" in line]
    assert len(taken) == 1 and f"PID {killed.pid} " in taken[0], survivor_err[-2000:]
    assert not run.unfinished() and not run.lock_file.exists()  # deployed; the lock let go
    assert len(run.read_command().splitlines()) == 1  # the survivor's command alone


def test_a_forked_child_that_outlives_its_parent_keeps_nobody_out(tmp_path):
    """A child forked while its parent held the lock (a data-loading worker, say) does not
    hold it: the parent SIGKILLed, the child still running, the folder can be locked."""
    folder = RunFolder(tmp_path / "run")
    code = ("import os, signal, sys, time\nfrom results.run_lock import RunLock\n"
            "RunLock(sys.argv[1], sys.argv[2]).acquire()\npid = os.fork()\n"
            "if pid == 0:\n    null = os.open(os.devnull, os.O_RDWR)\n"
            "    os.dup2(null, 1)\n    os.dup2(null, 2)\n    time.sleep(60)\n    os._exit(0)\n"
            "print(pid, flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    parent = subprocess.run([sys.executable, "-c", code, str(folder.path),
                             str(folder.lock_file)], cwd=ROOT, capture_output=True, text=True,
                            timeout=WAIT_S)
    child = int(parent.stdout.split()[0])
    try:
        assert parent.returncode == -signal.SIGKILL and folder.lock_file.exists()
        os.kill(child, 0)  # the child runs
        with folder.lock():
            assert json.loads(folder.lock_file.read_text())["pid"] == os.getpid()
    finally:
        os.kill(child, signal.SIGKILL)


# -- the lock itself ----------------------------------------------------------------------------


def _hold(folder: RunFolder, seconds: float = 60) -> subprocess.Popen[str]:
    """Another process holding ``folder``'s lock."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder.path), str(folder.lock_file),
                             str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_another_process_is_refused_in_one_line_and_a_process_may_lock_twice(tmp_path):
    folder = RunFolder(tmp_path / "runs" / "r")
    holder = _hold(folder)
    try:
        with pytest.raises(RunFolderBusy) as info:
            folder.lock().acquire()
    finally:
        holder.kill()
        holder.wait()
    line = str(info.value)
    assert "\n" not in line and str(folder.path) in line and f"PID {holder.pid} " in line
    assert "wait for it" in line and "run.name=" in line


    with folder.lock() as outer:  # its holder is gone: taken over
        with folder.lock() as inner:  # the same process again: counted, not refused
            assert outer.held and inner.held and not inner.created
        assert folder.lock_file.exists()  # the outer one still holds it
    assert not folder.lock_file.exists() and sorted(os.listdir(folder.path)) == []


def test_a_lock_removes_what_it_created_and_keeps_what_was_there(tmp_path):
    folder = RunFolder(tmp_path / "a" / "b" / "run")
    with folder.lock() as lock:
        assert lock.created and folder.lock_file.is_file()
    assert not (tmp_path / "a").exists()  # empty, created by the lock: removed
    with folder.lock():
        folder.record("{}\n", ["x"])
    assert sorted(os.listdir(folder.path)) == ["command.txt", "config.yaml"]
    with folder.lock() as lock:
        assert not lock.created
    assert sorted(os.listdir(folder.path)) == ["command.txt", "config.yaml"]


@pytest.fixture
def no_flock(monkeypatch):
    """A file system without ``flock`` (Lustre without ``-o flock``, some FUSE mounts)."""

    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(run_lock.fcntl, "flock", flock)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.usefixtures("no_flock")
def test_without_flock_a_live_holder_is_refused_a_dead_one_taken_over(tmp_path, caplog):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    host = socket.gethostname()
    folder.lock_file.write_text(json.dumps({"pid": os.getppid(), "host": host}))
    with pytest.raises(RunFolderBusy, match=f"PID {os.getppid()} on host {host}"):
        folder.lock().acquire()

    dead = _dead_pid()
    folder.lock_file.write_text(json.dumps({"pid": dead, "host": host}))
    with caplog.at_level(logging.WARNING, logger="results.run_lock"), folder.lock():
        assert json.loads(folder.lock_file.read_text())["pid"] == os.getpid()
    assert [r.getMessage() for r in caplog.records if f"PID {dead} " in r.getMessage()]
    assert not folder.lock_file.exists()


@pytest.mark.usefixtures("no_flock")
def test_without_flock_a_holder_on_another_host_is_named_with_the_file_to_remove(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.lock_file.write_text(json.dumps({"pid": _dead_pid(), "host": "node7"}))
    with pytest.raises(RunFolderBusy) as info:
        folder.lock().acquire()
    line = str(info.value)
    assert "node7" in line and f"remove {folder.lock_file}" in line and "\n" not in line
    assert folder.lock_file.exists()  # another host's lock is not ours to take


# -- every command refuses a folder in use: bad-input rows -------------------------------------


def _supernet(tmp: Path) -> int:
    from searchers.sharing.train import main

    return main([f"run.dir={tmp / 'runs'}", "run.name=existing"])


IN_USE = [
    Case("darts", _darts(), ("runs/existing", "PID", "run.name=")),
    Case("retrain", _retrain("rlfn_ntire"), ("runs/existing", "PID", "run.name=")),
    Case("optuna study", _optuna(), ("runs/existing", "PID", "run.name=")),
    Case("supernet training", _supernet, ("runs/existing", "PID", "run.name=")),
    Case("pipeline", _pipeline(), ("runs/existing", "PID", "pipeline.name=")),
]


@pytest.mark.parametrize("case", IN_USE, ids=[c.name for c in IN_USE])
def test_a_run_folder_in_use_is_refused_by_every_command(case, tmp_path, capsys):
    """The table's checker: exit 2, one line, the folder (and the holder's lock) unchanged."""
    holder = _hold(RunFolder(tmp_path / "runs" / "existing"))
    try:
        line = _refused(case, tmp_path, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert f"PID {holder.pid} " in line
