"""Interactive plots of search runs, written as offline HTML files.

Every plot is split into two halves:

* **data**: plain functions that turn a run log into the structures that get plotted
  (:func:`alpha_history`, :func:`final_weights`, :func:`alpha_winners`, :func:`slot_groups`,
  :func:`own_y_range`, :func:`step_ticks`, :func:`loss_columns`, :func:`unused_columns`,
  :func:`candidate_styles`, :func:`subplot_grid`, :func:`log_y_columns`,
  :func:`is_unit_interval`). They only need pandas and are what the tests check;
* **rendering**: functions that build Plotly figures from those structures
  (:func:`alpha_heatmap`, :func:`alpha_figure`, :func:`loss_figure`) and write them
  (:func:`write_html`, :func:`write_page_html`). Plotly is imported lazily inside them, so the
  data half works without it.

Pages open without a network connection: by default (``include_plotlyjs="directory"``) each
loads Plotly's ``plotly.min.js`` from its own folder, written there once
(:func:`write_plotlyjs`), so all the pages of a run folder share one 4.8 MB copy (copy the
page together with it); ``include_plotlyjs=True`` embeds plotly.js in the page instead. Files
are written atomically: a temporary file in the target folder is renamed over the target.
``tests/test_browser.py`` opens every kind of page in headless Chromium with the network cut
off and fails on a JavaScript error or a figure that draws nothing.

DARTS run log (``log.csv``, one row per logged step) columns used here:

* ``step``: the x axis of every plot;
* ``loss_*`` and ``expected_latency_ms`` / ``expected_memory_mib`` / ``expected_params_m``:
  the curves of :func:`loss_figure` (terms that are all zero or never logged get no panel);
* ``alpha/<slot>/<candidate>``: the weight of one candidate op of one architecture slot at that
  step. ``<slot>`` (e.g. ``cells.0.conv0``) may contain dots but never slashes, so the slot is
  everything between the first and the second slash and the candidate is the rest.

:func:`write_run_plots` reads such a log and writes ``alphas.html`` (the winner of each slot
as a heatmap of the final weights, then the per-slot curves on their own y ranges) and
``losses.html``; :func:`write_training_plots` writes a retraining run's ``training.html``.

Pareto plots of a trial table (:mod:`results.table`) follow the same split: :func:`pareto_data`
and :func:`parallel_data` compute what is drawn (and :func:`results.pareto.search_summary` the
hypervolumes, the dominated zoo nets and the nets to retrain first); :func:`pareto_figure_2d`,
:func:`pareto_figure_3d`, :func:`parallel_coordinates_figure` and
:func:`pareto_summary_html` draw it, and :func:`write_pareto_report` writes them. By default
the summary and the four figures go into ONE page, ``pareto_report.html``;
``write_pareto_report(..., single_file=False)`` writes ``pareto_latency.html``,
``pareto_memory.html``, ``pareto_3d.html`` and ``parallel.html`` instead (each with the
summary), all sharing the folder's ``plotly.min.js``.
"""

from __future__ import annotations

import contextlib
import html
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from results.pareto import pareto_mask, search_summary
from results.table import OBJECTIVES
from search_space.files import atomic_write_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "ALPHA_PREFIX",
    "EXPECTED_COST_COLUMNS",
    "LOSS_PREFIX",
    "PARALLEL_COLUMNS",
    "LineStyle",
    "ParetoData",
    "TRAINING_COLUMNS",
    "alpha_figure",
    "alpha_heatmap",
    "alpha_history",
    "alpha_winners",
    "final_weights",
    "own_y_range",
    "pareto_summary_html",
    "slot_groups",
    "step_ticks",
    "unused_columns",
    "write_plotlyjs",
    "write_training_plots",
    "candidate_styles",
    "is_unit_interval",
    "log_y_columns",
    "loss_columns",
    "loss_figure",
    "parallel_coordinates_figure",
    "parallel_data",
    "pareto_data",
    "pareto_figure_2d",
    "pareto_figure_3d",
    "subplot_grid",
    "write_figures_html",
    "write_html",
    "write_page_html",
    "write_pareto_report",
    "write_run_plots",
]

logger = logging.getLogger(__name__)

STEP_COLUMN = "step"
ALPHA_PREFIX = "alpha/"
LOSS_PREFIX = "loss_"
EXPECTED_COST_COLUMNS: tuple[str, ...] = (
    "expected_latency_ms",
    "expected_memory_mib",
    "expected_params_m",
)

ALPHAS_HTML = "alphas.html"
LOSSES_HTML = "losses.html"
TRAINING_HTML = "training.html"
PLOTLYJS_FILE = "plotly.min.js"  # the name Plotly's include_plotlyjs="directory" loads
#: Columns of a retraining log drawn in ``training.html``, in panel order.
TRAINING_COLUMNS: tuple[str, ...] = ("loss_train", "loss_kd", "lr", "val_psnr_y_db")

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

