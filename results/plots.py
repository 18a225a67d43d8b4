"""Interactive plots of search runs, written as self-contained (offline) HTML files.

Every plot is split into two halves:

* **data**: plain functions that turn a run log into the structures that get plotted
  (:func:`alpha_history`, :func:`loss_columns`, :func:`candidate_styles`,
  :func:`subplot_grid`, :func:`log_y_columns`, :func:`is_unit_interval`). They only need
  pandas and are what the tests check;
* **rendering**: functions that build Plotly figures from those structures
  (:func:`alpha_figure`, :func:`loss_figure`) and write them (:func:`write_html`). Plotly is
  imported lazily inside them, so the data half works without it.

HTML files embed plotly.js (about 4.6 MB each) so they open without a network connection, and
are written atomically: a temporary file in the target folder is renamed over the target.

DARTS run log (``log.csv``, one row per logged step) columns used here:

* ``step``: the x axis of every plot;
* ``loss_*`` and ``expected_latency_ms`` / ``expected_memory_mib`` / ``expected_params_m``:
  the curves of :func:`loss_figure`;
* ``alpha/<slot>/<candidate>``: the weight of one candidate op of one architecture slot at that
  step. ``<slot>`` (e.g. ``cells.0.conv0``) may contain dots but never slashes, so the slot is
  everything between the first and the second slash and the candidate is the rest.

:func:`write_run_plots` reads such a log and writes ``alphas.html`` and ``losses.html``.

Pareto plots of a trial table (:mod:`results.table`) follow the same split: :func:`pareto_data`
and :func:`parallel_data` compute what is drawn; :func:`pareto_figure_2d`,
:func:`pareto_figure_3d` and :func:`parallel_coordinates_figure` draw it, and
:func:`write_pareto_report` writes them. By default the four figures of the report go into ONE
file, ``pareto_report.html``, through :func:`write_figures_html`, which embeds plotly.js once
(about 4.8 MB in all instead of about 19 MB for four standalone files);
``write_pareto_report(..., single_file=False)`` writes ``pareto_latency.html``,
``pareto_memory.html``, ``pareto_3d.html`` and ``parallel.html`` instead, each through
:func:`write_html`.
"""

from __future__ import annotations

import html
import logging
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from results.pareto import pareto_mask
from results.table import OBJECTIVES

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "ALPHA_PREFIX",
    "EXPECTED_COST_COLUMNS",
    "LOSS_PREFIX",
    "PARALLEL_COLUMNS",
    "LineStyle",
    "ParetoData",
    "alpha_figure",
    "alpha_history",
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
_ALPHA_ROW_PX = 230
_LOSS_ROW_PX = 220
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
        raise ValueError(f"need at least one panel, got {n_panels}")
    if max_cols < 1:
        raise ValueError(f"max_cols must be >= 1, got {max_cols}")
    cols = min(max_cols, n_panels)
    return math.ceil(n_panels / cols), cols


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


def _figure_height(rows: int, row_px: int) -> int:
    return _TOP_PX + _BOTTOM_PX + rows * row_px + (rows - 1) * _ROW_GAP_PX


def alpha_figure(
    history: Mapping[str, pd.DataFrame],
    title: str = "Architecture weights (alphas) vs step",
    max_cols: int = 3,
) -> go.Figure:
    """A grid of subplots, one per slot, with one line per candidate weight against step.

    Subplot titles are the slot names. A candidate has the same colour (and legend group) in
    every subplot, keyed by :func:`candidate_styles` over all candidate names; its legend entry
    is shown once, at its first appearance. Subplots whose values all lie in [0, 1] get the fixed
    y range :data:`UNIT_Y_RANGE`; others autorange. The figure grows taller with the number of
    rows so that ~40 slots stay readable.
    """
    if not history:
        raise ValueError("alpha history is empty: nothing to plot")
    go, make_subplots = _plotly()
    slots = list(history)
    rows, cols = subplot_grid(len(slots), max_cols)
    height = _figure_height(rows, _ALPHA_ROW_PX)
    specs: list[list[dict[str, Any] | None]] = [
        [{} if r * cols + c < len(slots) else None for c in range(cols)] for r in range(rows)
    ]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=specs,
        subplot_titles=slots,
        horizontal_spacing=0.06 if cols > 1 else 0.0,
        vertical_spacing=_ROW_GAP_PX / height if rows > 1 else 0.0,
    )
    styles = candidate_styles(c for frame in history.values() for c in frame.columns)
    shown: set[str] = set()
    for i, slot in enumerate(slots):
        frame = history[slot]
        row, col = i // cols + 1, i % cols + 1
        x = frame.index.to_numpy()
        for candidate in frame.columns:
            style = styles[candidate]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=frame[candidate].to_numpy(dtype=float),
                    mode="lines",
                    name=candidate,
                    legendgroup=candidate,
                    showlegend=candidate not in shown,
                    line={"color": style.color, "dash": style.dash, "width": 1.8},
                    hovertemplate=(
                        f"{slot}<br>{candidate}: %{{y:.4f}}<br>step %{{x}}<extra></extra>"
                    ),
                ),
                row=row,
                col=col,
            )
            shown.add(candidate)
        if is_unit_interval(frame):
            fig.update_yaxes(range=list(UNIT_Y_RANGE), row=row, col=col)
        # x title on the lowest subplot of each column
        if i + cols >= len(slots):
            fig.update_xaxes(title_text=STEP_COLUMN, row=row, col=col)
    fig.update_annotations(font_size=12)
    fig.update_layout(
        title=title,
        height=height,
        margin={"t": _TOP_PX, "b": _BOTTOM_PX},
        legend={"title": {"text": "candidate"}, "tracegroupgap": 2},
        template="plotly_white",
    )
    return fig


