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

Loaders:

* :func:`from_optuna`: a study whose directions are ``psnr_db`` max, ``latency_ms`` min and
  ``memory_mib`` min, named with ``study.set_metric_names`` (any order of the three);
* :func:`from_ray`: an experiment folder written by Ray Tune, read as plain files (no Ray
  cluster, no Ray import). Ray Tune 2.60 writes ``<storage_path>/<experiment>/`` holding
  ``experiment_state-<date>.json``, ``basic-variant-state-<date>.json``, ``tuner.pkl`` and one
  folder per trial, ``<trainable>_<trial_id>_<index>_<tag>_<date>/``, with ``params.json`` (the
  trial's config), ``params.pkl``, ``result.json`` (one JSON object per ``tune.report`` call; the
  file exists but is empty when nothing was reported), ``progress.csv``, ``events.out.tfevents.*``
  and, for a crashed trial, ``error.txt`` / ``error.pkl``.

:func:`validate_table` checks a frame against the schema; :func:`to_csv` / :func:`read_csv`
round-trip a table through CSV.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd

from search_space.files import atomic_write_text

if TYPE_CHECKING:
    import optuna

__all__ = [
    "OBJECTIVES",
    "SCHEMA",
    "SOURCES",
    "STATES",
    "TRIAL_COLUMNS",
    "ColumnSpec",
    "empty_table",
    "from_optuna",
    "from_ray",
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

# Ray Tune trial status (experiment_state-*.json) -> table state.
_RAY_STATUS: dict[str, str] = {
    "TERMINATED": "COMPLETE",
    "ERROR": "FAIL",
    "RUNNING": "RUNNING",
    "PENDING": "WAITING",
    "PAUSED": "WAITING",
}
# "<trainable>_<5 hex run id>_<5 digit counter>_<index>_..." (Ray's default trial folder name)
_RAY_DIRNAME = re.compile(r"_([0-9a-f]{5}_(\d{5}))_\d+_")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FAIL_REASON_CHARS = 500


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


# --------------------------------------------------------------------------- Optuna


def _check_sqlite_exists(storage: str) -> None:
    """Fail early for a missing SQLite file: connecting would silently create an empty one."""
    prefix = "sqlite:///"
    if not storage.startswith(prefix):
        return
    path = storage[len(prefix) :].split("?", 1)[0]
    if path in ("", ":memory:"):
        return
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"storage={storage!r}: the SQLite file {path!r} does not exist; pass the URL of an "
            "existing study database, e.g. sqlite:///runs/optuna.db (three slashes and a "
            "relative path, or four slashes and an absolute one)"
        )


def _check_objectives(study: optuna.Study) -> list[str]:
    """Metric names of ``study`` in value order, after checking them against OBJECTIVES."""
    directions = [d.name for d in study.directions]
    names = study.metric_names
    expected = ", ".join(
        f"{k} ({'MAXIMIZE' if v == 'max' else 'MINIMIZE'})" for k, v in OBJECTIVES.items()
    )
    if len(directions) < 2:
        raise ValueError(
            f"study {study.study_name!r} is not multi-objective: found directions {directions} "
            f"and metric names {names}; expected {len(OBJECTIVES)} objectives: {expected}"
        )
    if names is None or sorted(names) != sorted(OBJECTIVES):
        raise ValueError(
            f"study {study.study_name!r} has metric names {names} (directions {directions}); "
            f"expected the objectives {expected}, set with "
            f"study.set_metric_names({list(OBJECTIVES)})"
        )
    wrong = [
        f"{name}: {direction}"
        for name, direction in zip(names, directions, strict=True)
        if direction != ("MAXIMIZE" if OBJECTIVES[name] == "max" else "MINIMIZE")
    ]
    if wrong:
        raise ValueError(
            f"study {study.study_name!r} optimises {', '.join(wrong)} the wrong way; "
            f"expected {expected}"
        )
    return list(names)


