"""Pareto fronts and hypervolumes of trial tables (see :mod:`results.table.schema`).

* :func:`eligible_mask`: rows that may be on a front: COMPLETE, feasible, finite objectives;
* :func:`pareto_mask`: the non-dominated eligible rows;
* :func:`hypervolume`: exact hypervolume for 1 to 3 objectives (sweep in 2-D, slices in 3-D);
* :func:`zoo_reference_point`: the reference point "as bad as the worst published net";
* :func:`front_summary`: search front against zoo front, as plain JSON-ready values.

Directions are ``"min"`` or ``"max"``; maximised objectives are negated internally so that
everything is minimised.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from results.table.schema import OBJECTIVES

__all__ = [
    "eligible_mask",
    "front_summary",
    "hypervolume",
    "aim_candidates",
    "pareto_mask",
    "search_summary",
    "zoo_reference_point",
]

logger = logging.getLogger(__name__)

_DIRECTIONS = ("min", "max")
_CHUNK = 512  # rows compared at once in the dominance test (bounds memory to ~CHUNK * n)


def _signs(directions: Sequence[str], where: str) -> np.ndarray:
    """+1 for ``"min"``, -1 for ``"max"`` (multiplying by it turns everything into minimising)."""
    bad = [d for d in directions if d not in _DIRECTIONS]
    if bad:
        raise ValueError(
            f"{where}: directions {list(directions)} contain {bad}; allowed: {list(_DIRECTIONS)}"
        )
    return np.array([1.0 if d == "min" else -1.0 for d in directions])


def _check_columns(df: pd.DataFrame, objectives: Mapping[str, str]) -> None:
    if not objectives:
        raise ValueError("objectives is empty; pass {column: 'min' | 'max'}, e.g. OBJECTIVES")
    missing = [c for c in objectives if c not in df.columns]
    if missing:
        raise ValueError(
            f"objectives {missing} are not columns of the table; columns found: {list(df.columns)}"
        )
    _signs(list(objectives.values()), "objectives")


def _min_space(df: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    """The objective values of ``df`` as an (n, d) float array in which smaller is better."""
    values = df[list(objectives)].to_numpy(dtype=float)
    return values * _signs(list(objectives.values()), "objectives")


def _non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``points`` (minimised) that no other row dominates.

    Row ``j`` dominates row ``i`` when it is <= in every objective and < in at least one, so
    identical rows never dominate each other.
    """
    n = len(points)
    keep = np.ones(n, dtype=bool)
    for start in range(0, n, _CHUNK):
        block = points[start : start + _CHUNK]  # (b, d): the rows tested
        no_worse = np.all(points[None, :, :] <= block[:, None, :], axis=2)  # (b, n)
        better = np.any(points[None, :, :] < block[:, None, :], axis=2)
        keep[start : start + len(block)] = ~np.any(no_worse & better, axis=1)
    return keep


def eligible_mask(df: pd.DataFrame, objectives: Mapping[str, str] = OBJECTIVES) -> pd.Series:
    """Rows that may be on a Pareto front: state COMPLETE, feasible, every objective finite."""
    _check_columns(df, objectives)
    finite = np.isfinite(df[list(objectives)].to_numpy(dtype=float)).all(axis=1)
    complete = (df["state"] == "COMPLETE").to_numpy(dtype=bool)
    feasible = df["feasible"].to_numpy(dtype=bool)
    return pd.Series(finite & complete & feasible, index=df.index, name="eligible")


def pareto_mask(df: pd.DataFrame, objectives: Mapping[str, str] = OBJECTIVES) -> pd.Series:
    """Boolean Series (index of ``df``): the non-dominated rows among the eligible ones.

    Eligible rows are COMPLETE, feasible and have finite values of every objective
    (:func:`eligible_mask`); all other rows are False. Identical points are all non-dominated.

    Raises:
        ValueError: an objective is not a column, or a direction is not ``"min"``/``"max"``.
    """
    eligible = eligible_mask(df, objectives).to_numpy()
    mask = np.zeros(len(df), dtype=bool)
    if eligible.any():
        points = _min_space(df.loc[eligible], objectives)
        mask[np.flatnonzero(eligible)] = _non_dominated(points)
    return pd.Series(mask, index=df.index, name="pareto")


# --------------------------------------------------------------------------- hypervolume


def _hv2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Area dominated by ``points`` (minimised, all strictly better than ``reference``)."""
    order = np.lexsort((points[:, 1], points[:, 0]))  # by x, then y
    area = 0.0
    best_y = reference[1]
    for x, y in points[order]:
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return float(area)


def hypervolume(points: np.ndarray, reference: np.ndarray, directions: Sequence[str]) -> float:
    """Exact hypervolume dominated by ``points`` and bounded by ``reference``.

    Args:
        points: (n, d) objective values, 1 <= d <= 3; n may be 0.
        reference: (d,) reference point.
        directions: ``"min"`` or ``"max"`` per objective.

    Maximised objectives are negated first. Points that are not strictly better than the
    reference in every objective contribute nothing. 2-D: a sweep along x summing horizontal
    strips; 3-D: slices between consecutive z values, each the 2-D area of the points below it.

    Raises:
        ValueError: wrong shapes, d outside 1..3, a direction that is not ``"min"``/``"max"``,
            or non-finite values.
    """
    pts = np.asarray(points, dtype=float)
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 1 or not 1 <= ref.size <= 3:
        raise ValueError(
            f"reference has shape {ref.shape}; expected (d,) with 1 <= d <= 3 objectives"
        )
    d = ref.size
    if pts.size == 0:
        pts = pts.reshape(0, d)
    if pts.ndim != 2 or pts.shape[1] != d:
        raise ValueError(
            f"points have shape {pts.shape}; expected (n, {d}) to match reference {ref.tolist()}"
        )
    if len(directions) != d:
        raise ValueError(
            f"directions {list(directions)} has {len(directions)} entries; expected {d}, one per "
            "objective"
        )
    signs = _signs(directions, "hypervolume")
    if not np.isfinite(ref).all():
        raise ValueError(f"reference {ref.tolist()} is not finite; pass finite values")
    if not np.isfinite(pts).all():
        bad = np.flatnonzero(~np.isfinite(pts).all(axis=1)).tolist()
        raise ValueError(f"points rows {bad} are not finite; drop them (see eligible_mask)")
    pts = pts * signs
    ref = ref * signs
    pts = pts[(pts < ref).all(axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[_non_dominated(pts)]
    if d == 1:
        return float(ref[0] - pts[:, 0].min())
    if d == 2:
        return _hv2d(pts, ref)
    pts = pts[np.argsort(pts[:, 2], kind="stable")]
    volume = 0.0
    for i in range(len(pts)):
        top = pts[i + 1, 2] if i + 1 < len(pts) else ref[2]
        depth = top - pts[i, 2]
        if depth > 0:
            volume += _hv2d(pts[: i + 1, :2], ref[:2]) * depth
    return float(volume)


# --------------------------------------------------------------------------- zoo comparison


def _zoo_rows(df: pd.DataFrame, objectives: Mapping[str, str]) -> pd.Series:
    """Complete zoo rows with finite objectives (feasible or not)."""
    _check_columns(df, objectives)
    finite = np.isfinite(df[list(objectives)].to_numpy(dtype=float)).all(axis=1)
    zoo = df["is_zoo"].to_numpy(dtype=bool) & (df["state"] == "COMPLETE").to_numpy(dtype=bool)
    return pd.Series(zoo & finite, index=df.index)


def zoo_reference_point(
    df: pd.DataFrame, objectives: Mapping[str, str] = OBJECTIVES, margin: float = 0.0
) -> np.ndarray:
    """The worst value of each objective among the complete zoo rows, in ``objectives`` order.

    Minimised objectives take the zoo's maximum, maximised ones its minimum: a point has to beat
    the worst published net in every objective to count. Feasibility is not required of the zoo
    rows. ``margin`` (>= 0) moves each coordinate further towards "worse" by that fraction of
    its magnitude (``0.05``: 5 % slower, larger and lower), so that the zoo nets that are the
    worst in some objective still add volume.

    Raises:
        ValueError: ``margin`` is negative or not finite, or the table has no complete zoo row
            with finite objective values.
    """
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin={margin!r}; expected a finite fraction >= 0, e.g. 0.0 or 0.05")
    rows = _zoo_rows(df, objectives)
    if not rows.any():
        zoo = df.loc[df["is_zoo"].to_numpy(dtype=bool)]
        states = zoo["state"].value_counts().to_dict() if len(zoo) else {}
        raise ValueError(
            f"no complete zoo row with finite {list(objectives)} in the table ({len(zoo)} zoo "
            f"rows, states {states}); the reference point needs at least one measured zoo net "
            "(enqueue the zoo first and wait for it, or pass a reference point)"
        )
    values = df.loc[rows, list(objectives)].to_numpy(dtype=float)
    signs = _signs(list(objectives.values()), "objectives")
    worst = (values * signs).max(axis=0) * signs
    result: np.ndarray = worst + signs * margin * np.abs(worst)
    return result


def aim_candidates(
    df: pd.DataFrame, latency_reference: str = "rlfn_ntire", memory_reference: str = "fmen_s"
) -> pd.DataFrame:
    """Searched front rows worth retraining first for the benchmark's aim, best proxy PSNR first.

    The aim is a net with ``latency_reference``'s PSNR at lower latency and no more memory than
    ``memory_reference``. Candidates are the non-zoo rows on the 3-objective front
    (:func:`pareto_mask`) measured faster than ``latency_reference`` and with no more memory
    than ``memory_reference`` in the same study.

    Raises:
        ValueError: a reference net has no complete zoo row with finite objectives.
    """
    zoo = df.loc[_zoo_rows(df, OBJECTIVES)].drop_duplicates("name").set_index("name")
    absent = [n for n in (latency_reference, memory_reference) if n not in zoo.index]
    if absent:
        raise ValueError(
            f"no complete zoo row for {absent} in the table (zoo rows: {sorted(zoo.index)}); "
            "enqueue them into the study to rank the candidates"
        )
    lat = float(zoo.loc[latency_reference, "latency_ms"])
    mem = float(zoo.loc[memory_reference, "memory_mib"])
    keep = (pareto_mask(df) & ~df["is_zoo"].astype(bool) & (df["latency_ms"] < lat)
            & (df["memory_mib"] <= mem))
    return df.loc[keep].sort_values("psnr_db", ascending=False, kind="stable")


def _names(df: pd.DataFrame, mask: pd.Series) -> list[str]:
    return [str(n) for n in df.loc[mask, "name"].tolist()]


def front_summary(
    df: pd.DataFrame,
    objectives: Mapping[str, str] = OBJECTIVES,
    margin: float = 0.0,
    reference: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Compare the searched (non-zoo) front with the zoo's, as JSON-ready values.

    The reference point is ``reference`` if given, else :func:`zoo_reference_point` (with
    ``margin``). Keys:

    * ``objectives``, ``reference_point`` (``{objective: value}``);
    * ``n_trials``, ``n_complete``, ``n_feasible`` (eligible for a front), ``n_failed``,
      ``n_zoo`` (complete zoo rows);
    * ``hypervolume_search`` / ``hypervolume_zoo``: volumes dominated by the eligible searched /
      zoo rows; ``hypervolume_ratio``: search / zoo (> 1: the search front beats the zoo's;
      None when the zoo volume is 0, e.g. a single zoo net with ``margin=0``);
    * ``n_front`` / ``front``: size and names of the searched front; ``n_zoo_front`` /
      ``zoo_front`` likewise for the zoo;
    * ``n_front_combined`` / ``front_combined_searched``: size of the front of all rows and the
      searched names on it;
    * ``zoo_dominated``: ``{zoo name: [searched front names that dominate it]}`` over the
      complete zoo rows (feasible or not); ``zoo_not_dominated``: the other zoo names.

    Hypervolumes are in the product of the objectives' units (dB * ms * MiB), so only their
    ratio is comparable across studies that share a reference point.

    Raises:
        ValueError: no reference can be built (see :func:`zoo_reference_point`), or
            ``reference`` does not have one value per objective.
    """
    _check_columns(df, objectives)
    df = df.reset_index(drop=True)
    columns = list(objectives)
    directions = list(objectives.values())
    if reference is None:
        ref = zoo_reference_point(df, objectives, margin)
    else:
        ref = np.asarray(reference, dtype=float)
        if ref.shape != (len(columns),):
            raise ValueError(
                f"reference={ref.tolist()} has shape {ref.shape}; expected one value per "
                f"objective {columns}"
            )
    zoo = df["is_zoo"].astype(bool)
    eligible = eligible_mask(df, objectives)
    search_points = df.loc[eligible & ~zoo, columns].to_numpy(dtype=float)
    zoo_points = df.loc[eligible & zoo, columns].to_numpy(dtype=float)
    hv_search = hypervolume(search_points, ref, directions)
    hv_zoo = hypervolume(zoo_points, ref, directions)
    ratio = hv_search / hv_zoo if hv_zoo > 0 else None
    if ratio is None:
        logger.warning(
            "zoo hypervolume is 0 with reference %s: no ratio (try a margin > 0)", ref.tolist()
        )

    search_front = pd.Series(False, index=df.index)
    search_front.loc[~zoo] = pareto_mask(df.loc[~zoo], objectives).to_numpy()
    zoo_front = pd.Series(False, index=df.index)
    zoo_front.loc[zoo] = pareto_mask(df.loc[zoo], objectives).to_numpy()
    combined = pareto_mask(df, objectives)

    # Every searched row that dominates a zoo net is itself dominated by (or is) a searched front
    # row that then dominates it too, so checking the front rows is enough.
    signs = _signs(directions, "objectives")
    front_points = df.loc[search_front, columns].to_numpy(dtype=float) * signs
    front_names = _names(df, search_front)
    zoo_rows = _zoo_rows(df, objectives)
    dominated: dict[str, list[str]] = {}
    not_dominated: list[str] = []
    for name, values in zip(
        _names(df, zoo_rows), df.loc[zoo_rows, columns].to_numpy(dtype=float), strict=True
    ):
        point = values * signs
        by = [
            front_names[j]
            for j in range(len(front_points))
            if (front_points[j] <= point).all() and (front_points[j] < point).any()
        ]
        if by:
            dominated[name] = by
        else:
            not_dominated.append(name)

    complete = df["state"] == "COMPLETE"
    return {
        "objectives": dict(objectives),
        "reference_point": {c: float(v) for c, v in zip(columns, ref, strict=True)},
        "n_trials": len(df),
        "n_complete": int(complete.sum()),
        "n_feasible": int(eligible.sum()),
        "n_failed": int((df["state"] == "FAIL").sum()),
        "n_zoo": int(zoo_rows.sum()),
        "hypervolume_search": hv_search,
        "hypervolume_zoo": hv_zoo,
        "hypervolume_ratio": ratio,
        "n_front": int(search_front.sum()),
        "front": front_names,
        "n_zoo_front": int(zoo_front.sum()),
        "zoo_front": _names(df, zoo_front),
        "n_front_combined": int(combined.sum()),
        "front_combined_searched": _names(df, combined & ~zoo),
        "zoo_dominated": dominated,
        "zoo_not_dominated": not_dominated,
    }


def search_summary(df: pd.DataFrame, margin: float = 0.0) -> dict[str, Any]:
    """:func:`front_summary` (with ``margin``) plus ``aim_candidates``: ``{name: {"psnr_db",
    "latency_ms", "memory_mib"}}`` of :func:`aim_candidates`, best first, or ``{"error": why}``.

    Without a complete zoo net, returns ``{"error": why, "n_trials", "n_complete",
    "n_failed"}`` instead (logged as a warning). This is ``summary.json`` of ``python -m
    results`` and the summary of its Pareto page.
    """
    try:
        summary = front_summary(df, margin=margin)
    except ValueError as err:
        logger.warning("no front summary: %s", err)
        return {
            "error": str(err),
            "n_trials": len(df),
            "n_complete": int((df["state"] == "COMPLETE").sum()),
            "n_failed": int((df["state"] == "FAIL").sum()),
        }
    try:
        candidates = aim_candidates(df)
    except ValueError as err:
        summary["aim_candidates"] = {"error": str(err)}
    else:
        summary["aim_candidates"] = {
            str(r["name"]): {k: float(r[k]) for k in ("psnr_db", "latency_ms", "memory_mib")}
            for r in candidates.to_dict("records")
        }
    return summary