# Layout sizes in pixels.
_ALPHA_ROW_PX = 210
_ALPHA_GAP_PX = 100  # tick labels, the step title and a two-line subplot title
_LOSS_ROW_PX = 220
_LOSS_GAP_PX = 100
_HEAT_ROW_PX = 26
_HEAT_GAP_PX = 110  # the next group's candidate names, slanted, above it
_TOP_PX = 110
_BOTTOM_PX = 60
_ROW_GAP_PX = 70
_OTHER_COLOR = "#c4c4c4"  # candidates other than a slot's winner and runner-up
_HEAT_SCALE: tuple[tuple[float, str], ...] = ((0.0, "#f7fbff"), (1.0, "#74a9cf"))


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
        raise ValueError(f"need at least one panel, got {n_panels}")
    if max_cols < 1:
        raise ValueError(f"max_cols must be >= 1, got {max_cols}")
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
        raise ValueError("alpha history is empty: no slot to rank")
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


# --------------------------------------------------------------------------- rendering


def _plotly() -> tuple[Any, Any]:
    """Import Plotly lazily: ``(plotly.graph_objects, plotly.subplots.make_subplots)``."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as err:
        raise ImportError(
            "results.plots needs plotly to render figures; install it with `pip install plotly` "
            "(or `pip install -e .`, which pulls it in)"
        ) from err
    return go, make_subplots


def _figure_height(rows: int, row_px: int, gap_px: int = _ROW_GAP_PX) -> int:
    return _TOP_PX + _BOTTOM_PX + rows * row_px + (rows - 1) * gap_px


def _step_label(step: float) -> str:
    return str(int(step)) if float(step).is_integer() else f"{step:g}"


def _digits(weights: np.ndarray, least: int = 3, most: int = 6) -> int:
    """Decimals (``least`` to ``most``) that print the two highest ``weights`` apart."""
    top = np.sort(weights[np.isfinite(weights)])[::-1][:2]
    digits = least
    while len(top) == 2 and digits < most and f"{top[0]:.{digits}f}" == f"{top[1]:.{digits}f}":
        digits += 1
    return digits


def alpha_heatmap(
    history: Mapping[str, pd.DataFrame],
    title: str = "Which op wins each slot: final weights",
) -> go.Figure:
    """Final weight of every candidate of every slot, one heatmap per group of slots choosing
    among the same candidates (:func:`slot_groups`), the winner of each slot boxed.

    Rows are slots, labelled with the step since which the winner leads
    (:func:`alpha_winners`); cells show the final weight (:func:`final_weights`), coloured by
    the weight scaled between the slot's lowest and highest (so 12 candidates at 0.07-0.09
    still read apart); hovering gives the weight and its ratio to a uniform share.

    Raises:
        ValueError: ``history`` is empty.
    """
    if not history:
        raise ValueError("alpha history is empty: nothing to plot")
    go, make_subplots = _plotly()
    winners = alpha_winners(history)
    weights = final_weights(history)
    groups = slot_groups(history)
    sizes = [len(slots) for _, slots in groups]
    body = sum(sizes) * _HEAT_ROW_PX
    height = _TOP_PX + _HEAT_GAP_PX + _BOTTOM_PX + body + (len(groups) - 1) * _HEAT_GAP_PX
    fig = make_subplots(
        rows=len(groups),
        cols=1,
        row_heights=sizes,
        vertical_spacing=_HEAT_GAP_PX / height if len(groups) > 1 else 0.0,
    )
    for g, (candidates, slots) in enumerate(groups, start=1):
        labels, z, text, custom = [], [], [], []
        for slot in slots:
            w = weights[slot].reindex(list(candidates)).to_numpy(dtype=float)
            lo, hi = np.nanmin(w), np.nanmax(w)
            z.append((w - lo) / (hi - lo) if hi > lo else np.full_like(w, 0.5))
            text.append([f"{v:.{_digits(w)}f}" for v in w])
            custom.append(np.column_stack([w, w * len(candidates)]))
            since = _step_label(float(winners.loc[slot, "since_step"]))
            labels.append(f"{slot} (since step {since})")
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=list(candidates),
                y=labels,
                text=text,
                texttemplate="%{text}",
                textfont={"size": 10},
                customdata=np.stack(custom),
                coloraxis="coloraxis",
                xgap=1,
                ygap=1,
                hovertemplate=(
                    "%{y}<br>%{x}: %{customdata[0]:.4f} "
                    "(%{customdata[1]:.2f}x a uniform share)<extra></extra>"
                ),
            ),
            row=g,
            col=1,
        )
        for r, slot in enumerate(slots):
            c = candidates.index(str(winners.loc[slot, "winner"]))
            fig.add_shape(
                type="rect",
                x0=c - 0.5,
                x1=c + 0.5,
                y0=r - 0.5,
                y1=r + 0.5,
                line={"color": "black", "width": 2.5},
                row=g,
                col=1,
            )
        fig.update_xaxes(side="top", tickangle=-30, automargin=True, row=g, col=1)
        fig.update_yaxes(autorange="reversed", automargin=True, row=g, col=1)
    fig.update_layout(
        title={
            "text": title,
            "subtitle": {
                "text": "box: the highest final weight; number: the final weight; colour: the "
                "weight from the slot's lowest to its highest"
            },
        },
        height=height,
        margin={"t": _TOP_PX + _HEAT_GAP_PX, "b": _BOTTOM_PX},
        coloraxis={
            "colorscale": _HEAT_SCALE,
            "cmin": 0.0,
            "cmax": 1.0,
            "colorbar": {
                "title": {"text": "in its slot"},
                "tickvals": [0, 1],
                "ticktext": ["lowest", "highest"],
                "len": min(1.0, 400 / height),
                "y": 1.0,
                "yanchor": "top",
            },
        },
        template="plotly_white",
    )
    return fig


def alpha_figure(
    history: Mapping[str, pd.DataFrame],
    title: str = "Architecture weights (alphas) vs step, each slot on its own y range",
    max_cols: int = 3,
) -> go.Figure:
    """A grid of subplots, one per slot, with one line per candidate weight against step.

    Each subplot is titled with its slot and its final winner and runner-up
    (:func:`alpha_winners`) and gets its own y range (:func:`own_y_range`). The winner is drawn
    last, thick, in its candidate colour (:func:`candidate_styles`, the same in every subplot),
    the runner-up thinner in its colour, the other candidates thin and grey; there is no legend
    (hovering names every line). Step ticks stay on whole steps (:func:`step_ticks`). The figure
    grows taller with the number of rows so that ~40 slots stay readable.
    """
    if not history:
        raise ValueError("alpha history is empty: nothing to plot")
    go, make_subplots = _plotly()
    slots = list(history)
    winners = alpha_winners(history)
    rows, cols = subplot_grid(len(slots), max_cols)
    height = _figure_height(rows, _ALPHA_ROW_PX, _ALPHA_GAP_PX)
    specs: list[list[dict[str, Any] | None]] = [
        [{} if r * cols + c < len(slots) else None for c in range(cols)] for r in range(rows)
    ]
    titles = []
    for slot in slots:
        w = winners.loc[slot]
        ranking = f"{w['winner']} {w['weight']:.3f}"
        if w["runner_up"] is not None:
            ranking += f" > {w['runner_up']} {w['runner_up_weight']:.3f}"
        titles.append(f"<b>{html.escape(slot)}</b><br>{html.escape(ranking)}")
    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=specs,
        subplot_titles=titles,
        horizontal_spacing=0.06 if cols > 1 else 0.0,
        vertical_spacing=_ALPHA_GAP_PX / height if rows > 1 else 0.0,
    )
    styles = candidate_styles(c for frame in history.values() for c in frame.columns)
    for i, slot in enumerate(slots):
        frame = history[slot]
        row, col = i // cols + 1, i % cols + 1
        x = frame.index.to_numpy()
        winner, runner_up = winners.loc[slot, "winner"], winners.loc[slot, "runner_up"]
        others = [c for c in frame.columns if c not in (winner, runner_up)]
        order = [*others, *([runner_up] if runner_up is not None else []), winner]
        for candidate in order:
            if candidate == winner:
                line = {"color": styles[candidate].color, "width": 3.2}
            elif candidate == runner_up:
                line = {"color": styles[candidate].color, "width": 1.8, "dash": "dash"}
            else:
                line = {"color": _OTHER_COLOR, "width": 1.0}
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=frame[candidate].to_numpy(dtype=float),
                    mode="lines",
                    name=candidate,
                    legendgroup=candidate,
                    showlegend=False,
                    line=line,
                    hovertemplate=(
                        f"{slot}<br>{candidate}: %{{y:.4f}}<br>step %{{x}}<extra></extra>"
                    ),
                ),
                row=row,
                col=col,
            )
        with contextlib.suppress(ValueError):  # nothing finite: leave the axis to Plotly
            fig.update_yaxes(range=list(own_y_range(frame)), row=row, col=col)
        fig.update_xaxes(**step_ticks(x), row=row, col=col)
        # x title on the lowest subplot of each column
        if i + cols >= len(slots):
            fig.update_xaxes(title_text=STEP_COLUMN, row=row, col=col)
    fig.update_annotations(font_size=11)
    fig.update_layout(
        title={
            "text": title,
            "subtitle": {
                "text": "thick: the final winner; dashed: the runner-up; grey: the other "
                "candidates (hover to name them)"
            },
        },
        height=height,
        margin={"t": _TOP_PX + 30, "b": _BOTTOM_PX},
        showlegend=False,
        template="plotly_white",
    )
    return fig


def loss_figure(
    df: pd.DataFrame,
    columns: Sequence[str],
    title: str = "Losses and expected costs vs step",
) -> go.Figure:
    """A vertical stack of subplots sharing the step axis, one per column of ``df`` with
    something to draw.

    Columns without a finite non-zero value (:func:`unused_columns`: a loss term at weight 0)
    get no panel; the subtitle names them. Missing values are skipped per column (a column
    logged every few steps still draws a connected line). ``loss_*`` columns whose values are
    all > 0 get a log y axis (:func:`log_y_columns`). Every panel has its own step tick labels
    and title, on whole steps (:func:`step_ticks`).

    Raises:
        ValueError: no ``columns``, no ``step`` column, a column not in ``df``, or no column
            with anything to draw.
    """
    if not columns:
        raise ValueError("no columns to plot")
    _require_step(df)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the log; columns found: {list(df.columns)}")
    unused = unused_columns(df, columns)
    drawn = [c for c in columns if c not in unused]
    if not drawn:
        raise ValueError(
            f"every column of {list(columns)} is missing or all zero: nothing to plot"
        )
    go, make_subplots = _plotly()
    rows = len(drawn)
    height = _figure_height(rows, _LOSS_ROW_PX, _LOSS_GAP_PX)
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        subplot_titles=drawn,
        vertical_spacing=_LOSS_GAP_PX / height if rows > 1 else 0.0,
    )
    steps = _steps(df).to_numpy()
    log_y = set(log_y_columns(df, drawn))
    for row, column in enumerate(drawn, start=1):
        values = pd.to_numeric(df[column]).to_numpy(dtype=float)
        keep = ~np.isnan(values)
        fig.add_trace(
            go.Scatter(
                x=steps[keep],
                y=values[keep],
                mode="lines+markers" if keep.sum() <= 30 else "lines",
                name=column,
                showlegend=False,
                line={"color": PALETTE[(row - 1) % len(PALETTE)], "width": 1.8},
                marker={"size": 4},
                hovertemplate=f"{column}: %{{y:.5g}}<br>step %{{x}}<extra></extra>",
            ),
            row=row,
            col=1,
        )
        if column in log_y:
            fig.update_yaxes(type="log", row=row, col=1)
    fig.update_xaxes(showticklabels=True, title_text=STEP_COLUMN, title_standoff=2,
                     **step_ticks(steps))
    fig.update_annotations(font_size=12)
    layout_title: dict[str, Any] = {"text": title}
    if unused:
        layout_title["subtitle"] = {
            "text": f"not drawn (all zero or never logged): {', '.join(unused)}"
        }
    fig.update_layout(
        title=layout_title,
        height=height,
        margin={"t": _TOP_PX, "b": _BOTTOM_PX},
        template="plotly_white",
    )
    return fig


def _check_include(include_plotlyjs: bool | str) -> None:
    if include_plotlyjs not in (True, "directory"):
        raise ValueError(
            f"include_plotlyjs={include_plotlyjs!r}; allowed: 'directory' (one plotly.min.js "
            "beside the pages, the default) or True (embedded in the page); both open offline"
        )


def write_plotlyjs(folder: str | os.PathLike[str]) -> Path:
    """Write Plotly's own ``plotly.min.js`` into ``folder`` (created) unless the same file is
    there already; returns its path. Pages written with ``include_plotlyjs="directory"`` load
    it from beside them, so every page of a folder shares one copy (about 4.8 MB)."""
    from plotly.offline import get_plotlyjs

    target = Path(folder) / PLOTLYJS_FILE
    text = get_plotlyjs()
    same_size = target.is_file() and target.stat().st_size == len(text.encode("utf-8"))
    if same_size and target.read_text(encoding="utf-8") == text:
        return target
    return _write_text_atomic(text, target)


def write_html(
    fig: go.Figure, path: str | os.PathLike[str], include_plotlyjs: bool | str = "directory"
) -> Path:
    """Write ``fig`` as a standalone HTML file that opens offline; returns the path.

    With ``include_plotlyjs="directory"`` (the default) the page loads ``plotly.min.js`` from
    its own folder, written there first by :func:`write_plotlyjs` (one copy per folder; keep
    the two files together when copying a page); with ``True`` plotly.js is embedded in the
    page (about 4.8 MB). There is never a CDN script tag. The parent folder is created if
    needed. The HTML goes to a temporary file in the same folder, which is then renamed over
    ``path`` (:func:`os.replace`), so readers never see a partial file; the temporary file is
    removed if anything fails.

    Raises:
        ValueError: ``include_plotlyjs`` is neither ``"directory"`` nor True.
    """
    _check_include(include_plotlyjs)
    if include_plotlyjs == "directory":
        write_plotlyjs(Path(path).parent)
    text = fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True)
    return _write_text_atomic(text, path)


def _write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder (see
    :func:`write_html`); returns the path."""
    target = atomic_write_text(path, text)
    logger.info("Wrote %s (%.1f MB)", target, len(text) / 1e6)
    return target