def loss_figure(
    df: pd.DataFrame,
    columns: Sequence[str],
    title: str = "Losses and expected costs vs step",
) -> go.Figure:
    """A vertical stack of subplots sharing the step axis, one per column of ``df``.

    Missing values are skipped per column (a column logged every few steps still draws a
    connected line). ``loss_*`` columns whose values are all > 0 get a log y axis
    (:func:`log_y_columns`).

    Raises:
        ValueError: no ``columns``, no ``step`` column, or a column not in ``df``.
    """
    if not columns:
        raise ValueError("no columns to plot")
    _require_step(df)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the log; columns found: {list(df.columns)}")
    go, make_subplots = _plotly()
    rows = len(columns)
    height = _figure_height(rows, _LOSS_ROW_PX)
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        subplot_titles=list(columns),
        vertical_spacing=_ROW_GAP_PX / height if rows > 1 else 0.0,
    )
    steps = _steps(df).to_numpy()
    log_y = set(log_y_columns(df, columns))
    for row, column in enumerate(columns, start=1):
        values = pd.to_numeric(df[column]).to_numpy(dtype=float)
        keep = ~np.isnan(values)
        fig.add_trace(
            go.Scatter(
                x=steps[keep],
                y=values[keep],
                mode="lines",
                name=column,
                showlegend=False,
                line={"color": PALETTE[(row - 1) % len(PALETTE)], "width": 1.8},
                hovertemplate=f"{column}: %{{y:.5g}}<br>step %{{x}}<extra></extra>",
            ),
            row=row,
            col=1,
        )
        if column in log_y:
            fig.update_yaxes(type="log", row=row, col=1)
    fig.update_xaxes(title_text=STEP_COLUMN, row=rows, col=1)
    fig.update_annotations(font_size=12)
    fig.update_layout(
        title=title,
        height=height,
        margin={"t": _TOP_PX, "b": _BOTTOM_PX},
        template="plotly_white",
    )
    return fig


