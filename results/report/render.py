"""What a report shows: its figures, its HTML blocks and its Markdown tables.

:func:`search_figure` and :func:`retrained_figure` draw the nets (Plotly, imported lazily);
:func:`table_markdown` and :func:`seeds_markdown` write the tables of
:mod:`results.report.data` as Markdown, and the ``_*_html`` helpers as the report page's
blocks.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import pandas as pd

from proxies.measure.profile_rows import ProfileRow
from proxies.profile.table import COLUMNS as PROFILE_COLUMNS
from proxies.profile.table import table_cells
from results.report.data import MEMORY_REFERENCE, _finite, set_labels
from search_space.zoo import AIM_NET

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "retrained_figure",
    "search_figure",
    "seeds_markdown",
    "table_markdown",
]

_DERIVED_COLOR = "#2ca02c"
_ZOO_COLOR = "#1f77b4"
_CSS = """
body { font-family: sans-serif; margin: 1.5em; }
table.ntire { border-collapse: collapse; font-size: 0.9em; }
table.ntire th, table.ntire td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
table.ntire td:first-child, table.ntire th:first-child { text-align: left; }
tr.derived td { background: #eef8ee; }
.crops { display: flex; flex-wrap: wrap; gap: 10px; }
.crops figure { margin: 0; text-align: center; font-size: 0.85em; }
.crops img { image-rendering: pixelated; border: 1px solid #999; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _retrained_traces(table: pd.DataFrame, x: str, y: str, yaxis: str | None,
                      unit: str) -> list[Any]:
    import plotly.graph_objects as go

    traces = []
    for kind, color, symbol in (("derived", _DERIVED_COLOR, "star"),
                                ("zoo", _ZOO_COLOR, "star-diamond")):
        part = table.loc[table["kind"] == kind]
        traces.append(go.Scatter(
            x=part[x].to_numpy(dtype=float), y=part[y].to_numpy(dtype=float),
            mode="markers+text", name=f"retrained {kind}", text=part["name"].tolist(),
            textposition="bottom center", yaxis=yaxis,
            marker={"color": color, "size": 14, "symbol": symbol,
                    "line": {"color": "black", "width": 1}},
            hovertemplate="<b>%{text}</b><br>%{x:.3g} " + unit
                          + "<br>%{y:.2f} dB<extra>retrained</extra>",
        ))
    return traces


def search_figure(points: pd.DataFrame, table: pd.DataFrame, axis: str, reference: str,
                  front_set: str) -> go.Figure:
    """The search's Pareto figure (:func:`results.plots.pareto.pareto_figure_2d`: trials, front and
    zoo, proxy PSNR on the left axis) against latency or memory as a ratio to ``reference``,
    with the retrained nets added (benchmark Y-PSNR on ``front_set``, right axis)."""
    import plotly.graph_objects as go

    from results.plots.pareto import pareto_figure_2d

    x = f"{axis}_x"
    label = "latency" if axis == "latency" else "peak memory"
    fig = pareto_figure_2d(
        points, x=x, y="psnr_db",
        title=f"Search front and retrained nets: PSNR vs {label} (x {reference})",
    )
    derived = table.loc[table["kind"] == "derived"]
    linked = points.drop_duplicates("name").set_index("name").reindex(
        derived.get("search_trial", pd.Series(dtype=object)).dropna().tolist())
    if not linked.empty:
        fig.add_trace(go.Scatter(
            x=linked[x], y=linked["psnr_db"], mode="markers", name="retrained, as searched",
            text=linked.index.tolist(),
            marker={"color": "rgba(0,0,0,0)", "size": 16, "symbol": "circle-open",
                    "line": {"color": _DERIVED_COLOR, "width": 2}},
            hovertemplate="<b>%{text}</b> (retrained)<br>%{x:.3g}x<br>proxy %{y:.2f} dB"
                          "<extra></extra>",
        ))
    ratio_col = "latency_ratio" if axis == "latency" else "memory_ratio"
    for trace in _retrained_traces(table, ratio_col, f"psnr_y_{front_set}", "y2", "x"):
        fig.add_trace(trace)
    fig.update_layout(
        xaxis={"title": f"{label} / {reference}'s (search: its own measurement; retrained: "
                        "measured here)"},
        yaxis={"title": "search proxy PSNR [dB]"},
        yaxis2={"title": f"retrained Y-PSNR on {front_set} [dB]", "overlaying": "y",
                "side": "right", "showgrid": False},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def retrained_figure(table: pd.DataFrame, front_set: str) -> go.Figure:
    """Benchmark Y-PSNR of the retrained nets against measured latency and peak memory."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("latency", "peak memory"))
    y = f"psnr_y_{front_set}"
    axes = (("latency_ms", "latency", "ms"), ("peak_memory_mib", "peak memory", "MiB"))
    for col, (x, label, unit) in enumerate(axes, 1):
        for trace in _retrained_traces(table, x, y, None, unit):
            trace.showlegend = col == 1
            fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(title_text=f"{label} [{unit}]", row=1, col=col)
        fig.update_yaxes(title_text=f"Y-PSNR on {front_set} [dB]", row=1, col=col)
    fig.update_layout(title=f"Retrained nets on {front_set}: PSNR vs measured cost",
                      height=520, template="plotly_white")
    return fig


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------


def _kind_label(rec: Mapping[str, Any]) -> str:
    """``derived`` (with the search trial it is) or ``zoo`` (with the zoo net it deploys to)."""
    if rec["kind"] == "zoo":
        zoo = rec.get("zoo_name")
        return "zoo" if zoo in (None, rec["name"]) else f"zoo: {zoo}"
    trial = rec.get("search_trial")
    return f"derived: {trial}" if isinstance(trial, str) else "derived"


def _table_cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows: net, kind, PSNR-Y / SSIM per set, then the profile table's columns
    (:data:`proxies.profile.table.COLUMNS`, formatted by
    :func:`proxies.profile.table.table_cells`)."""
    sets = set_labels(table)
    header = ["Net", "Kind", *(f"{s} PSNR-Y / SSIM" for s in sets),
              *(title for title, _ in PROFILE_COLUMNS[1:])]
    names = [f.name for f in fields(ProfileRow)]
    body = []
    for rec in table.to_dict("records"):
        values: dict[str, Any] = {k: None if isinstance(v, float) and math.isnan(v) else v
                                  for k, v in rec.items() if k in names}
        row = ProfileRow(**values)
        body.append([
            str(rec["name"]), _kind_label(rec),
            *(f"{rec[f'psnr_y_{s}']:.2f} / {rec[f'ssim_y_{s}']:.4f}" for s in sets),
            *table_cells(row)[1:],
        ])
    return header, body


def _markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def table_markdown(table: pd.DataFrame) -> str:
    """The NTIRE-style table as Markdown."""
    return _markdown(*_table_cells(table))


def _html_table(header: list[str], body: list[list[str]], kinds: Sequence[Any]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = []
    for cells, kind in zip(body, kinds, strict=True):
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        rows.append(f'<tr class="{html.escape(str(kind))}">{tds}</tr>')
    return f'<table class="ntire"><tr>{head}</tr>\n' + "\n".join(rows) + "</table>"


def _table_html(table: pd.DataFrame) -> str:
    return _html_table(*_table_cells(table), table["kind"])


def _aim_html(aim: Mapping[str, Any]) -> str:
    if not aim["available"]:
        return f"<p><b>Aim not judged:</b> {html.escape(aim['reason'])}.</p>"
    items = []
    for name, v in aim["nets"].items():
        margins = ", ".join(f"{s} {m:+.2f} dB" for s, m in v["psnr_margin_db"].items())
        lat = "-" if v["latency_ratio"] is None else f"{v['latency_ratio']:.2f}x"
        mem = "-" if v["memory_margin_mib"] is None else f"{v['memory_margin_mib']:+.1f} MiB"
        items.append(
            f"<li><b>{html.escape(name)}</b>: {'MEETS' if v['met'] else 'does not meet'} the aim"
            f" (PSNR vs {AIM_NET}: {html.escape(margins)}; latency {lat} of "
            f"{AIM_NET}'s; memory headroom under {MEMORY_REFERENCE}: {mem})</li>")
    met = aim["met_by"]
    head = (f"met by {', '.join(met)}" if met else "not met by any derived net")
    several = [f"{n}: mean of {k} runs" for n, k in aim.get("reference_runs", {}).items() if k > 1]
    if several:
        head += f" ({'; '.join(several)})"
    return (f"<p><b>Aim</b> (the Y-PSNR of {AIM_NET} on every set, at lower latency, "
            f"with no more peak memory than {MEMORY_REFERENCE}): <b>{html.escape(head)}</b>.</p>"
            f"<ul>{''.join(items)}</ul>")


def _seed_cells(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-architecture table (:func:`seed_summary`)."""
    sets = set_labels(summary)
    header = ["Net", "Kind", "Runs (seeds)",
              *(f"{s} PSNR-Y mean \u00b1 std [min-max]" for s in sets),
              "x ref (mean)", f"x {AIM_NET} (mean)", "Params [M]", "Peak mem [MiB]"]
    body = []
    for rec in summary.to_dict("records"):
        cells = [str(rec["name"]), str(rec["kind"]), f"{rec['runs']} ({rec['seeds']})"]
        for s in sets:
            std = _finite(rec[f"std_psnr_y_{s}"])
            cells.append(f"{rec[f'psnr_y_{s}']:.2f} \u00b1 {'-' if std is None else f'{std:.2f}'}"
                         f" [{rec[f'min_psnr_y_{s}']:.2f}-{rec[f'max_psnr_y_{s}']:.2f}]")
        for key, fmt in (("latency_ratio", "{:.2f}"), ("latency_ratio_aim", "{:.2f}"),
                         ("params_m", "{:.3f}"),
                         ("peak_memory_mib", "{:.1f}")):
            value = _finite(rec.get(key))
            cells.append("-" if value is None else fmt.format(value))
        body.append(cells)
    return header, body


def seeds_markdown(summary: pd.DataFrame) -> str:
    """The per-architecture table: Y-PSNR mean +- std [min-max] per set over the runs."""
    return _markdown(*_seed_cells(summary))


def _provenance_html(info: Mapping[str, Any]) -> str:
    text = json.dumps(info, indent=2, default=str)
    return f"<h2>Budget, machine, settings</h2><pre>{html.escape(text)}</pre>"
