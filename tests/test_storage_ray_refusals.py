"""A corrupt or foreign study storage and a Ray address where no cluster answers (issue 28): each
is refused with exit 2 and one line naming the file or address and what is wrong (the bad-input
table's checker, ``tests/test_bad_input.py``), nothing is written (the storage file is byte for
byte as it was, no file appears beside it), and the Ray address is reported within 30 s."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_input import Case, _optuna, _ray, _refused  # noqa: E402


@pytest.fixture(autouse=True)
def _no_auth_mode_left_behind(monkeypatch):
    """``ray_tune.py --address`` turns Ray's token authentication on in ``os.environ``
    (:func:`searchers.trials.tune.cluster_auth_mode`), and Ray reads it when first imported:
    an explicit ``disabled`` (what a local instance uses) keeps it from leaking into the
    local-Ray tests that share this process."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _other_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    con.execute("INSERT INTO invoices (total) VALUES (9.5)")
    con.commit()
    con.close()


def _text_lines(path: Path) -> None:
    path.write_text('{"level": "info", "msg": "another program\'s log"}\nnot json at all\n')


def _no_newline(path: Path) -> None:
    path.write_bytes(b"random notes without a newline")


STORAGES: dict[str, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    "random bytes as sqlite": ("sqlite", _random_bytes, ("not an SQLite database", "4096")),
    "another program's sqlite": ("sqlite", _other_sqlite,
                                 ("another program's SQLite database", "invoices", "studies")),
    "random bytes as journal": ("journal", _random_bytes, ("not an Optuna journal", "line")),
    "json lines as journal": ("journal", _text_lines, ("not an Optuna journal", "line 1")),
    "text as journal": ("journal", _no_newline, ("not an Optuna journal", "line 1")),
}


def _beside(path: Path) -> dict[str, str]:
    """The files in ``path``'s folder with their hashes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in path.parent.iterdir()}


def _summary(url: str) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from results.summary.command import main

        return main(["--storage", url, "--out", str(tmp / "runs" / "report")])

    return run


# ``searchers/optuna_search.py study.storage=URL`` for each; ``results.summary --storage URL``
# for the SQLite files (it takes database URLs only)
ROWS = [("study", n) for n in STORAGES] + [
    ("summary", n) for n, (scheme, _, _) in STORAGES.items() if scheme == "sqlite"]


@pytest.mark.parametrize(("command", "name"), ROWS, ids=[f"{c}: {n}" for c, n in ROWS])
def test_a_corrupt_or_foreign_storage_is_refused_and_left_as_it_is(
        command: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scheme, write, expect = STORAGES[name]
    path = tmp_path / "store" / ("study.db" if scheme == "sqlite" else "study.log")
    path.parent.mkdir()
    write(path)
    before = _beside(path)
    url = f"{scheme}:///{path}"
    run = _optuna(f"study.storage={url}") if command == "study" else _summary(url)
    _refused(Case(name, run, (str(path), *expect)), tmp_path, capsys)
    assert _beside(path) == before, "the refused storage was written to"


def test_an_empty_file_and_optuna_storages_are_accepted(tmp_path: Path) -> None:
    """What the refusals must let through: a file that is empty (a new storage) or that an Optuna
    study wrote (SQLite and journal), with a journal's last record being written."""
    import optuna

    from results.table.storage_file import check_storage_file

    empty = tmp_path / "empty.db"
    empty.touch()
    sqlite3.connect(tmp_path / "blank.db").close()  # SQLite makes no file for an unused one
    db, log = tmp_path / "optuna.db", tmp_path / "optuna.log"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="s")
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(log)))
    optuna.create_study(storage=journal, study_name="s")
    for url in (f"sqlite:///{empty}", f"sqlite:///{db}", f"journal:///{log}",
                f"sqlite:///{tmp_path / 'none.db'}", "sqlite://"):
        check_storage_file(url)
    with log.open("ab") as fh:
        fh.write(b'{"op_code":5,"worker_id":"w-1","tr')  # a record another worker is writing
    check_storage_file(f"journal:///{log}")
    first = json.loads(log.read_text().splitlines()[0])
    assert {"op_code", "worker_id"} <= set(first)


def _free_port() -> int:
    """A port nothing listens on: bound, read and closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_ray_address_where_nothing_listens_is_reported_within_30_s(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    case = Case("ray address where nothing listens", _ray("--address", f"127.0.0.1:{port}"),
                (f"--address 127.0.0.1:{port}", "no Ray cluster answers", "TCP connect",
                 f"ray start --head --port={port}", f"ray start --address=127.0.0.1:{port}"))
    start = time.monotonic()
    _refused(case, tmp_path, capsys)
    assert time.monotonic() - start < 30


@pytest.fixture
def server() -> Iterator[Callable[[bytes], int]]:
    """``serve(reply)``: a local TCP server that sends ``reply`` to each connection; its port."""
    socks: list[socket.socket] = []

    def serve(reply: bytes) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        socks.append(sock)

        def loop() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(reply)
                    time.sleep(0.2)

        threading.Thread(target=loop, daemon=True).start()
        return int(sock.getsockname()[1])

    yield serve
    for sock in socks:
        sock.close()


def test_a_port_that_answers_but_not_as_ray_is_refused_and_a_grpc_one_is_not(server) -> None:
    """Something else at the address (an SSH server, a web page) is refused; a server that
    answers HTTP/2's preface with a SETTINGS frame, as Ray's gRPC servers do, is let through."""
    from searchers.common.config import ConfigError
    from searchers.trials.tune import check_ray_address

    other = server(b"SSH-2.0-OpenSSH_9.6\r\n")
    with pytest.raises(ConfigError, match=f"127.0.0.1:{other}: it accepts the connection but "
                       "answers no HTTP/2 handshake"):
        check_ray_address(f"127.0.0.1:{other}", timeout_s=2)
    grpc = server(bytes([0, 0, 6, 4, 0, 0, 0, 0, 0]) + bytes([0, 3, 0, 0, 0, 100]))
    start = time.monotonic()
    check_ray_address(f"127.0.0.1:{grpc}", timeout_s=2)
    check_ray_address(f"ray://127.0.0.1:{grpc}", timeout_s=2)
    assert time.monotonic() - start < 2
    with pytest.raises(ConfigError, match="--address: got '127.0.0.1'; give the head's HOST:PORT"):
        check_ray_address("127.0.0.1")
    for address in (None, "local"):
        check_ray_address(address)  # a fresh local instance: nothing to check