def write_html(fig: go.Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a standalone HTML file that opens offline; returns the path.

    plotly.js is embedded in the file (no CDN script tag). The parent folder is created if
    needed. The HTML goes to a temporary file in the same folder, which is then renamed over
    ``path`` (:func:`os.replace`), so readers never see a partial file; the temporary file is
    removed if anything fails.
    """
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    return _write_text_atomic(html, path)


def _write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder (see
    :func:`write_html`); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # os.open with 0o666 honours the umask, unlike tempfile's private 0o600 files.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("Wrote %s (%.1f MB)", target, len(text) / 1e6)
    return target


def write_run_plots(
    csv_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Plot a DARTS run log: write ``alphas.html`` and ``losses.html`` into ``out_dir``.

    Returns the paths written, alphas first. ``losses.html`` is skipped (with a warning) when the
    log has no loss or expected-cost column.

    Raises:
        ValueError: the CSV is empty or has a header but no rows (the message names the file),
            or the log lacks the ``step`` / ``alpha/`` columns (see :func:`alpha_history`).
    """
    csv_path = Path(csv_path)
    out = Path(out_dir)
    try:
        df = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{csv_path}: empty CSV file, nothing to plot") from err
    if df.empty:
        raise ValueError(f"{csv_path}: the log has a header but no rows, nothing to plot")
    run = csv_path.parent.name or csv_path.stem
    history = alpha_history(df)
    paths = [
        write_html(alpha_figure(history, title=f"Architecture weights: {run}"), out / ALPHAS_HTML)
    ]
    columns = loss_columns(df)
    if columns:
        fig = loss_figure(df, columns, title=f"Losses and expected costs: {run}")
        paths.append(write_html(fig, out / LOSSES_HTML))
    else:
        logger.warning(
            "%s: no loss_* or expected-cost columns; %s not written", csv_path, LOSSES_HTML
        )
    return paths


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


def pareto_figure_2d(
    df: pd.DataFrame, x: str = "latency_ms", y: str = "psnr_db", title: str | None = None
) -> go.Figure:
    """Scatter of ``y`` against ``x`` for every complete trial, with the front and the zoo.

    Traces, in order: ``trials`` (searched feasible points, grey), ``infeasible`` (searched
    points violating a constraint, grey crosses), ``Pareto front`` (the 2-D front of ``x`` /
    ``y`` over all eligible rows, zoo included, drawn as a staircase) and ``zoo`` (published
    nets, labelled with their names). Hovering shows name, both axes, params and FLOPs.
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
            mode="lines+markers",
            name="Pareto front",
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

    Traces: ``trials`` (every complete point off the front, grey), ``Pareto front`` and ``zoo``
    (labelled with names). Hovering shows name, the objectives, params and FLOPs.
    """
    x, y, z = "latency_ms", "memory_mib", "psnr_db"
    data = pareto_data(df, x, y, z)
    go, _ = _plotly()
    axes = [x, y, z]
    off_front = data.points.loc[~data.points["on_front"] & ~data.points["is_zoo"].astype(bool)]
    fig = go.Figure()
    for label, part, marker, mode in (
        ("trials", off_front, {"color": _TRIAL_COLOR, "size": 3}, "markers"),
        ("Pareto front", data.front, {"color": _FRONT_COLOR, "size": 5}, "markers"),
        ("zoo", data.zoo, {"color": _ZOO_COLOR, "size": 6, "symbol": "diamond"}, "markers+text"),
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
                text=part["name"].astype(str).tolist() if label == "zoo" else None,
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
) -> Path:
    """Write figures and HTML fragments into ONE standalone, offline HTML page; returns the path.

    ``blocks`` are shown in order, each in a ``<section>``: a Plotly figure is rendered as a div
    (plotly.js is embedded once, with the first figure), a string is inserted as it is (the
    caller escapes it). ``style`` is CSS for the page's ``<style>`` element. Written atomically
    like :func:`write_html`.

    Raises:
        ValueError: ``blocks`` is empty.
    """
    if not blocks:
        raise ValueError("blocks is empty: pass at least one figure or HTML fragment")
    parts = []
    embedded = False
    for i, block in enumerate(blocks):
        if isinstance(block, str):
            body = block
        else:
            body = block.to_html(include_plotlyjs=not embedded, full_html=False,
                                 div_id=f"figure-{i}")
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
    """Write several figures into ONE standalone, offline HTML page; returns the path.

    plotly.js is embedded once, with the first figure; the figures follow one another, each in
    a ``<section>`` titled by its layout title (:func:`write_page_html`).

    Raises:
        ValueError: ``figures`` is empty.
    """
    if not figures:
        raise ValueError("figures is empty: pass at least one figure")
    return write_page_html(list(figures), path, title)


def write_pareto_report(
    df: pd.DataFrame, out_dir: str | os.PathLike[str], single_file: bool = True
) -> list[Path]:
    """Write the Pareto report of a trial table into ``out_dir``; returns the paths written.

    The report holds four figures: PSNR vs latency and PSNR vs memory
    (:func:`pareto_figure_2d`), the 3-D scatter (:func:`pareto_figure_3d`) and the parallel
    coordinates (:func:`parallel_coordinates_figure`). With ``single_file`` (the default) they go
    into ``pareto_report.html``, embedding plotly.js once; otherwise into
    ``pareto_latency.html``, ``pareto_memory.html``, ``pareto_3d.html`` and ``parallel.html``
    (plotly.js in each, about 4.8 MB apiece). All open offline.
    """
    out = Path(out_dir)
    if not (df["state"] == "COMPLETE").any():
        logger.warning("no complete trial: the Pareto report has empty figures")
    figures = {
        PARETO_LATENCY_HTML: pareto_figure_2d(df, x="latency_ms", y="psnr_db"),
        PARETO_MEMORY_HTML: pareto_figure_2d(df, x="memory_mib", y="psnr_db"),
        PARETO_3D_HTML: pareto_figure_3d(df),
        PARALLEL_HTML: parallel_coordinates_figure(df),
    }
    if single_file:
        title = f"Pareto report{_study_label(df)}"
        return [write_figures_html(list(figures.values()), out / PARETO_REPORT_HTML, title)]
    return [write_html(fig, out / name) for name, fig in figures.items()]
