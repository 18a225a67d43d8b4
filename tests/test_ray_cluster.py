"""A real two-node Ray cluster on loopback, started with the README's commands (token
authentication on): trials run on both nodes; the worker node is SIGKILLed mid-trial and the
experiment goes on; the driver is SIGKILLed and the same command restores it (``Tuner.restore``)
with every trial complete, none lost and none evaluated twice. Both nodes are stopped at the end
by their own PIDs.

Each node is ``ray start ... --block`` in a session of its own, so its process group holds the
node's processes; a node's trial processes are found by their parent chain. The cluster has a
HOME of its own: ``ray get-auth-token --generate`` writes the token to ``$HOME/.ray/auth_token``,
where ``ray start --head`` and the driver find it (nothing is given to the driver's
environment). Ray's node health check is made faster on the head (``RAY_health_check_*``), so a
dead node is noticed in about 2 s, not 15.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="ray[tune] is a core dependency; install the project")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="finds each node's processes in /proc (Linux)")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["space.scale=2", "space.widths=[8]", "space.cells_min=1", "space.cells_max=1",
        "space.conv_candidates=[conv3x3,sep_conv3x3]", "space.attention_candidates=[none,pa]",
        "proxy.batch_size=2", "proxy.patch_size=54", "proxy.val_max_side=24",
        "measure.lr_size=16", "measure.runs=1", "measure.warmup=0",
        "study.zoo=[rlfn_ntire,fmen_s]",
            "study.zoo_outside=reference", "study.population_size=2", "study.n_trials=4",
        "study.retries=2", "resources.max_concurrent=2", "proxy.steps=40"]


def _ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free now (held open together while chosen)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


NODE_PORTS = 16  # 6 for the node's services, 10 for its worker processes


def _node_ports(p: list[int]) -> list[str]:
    """A node's ports, all distinct from each other and from the other node's (a worker-port
    range could hold a port another component took: Ray refuses to start then)."""
    return [f"--node-manager-port={p[0]}", f"--object-manager-port={p[1]}",
            f"--dashboard-agent-listen-port={p[2]}", f"--dashboard-agent-grpc-port={p[3]}",
            f"--metrics-export-port={p[4]}", f"--runtime-env-agent-port={p[5]}",
            f"--worker-port-list={','.join(map(str, p[6:NODE_PORTS]))}"]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _trial_processes(node: subprocess.Popen) -> list[int]:
    """PIDs of the Tune trial actors running on a node (``ray::ImplicitFunc...`` titles)."""
    return [p for p in _descendants(node.pid) if _cmdline(p).startswith("ray::ImplicitFunc")]


def _records(folder: Path) -> int:
    """Trials evaluated so far: their records in the run's ``evaluated/`` folder."""
    return len(list(folder.glob("*.json")))


def _tails(logs: Path) -> str:
    return "\n".join(f"--- {f.name}\n" + "\n".join(f.read_text().splitlines()[-15:])
                     for f in sorted(logs.glob("*.log")))


