"""Reading the Markdown tables the commands print, for the tests that check their rows."""

from __future__ import annotations


def table_rows(text: str, header: str) -> list[list[str]]:
    """The body rows (lists of cell strings) of the Markdown table in ``text`` whose header line
    starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows
