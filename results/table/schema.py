"""One trial table for every searcher: Optuna studies and Ray Tune experiments alike.

A *trial table* is a :class:`pandas.DataFrame` with one row per trial and the columns of
:data:`TRIAL_COLUMNS`, in that order, with the dtypes of :data:`SCHEMA`:

============= ======= =======================================================================
column        dtype   meaning
============= ======= =======================================================================
source        object  ``"optuna"`` or ``"ray"``
study         object  Optuna study name, or the Ray experiment folder's name
trial         int64   Optuna trial number, or the counter of the Ray trial id (``..._00007``)
state         object  one of :data:`STATES`
name          object  zoo net name (``imdn_ntire``...) or ``trial_<number>``
is_zoo        bool    the row is a published reference net enqueued into the study
psnr_db       float64 objective, maximised (NaN unless reported)
latency_ms    float64 objective, minimised
memory_mib    float64 objective, minimised
params_m      float64 parameters, millions
flops_g       float64 FLOPs, billions
macs_g        float64 multiply-accumulates, billions
activations_m float64 activations, millions
num_conv      Int64   number of convolutions (nullable integer)
feasible      bool    state is COMPLETE and every constraint value is <= 0
constraints   object  JSON object ``{name: value}`` (sorted keys; ``"{}"`` when none)
genotype      object  genotype JSON string, or None
fail_reason   object  why the trial failed, or None
duration_s    float64 wall time of the trial, seconds
device        object  device the trial was measured on, or None
============= ======= =======================================================================

String columns hold Python ``str`` (or ``None`` where nullable) in ``object`` columns, so the
table looks the same under pandas 2 and pandas 3.

Loaders, one per searcher, build such a table: :func:`results.table.optuna_study.from_optuna` (an
Optuna study) and :func:`results.table.ray_experiment.from_ray` (a Ray Tune experiment folder, read
as
plain files).

:func:`validate_table` checks a frame against the schema; :func:`to_csv` / :func:`read_csv`
round-trip a table through CSV.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from search_space.files import atomic_write_text

__all__ = [
    "OBJECTIVES",
    "SCHEMA",
    "SOURCES",
    "STATES",
    "TRIAL_COLUMNS",
    "ColumnSpec",
    "empty_table",
    "read_csv",
    "to_csv",
    "validate_table",
]

logger = logging.getLogger(__name__)

OBJECTIVES: dict[str, str] = {"psnr_db": "max", "latency_ms": "min", "memory_mib": "min"}
STATES: tuple[str, ...] = ("COMPLETE", "FAIL", "RUNNING", "PRUNED", "WAITING")
SOURCES: tuple[str, ...] = ("optuna", "ray")


class ColumnSpec(NamedTuple):
    """dtype of one trial-table column and whether it may hold missing values."""

    dtype: str
    nullable: bool


_STR = ColumnSpec("object", False)
_OPT_STR = ColumnSpec("object", True)
_FLOAT = ColumnSpec("float64", True)

SCHEMA: dict[str, ColumnSpec] = {
    "source": _STR,
    "study": _STR,
    "trial": ColumnSpec("int64", False),
    "state": _STR,
    "name": _STR,
    "is_zoo": ColumnSpec("bool", False),
    "psnr_db": _FLOAT,
    "latency_ms": _FLOAT,
    "memory_mib": _FLOAT,
    "params_m": _FLOAT,
    "flops_g": _FLOAT,
    "macs_g": _FLOAT,
    "activations_m": _FLOAT,
    "num_conv": ColumnSpec("Int64", True),
    "feasible": ColumnSpec("bool", False),
    "constraints": _STR,
    "genotype": _OPT_STR,
    "fail_reason": _OPT_STR,
    "duration_s": _FLOAT,
    "device": _OPT_STR,
}
TRIAL_COLUMNS: tuple[str, ...] = tuple(SCHEMA)

_FLOAT_ATTRS: tuple[str, ...] = ("params_m", "flops_g", "macs_g", "activations_m")


# --------------------------------------------------------------------------- helpers


def empty_table() -> pd.DataFrame:
    """A trial table with no rows (all columns, schema dtypes)."""
    return _finish([])


def _float(value: Any) -> float:
    """``value`` as a float; NaN for None, booleans, strings that are not numbers, etc."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _int_or_none(value: Any) -> int | None:
    number = _float(value)
    if not math.isfinite(number) or number != int(number):
        return None
    return int(number)


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if text else None


def _json_text(value: Any) -> str | None:
    """A JSON value as text: strings are kept as they are, other objects are dumped."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    return json.dumps(value, sort_keys=True)


def _constraints(value: Any, where: str) -> dict[str, float]:
    """The ``constraints`` attribute as ``{name: float}`` (``{}`` when absent)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            logger.warning("%s: constraints %r are not JSON; treated as violated", where, value)
            return {"unparsable": math.inf}
    if not isinstance(value, Mapping):
        logger.warning(
            "%s: constraints should be a dict name -> value, got %r; treated as violated",
            where,
            value,
        )
        return {"unparsable": math.inf}
    return {str(k): _float(v) for k, v in value.items()}


def _is_feasible(state: str, constraints: Mapping[str, float]) -> bool:
    # NaN <= 0 is False, so a missing constraint value counts as a violation.
    return state == "COMPLETE" and all(v <= 0.0 for v in constraints.values())