def _wait(what: str, ok, timeout: float, logs: Path, *alive: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        for p in alive:
            assert p.poll() is None, (f"{what}: {p.args[:3]} exited with {p.returncode}\n"
                                      + _tails(logs))
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s\n" + _tails(logs)
        time.sleep(0.05)


def _stop(proc: subprocess.Popen, marker: str | None = None) -> None:
    """SIGKILL a process group (a node, a driver), then any process still naming ``marker``
    (the cluster's temp folder) on its command line."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit() and marker):
        if marker in _cmdline(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start(stack: ExitStack, cmd: list[str], log: Path, env: dict[str, str],
           marker: str | None = None) -> subprocess.Popen:
    """``cmd`` in a session of its own, output to ``log``, stopped when ``stack`` closes."""
    out = stack.enter_context(log.open("w"))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=out,
                            stderr=subprocess.STDOUT)
    stack.callback(_stop, proc, marker)
    return proc


def _connectable(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_two_nodes_a_killed_worker_node_and_a_killed_driver(tmp_path):
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    home = tmp_path / "home"
    home.mkdir()
    temp = tempfile.mkdtemp(prefix="srt", dir="/tmp")  # short: Ray's socket paths are limited
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_AUTH_MODE", None)
    ports = _ports(1 + 2 * NODE_PORTS)
    gcs = ports[0]
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, temp, ignore_errors=True)
        # the README's commands: `ray get-auth-token --generate`, `ray start --head ...` ...
        token = subprocess.run([ray, "get-auth-token", "--generate"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert token.returncode == 0, token.stderr
        assert (home / ".ray" / "auth_token").read_text().strip() in token.stdout
        head = _start(stack, [
            ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
            "--num-cpus=1", f"--temp-dir={temp}", "--include-dashboard=false",
            "--disable-usage-stats", *_node_ports(ports[1:1 + NODE_PORTS])], logs / "head.log",
            {**env, "RAY_health_check_initial_delay_ms": "0", "RAY_health_check_period_ms": "500",
             "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "3"},
            marker=temp)
        _wait("the head's GCS port", lambda: _connectable(gcs), 90, logs, head)
        # ... and `RAY_AUTH_MODE=token ray start --address=HEAD:PORT` for the worker
        worker = _start(stack, [
            ray, "start", f"--address=127.0.0.1:{gcs}", "--block", "--node-ip-address=127.0.0.1",
            "--num-cpus=1", "--disable-usage-stats", *_node_ports(ports[1 + NODE_PORTS:])],
            logs / "worker.log", {**env, "RAY_AUTH_MODE": "token"}, marker=temp)

        run_dir = tmp_path / "run"
        tune_dir = run_dir / "default" / "tune"
        cmd = [sys.executable, str(ROOT / "searchers" / "ray_tune.py"), "--address",
               f"127.0.0.1:{gcs}", f"run.dir={run_dir}", *TINY]
        driver = _start(stack, cmd, logs / "driver.log", env)
        # trials on both nodes at once: each node's raylet runs one trial actor
        _wait("a trial on each node", lambda: _trial_processes(head) and _trial_processes(worker),
              150, logs, driver, head, worker)
        _stop(worker)  # SIGKILL the whole worker node, mid-trial
        assert not _trial_processes(worker)
        # a trial records its report just before it reports it (Tune writes result.json later,
        # buffered): the driver is SIGKILLed once the first trial after the node's death is done
        evaluated = run_dir / "default" / "evaluated"
        _wait("a trial done after the worker node died", lambda: _records(evaluated) >= 1, 150,
              logs, driver, head)
        _stop(driver)
        assert _records(evaluated) < 4, "the experiment ended before the driver was killed"

        again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=300)
        log = again.stdout + again.stderr
        assert again.returncode == 0, log[-3000:]
        assert f"resuming {tune_dir}" in log
        assert "Ray cluster: token authentication on" in log

        from results.table.ray_experiment import from_ray

        table = from_ray(tune_dir)
        assert len(table) == 4 and set(table["state"]) == {"COMPLETE"}, table
        assert table["trial"].is_unique and table["name"].is_unique
        assert {"rlfn_ntire", "fmen_s"} <= set(table["name"])
        # none run twice: each config evaluated once. A trial that finished after Tune's last
        # save of the experiment state is run again by the restore (under a new id, with the
        # same parameters, when the state did not list it); it reports the recorded result
        # (the same measured figures, to the last digit), not a second evaluation.
        from searchers.trials.tune import _record_key

        configs = {_record_key(json.loads(p.read_text()))
                   for p in tune_dir.glob("*/params.json")}
        assert {p.stem for p in evaluated.glob("*.json")} == configs and len(configs) == 4
        for f in glob.glob(str(tune_dir / "*" / "result.json")):
            reports = [json.loads(line) for line in Path(f).read_text().splitlines()]
            assert len({(r["name"], r["duration_s"], r["latency_ms"], r["psnr_db"])
                        for r in reports}) == 1, f
