"""The trial table (:mod:`results.table.schema`) of an Optuna study: :func:`from_optuna`.

The study's directions are ``psnr_db`` max, ``latency_ms`` min and ``memory_mib`` min, named
with ``study.set_metric_names`` (any order of the three).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from results.table.schema import OBJECTIVES, _finish, _row
from results.table.storage_file import check_storage_file

if TYPE_CHECKING:
    import optuna

__all__ = ["from_optuna"]

logger = logging.getLogger("results.table")  # the loaders log as the trial table does

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
    record it. ``table.attrs["zoo_outside_space"]`` lists the zoo nets the study's space cannot
    express (skipped when it began, ``study.zoo_outside=skip``); a successive-halving trial
    below the top rung is not ``feasible`` (its ``constraints`` hold ``rung``: the rungs it is
    short of the top; see :mod:`searchers.trials.halving`).

    Raises:
        FileNotFoundError: ``storage`` is a SQLite URL whose file does not exist.
        StorageFileError: the file is no SQLite database or another program's one (a
            ``ValueError``; :func:`results.table.storage_file.check_storage_file`).
        ValueError: ``study_name`` is None and the storage holds zero or several studies, or no
            study has that name (the message lists the names found); the study is not
            multi-objective, or its metric names or directions differ from
            :data:`OBJECTIVES`.
    """
    import optuna

    if isinstance(storage, str):
        _check_sqlite_exists(storage)
        check_storage_file(storage)  # random bytes, another program's database: refused
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
    table = _finish(rows)
    outside = list(study.user_attrs.get("zoo_outside_space") or [])
    table.attrs["zoo_outside_space"] = outside  # the zoo nets the study's space cannot express
    if outside:
        logger.info("Optuna study %r: zoo nets outside its space, not enqueued: %s", study_name,
                    ", ".join(outside))
    return table
