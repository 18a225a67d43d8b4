"""The pages of a run log (search or retraining), written as offline HTML files.

:func:`write_run_plots` reads a DARTS run log (its columns: :mod:`results.plots.run_data`) and
writes ``alphas.html`` (the winner of each slot as a heatmap of the final weights, then the
per-slot curves on their own y ranges) and ``losses.html``; :func:`write_training_plots` writes
a retraining run's ``training.html``.

:func:`loss_figure` draws the loss curves from the structures of :mod:`results.plots.run_data`
(Plotly imported lazily inside it); the alpha figures are :mod:`results.plots.alphas`; the pages
are written with :mod:`results.plots.page`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from results.plots.alphas import alpha_figure, alpha_heatmap
from results.plots.page import _plotly, write_html, write_page_html
from results.plots.run_data import (
    _BOTTOM_PX,
    _TOP_PX,
    PALETTE,
    STEP_COLUMN,
    _figure_height,
    _read_log,
    _require_step,
    _steps,
    alpha_history,
    log_y_columns,
    loss_columns,
    step_ticks,
    unused_columns,
)
from results.run_folder import RunFolder

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "TRAINING_COLUMNS",
    "loss_figure",
    "write_run_plots",
    "write_training_plots",
]

logger = logging.getLogger("results.plots")  # all plot modules share the plots' logger

ALPHAS_HTML = "alphas.html"
LOSSES_HTML = "losses.html"
TRAINING_HTML = "training.html"
#: Columns of a retraining log drawn in ``training.html``, in panel order.
TRAINING_COLUMNS: tuple[str, ...] = ("loss_train", "loss_kd", "lr", "val_psnr_y_db")

# Layout sizes in pixels.
_LOSS_ROW_PX = 220
_LOSS_GAP_PX = 100


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
        raise ValueError("no columns to plot: columns is empty; name at least one column of the "
                         "log, e.g. columns=['loss_train']")
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
    csv_path = RunFolder(folder).log
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
