"""Figures of a DARTS run's architecture weights (alphas), drawn with Plotly.

:func:`alpha_heatmap` shows which op wins each slot and since when; :func:`alpha_figure` the
per-slot curves on their own y ranges. Both draw the structures of
:mod:`results.plots.run_data`; Plotly is imported lazily inside them. :mod:`results.plots.run`
writes them into ``alphas.html``.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from results.plots.page import _plotly
from results.plots.run_data import (
    _BOTTOM_PX,
    _TOP_PX,
    STEP_COLUMN,
    _figure_height,
    alpha_winners,
    candidate_styles,
    final_weights,
    own_y_range,
    slot_groups,
    step_ticks,
    subplot_grid,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "alpha_figure",
    "alpha_heatmap",
]

# Layout sizes in pixels.
_ALPHA_ROW_PX = 210
_ALPHA_GAP_PX = 100  # tick labels, the step title and a two-line subplot title
_HEAT_ROW_PX = 26
_HEAT_GAP_PX = 110  # the next group's candidate names, slanted, above it
_OTHER_COLOR = "#c4c4c4"  # candidates other than a slot's winner and runner-up
_HEAT_SCALE: tuple[tuple[float, str], ...] = ((0.0, "#f7fbff"), (1.0, "#74a9cf"))


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
        raise ValueError("alpha history is empty: nothing to plot; pass the alpha history of a "
                         "DARTS log.csv (results.plots.run_data.alpha_history)")
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
        raise ValueError("alpha history is empty: nothing to plot; pass the alpha history of a "
                         "DARTS log.csv (results.plots.run_data.alpha_history)")
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
