"""Host-wide measurement isolation (proxies.measure.isolation) across real processes, and the GPU
request/check of the Ray trials. CPU only; the sections sleep instead of computing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import proxies.measure.isolation as iso
import proxies.measure.lock_files as lock_files
from proxies.measure.isolation import measuring, training
from proxies.measure.lock_files import IsolationTimeout

ROOT = Path(__file__).resolve().parents[1]

# One script, three roles: "train" loops training sections until told to stop, "measure"
# takes measuring sections between trainer steps, "hold" holds one measuring section.
WORKER = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    from proxies.measure.isolation import measuring, training

    role, folder = sys.argv[1], sys.argv[2]
    stop, out = os.path.join(folder, "stop"), os.path.join(folder, role + sys.argv[3] + ".json")
    now = time.monotonic_ns
    spans, waits = [], []
    if role == "train":
        give_up = time.monotonic() + 30
        while not os.path.exists(stop) and time.monotonic() < give_up:
            with training():
                t0 = now()
                time.sleep(0.004)
                spans.append((t0, now()))
            if len(spans) == 20:
                open(os.path.join(folder, "ready" + sys.argv[3]), "w").close()
    elif role == "measure":
        give_up = time.monotonic() + 30
        while not all(os.path.exists(os.path.join(folder, "ready" + w)) for w in "ab"):
            assert time.monotonic() < give_up, "the trainers did not start"
            time.sleep(0.01)
        for _ in range(5):
            asked = now()
            with measuring():
                t0 = now()
                time.sleep(0.05)
                spans.append((t0, now()))
            waits.append((spans[-1][0] - asked) / 1e9)
            time.sleep(0.05)
        open(stop, "w").close()
    else:  # hold
        with measuring():
            open(os.path.join(folder, "held"), "w").close()
            give_up = time.monotonic() + 30
            while not os.path.exists(stop) and time.monotonic() < give_up:
                time.sleep(0.01)
    with open(out, "w") as f:
        json.dump({{"spans": spans, "waits": waits, "pid": os.getpid()}}, f)
""").format(root=str(ROOT))


