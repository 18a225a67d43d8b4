"""The data half of the Pareto plots of a trial table (:mod:`results.table.schema`).

:func:`pareto_data` and :func:`parallel_data` compute what is drawn as plain structures (and
:func:`results.table.pareto.search_summary` the hypervolumes, the dominated zoo nets and the nets to
retrain first); :mod:`results.plots.pareto` draws them.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pandas as pd

from results.table.pareto import pareto_mask
from results.table.schema import OBJECTIVES

__all__ = [
    "PARALLEL_COLUMNS",
    "ParetoData",
    "parallel_data",
    "pareto_data",
]

logger = logging.getLogger("results.plots")  # all plot modules share the plots' logger

# Columns of the parallel-coordinates plot, in axis order.
PARALLEL_COLUMNS: tuple[str, ...] = (
    "psnr_db",
    "latency_ms",
    "memory_mib",
    "params_m",
    "flops_g",
    "activations_m",
)
# Cost columns that may serve as a plot axis besides the objectives; all are minimised.
_COST_DIRECTIONS: dict[str, str] = {
    "params_m": "min",
    "flops_g": "min",
    "macs_g": "min",
    "activations_m": "min",
    "num_conv": "min",
    # latency / memory as ratios to a reference net of the same study (results.report.command)
    "latency_x": "min",
    "memory_x": "min",
}
_POINT_COLUMNS: tuple[str, ...] = ("name", "is_zoo", "feasible", "params_m", "flops_g")


class ParetoData(NamedTuple):
    """What a Pareto plot draws.

    * ``axes``: ``{column: "min" | "max"}`` of the plotted axes, in axis order (x, y[, z]);
    * ``points``: every COMPLETE trial with finite values on the axes (zoo included, feasible or
      not), with the columns ``name``, ``is_zoo``, ``feasible``, ``params_m``, ``flops_g``, the
      axes and ``on_front``;
    * ``front``: the points on the Pareto front of the plotted axes (eligible rows only, see
      :func:`results.table.pareto.pareto_mask`), sorted along x;
    * ``zoo``: the zoo points, in table order;
    * ``line_shape``: Plotly step shape that draws the 2-D front as an attainment staircase
      (``"hv"`` when x is minimised, ``"vh"`` when maximised); None for 3 axes.
    """

    axes: dict[str, str]
    points: pd.DataFrame
    front: pd.DataFrame
    zoo: pd.DataFrame
    line_shape: str | None


def _axis_direction(column: str) -> str:
    direction = OBJECTIVES.get(column) or _COST_DIRECTIONS.get(column)
    if direction is None:
        raise ValueError(
            f"axis {column!r} is neither an objective nor a cost column; allowed: "
            f"{list(OBJECTIVES) + list(_COST_DIRECTIONS)}"
        )
    return direction


def pareto_data(
    df: pd.DataFrame, x: str = "latency_ms", y: str = "psnr_db", z: str | None = None
) -> ParetoData:
    """Points, front and zoo points of a trial table for a Pareto plot of ``x`` / ``y`` [/ ``z``].

    The front is computed over the plotted axes only (so a 2-D plot shows a true 2-D front), with
    each axis's direction from :data:`results.table.schema.OBJECTIVES` (cost columns such as
    ``params_m`` are minimised).

    Raises:
        ValueError: an axis is repeated, unknown, or not a column of ``df``.
    """
    names = [x, y] if z is None else [x, y, z]
    if len(set(names)) != len(names):
        raise ValueError(f"axes {names} repeat a column; pick distinct columns")
    axes = {name: _axis_direction(name) for name in names}
    needed = list(dict.fromkeys([*_POINT_COLUMNS, "state", *names]))
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(
            f"the table lacks the columns {missing}; columns found: {list(df.columns)}"
        )
    values = df[names].to_numpy(dtype=float)
    keep = (df["state"] == "COMPLETE").to_numpy(dtype=bool) & np.isfinite(values).all(axis=1)
    on_front = pareto_mask(df, axes).to_numpy(dtype=bool)
    columns = list(dict.fromkeys([*_POINT_COLUMNS, *names]))
    points = df.loc[keep, columns].copy()
    points["on_front"] = on_front[keep]
    front = points.loc[points["on_front"]].sort_values([x, y], kind="stable")
    zoo = points.loc[points["is_zoo"].astype(bool)]
    line_shape = None if z is not None else ("hv" if axes[x] == "min" else "vh")
    return ParetoData(axes, points, front, zoo, line_shape)


def parallel_data(df: pd.DataFrame) -> pd.DataFrame:
    """COMPLETE trials with finite :data:`PARALLEL_COLUMNS`, plus ``name`` and ``is_zoo``.

    Rows missing any of those values are left out (a parallel-coordinates line needs them all).

    Raises:
        ValueError: a needed column is not in ``df``.
    """
    needed = ["name", "is_zoo", "state", *PARALLEL_COLUMNS]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(
            f"the table lacks the columns {missing}; columns found: {list(df.columns)}"
        )
    values = df[list(PARALLEL_COLUMNS)].to_numpy(dtype=float)
    keep = (df["state"] == "COMPLETE").to_numpy(dtype=bool) & np.isfinite(values).all(axis=1)
    dropped = int((df["state"] == "COMPLETE").sum()) - int(keep.sum())
    if dropped:
        logger.info("parallel coordinates: %d complete trials lack a value, left out", dropped)
    return df.loc[keep, ["name", "is_zoo", *PARALLEL_COLUMNS]].copy()
