"""The data half of a run log's plots: plain functions that turn the log into what is drawn.

:func:`alpha_history`, :func:`final_weights`, :func:`alpha_winners`, :func:`slot_groups`,
:func:`own_y_range`, :func:`step_ticks`, :func:`loss_columns`, :func:`unused_columns`,
:func:`candidate_styles`, :func:`subplot_grid`, :func:`log_y_columns` and
:func:`is_unit_interval` only need pandas and are what the tests check; the rendering half is
:mod:`results.plots.alphas` and :mod:`results.plots.run`.

DARTS run log (``log.csv``, one row per logged step) columns used here:

* ``step``: the x axis of every plot;
* ``loss_*`` and ``expected_latency_ms`` / ``expected_memory_mib`` / ``expected_params_m``:
  the curves of :func:`results.plots.run.loss_figure` (terms that are all zero or never logged
  get no panel);
* ``alpha/<slot>/<candidate>``: the weight of one candidate op of one architecture slot at that
  step. ``<slot>`` (e.g. ``cells.0.conv0``) may contain dots but never slashes, so the slot is
  everything between the first and the second slash and the candidate is the rest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "ALPHA_PREFIX",
    "EXPECTED_COST_COLUMNS",
    "LOSS_PREFIX",
    "LineStyle",
    "alpha_history",
    "alpha_winners",
    "final_weights",
    "own_y_range",
    "slot_groups",
    "step_ticks",
    "unused_columns",
    "candidate_styles",
    "is_unit_interval",
    "log_y_columns",
    "loss_columns",
    "subplot_grid",
]

logger = logging.getLogger("results.plots")  # all plot modules share the plots' logger

STEP_COLUMN = "step"
ALPHA_PREFIX = "alpha/"
LOSS_PREFIX = "loss_"
EXPECTED_COST_COLUMNS: tuple[str, ...] = (
    "expected_latency_ms",
    "expected_memory_mib",
    "expected_params_m",
)

# Fixed qualitative palette (20 well-separated colours). Candidates are assigned colours in
# sorted-name order; past 20 names the colours repeat with a different dash pattern.
PALETTE: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#e6550d",
    "#31a354",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#fdae6b",
    "#74c476",
    "#f768a1",
    "#636363",
)
DASHES: tuple[str, ...] = ("solid", "dash", "dot", "dashdot")

# Y range used for weights in [0, 1]; slightly padded so curves at exactly 0 or 1 stay visible.
UNIT_Y_RANGE: tuple[float, float] = (-0.02, 1.02)

# Layout sizes in pixels shared by the run figures.
_TOP_PX = 110
_BOTTOM_PX = 60
_ROW_GAP_PX = 70


class LineStyle(NamedTuple):
    """Colour and dash pattern of one candidate's curves (the same in every subplot)."""

    color: str
    dash: str



# --------------------------------------------------------------------------- data


def _require_step(df: pd.DataFrame) -> None:
    if STEP_COLUMN not in df.columns:
        raise ValueError(f"no {STEP_COLUMN!r} column in the log; columns found: {list(df.columns)}")


def _steps(df: pd.DataFrame) -> pd.Index:
    """The ``step`` column as a numeric index named ``step``."""
    return pd.Index(pd.to_numeric(df[STEP_COLUMN]).to_numpy(), name=STEP_COLUMN)


def _parse_alpha_column(column: str) -> tuple[str, str]:
    """Split ``alpha/<slot>/<candidate>`` into ``(slot, candidate)``."""
    slot, sep, candidate = column[len(ALPHA_PREFIX) :].partition("/")
    if not sep or not slot or not candidate:
        raise ValueError(f"malformed alpha column {column!r}; expected 'alpha/<slot>/<candidate>'")
    return slot, candidate


