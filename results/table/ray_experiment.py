"""The trial table (:mod:`results.table.schema`) of a Ray Tune experiment folder: :func:`from_ray`.

The folder is read as plain files (no Ray cluster, no Ray import). Ray Tune 2.60 writes
``<storage_path>/<experiment>/`` holding ``experiment_state-<date>.json``,
``basic-variant-state-<date>.json``, ``tuner.pkl`` and one folder per trial,
``<trainable>_<trial_id>_<index>_<tag>_<date>/``, with ``params.json`` (the trial's config),
``params.pkl``, ``result.json`` (one JSON object per ``tune.report`` call; the file exists but
is empty when nothing was reported), ``progress.csv``, ``events.out.tfevents.*`` and, for a
crashed trial, ``error.txt`` / ``error.pkl``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from results.table.schema import OBJECTIVES, _finish, _float, _opt_str, _row

__all__ = ["from_ray"]

logger = logging.getLogger("results.table")  # the loaders log as the trial table does

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


def _ray_trial_status(experiment: Path
                      ) -> tuple[dict[str, tuple[str | None, str | None]], float | None]:
    """``{trial folder name: (trial_id, status)}`` from the newest ``experiment_state-*.json``,
    and that file's modification time.

    Returns an empty dict and None when there is no such file or it cannot be read (the loader
    then infers states from the trial folders alone).
    """
    files = sorted(experiment.glob("experiment_state-*.json"))
    if not files:
        logger.info("%s: no experiment_state-*.json; states are inferred from files", experiment)
        return {}, None
    path = files[-1]
    status: dict[str, tuple[str | None, str | None]] = {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for entry in data["trial_data"]:
            trial = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
            folder = trial.get("relative_logdir")
            if folder:
                status[str(folder)] = (trial.get("trial_id"), trial.get("status"))
        saved = path.stat().st_mtime
    except (OSError, json.JSONDecodeError, KeyError, TypeError, IndexError,
            AttributeError) as err:
        logger.warning("%s: unreadable (%r); states are inferred from files", path, err)
        return {}, None
    return status, saved


def _started(folder: Path) -> float:
    """When a trial folder's trial started: the oldest of its marker files."""
    times = [p.stat().st_mtime for p in (folder / m for m in ("params.json", "result.json",
                                                               "error.txt")) if p.exists()]
    return min(times, default=folder.stat().st_mtime)


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
    ``error.txt`` is a trial, except one the newest experiment state does not list though it
    was saved after the trial started (a trial of a driver killed before it saved that trial,
    which ``Tuner.restore`` ran again under a new id). Its final result is the last line of
    ``result.json``; ``params.json``
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
    status_by_folder, saved = _ray_trial_status(experiment)
    if status_by_folder and saved is not None:
        # a trial the driver started after its last save of the experiment state, and that
        # the driver's death stopped: Tuner.restore does not know it and runs the trial again
        # under a new id (the searcher, restored with the state, suggests the same
        # parameters), so the folder is not part of the experiment
        orphans = [f for f in folders if f.name not in status_by_folder and _started(f) < saved]
        for folder in orphans:
            logger.info("Ray trial %s left out: the newest experiment state, saved after it "
                        "started, does not list it (a trial of a driver stopped before it "
                        "saved the trial, run again on restore)", folder.name)
        folders = [f for f in folders if f not in orphans]
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