def from_optuna(
    storage: str | optuna.storages.BaseStorage, study_name: str | None = None
) -> pd.DataFrame:
    """The trial table of one Optuna study.

    Args:
        storage: a storage URL (``sqlite:///runs/optuna.db``...) or storage object.
        study_name: the study to read; ``None`` picks the only study of ``storage``.

    Every trial becomes a row, whatever its state; objective values are NaN unless the trial is
    COMPLETE. ``duration_s`` falls back to Optuna's own start/end times when the trial did not
    record it.

    Raises:
        FileNotFoundError: ``storage`` is a SQLite URL whose file does not exist.
        ValueError: ``study_name`` is None and the storage holds zero or several studies, or no
            study has that name (the message lists the names found); the study is not
            multi-objective, or its metric names or directions differ from
            :data:`OBJECTIVES`.
    """
    import optuna

    if isinstance(storage, str):
        _check_sqlite_exists(storage)
    names = optuna.study.get_all_study_names(storage)
    if study_name is None:
        if len(names) != 1:
            raise ValueError(
                f"study_name=None needs a storage holding exactly one study, found "
                f"{len(names)}: {sorted(names)}; pass one of them as study_name (--study)"
            )
        study_name = names[0]
    elif study_name not in names:
        raise ValueError(
            f"study_name={study_name!r} is not in the storage; studies found: {sorted(names)}"
        )
    study = optuna.load_study(study_name=study_name, storage=storage)
    metric_names = _check_objectives(study)

    rows = []
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name
        values = trial.values if state == "COMPLETE" and trial.values is not None else []
        duration = trial.duration.total_seconds() if trial.duration is not None else math.nan
        rows.append(
            _row(
                source="optuna",
                study=study_name,
                trial=trial.number,
                state=state,
                attrs=trial.user_attrs,
                objectives=dict(zip(metric_names, values, strict=False)),
                where=f"study {study_name!r} trial {trial.number}",
                duration_s=duration,
            )
        )
    logger.info("Optuna study %r: %d trials", study_name, len(rows))
    return _finish(rows)


# --------------------------------------------------------------------------- Ray Tune


def _read_last_result(path: Path) -> dict[str, Any] | None:
    """The last JSON object of a ``result.json`` file (JSON lines); None if there is none."""
    if not path.is_file():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for line in reversed(lines):
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            # a line cut short while Ray was writing it: use the previous one
            logger.warning("%s: skipping an unreadable line", path)
            continue
        if isinstance(result, dict):
            return result
    return None


def _read_json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning("%s: not valid JSON, ignored", path)
        return {}
    return data if isinstance(data, dict) else {}


def _error_reason(path: Path) -> str:
    """A one-line reason from a Ray ``error.txt``.

    The file starts with ``Failure # N (occurred at <date>)`` and a traceback; the exception
    (type and message, possibly several lines) comes last. That exception is returned, its lines
    joined with `` | ``; files of another shape give their first non-empty lines instead.
    """
    text = _ANSI.sub("", path.read_text(encoding="utf-8", errors="replace"))
    lines = [line.rstrip() for line in text.splitlines()]
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    start = None
    for i in range(frames[-1] + 1 if frames else 0, len(lines)):
        line = lines[i]
        if line and not line[0].isspace() and re.match(r"^[A-Za-z_][\w.]*(: |:?$)", line):
            if line.startswith("Failure #"):
                continue
            start = i
            break
    if start is None:
        chosen = [line.strip() for line in lines if line.strip()][:3]
    else:
        chosen = [line.strip() for line in lines[start:] if line.strip()]
    reason = " | ".join(chosen) or f"{path.name} is empty"
    if len(reason) > _FAIL_REASON_CHARS:
        reason = reason[: _FAIL_REASON_CHARS - 3] + "..."
    return reason


