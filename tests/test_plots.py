"""Run plots: alpha/loss data extraction, Plotly figures and offline, atomic HTML output."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from results.plots.alphas import alpha_figure, alpha_heatmap
from results.plots.page import write_html
from results.plots.run import loss_figure, write_run_plots, write_training_plots
from results.plots.run_data import (
    PALETTE,
    alpha_history,
    alpha_winners,
    candidate_styles,
    loss_columns,
    own_y_range,
    slot_groups,
    step_ticks,
    subplot_grid,
)

STEPS = [0, 10, 20, 30, 40]
# slot -> candidates, in CSV column order (deliberately not sorted)
SLOTS = {
    "cells.0.conv0": ["sep_conv3x3", "conv3x3", "rep_conv3x3"],
    "cells.1.attention": ["none", "esa", "cca", "esa_lite"],
    "gate": ["conv3x3", "skip"],
}


def _weights(n_candidates: int, seed: int) -> np.ndarray:
    w = np.random.default_rng(seed).random((len(STEPS), n_candidates)) + 0.1
    return w / w.sum(axis=1, keepdims=True)


def make_log() -> pd.DataFrame:
    """A small DARTS-like log: 5 steps, 3 slots (one dotted), losses and expected costs."""
    columns: dict[str, object] = {
        "step": STEPS,
        "epoch": [0, 0, 1, 1, 2],
        "loss_train": [2.0, 1.5, 1.0, 0.8, 0.7],
        "expected_latency_ms": [12.0, 11.0, 10.5, 10.0, 9.5],
        "loss_val": [2.1, 1.6, 1.2, 0.9, 0.85],
        "loss_latency": [0.3, 0.1, 0.0, -0.1, -0.2],
        "temperature": [1.0, 0.9, 0.8, 0.7, 0.6],
        "lr": [1e-3] * 5,
        "expected_params_m": [0.5, 0.45, 0.4, 0.38, 0.37],
    }
    for seed, (slot, candidates) in enumerate(SLOTS.items()):
        w = _weights(len(candidates), seed)
        for j, candidate in enumerate(candidates):
            columns[f"alpha/{slot}/{candidate}"] = w[:, j]
    return pd.DataFrame(columns)


@pytest.fixture()
def log() -> pd.DataFrame:
    return make_log()


# --------------------------------------------------------------------------- data


def test_alpha_history_groups_by_slot_in_csv_order(log):
    history = alpha_history(log)
    assert list(history) == list(SLOTS)
    for slot, candidates in SLOTS.items():
        frame = history[slot]
        assert list(frame.columns) == candidates
        assert frame.shape == (len(STEPS), len(candidates))
        assert frame.index.name == "step"
        assert list(frame.index) == STEPS
        for candidate in candidates:
            np.testing.assert_allclose(
                frame[candidate].to_numpy(), log[f"alpha/{slot}/{candidate}"].to_numpy()
            )
        np.testing.assert_allclose(frame.sum(axis=1).to_numpy(), 1.0)


def test_alpha_history_drops_rows_without_that_slot(log):
    log.loc[1, [c for c in log.columns if c.startswith("alpha/gate/")]] = np.nan
    log.loc[3, "alpha/cells.0.conv0/conv3x3"] = np.nan  # partial: row is kept
    history = alpha_history(log)
    assert list(history["gate"].index) == [0, 20, 30, 40]
    assert list(history["cells.0.conv0"].index) == STEPS
    assert np.isnan(history["cells.0.conv0"].loc[30, "conv3x3"])


def test_alpha_history_needs_step_column(log):
    with pytest.raises(ValueError, match="'step'.*columns found.*loss_train"):
        alpha_history(log.drop(columns="step"))


def test_alpha_history_needs_alpha_columns(log):
    no_alpha = log[[c for c in log.columns if not c.startswith("alpha/")]]
    with pytest.raises(ValueError, match=r"alpha/.*columns found.*'loss_val'"):
        alpha_history(no_alpha)


def test_alpha_history_rejects_malformed_alpha_column(log):
    log["alpha/orphan"] = 0.5
    with pytest.raises(ValueError, match="alpha/orphan"):
        alpha_history(log)


def test_loss_columns(log):
    assert loss_columns(log) == [
        "loss_train",
        "loss_val",
        "loss_latency",
        "expected_latency_ms",
        "expected_params_m",
    ]
    log["expected_memory_mib"] = 100.0
    log["expected_flops_g"] = 1.0  # not one of the plotted expected costs
    log["myloss_x"] = 1.0
    assert loss_columns(log)[-3:] == [
        "expected_latency_ms",
        "expected_params_m",
        "expected_memory_mib",
    ]
    assert "expected_flops_g" not in loss_columns(log)
    assert "myloss_x" not in loss_columns(log)


def test_candidate_styles_depend_only_on_the_set_of_names():
    a = candidate_styles(["skip", "conv3x3", "esa", "conv3x3"])
    b = candidate_styles(["esa", "skip", "conv3x3"])
    assert a == b
    assert list(a) == ["conv3x3", "esa", "skip"]
    assert len({s.color for s in a.values()}) == 3
    many = candidate_styles(f"op{i:02d}" for i in range(len(PALETTE) + 1))
    assert len(set(many.values())) == len(many)  # wrap-around changes the dash pattern


def test_subplot_grid():
    assert subplot_grid(1) == (1, 1)
    assert subplot_grid(3) == (1, 3)
    assert subplot_grid(4) == (2, 3)
    assert subplot_grid(40) == (14, 3)
    with pytest.raises(ValueError, match=r"need at least one panel, got 0; pass n_panels >= 1"):
        subplot_grid(0)
    with pytest.raises(ValueError, match=r"max_cols must be >= 1, got 0; pass max_cols=1"):
        subplot_grid(3, max_cols=0)


# --------------------------------------------------------------------------- figures


def test_alpha_winners_and_since_step():
    steps = pd.Index([0.0, 10.0, 20.0, 30.0], name="step")
    frame = pd.DataFrame({"a": [0.5, 0.2, 0.3, 0.1], "b": [0.3, 0.5, 0.45, 0.6],
                          "c": [0.2, 0.3, 0.25, 0.3]}, index=steps)
    win = alpha_winners({"s": frame}).loc["s"]
    assert win["winner"] == "b" and win["runner_up"] in ("c",)
    assert win["since_step"] == 10.0  # b leads from step 10 on
    assert win["margin"] == pytest.approx(0.3) and win["n_candidates"] == 3
    single = alpha_winners({"t": pd.DataFrame({"x": [1.0]}, index=steps[:1])}).loc["t"]
    assert single["runner_up"] is None and single["since_step"] == 0.0
    with pytest.raises(ValueError, match=r"history is empty: no slot to rank; pass the alpha"):
        alpha_winners({})


def test_own_y_range_and_step_ticks():
    lo, hi = own_y_range(pd.Series([0.07, 0.09]))
    assert 0.06 < lo < 0.07 and 0.09 < hi < 0.1  # not 0-1
    assert own_y_range(pd.Series([0.0, 0.0])) == (-0.05, 0.05)
    assert step_ticks([10, 11]) == {"tickmode": "linear", "tick0": 10.0, "dtick": 1}
    assert step_ticks(range(0, 30))["dtick"] == 3
    assert step_ticks(range(0, 1000, 10)) == {"tickformat": "d"}
    assert step_ticks([0.5, 1.0]) == {}


def test_alpha_heatmap_marks_the_winner(log):
    history = alpha_history(log)
    fig = alpha_heatmap(history)
    groups = slot_groups(history)
    assert len(fig.data) == len(groups) == 3  # three different candidate lists
    winners = alpha_winners(history)
    for trace, (candidates, slots) in zip(fig.data, groups, strict=True):
        assert list(trace.x) == list(candidates)
        assert [y.split(" ")[0] for y in trace.y] == slots
        for r, slot in enumerate(slots):
            row = np.asarray(trace.z[r], dtype=float)
            assert row.max() == 1.0 and row.min() == 0.0  # scaled within the slot
            assert list(candidates)[int(row.argmax())] == winners.loc[slot, "winner"]
            shown = trace.text[r][int(row.argmax())]
            assert float(shown) == pytest.approx(winners.loc[slot, "weight"], abs=1e-3)
            runner = winners.loc[slot, "runner_up"]
            assert trace.text[r][list(candidates).index(runner)] != shown  # printed apart
    assert len(fig.layout.shapes) == len(history)  # one box per slot


def test_alpha_figure_own_ranges_winner_last_no_legend(log):
    history = alpha_history(log)
    fig = alpha_figure(history, title="run 7")
    assert fig.layout.title.text == "run 7"
    assert [a.text.split("<br>")[0] for a in fig.layout.annotations] == [
        f"<b>{s}</b>" for s in SLOTS]
    assert len(fig.data) == sum(len(c) for c in SLOTS.values())
    assert not any(t.showlegend for t in fig.data)
    winners = alpha_winners(history)
    styles = candidate_styles(c for cands in SLOTS.values() for c in cands)
    by_axis: dict[str, list] = {}
    for trace in fig.data:
        by_axis.setdefault(trace.yaxis, []).append(trace)
    for (axis, traces), slot in zip(by_axis.items(), SLOTS, strict=True):
        assert traces[-1].name == winners.loc[slot, "winner"]  # drawn on top
        assert traces[-1].line.color == styles[traces[-1].name].color
        assert traces[-1].line.width > traces[0].line.width
        lo, hi = fig.layout["yaxis" + axis[1:]].range
        values = history[slot].to_numpy()
        assert lo < values.min() and hi > values.max() and hi - lo < 1.0


def test_alpha_figure_grows_with_many_slots():
    steps = np.arange(3)
    many = {
        f"cells.{i}.conv0": pd.DataFrame({"a": steps / 3, "b": 1 - steps / 3}) for i in range(40)
    }
    small = alpha_figure(dict(list(many.items())[:3]))
    big = alpha_figure(many)
    assert len(big.data) == 80
    assert len(big.layout.annotations) == 40
    assert big.layout.height > 10 * small.layout.height


def test_loss_figure_skips_unused_terms_and_labels_every_panel(log):
    log["loss_params"] = 0.0
    log["loss_zero_one"] = np.nan
    log["step"] = [10, 11, 12, 13, 14]
    fig = loss_figure(log, loss_columns(log))
    assert "loss_params" not in [t.name for t in fig.data]
    assert "loss_zero_one" not in [t.name for t in fig.data]
    assert "loss_params, loss_zero_one" in fig.layout.title.subtitle.text
    axes = [fig.layout["xaxis" + t.xaxis[1:]] for t in fig.data]
    assert all(a.showticklabels and a.title.text == "step" for a in axes)
    assert all(a.dtick == 1 and a.tickmode == "linear" for a in axes)
    with pytest.raises(ValueError, match="nothing to plot"):
        loss_figure(log, ["loss_params", "loss_zero_one"])


def test_loss_figure_log_axes_only_for_positive_losses(log):
    log.loc[2, "loss_val"] = np.nan  # skipped, does not break the log axis
    columns = loss_columns(log)
    fig = loss_figure(log, columns)
    assert [a.text for a in fig.layout.annotations] == columns
    assert [t.name for t in fig.data] == columns
    types = {t.name: fig.layout["yaxis" + t.yaxis[1:]].type for t in fig.data}
    assert types == {
        "loss_train": "log",
        "loss_val": "log",
        "loss_latency": None,  # has zero and negative values
        "expected_latency_ms": None,  # positive but not a loss
        "expected_params_m": None,
    }
    val = fig.data[columns.index("loss_val")]
    assert list(val.x) == [0, 10, 30, 40]
    # shared step axis: all x axes match the bottom one
    bottom = fig.data[-1].xaxis
    assert all(fig.layout["xaxis" + t.xaxis[1:]].matches == bottom for t in fig.data[:-1])


def test_loss_figure_rejects_unknown_columns(log):
    with pytest.raises(ValueError, match="loss_nope"):
        loss_figure(log, ["loss_train", "loss_nope"])
    with pytest.raises(ValueError, match=r"no columns to plot: columns is empty; name at least"):
        loss_figure(log, [])


def test_rendering_without_plotly_explains(monkeypatch, log):
    for name in ("plotly", "plotly.graph_objects", "plotly.subplots"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="pip install plotly"):
        alpha_figure(alpha_history(log))


# --------------------------------------------------------------------------- HTML output

_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc\s*=", re.IGNORECASE)


def _assert_offline_html(path: Path) -> str:
    """plotly.js only from the plotly.min.js beside the page (no CDN), and that file is there."""
    html = path.read_text(encoding="utf-8")
    assert re.findall(r'<script\b[^>]*\bsrc\s*=\s*"([^"]*)"', html) == ["plotly.min.js"]
    assert "plotly.js v" in (path.parent / "plotly.min.js").read_text(encoding="utf-8")[:500]
    assert "Plotly.newPlot" in html
    return html


def test_write_run_plots_writes_offline_html(tmp_path, log):
    csv = tmp_path / "run_3" / "log.csv"
    csv.parent.mkdir()
    log.to_csv(csv, index=False)
    out = tmp_path / "a" / "b"  # created on demand
    paths = write_run_plots(csv, out)
    assert paths == [out / "alphas.html", out / "losses.html"]
    alphas = _assert_offline_html(paths[0])
    losses = _assert_offline_html(paths[1])
    assert "cells.1.attention" in alphas and "sep_conv3x3" in alphas
    assert "Architecture weights: run_3" in alphas and alphas.count("Plotly.newPlot") == 2
    assert "loss_latency" in losses and "expected_params_m" in losses
    assert sorted(p.name for p in out.iterdir()) == ["alphas.html", "losses.html", "plotly.min.js"]
    before = (out / "plotly.min.js").stat().st_mtime_ns
    write_run_plots(csv, out, run_name="named")  # the same copy is kept, not rewritten
    assert (out / "plotly.min.js").stat().st_mtime_ns == before
    assert "Architecture weights: named" in paths[0].read_text(encoding="utf-8")


def test_write_training_plots(tmp_path):
    run = tmp_path / "rlfn_s0"
    run.mkdir()
    pd.DataFrame({"step": [1, 2], "loss_train": [0.5, 0.4], "loss_kd": [np.nan, np.nan],
                  "val_psnr_y_db": [27.0, 27.5]}).to_csv(run / "log.csv", index=False)
    page = write_training_plots(run)
    assert page == run / "training.html"
    assert "Retraining: rlfn_s0" in _assert_offline_html(page)
    (run / "log.csv").write_text("step,other\n1,2\n")
    with pytest.raises(ValueError, match="none of"):
        write_training_plots(run)


class _StubFigure:
    """Stands in for a figure in the atomic-write tests (no 4 MB HTML)."""

    def __init__(self, html: str) -> None:
        self.html = html
        self.kwargs: dict[str, object] = {}

    def to_html(self, **kwargs: object) -> str:
        self.kwargs = kwargs
        return self.html


def test_write_html_embeds_plotlyjs_and_replaces(tmp_path):
    target = tmp_path / "new" / "fig.html"
    fig = _StubFigure("<html>first</html>")
    assert write_html(fig, target, include_plotlyjs=True) == target
    assert fig.kwargs.get("include_plotlyjs") is True
    assert target.read_text(encoding="utf-8") == "<html>first</html>"
    write_html(_StubFigure("<html>second</html>"), str(target), include_plotlyjs=True)
    assert target.read_text(encoding="utf-8") == "<html>second</html>"
    assert [p.name for p in target.parent.iterdir()] == ["fig.html"]


def test_write_html_failure_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "fig.html"
    target.write_text("old", encoding="utf-8")

    seen: list[Path] = []

    def boom(src: object, dst: object) -> None:
        seen.append(Path(str(src)))
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_html(_StubFigure("<html>new</html>"), target, include_plotlyjs=True)
    assert len(seen) == 1 and seen[0].parent == tmp_path  # temp file in the target's folder
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.html"]


def test_write_run_plots_rejects_empty_logs(tmp_path, log):
    header_only = tmp_path / "header_only.csv"
    log.iloc[:0].to_csv(header_only, index=False)
    with pytest.raises(ValueError, match="header_only.csv"):
        write_run_plots(header_only, tmp_path / "out")
    blank = tmp_path / "blank.csv"
    blank.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="blank.csv"):
        write_run_plots(blank, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_write_run_plots_needs_alpha_columns(tmp_path, log):
    csv = tmp_path / "log.csv"
    log[["step", "loss_train"]].to_csv(csv, index=False)
    with pytest.raises(ValueError, match="alpha/"):
        write_run_plots(csv, tmp_path / "out")
    assert not (tmp_path / "out").exists()
