"""A throw-away PostgreSQL server for tests (a real server on loopback, no mocks).

``start_or_skip_reason()`` starts one and returns ``(server, "")``, or ``(None, reason)`` with
a reason fit for ``pytest.skip`` when it cannot: the server binaries or psycopg2 are missing,
or the server did not start (the reason then ends with the tail of the server's log).

The server is private to the caller: its data directory, Unix socket and log live in a fresh
temporary directory, it listens on 127.0.0.1 only, on a free port picked at start, with trust
authentication for the role ``srnas`` and fsync off. ``stop()`` (also run at interpreter exit)
shuts it down with ``pg_ctl stop -m fast`` and removes the directory. A cluster that Debian's
package may have created (``/var/lib/postgresql/*/main`` on port 5432) is neither used nor
touched.

Where the binaries are looked for:

- ``$SRNAS_PG_BIN``, when set: that one directory, holding ``initdb``, ``pg_ctl`` and
  ``createdb``, and nothing else (point it at a missing directory to check the skip path);
- else the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's ``postgresql`` package);
- else ``initdb`` on ``PATH``.

PostgreSQL refuses to run as root, so when the tests run as root the server-side commands
(``initdb``, ``pg_ctl``) run as the unprivileged ``postgres`` user that Debian's package creates
(``$SRNAS_PG_USER`` names another one) through ``runuser -u USER --`` (or ``su``), and the
temporary directory is handed to that user.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DB_USER = "srnas"
DB_NAME = "optuna"
#: Seconds allowed to each initdb / pg_ctl / createdb call.
STEP_TIMEOUT_S = 60
_START_ATTEMPTS = 3
_NO_BINARIES = "Debian's postgresql package is not installed: apt-get install postgresql"


class PostgresError(RuntimeError):
    """A step of starting the server failed; the message says which and why."""


def find_bin_dir() -> tuple[Path | None, str]:
    """The directory holding initdb and pg_ctl, or ``(None, reason)``."""
    override = os.environ.get("SRNAS_PG_BIN")
    if override:
        d = Path(override)
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d, ""
        return None, f"{_NO_BINARIES} (SRNAS_PG_BIN={override} has no initdb and pg_ctl)"

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in re.findall(r"\d+", name)) or (0,)

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        d = Path(initdb).parent
        if (d / "pg_ctl").is_file():
            return d, ""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl", path=str(Path(on_path).parent)):
        return Path(on_path).parent, ""
    return None, _NO_BINARIES


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """The caller's environment without libpq's PG* variables, in the C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _is_postgres(pid: int) -> bool:
    """Whether pid is a live postgres process (not a stale pid file's reused number)."""
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class PostgresServer:
    """One running throw-away server; use ``start()`` or the context manager."""

    def __init__(self, bin_dir: Path, run_as: str | None = None) -> None:
        self.bin_dir = bin_dir
        self.run_as = run_as  # unprivileged user for server-side commands, when we are root
        self.root: Path | None = None
        self.port = 0
        self._running = False

    # -- paths -----------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database (psycopg2 driver, TCP on loopback)."""
        return f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    # -- running commands ------------------------------------------------------------------
    def _server_cmd(self, args: list[str]) -> list[str]:
        if self.run_as is None:
            return args
        if shutil.which("runuser"):
            return ["runuser", "-u", self.run_as, "--", *args]
        return ["su", "-s", "/bin/sh", self.run_as, "-c", shlex.join(args)]

    def _run(self, args: list[str], what: str, as_server: bool = True) -> None:
        assert self.root is not None
        cmd = self._server_cmd(args) if as_server else args
        # Output goes to a file, never a pipe: pg_ctl leaves the postmaster running, and a
        # daemon holding our pipe open would make us wait for it.
        out = self.root / "cmd.out"
        with open(out, "wb") as fh:
            try:
                rc = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,
                    env=_clean_env(),
                    timeout=STEP_TIMEOUT_S,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = None
            except OSError as e:
                raise PostgresError(f"{what}: cannot run {cmd[0]}: {e}") from e
        if rc != 0:
            status = f"timed out after {STEP_TIMEOUT_S} s" if rc is None else f"exit {rc}"
            raise PostgresError(f"{what} failed ({status}):\n{_tail(out)}")

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        """initdb, start on a free loopback port, create the database; raise PostgresError."""
        self.root = self._make_root()
        atexit.register(self.stop)
        try:
            self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", DB_USER,
                    "--auth=trust",
                    "-E", "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                "initdb",
            )
            for attempt in range(_START_ATTEMPTS):
                self.port = _free_port()
                try:
                    self._pg_ctl_start()
                    break
                except PostgresError:
                    # Most likely the port was taken between picking it and binding it.
                    if attempt == _START_ATTEMPTS - 1:
                        raise
            self._running = True
            self._run(
                [
                    str(self.bin_dir / "createdb"),
                    "-h", "127.0.0.1",
                    "-p", str(self.port),
                    "-U", DB_USER,
                    DB_NAME,
                ],
                "createdb",
                as_server=False,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _pg_ctl_start(self) -> None:
        opts = (
            f"-k {shlex.quote(str(self.socket_dir))} -p {self.port}"
            " -c listen_addresses=127.0.0.1 -c fsync=off"
        )
        try:
            self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D", str(self.data_dir),
                    "-l", str(self.log_file),
                    "-w", "-t", str(STEP_TIMEOUT_S - 10),
                    "-o", opts,
                    "start",
                ],
                f"pg_ctl start (port {self.port})",
            )
        except PostgresError as e:
            self._kill_postmaster()  # a half-started server must not linger
            raise PostgresError(f"{e}\n--- server log ---\n{_tail(self.log_file)}") from e

    def _make_root(self) -> Path:
        """A fresh temp dir (with sock/), owned by the user that runs the server."""
        candidates = [None, "/tmp"] if self.run_as else [None]
        last = ""
        for parent in candidates:
            root = Path(tempfile.mkdtemp(prefix="srnas-pg-", dir=parent))
            (root / "sock").mkdir()
            if self.run_as is None:
                return root
            pw = pwd.getpwnam(self.run_as)
            for p in (root, root / "sock"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            # The user also needs to reach the dir through its parents (e.g. not under /root).
            probe = self._server_cmd(["test", "-w", str(root / "sock")])
            ok = subprocess.run(probe, cwd="/", timeout=STEP_TIMEOUT_S, check=False)
            if ok.returncode == 0:
                return root
            last = f"{self.run_as} cannot write to {root}"
            shutil.rmtree(root, ignore_errors=True)
        raise PostgresError(last)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError, AssertionError):
            return None

    def _kill_postmaster(self) -> None:
        pid = self._postmaster_pid()
        if pid is None or not _is_postgres(pid):
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown; children exit with it
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises once it is gone
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory; safe to call twice."""
        if self.root is None:
            return
        if self._running or self._postmaster_pid() is not None:
            try:
                self._run(
                    [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                     "-w", "-t", "30", "stop"],
                    "pg_ctl stop",
                )
            except PostgresError:
                self._kill_postmaster()
        self._running = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PostgresServer:
        return self if self._running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _server_user() -> tuple[str | None, str]:
    """Who runs the server: None (ourselves) unless we are root; or a reason it can't run."""
    if os.geteuid() != 0:
        return None, ""
    user = os.environ.get("SRNAS_PG_USER", "postgres")
    try:
        pwd.getpwnam(user)
    except KeyError:
        return None, (
            f"running as root and there is no '{user}' user to run PostgreSQL as "
            "(Debian's postgresql package creates it; or set SRNAS_PG_USER)"
        )
    if not (shutil.which("runuser") or shutil.which("su")):
        return None, "running as root and neither runuser nor su is available"
    return user, ""


def start_or_skip_reason() -> tuple[PostgresServer | None, str]:
    """A started server and "", or None and the reason it could not be had."""
    bin_dir, reason = find_bin_dir()
    if bin_dir is None:
        return None, reason
    if importlib.util.find_spec("psycopg2") is None:
        return None, "psycopg2 is not installed: pip install psycopg2-binary (the test extra)"
    run_as, reason = _server_user()
    if reason:
        return None, reason
    server = PostgresServer(bin_dir, run_as=run_as)
    try:
        server.start()
    except (PostgresError, OSError, subprocess.SubprocessError) as e:
        return None, f"could not start a PostgreSQL server from {bin_dir}: {e}"
    return server, ""