def alpha_history(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Group the ``alpha/<slot>/<candidate>`` columns of a run log by slot.

    Returns ``{slot: frame}`` with slots in order of first appearance in ``df``; each frame is
    indexed by ``step`` (float values, rows in log order) and has one float column per candidate,
    named by the candidate, in the log's column order. Rows where every candidate of a slot is
    missing (steps that did not log that slot) are dropped from that slot's frame.

    Raises:
        ValueError: no ``step`` column, no ``alpha/`` column (the message lists the columns
            found), or an ``alpha/`` column not of the form ``alpha/<slot>/<candidate>``.
    """
    _require_step(df)
    columns_by_slot: dict[str, list[tuple[str, str]]] = {}
    for column in df.columns:
        name = str(column)
        if name.startswith(ALPHA_PREFIX):
            slot, candidate = _parse_alpha_column(name)
            columns_by_slot.setdefault(slot, []).append((name, candidate))
    if not columns_by_slot:
        raise ValueError(
            f"no {ALPHA_PREFIX}<slot>/<candidate> columns in the log; "
            f"columns found: {list(df.columns)}"
        )
    steps = _steps(df)
    history: dict[str, pd.DataFrame] = {}
    for slot, pairs in columns_by_slot.items():
        frame = pd.DataFrame(
            {candidate: pd.to_numeric(df[name]).to_numpy(dtype=float) for name, candidate in pairs},
            index=steps,
        )
        history[slot] = frame.dropna(how="all")
    logger.debug("alpha history: %d slots, %d rows", len(history), len(df))
    return history


def loss_columns(df: pd.DataFrame) -> list[str]:
    """Columns worth a loss curve: every ``loss_*`` column, then the expected-cost columns.

    Both groups keep the log's column order; the expected-cost columns are those of
    :data:`EXPECTED_COST_COLUMNS` present in ``df``.
    """
    names = [str(c) for c in df.columns]
    losses = [c for c in names if c.startswith(LOSS_PREFIX)]
    costs = [c for c in names if c in EXPECTED_COST_COLUMNS]
    return losses + costs


def log_y_columns(df: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The ``loss_*`` columns among ``columns`` whose (non-missing) values are all > 0.

    These are drawn with a logarithmic y axis; other columns (including the expected-cost ones)
    keep a linear axis.
    """
    chosen = []
    for column in columns:
        if not column.startswith(LOSS_PREFIX):
            continue
        values = pd.to_numeric(df[column]).dropna()
        if len(values) and bool((values > 0).all()):
            chosen.append(column)
    return chosen


def is_unit_interval(values: pd.DataFrame) -> bool:
    """Whether every non-missing value lies in [0, 1] (and there is at least one)."""
    array = values.to_numpy(dtype=float)
    array = array[~np.isnan(array)]
    return bool(array.size) and bool(((array >= 0.0) & (array <= 1.0)).all())


def candidate_styles(candidates: Iterable[str]) -> dict[str, LineStyle]:
    """One :class:`LineStyle` per distinct candidate name, assigned in sorted-name order.

    The mapping depends only on the *set* of names, so the same op gets the same colour in every
    subplot of a figure. Colours come from :data:`PALETTE`; once it is exhausted they repeat with
    the next dash pattern of :data:`DASHES`.
    """
    names = sorted(set(candidates))
    if len(names) > len(PALETTE) * len(DASHES):
        logger.warning(
            "%d candidates: line styles repeat past %d", len(names), len(PALETTE) * len(DASHES)
        )
    styles = {}
    for i, name in enumerate(names):
        dash = DASHES[(i // len(PALETTE)) % len(DASHES)]
        styles[name] = LineStyle(PALETTE[i % len(PALETTE)], dash)
    return styles


def subplot_grid(n_panels: int, max_cols: int = 3) -> tuple[int, int]:
    """``(rows, cols)`` of a row-major grid holding ``n_panels`` subplots, at most ``max_cols``
    wide."""
    if n_panels < 1:
        raise ValueError(f"need at least one panel, got {n_panels}; pass n_panels >= 1")
    if max_cols < 1:
        raise ValueError(f"max_cols must be >= 1, got {max_cols}; pass max_cols=1 or more")
    cols = min(max_cols, n_panels)
    return math.ceil(n_panels / cols), cols



def final_weights(history: Mapping[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """``{slot: weights}``: each slot's last logged weight of every candidate (a candidate
    missing from the last row keeps its last logged value), in the log's candidate order."""
    return {slot: frame.ffill().iloc[-1].astype(float) for slot, frame in history.items()
            if len(frame)}


def alpha_winners(history: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Which candidate wins each slot, and since when; one row per slot, indexed by slot.

    Columns: ``winner`` (the candidate with the highest final weight, :func:`final_weights`;
    ties go to the first in log order), ``weight``, ``runner_up`` / ``runner_up_weight`` (None /
    NaN for a one-candidate slot), ``margin`` (winner minus runner-up), ``since_step`` (the first
    logged step from which the winner has had the highest weight at every logged step) and
    ``n_candidates``.

    Raises:
        ValueError: ``history`` is empty.
    """
    if not history:
        raise ValueError("alpha history is empty: no slot to rank; pass the alpha history of a "
                         "DARTS log.csv (alpha_history)")
    rows = []
    for slot, weights in final_weights(history).items():
        frame = history[slot].ffill()
        order = weights.sort_values(ascending=False, kind="stable")
        winner = str(order.index[0])
        leader = frame.fillna(-np.inf).to_numpy().argmax(axis=1)
        column = list(frame.columns).index(winner)
        since = len(frame) - 1
        while since > 0 and leader[since - 1] == column:
            since -= 1
        rows.append({
            "slot": slot,
            "winner": winner,
            "weight": float(order.iloc[0]),
            "runner_up": str(order.index[1]) if len(order) > 1 else None,
            "runner_up_weight": float(order.iloc[1]) if len(order) > 1 else math.nan,
            "margin": float(order.iloc[0] - order.iloc[1]) if len(order) > 1 else math.nan,
            "since_step": float(frame.index[since]),
            "n_candidates": len(order),
        })
    return pd.DataFrame(rows).set_index("slot")


def slot_groups(history: Mapping[str, pd.DataFrame]) -> list[tuple[tuple[str, ...], list[str]]]:
    """Slots grouped by their candidate list: ``[(candidates, [slots])]`` in order of first
    appearance, so that one heatmap holds slots that choose among the same ops."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for slot, frame in history.items():
        groups.setdefault(tuple(str(c) for c in frame.columns), []).append(slot)
    return list(groups.items())


def own_y_range(values: pd.DataFrame | pd.Series, pad: float = 0.08) -> tuple[float, float]:
    """A y range fitted to the finite ``values`` with ``pad`` of their span on each side (a
    flat curve gets +-5 % of its value, or +-0.05 at 0), so that candidates at 0.07-0.09 spread
    over the panel instead of sharing one band of a 0-1 axis.

    Raises:
        ValueError: no finite value.
    """
    array = np.asarray(values, dtype=float).ravel()
    array = array[np.isfinite(array)]
    if not array.size:
        raise ValueError("no finite value to fit a y range to")
    lo, hi = float(array.min()), float(array.max())
    span = hi - lo
    if span <= 1e-12 * max(1.0, abs(hi)):
        half = 0.05 * abs(hi) or 0.05
        return lo - half, hi + half
    return lo - pad * span, hi + pad * span


def step_ticks(steps: Iterable[float], max_ticks: int = 10) -> dict[str, Any]:
    """Plotly x-axis settings that keep step ticks on whole steps.

    When every step is an integer and the steps span fewer than ``5 * max_ticks`` steps (where
    Plotly's automatic ticks would fall between logged steps, 10, 10.5, 11), returns linear
    ticks from the first step every ``ceil(span / max_ticks)`` steps (at least 1); otherwise
    ``{"tickformat": "d"}`` for non-fractional labels (or ``{}`` for fractional steps).
    """
    array = np.asarray(list(steps), dtype=float)
    array = array[np.isfinite(array)]
    if not array.size or not np.all(array == np.round(array)):
        return {}
    lo, hi = float(array.min()), float(array.max())
    span = hi - lo
    if span < 5 * max_ticks:
        return {"tickmode": "linear", "tick0": lo, "dtick": max(1, math.ceil(span / max_ticks))}
    return {"tickformat": "d"}


def unused_columns(df: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The ``columns`` with nothing to draw: no finite value, or every finite value exactly 0
    (a loss term at weight 0, e.g. ``loss_params``); in the given order."""
    unused = []
    for column in columns:
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if not values.size or not values.any():
            unused.append(column)
    return unused


def _figure_height(rows: int, row_px: int, gap_px: int = _ROW_GAP_PX) -> int:
    return _TOP_PX + _BOTTOM_PX + rows * row_px + (rows - 1) * gap_px


def _read_log(csv_path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{csv_path}: empty CSV file, nothing to plot") from err
    if df.empty:
        raise ValueError(f"{csv_path}: the log has a header but no rows, nothing to plot")
    return df
