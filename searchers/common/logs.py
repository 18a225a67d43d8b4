"""The metric log of a run: ``log.csv``, one row per logged step, flushed row by row; on resume
the rows logged after the last checkpoint are dropped, so the log matches the weights."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from search_space.files import atomic_write_text

__all__ = ["CsvLogger"]

logger = logging.getLogger("searchers.common.logs")

class CsvLogger:
    """Append metric rows (dicts) to a CSV file with a fixed header, flushing after each row.

    An existing file with the same header is appended to (resume); an incomplete last line (a
    kill mid-write) is dropped first. A different header raises :class:`ValueError`. Use as a
    context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path, fieldnames: Sequence[str]) -> None:
        self.path = Path(path)
        self.fieldnames = tuple(fieldnames)
        if not self.fieldnames or len(set(self.fieldnames)) != len(self.fieldnames):
            raise ValueError(
                f"CsvLogger({str(self.path)!r}): fieldnames must be non-empty and unique, "
                f"got {list(self.fieldnames)}"
            )
        self._file: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            self._check_existing()
            logger.info("appending to existing %s", self.path)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, self._render([]))
        self._open()

    def _render(self, rows: Sequence[Mapping[str, Any]]) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def _check_existing(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        header = next(csv.reader(io.StringIO(text)), [])
        if header != list(self.fieldnames):
            raise ValueError(
                f"{self.path}: existing CSV header {header} differs from the expected "
                f"{list(self.fieldnames)}; log to a new run folder or move the old file away"
            )
        if not text.endswith("\n"):
            logger.warning("%s: dropping an incomplete last line", self.path)
            atomic_write_text(self.path, text[: text.rfind("\n") + 1] or self._render([]))

    def _open(self) -> None:
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(
            self._file, fieldnames=self.fieldnames, restval="", lineterminator="\n"
        )

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row; missing fields are left empty, unknown fields raise ValueError."""
        if self._file is None or self._writer is None:
            raise ValueError(f"{self.path}: CsvLogger is closed; create a new one to log again")
        unknown = sorted(set(row) - set(self.fieldnames))
        if unknown:
            raise ValueError(
                f"{self.path}: row keys {unknown} are not in the header {list(self.fieldnames)};"
                " drop them or start a new file with these fieldnames"
            )
        self._writer.writerow(row)
        self._file.flush()

    def truncate_after(self, step_field: str, step: int) -> int:
        """Rewrite the file keeping only rows whose ``step_field`` is <= ``step``.

        Used on resume to drop rows logged after the last checkpoint. Returns the number of
        rows dropped.
        """
        if step_field not in self.fieldnames:
            raise ValueError(
                f"{self.path}: step_field {step_field!r} is not a column; "
                f"choose one of {list(self.fieldnames)}"
            )
        reopen = self._file is not None
        self.close()
        with self.path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        kept = []
        for line, row in enumerate(rows, start=2):
            raw = row.get(step_field)
            try:
                value = float(raw or "")
            except ValueError:
                raise ValueError(
                    f"{self.path} row {line}: {step_field}={raw!r} is not a number; "
                    "fix or delete that row"
                ) from None
            if value <= step:
                kept.append(row)
        atomic_write_text(self.path, self._render(kept))
        if len(kept) != len(rows):
            logger.info(
                "%s: dropped %d rows after %s=%d",
                self.path,
                len(rows) - len(kept),
                step_field,
                step,
            )
        if reopen:
            self._open()
        return len(rows) - len(kept)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None

    def __enter__(self) -> CsvLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rows(self) -> Iterator[dict[str, str]]:
        """Iterate over the logged rows (as strings), e.g. to inspect a resumed log."""
        with self.path.open(newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)