def _ray_trial_status(experiment: Path) -> dict[str, tuple[str | None, str | None]]:
    """``{trial folder name: (trial_id, status)}`` from the newest ``experiment_state-*.json``.

    Returns an empty dict when there is no such file or it cannot be read (the loader then
    infers states from the trial folders alone).
    """
    files = sorted(experiment.glob("experiment_state-*.json"))
    if not files:
        logger.info("%s: no experiment_state-*.json; states are inferred from files", experiment)
        return {}
    path = files[-1]
    status: dict[str, tuple[str | None, str | None]] = {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for entry in data["trial_data"]:
            trial = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
            folder = trial.get("relative_logdir")
            if folder:
                status[str(folder)] = (trial.get("trial_id"), trial.get("status"))
    except (json.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError) as err:
        logger.warning("%s: unreadable (%r); states are inferred from files", path, err)
        return {}
    return status


def _trial_number(trial_id: str | None, folder: str) -> int | None:
    if trial_id:
        tail = str(trial_id).rsplit("_", 1)[-1]
        if tail.isdigit():
            return int(tail)
    match = _RAY_DIRNAME.search(folder)
    return int(match.group(2)) if match else None


def _objectives_missing(result: Mapping[str, Any]) -> list[str]:
    return [key for key in OBJECTIVES if not math.isfinite(_float(result.get(key)))]


def from_ray(experiment_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The trial table of one Ray Tune experiment folder (``<storage_path>/<name>``).

    Reads only files: every sub-folder holding ``params.json``, ``result.json`` or
    ``error.txt`` is a trial. Its final result is the last line of ``result.json``; ``params.json``
    (the trial's config) fills in ``name`` / ``genotype`` / ``is_zoo`` when the trial reported
    nothing. The state comes from the newest ``experiment_state-*.json`` when it can be read:

    * ``ERROR``, or an ``error.txt`` with no reported result -> FAIL, ``fail_reason`` from the
      exception at the end of ``error.txt`` (unless the result names one);
    * ``RUNNING`` -> RUNNING; ``PENDING`` / ``PAUSED`` -> WAITING; no state file and nothing
      reported or raised yet -> RUNNING;
    * otherwise a reported result -> COMPLETE, or FAIL when it carries a ``fail_reason`` or a
      non-finite objective; ``TERMINATED`` without any result -> FAIL.

    A trial that failed and was retried successfully (``max_failures``) keeps an ``error.txt``
    but ends TERMINATED, so it is COMPLETE. ``trial`` is the counter at the end of Ray's trial
    id (``3d3b8_00002`` -> 2); ``study`` is the folder's name.

    Raises:
        FileNotFoundError: ``experiment_dir`` does not exist or is not a folder.
        ValueError: it holds no trial folder (the message says if it looks like a storage
            path holding several experiments).
    """
    experiment = Path(experiment_dir)
    if not experiment.is_dir():
        raise FileNotFoundError(
            f"experiment_dir={str(experiment)!r} is not an existing folder; pass the Ray Tune "
            "experiment folder, <storage_path>/<experiment name> (RunConfig(storage_path=..., "
            "name=...))"
        )
    markers = ("params.json", "result.json", "error.txt")
    folders = sorted(
        p for p in experiment.iterdir() if p.is_dir() and any((p / m).exists() for m in markers)
    )
    if not folders:
        nested = sorted(
            p.name for p in experiment.iterdir() if p.is_dir() and any(p.glob("experiment_state-*"))
        )
        hint = (
            f"; it holds the experiments {nested}: pass one of them"
            if nested
            else "; pass the folder Ray Tune wrote, <storage_path>/<experiment name>"
        )
        raise ValueError(
            f"experiment_dir={str(experiment)!r} holds no trial folder (a sub-folder with "
            f"{' / '.join(markers)}){hint}"
        )
    status_by_folder = _ray_trial_status(experiment)
    study = experiment.resolve().name

    rows = []
    used_numbers: set[int] = set()
    for folder in folders:
        trial_id, status = status_by_folder.get(folder.name, (None, None))
        result = _read_last_result(folder / "result.json")
        params = _read_json_object(folder / "params.json")
        if result is not None:
            trial_id = trial_id or result.get("trial_id")
        number = _trial_number(trial_id, folder.name)
        if number is None or number in used_numbers:
            number = max(used_numbers, default=-1) + 1
        used_numbers.add(number)
        error = folder / "error.txt"
        attrs: dict[str, Any] = {
            k: params[k] for k in ("name", "genotype", "is_zoo") if k in params
        }
        if result is not None:
            attrs.update(result)
        where = f"Ray trial {folder.name}"

        if error.is_file() and (status == "ERROR" or (status is None and result is None)):
            state = "FAIL"
            if not _opt_str(attrs.get("fail_reason")):
                attrs["fail_reason"] = _error_reason(error)
        elif status in ("RUNNING", "PENDING", "PAUSED"):
            state = _RAY_STATUS[status]
        elif result is not None:
            missing = _objectives_missing(result)
            state = "FAIL" if _opt_str(result.get("fail_reason")) or missing else "COMPLETE"
            if missing and not _opt_str(result.get("fail_reason")):
                attrs["fail_reason"] = f"no finite value reported for {missing}"
        elif status is None:
            state = "RUNNING"
        else:
            state = "FAIL"
            attrs["fail_reason"] = f"Ray status {status} without any reported result"
        objectives = result if result is not None and state in ("COMPLETE", "FAIL") else {}
        rows.append(
            _row(
                source="ray",
                study=study,
                trial=number,
                state=state,
                attrs=attrs,
                objectives={k: v for k, v in objectives.items() if k in OBJECTIVES},
                where=where,
                duration_s=_float(result.get("time_total_s")) if result else math.nan,
            )
        )
    logger.info("Ray experiment %s: %d trials", experiment, len(rows))
    table = _finish(rows)
    return table.sort_values("trial", kind="stable").reset_index(drop=True)


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
            "(build it with results.table.from_optuna / from_ray)"
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