def _read_log(csv_path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{csv_path}: empty CSV file, nothing to plot") from err
    if df.empty:
        raise ValueError(f"{csv_path}: the log has a header but no rows, nothing to plot")
    return df


def write_run_plots(
    csv_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    run_name: str | None = None,
) -> list[Path]:
    """Plot a DARTS run log: write ``alphas.html`` and ``losses.html`` into ``out_dir``.

    ``alphas.html`` holds :func:`alpha_heatmap` (which op wins each slot, since when) and
    :func:`alpha_figure` (the curves); ``losses.html`` :func:`loss_figure`. Both are titled
    with ``run_name`` (default: the log's folder name) and share one ``plotly.min.js`` in
    ``out_dir``. Returns the paths written, alphas first. ``losses.html`` is skipped (with a
    warning) when the log has no loss or expected-cost column with anything to draw.

    Raises:
        ValueError: the CSV is empty or has a header but no rows (the message names the file),
            or the log lacks the ``step`` / ``alpha/`` columns (see :func:`alpha_history`).
    """
    csv_path = Path(csv_path)
    out = Path(out_dir)
    df = _read_log(csv_path)
    run = run_name or csv_path.parent.name or csv_path.stem
    history = alpha_history(df)
    paths = [
        write_page_html(
            [alpha_heatmap(history), alpha_figure(history)],
            out / ALPHAS_HTML,
            f"Architecture weights: {run}",
        )
    ]
    columns = loss_columns(df)
    try:
        fig = loss_figure(df, columns, title=f"Losses and expected costs: {run}")
    except ValueError as err:
        logger.warning("%s: %s not written: %s", csv_path, LOSSES_HTML, err)
    else:
        paths.append(write_html(fig, out / LOSSES_HTML))
    return paths


def write_training_plots(
    run_dir: str | os.PathLike[str], run_name: str | None = None
) -> Path:
    """Plot a retraining run's ``log.csv`` into ``training.html`` in ``run_dir``; returns it.

    Panels: the :data:`TRAINING_COLUMNS` the log has values of (:func:`loss_figure`), titled
    ``Retraining: <run_name>`` (default: the folder's name); ``plotly.min.js`` beside it.

    Raises:
        ValueError: no log rows, or none of :data:`TRAINING_COLUMNS` has a value.
    """
    folder = Path(run_dir)
    csv_path = folder / "log.csv"
    df = _read_log(csv_path)
    columns = [c for c in TRAINING_COLUMNS if c in df.columns and df[c].notna().any()]
    if not columns:
        raise ValueError(
            f"{csv_path}: none of {list(TRAINING_COLUMNS)} has a value; columns found: "
            f"{list(df.columns)}"
        )
    run = run_name or folder.resolve().name
    fig = loss_figure(df, columns, title=f"Retraining: {run}")
    return write_html(fig, folder / TRAINING_HTML)


# --------------------------------------------------------------------------- Pareto: data

PARETO_REPORT_HTML = "pareto_report.html"
PARETO_LATENCY_HTML = "pareto_latency.html"
PARETO_MEMORY_HTML = "pareto_memory.html"
PARETO_3D_HTML = "pareto_3d.html"
PARALLEL_HTML = "parallel.html"

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
    # latency / memory as ratios to a reference net of the same study (results.report)
    "latency_x": "min",
    "memory_x": "min",
}
_AXIS_LABELS: dict[str, str] = {
    "psnr_db": "PSNR (dB)",
    "latency_ms": "latency (ms)",
    "memory_mib": "memory (MiB)",
    "params_m": "params (M)",
    "flops_g": "FLOPs (G)",
    "macs_g": "MACs (G)",
    "activations_m": "activations (M)",
    "num_conv": "convolutions",
    "latency_x": "latency / reference's",
    "memory_x": "memory / reference's",
}
_POINT_COLUMNS: tuple[str, ...] = ("name", "is_zoo", "feasible", "params_m", "flops_g")