def _spawn(tmp_path: Path, role: str, tag: str = "") -> subprocess.Popen[bytes]:
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    env = {**os.environ, lock_files.ENV_DIR: str(tmp_path / "locks"), lock_files.ENV_SWITCH: "on"}
    return subprocess.Popen([sys.executable, str(script), role, str(tmp_path), tag], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(procs: list[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> None:
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout_s)
            assert proc.returncode == 0, out.decode(errors="replace")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _overlap(a: list[int], b: list[int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.fixture
def lock_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(lock_files.ENV_DIR, str(tmp_path / "locks"))
    monkeypatch.setenv(lock_files.ENV_SWITCH, "on")
    return tmp_path / "locks"


def test_no_training_section_overlaps_a_measurement_and_the_measurer_is_not_starved(tmp_path):
    procs = [_spawn(tmp_path, "train", "a"), _spawn(tmp_path, "train", "b"),
             _spawn(tmp_path, "measure")]
    _finish(procs)
    runs = {name: json.loads((tmp_path / f"{name}.json").read_text())
            for name in ("traina", "trainb", "measure")}
    measured = runs["measure"]["spans"]
    assert len(measured) == 5
    trained = {w: runs[f"train{w}"]["spans"] for w in "ab"}
    for w, spans in trained.items():
        for m in measured:
            clashes = [s for s in spans if _overlap(s, m)]
            assert not clashes, f"trainer {w} trained during a measurement: {clashes[:3]}, {m}"
        # the trainer kept looping: it trained between the measurements, not only before/after
        between = [s for s in spans if measured[0][1] <= s[0] and s[1] <= measured[-1][0]]
        assert len(between) >= 4, f"trainer {w}: {len(between)} steps during the measurements"
    # the two trainers share the lock (their sections overlap), so without the turnstile there
    # would hardly ever be a moment with no trainer inside: the measurer would starve
    assert any(_overlap(a, b) for a in trained["a"] for b in trained["b"])
    assert max(runs["measure"]["waits"]) < 2.0, runs["measure"]["waits"]


def test_a_held_lock_times_out_naming_the_file_and_the_holder(tmp_path, lock_folder):
    holder = _spawn(tmp_path, "hold")
    try:
        give_up = time.monotonic() + 30
        while not (tmp_path / "held").exists():
            assert holder.poll() is None and time.monotonic() < give_up, "holder did not start"
            time.sleep(0.01)
        start = time.monotonic()
        with pytest.raises(IsolationTimeout) as info, training(timeout=0.3):
            pass
        assert 0.25 < time.monotonic() - start < 5.0
        message = str(info.value)
        # trainers wait at the turnstile
        assert str(lock_folder / lock_files.TURNSTILE_LOCK) in message
        assert f"{holder.pid}" in message and lock_files.ENV_SWITCH in message
        with pytest.raises(IsolationTimeout, match="measure.lock|turnstile.lock"), measuring(
                timeout=0.2):
            pass
        assert iso._STATE.mode is None and not iso._STATE.busy  # a failed wait leaves no trace
    finally:
        (tmp_path / "stop").touch()
        _finish([holder])
    with training(timeout=5.0):  # free again once the holder is gone
        assert iso._STATE.mode == "sh"


def test_sections_are_reentrant_and_nest(lock_folder):
    state = iso._STATE
    with training():
        assert state.mode == "sh"
        with training():
            assert state.mode == "sh" and state.readers == 1
        with measuring():  # the training share is suspended for the measurement
            assert state.mode == "ex"
            with measuring(), training():  # no-ops inside a measurement
                assert state.mode == "ex"
            assert state.mode == "ex"
        assert state.mode == "sh" and state.readers == 1
    assert state.mode is None and state.readers == 0 and state.owner is None
    assert (lock_folder / lock_files.MAIN_LOCK).exists()


def test_threads_of_one_process_exclude_each_other(lock_folder):
    spans: list[list[int]] = []
    stop = threading.Event()

    def trainer() -> None:
        while not stop.is_set():
            with training():
                t0 = time.monotonic_ns()
                time.sleep(0.002)
                spans.append([t0, time.monotonic_ns()])

    thread = threading.Thread(target=trainer)
    thread.start()
    try:
        time.sleep(0.02)
        with measuring(timeout=5.0):
            m0 = time.monotonic_ns()
            time.sleep(0.03)
            m = [m0, time.monotonic_ns()]
        time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert spans and not [s for s in spans if _overlap(s, m)]
    assert any(s[0] > m[1] for s in spans)  # the trainer resumed


def test_switched_off_sections_do_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(lock_files.ENV_DIR, str(tmp_path / "off"))
    monkeypatch.setenv(lock_files.ENV_SWITCH, "off")
    assert not lock_files.enabled()
    with measuring(), training():
        assert iso._STATE.mode is None
    assert not (tmp_path / "off").exists()


def test_bad_timeouts_are_refused(lock_folder, monkeypatch):
    with pytest.raises(ValueError, match="timeout"), training(timeout=0):
        pass
    monkeypatch.setenv(lock_files.ENV_TIMEOUT, "soon")
    with pytest.raises(ValueError, match=lock_files.ENV_TIMEOUT), measuring():
        pass


# --- Ray: a trial that measures on CUDA asks for a GPU and refuses to time on the CPU ---


def _ray_cfg(device: str, gpu: float = 0.0):
    from searchers.trials.tune import RayConfig

    cfg = RayConfig()
    cfg.measure.device, cfg.resources.gpu = device, gpu
    return cfg


@pytest.mark.parametrize(("device", "cluster_gpus", "gpu", "want"), [
    ("cuda", 0, 0.0, 1.0), ("cuda:1", 8, 0.0, 1.0), ("auto", 4, 0.0, 1.0), ("auto", 0, 0.0, 0.0),
    ("cpu", 4, 0.0, 0.0), ("cuda", 4, 0.5, 1.0), ("cuda", 4, 2.0, 2.0), ("cpu", 4, 1.0, 1.0),
])
def test_ray_trial_requests_a_gpu_when_measuring_on_cuda(device, cluster_gpus, gpu, want):
    from searchers.trials.tune import trial_resources

    resources = trial_resources(_ray_cfg(device, gpu), cluster_gpus)
    assert resources == {"cpu": 1.0, "gpu": want}


def test_ray_trial_without_a_gpu_fails_clearly(monkeypatch):
    import torch

    from searchers.trials.tune import check_trial_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="measure.device=cuda:0 means cuda, but this Ray "
                                           "worker has no GPU"):
        check_trial_device("cuda:0", wants_cuda=False)
    with pytest.raises(RuntimeError, match=r"auto \(auto, and the cluster has GPUs\) means cuda"):
        check_trial_device("auto", wants_cuda=True)
    check_trial_device("auto", wants_cuda=False)  # auto on a CPU cluster: CPU is right
    check_trial_device("cpu", wants_cuda=False)


def test_ray_trainable_reports_the_missing_gpu_before_evaluating(monkeypatch):
    pytest.importorskip("ray", reason="ray[tune] is a core dependency; install the project")
    import torch
    from ray import tune

    import searchers.trials.tune as ray_tune

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated although the worker has no GPU")

    reports: list[dict] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(tune, "report", reports.append)
    monkeypatch.setattr(ray_tune, "evaluate_genotype", no_evaluation)
    cfg = _ray_cfg("auto")
    cfg.space.scale = 2
    ray_tune.trainable({"_cfg": ray_tune._plain(cfg), "_measure_cuda": True, "zoo": "fmen_s"})
    assert len(reports) == 1 and reports[0]["name"] == "fmen_s"
    assert "this Ray worker has no GPU" in reports[0]["fail_reason"]
    assert all(reports[0][k] != reports[0][k] for k in ray_tune.OBJECTIVE_NAMES)  # NaN
