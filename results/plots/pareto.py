"""Pareto plots of a trial table (:mod:`results.table.schema`), written as offline HTML pages.

The rendering half: :func:`results.plots.pareto_data.pareto_data` and
:func:`results.plots.pareto_data.parallel_data` compute what is drawn (and
:func:`results.table.pareto.search_summary` the hypervolumes, the dominated zoo nets and the nets to
retrain first); :func:`pareto_figure_2d`,
:func:`pareto_figure_3d`, :func:`parallel_coordinates_figure` and
:func:`pareto_summary_html` draw it, and :func:`write_pareto_report` writes them. By default
the summary and the four figures go into ONE page, ``pareto_report.html``;
``write_pareto_report(..., single_file=False)`` writes ``pareto_latency.html``,
``pareto_memory.html``, ``pareto_3d.html`` and ``parallel.html`` instead (each with the
summary), all sharing the folder's ``plotly.min.js``.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from results.plots.page import _plotly, write_page_html
from results.plots.pareto_data import PARALLEL_COLUMNS, parallel_data, pareto_data
from results.table.pareto import search_summary

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "pareto_summary_html",
    "parallel_coordinates_figure",
    "pareto_figure_2d",
    "pareto_figure_3d",
    "write_pareto_report",
]

logger = logging.getLogger("results.plots")  # all plot modules share the plots' logger

PARETO_REPORT_HTML = "pareto_report.html"
PARETO_LATENCY_HTML = "pareto_latency.html"
PARETO_MEMORY_HTML = "pareto_memory.html"
PARETO_3D_HTML = "pareto_3d.html"
PARALLEL_HTML = "parallel.html"

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

_TRIAL_COLOR = "#b0b0b0"
_FRONT_COLOR = "#d62728"
_ZOO_COLOR = "#1f77b4"
_PARETO_2D_PX = 620
_PARETO_3D_PX = 760
_PARALLEL_PX = 560


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


def _names_html(names: Iterable[str]) -> str:
    return ", ".join(f"<b>{html.escape(str(n))}</b>" for n in names) or "none"


def pareto_summary_html(summary: Mapping[str, Any]) -> str:
    """The summary of :func:`results.table.pareto.search_summary` as an HTML fragment: the
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
    :func:`results.table.pareto.search_summary` with ``margin``) and four figures: PSNR vs latency
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