_TRIAL_COLOR = "#b0b0b0"
_FRONT_COLOR = "#d62728"
_ZOO_COLOR = "#1f77b4"
_PARETO_2D_PX = 620
_PARETO_3D_PX = 760
_PARALLEL_PX = 560


class ParetoData(NamedTuple):
    """What a Pareto plot draws.

    * ``axes``: ``{column: "min" | "max"}`` of the plotted axes, in axis order (x, y[, z]);
    * ``points``: every COMPLETE trial with finite values on the axes (zoo included, feasible or
      not), with the columns ``name``, ``is_zoo``, ``feasible``, ``params_m``, ``flops_g``, the
      axes and ``on_front``;
    * ``front``: the points on the Pareto front of the plotted axes (eligible rows only, see
      :func:`results.pareto.pareto_mask`), sorted along x;
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
    each axis's direction from :data:`results.table.OBJECTIVES` (cost columns such as
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


# --------------------------------------------------------------------------- Pareto: rendering


def _study_label(df: pd.DataFrame) -> str:
    if "study" not in df.columns or df.empty:
        return ""
    studies = sorted({str(s) for s in df["study"].tolist()})
    return ": " + ", ".join(studies)


def _hover(points: pd.DataFrame, axes: Sequence[str]) -> tuple[np.ndarray, str]:
    """``(customdata, hovertemplate)`` showing name, axes, params and FLOPs."""
    customdata = np.empty((len(points), 3), dtype=object)
    customdata[:, 0] = points["name"].astype(str).to_numpy()
    customdata[:, 1] = points["params_m"].to_numpy(dtype=float)
    customdata[:, 2] = points["flops_g"].to_numpy(dtype=float)
    letters = ("x", "y", "z")
    lines = ["<b>%{customdata[0]}</b>"]
    lines += [
        f"{_AXIS_LABELS.get(axis, axis)}: %{{{letter}:.4g}}"
        for axis, letter in zip(axes, letters, strict=False)
    ]
    lines += ["params: %{customdata[1]:.4g} M", "FLOPs: %{customdata[2]:.4g} G"]
    return customdata, "<br>".join(lines) + "<extra></extra>"


def _front_labels(front: pd.DataFrame) -> list[str]:
    """Names of the searched points of a front; "" for its zoo points (the zoo trace names
    them)."""
    return [
        "" if bool(is_zoo) else str(name)
        for name, is_zoo in zip(front["name"].tolist(), front["is_zoo"].tolist(), strict=True)
    ]


def pareto_figure_2d(
    df: pd.DataFrame, x: str = "latency_ms", y: str = "psnr_db", title: str | None = None
) -> go.Figure:
    """Scatter of ``y`` against ``x`` for every complete trial, with the front and the zoo.

    Traces, in order: ``trials`` (searched feasible points, grey), ``infeasible`` (searched
    points violating a constraint, grey crosses), ``Pareto front`` (the 2-D front of ``x`` /
    ``y`` over all eligible rows, zoo included, drawn as a staircase, its searched points
    labelled with their names) and ``zoo`` (published nets, labelled with their names).
    Hovering shows name, both axes, params and FLOPs.
    """
    data = pareto_data(df, x, y)
    go, _ = _plotly()
    axes = list(data.axes)
    searched = data.points.loc[~data.points["is_zoo"].astype(bool)]
    feasible = searched["feasible"].astype(bool)
    fig = go.Figure()
    for label, part, marker in (
        ("trials", searched.loc[feasible], {"color": _TRIAL_COLOR, "size": 7}),
        ("infeasible", searched.loc[~feasible], {"color": _TRIAL_COLOR, "symbol": "x-open"}),
    ):
        customdata, template = _hover(part, axes)
        fig.add_trace(
            go.Scatter(
                x=part[x].to_numpy(dtype=float),
                y=part[y].to_numpy(dtype=float),
                mode="markers",
                name=label,
                marker=marker,
                customdata=customdata,
                hovertemplate=template,
            )
        )
    customdata, template = _hover(data.front, axes)
    fig.add_trace(
        go.Scatter(
            x=data.front[x].to_numpy(dtype=float),
            y=data.front[y].to_numpy(dtype=float),
            mode="lines+markers+text",
            name="Pareto front",
            text=_front_labels(data.front),
            textposition="bottom right",
            textfont={"color": _FRONT_COLOR, "size": 11},
            line={"color": _FRONT_COLOR, "shape": data.line_shape, "width": 2},
            marker={"color": _FRONT_COLOR, "size": 9},
            customdata=customdata,
            hovertemplate=template,
        )
    )
    customdata, template = _hover(data.zoo, axes)
    fig.add_trace(
        go.Scatter(
            x=data.zoo[x].to_numpy(dtype=float),
            y=data.zoo[y].to_numpy(dtype=float),
            mode="markers+text",
            name="zoo",
            text=data.zoo["name"].astype(str).tolist(),
            textposition="top center",
            marker={"color": _ZOO_COLOR, "size": 11, "symbol": "diamond"},
            customdata=customdata,
            hovertemplate=template,
        )
    )
    fig.update_layout(
        title=title or f"{_AXIS_LABELS.get(y, y)} vs {_AXIS_LABELS.get(x, x)}{_study_label(df)}",
        xaxis_title=_AXIS_LABELS.get(x, x),
        yaxis_title=_AXIS_LABELS.get(y, y),
        height=_PARETO_2D_PX,
        template="plotly_white",
    )
    return fig


def pareto_figure_3d(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """3-D scatter of latency (x), memory (y) and PSNR (z) with the 3-objective front and zoo.

    Traces: ``trials`` (every complete point off the front, grey), ``Pareto front`` (its
    searched points labelled with their names, outlined, a little larger than the zoo's) and
    ``zoo`` (open diamonds, so a searched point at a zoo net's corner shows through; labelled
    with names). Hovering shows name, the objectives, params and FLOPs.
    """
    x, y, z = "latency_ms", "memory_mib", "psnr_db"
    data = pareto_data(df, x, y, z)
    go, _ = _plotly()
    axes = [x, y, z]
    off_front = data.points.loc[~data.points["on_front"] & ~data.points["is_zoo"].astype(bool)]
    fig = go.Figure()
    front_marker = {"color": _FRONT_COLOR, "size": 7, "line": {"color": "black", "width": 1}}
    zoo_marker = {"color": _ZOO_COLOR, "size": 9, "symbol": "diamond-open"}
    for label, part, marker, mode, text, position in (
        ("trials", off_front, {"color": _TRIAL_COLOR, "size": 3}, "markers", None, None),
        ("Pareto front", data.front, front_marker, "markers+text", _front_labels(data.front),
         "bottom center"),
        ("zoo", data.zoo, zoo_marker, "markers+text", data.zoo["name"].astype(str).tolist(),
         "top center"),
    ):
        customdata, template = _hover(part, axes)
        fig.add_trace(
            go.Scatter3d(
                x=part[x].to_numpy(dtype=float),
                y=part[y].to_numpy(dtype=float),
                z=part[z].to_numpy(dtype=float),
                mode=mode,
                name=label,
                marker=marker,
                text=text,
                textposition=position,
                textfont={"color": marker["color"], "size": 11} if text is not None else None,
                customdata=customdata,
                hovertemplate=template,
            )
        )
    fig.update_layout(
        title=title or f"PSNR, latency and memory{_study_label(df)}",
        scene={
            "xaxis_title": _AXIS_LABELS[x],
            "yaxis_title": _AXIS_LABELS[y],
            "zaxis_title": _AXIS_LABELS[z],
        },
        height=_PARETO_3D_PX,
        template="plotly_white",
    )
    return fig


def parallel_coordinates_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Parallel coordinates of the complete trials over :data:`PARALLEL_COLUMNS`, coloured by
    PSNR, with a last ``source`` axis (search / zoo) to brush the zoo nets in or out."""
    data = parallel_data(df)
    go, _ = _plotly()
    dimensions: list[dict[str, Any]] = [
        {"label": _AXIS_LABELS[c], "values": data[c].to_numpy(dtype=float)}
        for c in PARALLEL_COLUMNS
    ]
    dimensions.append(
        {
            "label": "source",
            "values": data["is_zoo"].astype(int).to_numpy(),
            "tickvals": [0, 1],
            "ticktext": ["search", "zoo"],
            "range": [-0.1, 1.1],
        }
    )
    fig = go.Figure(
        go.Parcoords(
            line={
                "color": data["psnr_db"].to_numpy(dtype=float),
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": _AXIS_LABELS["psnr_db"]}},
            },
            dimensions=dimensions,
        )
    )
    fig.update_layout(
        title=title or f"Complete trials{_study_label(df)}",
        height=_PARALLEL_PX,
        margin={"l": 80, "r": 80},
        template="plotly_white",
    )
    return fig


def write_page_html(
    blocks: Sequence[go.Figure | str],
    path: str | os.PathLike[str],
    title: str,
    style: str = "",
    include_plotlyjs: bool | str = "directory",
) -> Path:
    """Write figures and HTML fragments into ONE offline HTML page; returns the path.

    ``blocks`` are shown in order, each in a ``<section>``: a Plotly figure is rendered as a div
    (plotly.js loaded once, with the first figure: from ``plotly.min.js`` beside the page with
    ``include_plotlyjs="directory"``, the default, see :func:`write_html`; embedded with
    ``True``), a string is inserted as it is (the caller escapes it). ``style`` is CSS for the
    page's ``<style>`` element. Written atomically like :func:`write_html`.

    Raises:
        ValueError: ``blocks`` is empty, or ``include_plotlyjs`` is neither ``"directory"``
            nor True.
    """
    if not blocks:
        raise ValueError("blocks is empty: pass at least one figure or HTML fragment")
    _check_include(include_plotlyjs)
    if include_plotlyjs == "directory" and not all(isinstance(b, str) for b in blocks):
        write_plotlyjs(Path(path).parent)
    parts = []
    embedded = False
    for i, block in enumerate(blocks):
        if isinstance(block, str):
            body = block
        else:
            body = block.to_html(
                include_plotlyjs=False if embedded else include_plotlyjs,
                full_html=False,
                div_id=f"figure-{i}",
            )
            embedded = True
        parts.append(f'<section id="section-{i}">\n{body}\n</section>')
    css = f"<style>\n{style}\n</style>\n" if style else ""
    page = (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n{css}</head>\n<body>\n"
        f'<h1 style="font-family: sans-serif">{html.escape(title)}</h1>\n'
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    return _write_text_atomic(page, path)


def write_figures_html(
    figures: Sequence[go.Figure], path: str | os.PathLike[str], title: str = "Figures"
) -> Path:
    """Write several figures into ONE offline HTML page; returns the path.

    plotly.js is loaded once, with the first figure; the figures follow one another, each in
    a ``<section>`` (:func:`write_page_html`).

    Raises:
        ValueError: ``figures`` is empty.
    """
    if not figures:
        raise ValueError("figures is empty: pass at least one figure")
    return write_page_html(list(figures), path, title)


def _names_html(names: Iterable[str]) -> str:
    return ", ".join(f"<b>{html.escape(str(n))}</b>" for n in names) or "none"


def pareto_summary_html(summary: Mapping[str, Any]) -> str:
    """The summary of :func:`results.pareto.search_summary` as an HTML fragment: the
    hypervolume of the searched front against the zoo's (with the reference point), which zoo
    nets the searched front dominates and by which nets, and which nets to retrain first."""
    esc = html.escape
    counts = (
        f"{summary.get('n_trials', 0)} trials, {summary.get('n_complete', 0)} complete, "
        f"{summary.get('n_failed', 0)} failed"
    )
    if "error" in summary:
        return (
            f'<div class="pareto-summary"><p>{esc(counts)}.</p><p><b>No zoo comparison:</b> '
            f"{esc(str(summary['error']))}</p></div>"
        )
    ratio = summary.get("hypervolume_ratio")
    ratio_text = f"{ratio:.3f}" if ratio is not None else "n/a (the zoo's hypervolume is 0)"
    reference = ", ".join(
        f"{_AXIS_LABELS.get(k, k)} {v:.4g}" for k, v in summary["reference_point"].items()
    )
    lines = [
        f"<p>{esc(counts)}; {summary.get('n_feasible', 0)} eligible for a front.</p>",
        f"<p><b>Hypervolume, searched front / zoo front: {esc(ratio_text)}</b> (search "
        f"{summary['hypervolume_search']:.4g}, zoo {summary['hypervolume_zoo']:.4g}; "
        f"reference point: {esc(reference)}; above 1 the search covers more).</p>",
        f"<p>Searched front ({summary['n_front']}): {_names_html(summary['front'])}. "
        f"Zoo front ({summary['n_zoo_front']}): {_names_html(summary['zoo_front'])}.</p>",
    ]
    dominated = summary.get("zoo_dominated", {})
    if dominated:
        items = "".join(
            f"<li><b>{esc(zoo)}</b> is dominated by {_names_html(by)}</li>"
            for zoo, by in dominated.items()
        )
        lines.append(f"<p>Zoo nets the searched front dominates:</p><ul>{items}</ul>")
    else:
        lines.append("<p>The searched front dominates no zoo net.</p>")
    lines.append(
        f"<p>Not dominated: {_names_html(summary.get('zoo_not_dominated', []))}.</p>"
    )
    aim = summary.get("aim_candidates")
    if isinstance(aim, Mapping):
        if "error" in aim:
            lines.append(f"<p><b>Retrain first:</b> not ranked: {esc(str(aim['error']))}</p>")
        elif aim:
            items = "".join(
                f"<li><b>{esc(str(name))}</b>: {v['psnr_db']:.2f} dB, "
                f"{v['latency_ms']:.3g} ms, {v['memory_mib']:.3g} MiB</li>"
                for name, v in aim.items()
            )
            lines.append(
                "<p><b>Retrain first</b> (on the front, faster than rlfn_ntire, within "
                f"fmen_s's memory, best proxy PSNR first):</p><ol>{items}</ol>"
            )
        else:
            lines.append(
                "<p><b>Retrain first:</b> no searched front net is faster than rlfn_ntire "
                "within fmen_s's memory.</p>"
            )
    return '<div class="pareto-summary" style="font-family: sans-serif">' + "".join(
        lines
    ) + "</div>"


def write_pareto_report(
    df: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    single_file: bool = True,
    summary: Mapping[str, Any] | None = None,
    margin: float = 0.0,
) -> list[Path]:
    """Write the Pareto report of a trial table into ``out_dir``; returns the paths written.

    The report holds the summary (:func:`pareto_summary_html` of ``summary``, by default
    :func:`results.pareto.search_summary` with ``margin``) and four figures: PSNR vs latency
    and PSNR vs memory (:func:`pareto_figure_2d`), the 3-D scatter (:func:`pareto_figure_3d`)
    and the parallel coordinates (:func:`parallel_coordinates_figure`). With ``single_file``
    (the default) they go into ``pareto_report.html``; otherwise into ``pareto_latency.html``,
    ``pareto_memory.html``, ``pareto_3d.html`` and ``parallel.html``, each with the summary.
    The pages share one ``plotly.min.js`` in ``out_dir`` and open offline.
    """
    out = Path(out_dir)
    if not (df["state"] == "COMPLETE").any():
        logger.warning("no complete trial: the Pareto report has empty figures")
    if summary is None:
        summary = search_summary(df, margin)
    head = pareto_summary_html(summary)
    figures = {
        PARETO_LATENCY_HTML: pareto_figure_2d(df, x="latency_ms", y="psnr_db"),
        PARETO_MEMORY_HTML: pareto_figure_2d(df, x="memory_mib", y="psnr_db"),
        PARETO_3D_HTML: pareto_figure_3d(df),
        PARALLEL_HTML: parallel_coordinates_figure(df),
    }
    title = f"Pareto report{_study_label(df)}"
    if single_file:
        return [write_page_html([head, *figures.values()], out / PARETO_REPORT_HTML, title)]
    return [write_page_html([head, fig], out / name, title) for name, fig in figures.items()]
