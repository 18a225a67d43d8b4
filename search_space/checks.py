"""The checks of a genotype's fields: :class:`GenotypeError` and the helpers that refuse a value
in one line naming the field, the value received, what is allowed and, where it helps, the fix
(``Genotype.cells[0].act: got 'tanh'; allowed: relu, ...``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["GenotypeError", "check_bool", "check_int", "check_name", "check_names", "fail",
           "unknown_keys"]


class GenotypeError(ValueError):
    """A genotype field holds a value that is not allowed."""


def fail(where: str, got: Any, allowed: str, fix: str = "") -> GenotypeError:
    """The error for field ``where``: the value it got, what is allowed, and the fix."""
    msg = f"{where}: got {got!r}; allowed: {allowed}"
    return GenotypeError(f"{msg}. {fix}" if fix else msg)


def check_name(where: str, value: Any, names: Iterable[str]) -> None:
    """Refuse a ``value`` that is not one of ``names``."""
    names = tuple(names)
    if value not in names:
        raise fail(where, value, ", ".join(names))


def check_names(where: str, values: Iterable[str], allowed: Iterable[str]) -> None:
    """A non-empty list of known names without duplicates (candidate lists of searches)."""
    values, allowed = list(values), tuple(allowed)
    if not values:
        raise fail(where, values, "a non-empty list of " + ", ".join(allowed))
    bad = [v for v in values if v not in allowed]
    if bad:
        raise GenotypeError(f"{where}: got unknown {bad}; valid names: {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise GenotypeError(f"{where}: got duplicates in {values}; list each name once")


def check_int(where: str, value: Any, lo: int, hi: int | None = None) -> None:
    """Refuse anything but an integer (not a bool) in ``[lo, hi]`` (``hi`` None: no bound)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise fail(where, value, f"an integer >= {lo}" + (f" and <= {hi}" if hi else ""))
    if hi is not None and value > hi:
        raise fail(where, value, f"an integer >= {lo} and <= {hi}")


def check_bool(where: str, value: Any) -> None:
    """Refuse anything but ``true`` or ``false``."""
    if not isinstance(value, bool):
        raise fail(where, value, "true or false")


def unknown_keys(where: str, data: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse keys of ``data`` outside ``known`` (a misspelt field is never dropped silently)."""
    extra = sorted(set(data) - set(known))
    if extra:
        raise fail(where, extra, "keys " + ", ".join(sorted(known)), "Remove or rename them.")
