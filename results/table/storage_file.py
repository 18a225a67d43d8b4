"""A study's storage file checked before Optuna opens it: Optuna's RDB storage creates its tables
in any SQLite file it is given (another program's database included) and fails with a
SQLAlchemy traceback on a file that is no database, and its journal backend appends to any file.
:func:`check_storage_file` refuses such a file with a :class:`StorageFileError` (a
``ValueError``: the commands exit with status 2) naming the file and what is wrong, and writes
nothing: an SQLite file is read through a read-only connection, a journal as bytes.
The study commands (``searchers/trials/storage.py``) and ``results.summary --storage`` use it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["OPTUNA_TABLES", "SQLITE_HEADER", "StorageFileError", "check_storage_file",
           "journal_path"]

OPTUNA_TABLES = ("studies", "trials", "version_info")  # a few of those Optuna's RDB creates
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


class StorageFileError(ValueError):
    """A storage file that is not what its URL says (refused, and left as it is)."""


def journal_path(url: str) -> Path:
    """The file of a ``journal:`` URL: ``journal:///abs/path`` or ``journal://rel/path``."""
    path = url.split(":", 1)[1].lstrip("/")
    return Path("/" + path if url.startswith("journal:///") else path)


def _sqlite_path(url: str, where: str) -> Path | None:
    """The file of a ``sqlite:`` URL (None: in memory, or a ``file:`` URI left to SQLite)."""
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception as exc:  # sqlalchemy's ArgumentError: no URL it can parse
        raise StorageFileError(f"{where}: got {url!r}, which is no database URL ({exc}); e.g. "
                               "sqlite:///runs/study.db") from exc
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _refuse(url: str, where: str, path: Path, what: str) -> StorageFileError:
    return StorageFileError(
        f"{where}={url}: {path} {what}; nothing was written to it. Point {where} at a new file "
        "(it is created) or at the storage of an Optuna study, e.g. sqlite:///runs/study.db "
        "or journal:///runs/study.log")


def _check_sqlite_file(url: str, where: str, path: Path) -> None:
    """An SQLite database with Optuna's tables, or none at all (read, never written)."""
    import sqlite3

    with path.open("rb") as fh:
        head = fh.read(100)
    if head[:16] != SQLITE_HEADER or len(head) < 100:
        raise _refuse(url, where, path, f"is not an SQLite database ({path.stat().st_size} "
                      "bytes, without SQLite's header 'SQLite format 3')")
    try:  # read-only: SQLite writes nothing (a live study's workers may be writing it)
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            tables = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.OperationalError:  # locked, busy, no -shm to read: left to Optuna
        return
    except sqlite3.DatabaseError as exc:  # "file is not a database", "... malformed"
        raise _refuse(url, where, path, f"is a damaged SQLite database ({exc})") from exc
    missing = [t for t in OPTUNA_TABLES if t not in tables]
    if tables and missing:
        listed = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
        raise _refuse(url, where, path, f"is another program's SQLite database: it holds the "
                      f"tables {listed}, without Optuna's {', '.join(missing)} (Optuna would "
                      "add its tables to it)")


def _check_journal_file(url: str, where: str, path: Path) -> None:
    """Every whole line one of Optuna's journal records (a JSON object with ``op_code`` and
    ``worker_id``); a last line without its newline is a record being written (its start)."""
    import json

    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):  # the last line, still being written: its start
                ok = line.startswith(b"{")
            else:
                try:
                    record = json.loads(line)
                    ok = isinstance(record, dict) and {"op_code", "worker_id"} <= set(record)
                except ValueError:  # JSONDecodeError, UnicodeDecodeError
                    ok = False
            if not ok:
                raise _refuse(url, where, path, f"is not an Optuna journal: line {number} is "
                              "not one of its records (a JSON object with op_code and "
                              "worker_id)")


def check_storage_file(url: str, where: str = "storage") -> None:
    """Refuse, with a :class:`StorageFileError` naming ``where`` (the option that gave ``url``),
    the file and what is wrong, a storage file that is not what ``url`` says, before Optuna
    opens it. An ``sqlite:`` file must be an SQLite database holding Optuna's tables, or none (an
    empty database); a ``journal:`` file must hold Optuna's journal records. A file that does not
    exist yet, or is empty, is a new storage. Nothing is written; other databases (PostgreSQL,
    MySQL) are not checked here."""
    scheme = url.split(":", 1)[0].split("+", 1)[0] if ":" in url else ""
    path = (journal_path(url) if scheme == "journal"
            else _sqlite_path(url, where) if scheme == "sqlite" else None)
    if path is None or not path.exists():
        return
    if not path.is_file():
        raise _refuse(url, where, path, "is not a file")
    if path.stat().st_size == 0:
        return
    (_check_journal_file if scheme == "journal" else _check_sqlite_file)(url, where, path)
