"""Optuna studies on a real PostgreSQL server: two worker processes share one study.

The server is started by tests/pg_server.py (Debian's ``postgresql`` package, which .ci/run
installs). Where it cannot be started, the tests skip with the reason; they never pass
without a server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from pg_server import start_or_skip_reason

DIRECTIONS = ["maximize", "minimize", "minimize"]  # as in our studies: quality, latency, size
TRIALS_PER_WORKER = 4
WORKER_TIMEOUT_S = 60

# RDBStorage's heartbeat_interval / grace_period are flagged experimental by Optuna.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

WORKER = textwrap.dedent(
    """
    import os
    import sys

    import optuna

    url, study_name, n_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=5)
    study = optuna.load_study(study_name=study_name, storage=storage)


    def objective(trial):
        trial.set_user_attr("pid", os.getpid())
        x = trial.suggest_float("x", -4.0, 4.0)
        y = trial.suggest_int("y", 1, 8)
        return -((x - 2.0) ** 2), (x - 2.0) ** 2 + y, float(y)


    study.optimize(objective, n_trials=n_trials)
    print("done", os.getpid(), flush=True)
    """
)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    server, reason = start_or_skip_reason()
    if server is None:
        pytest.skip(reason)
    try:
        yield server.url
    finally:
        server.stop()


def _storage(url: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=5)


def test_server_answers(pg_url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sqlalchemy.text("SHOW server_version")).scalar_one()
            db = conn.execute(sqlalchemy.text("SELECT current_database()")).scalar_one()
    finally:
        engine.dispose()
    assert db == "optuna"
    assert str(version)[0].isdigit()


def test_two_workers_share_one_multi_objective_study(pg_url: str, tmp_path: Path) -> None:
    study_name = f"two-workers-{os.getpid()}"
    study = optuna.create_study(
        study_name=study_name, storage=_storage(pg_url), directions=DIRECTIONS
    )
    script = tmp_path / "worker.py"
    script.write_text(WORKER)

    cmd = [sys.executable, str(script), pg_url, study_name, str(TRIALS_PER_WORKER)]
    procs = [
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
        )
        for _ in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=WORKER_TIMEOUT_S)
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"worker {p.pid} exited {p.returncode}:\n{out}"

    # A fresh handle on the study, as a third process would see it.
    trials = optuna.load_study(study_name=study_name, storage=_storage(pg_url)).get_trials(
        deepcopy=False
    )
    assert [d.name.lower() for d in study.directions] == DIRECTIONS
    assert len(trials) == 2 * TRIALS_PER_WORKER
    assert sorted(t.number for t in trials) == list(range(2 * TRIALS_PER_WORKER))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(t.values is not None and len(t.values) == 3 for t in trials)
    per_pid = Counter(t.user_attrs["pid"] for t in trials)
    assert per_pid == {p.pid: TRIALS_PER_WORKER for p in procs}
    for t in trials:
        x, y = t.params["x"], t.params["y"]
        assert t.values == pytest.approx([-((x - 2) ** 2), (x - 2) ** 2 + y, y])