def _row(
    *,
    source: str,
    study: str,
    trial: int,
    state: str,
    attrs: Mapping[str, Any],
    objectives: Mapping[str, float],
    where: str,
    duration_s: float = math.nan,
) -> dict[str, Any]:
    """One table row from a trial's attributes (the shared contract of both searchers)."""
    constraints = _constraints(attrs.get("constraints"), where)
    name = _opt_str(attrs.get("name")) or f"trial_{trial}"
    duration = _float(attrs.get("duration_s"))
    return {
        "source": source,
        "study": study,
        "trial": trial,
        "state": state,
        "name": name,
        "is_zoo": bool(attrs.get("is_zoo") or False),
        **{key: _float(objectives.get(key)) for key in OBJECTIVES},
        **{key: _float(attrs.get(key)) for key in _FLOAT_ATTRS},
        "num_conv": _int_or_none(attrs.get("num_conv")),
        "feasible": _is_feasible(state, constraints),
        "constraints": json.dumps(constraints, sort_keys=True),
        "genotype": _json_text(attrs.get("genotype")),
        "fail_reason": _opt_str(attrs.get("fail_reason")),
        "duration_s": duration if math.isfinite(duration) else duration_s,
        "device": _opt_str(attrs.get("device")),
    }


def _finish(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> a table with the schema's column order and dtypes."""
    df = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    for column, spec in SCHEMA.items():
        if spec.dtype == "object":
            values = [None if _missing(v) else str(v) for v in df[column].tolist()]
            df[column] = pd.Series(values, index=df.index, dtype=object)
        elif spec.dtype == "Int64":
            df[column] = pd.array(
                [None if _missing(v) else int(v) for v in df[column].tolist()], dtype="Int64"
            )
        else:
            df[column] = df[column].astype(spec.dtype)
    return df.reset_index(drop=True)


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


# --------------------------------------------------------------------------- schema checks


def _dtype_ok(series: pd.Series, spec: ColumnSpec) -> bool:
    dtype = series.dtype
    if spec.dtype == "object":
        if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
            return False
        return all(isinstance(v, str) or (spec.nullable and _missing(v)) for v in series.tolist())
    if spec.dtype == "int64":
        return pd.api.types.is_integer_dtype(dtype) and not series.isna().any()
    if spec.dtype == "Int64":
        return pd.api.types.is_integer_dtype(dtype)
    if spec.dtype == "bool":
        return pd.api.types.is_bool_dtype(dtype) and not series.isna().any()
    return pd.api.types.is_float_dtype(dtype)


def validate_table(df: pd.DataFrame, allow_extra: bool = False) -> None:
    """Check that ``df`` is a trial table: the :data:`TRIAL_COLUMNS` with :data:`SCHEMA` dtypes.

    String columns may be ``object`` or string dtype but must hold ``str`` values (or missing
    values where nullable); integer columns accept any integer dtype; ``state`` and ``source``
    values must be among :data:`STATES` / :data:`SOURCES`.

    Args:
        allow_extra: accept columns beyond the schema (e.g. a ``pareto`` flag added for a
            report); by default they are an error.

    Raises:
        ValueError: missing (or unexpected) columns, wrong dtypes or values; the message names
            each offending column with what was found and what is allowed.
    """
    missing = [c for c in TRIAL_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"trial table lacks the columns {missing}; a trial table has {list(TRIAL_COLUMNS)} "
            "(build it with results.table.optuna_study.from_optuna / "
            "results.table.ray_experiment.from_ray)"
        )
    extra = [str(c) for c in df.columns if c not in SCHEMA]
    if extra and not allow_extra:
        raise ValueError(
            f"trial table has unexpected columns {extra}; drop them "
            f"(df[list(TRIAL_COLUMNS)]) or pass allow_extra=True"
        )
    problems = [
        f"{column}: dtype {df[column].dtype} (expected {spec.dtype}"
        f"{', no missing values' if not spec.nullable else ''})"
        for column, spec in SCHEMA.items()
        if not _dtype_ok(df[column], spec)
    ]
    for column, allowed in (("state", STATES), ("source", SOURCES)):
        bad = sorted({str(v) for v in df[column].tolist() if v not in allowed})
        if bad:
            problems.append(f"{column}: values {bad} (allowed: {list(allowed)})")
    if problems:
        raise ValueError("trial table does not match the schema: " + "; ".join(problems))


# --------------------------------------------------------------------------- CSV


def to_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a table to CSV atomically (temporary file in the same folder, then renamed).

    The parent folder is created if needed; returns the path.
    """
    target = atomic_write_text(path, df.to_csv(index=False))
    logger.info("Wrote %s (%d rows)", target, len(df))
    return target


def read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written by :func:`to_csv` back with the schema's dtypes.

    Empty cells of nullable string columns become None (an empty ``fail_reason`` string does not
    survive the round trip).

    Raises:
        ValueError: the file lacks trial-table columns (see :func:`validate_table`).
    """
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in TRIAL_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: not a trial table, it lacks the columns {missing}")
    rows: list[dict[str, Any]] = []
    for record in raw.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for column, spec in SCHEMA.items():
            text = record[column]
            if spec.dtype == "object":
                row[column] = text if text != "" or not spec.nullable else None
            elif spec.dtype == "bool":
                row[column] = text == "True"
            elif spec.dtype in ("int64", "Int64"):
                row[column] = int(float(text)) if text != "" else None
            else:
                row[column] = float(text) if text != "" else math.nan
        rows.append(row)
    table = _finish(rows)
    validate_table(table)
    return table
