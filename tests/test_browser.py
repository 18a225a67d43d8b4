"""Every kind of page, opened in headless Chromium with the network cut off.

Pages come from the project's own writers on tiny real data: ``alphas.html`` / ``losses.html``
(:func:`results.plots.run.write_run_plots` of a DARTS-like log), ``training.html``
(:func:`results.plots.run.write_training_plots`), the Pareto page (2-D, 3-D and parallel
coordinates, :func:`results.plots.pareto.write_pareto_report`) and a real ``report.html``
(``python -m results.report`` on two retrained runs of 2 iterations and a search study, built
with the helpers of tests/test_report.py: HTML fragments, three figures, embedded crops).

How the network is cut: ``--host-resolver-rules=MAP * ~NOTFOUND`` (no name resolves),
``--proxy-server=127.0.0.1:9`` (every connection goes to a dead proxy),
``--disable-background-networking`` and ``--disable-component-update``; on top, the probe
fails the page if ``performance`` lists any resource that is not a ``file:`` URL.

How errors and empty figures are found: a copy of each page, in the same folder (so its
``plotly.min.js`` resolves the same way), gets a probe script as the first element of
``<head>``. It records ``window`` error events (script errors and resources that fail to
load, in the capture phase) and ``console.error`` calls; two seconds of virtual time after
``load`` it writes, per ``.plotly-graph-div``, whether Plotly drew it (``.main-svg``), its
trace count, the SVG marks drawn (points, lines, heatmap images, parcoords lines) and the
WebGL canvases, and per ``<img>`` whether it decoded (a width), into a ``<pre>`` that
``--dump-dom`` prints.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from results.plots.page import write_html
from results.plots.pareto import write_pareto_report
from results.plots.run import write_run_plots, write_training_plots

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)",
)

PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener('error', function (e) {
    var t = e.target, url = t && t !== window && (t.src || t.href);
    if (url) { errors.push('failed to load ' + url); }
    else { errors.push(String(e.message) + ' at ' + e.filename + ':' + e.lineno); }
  }, true);
  window.addEventListener('unhandledrejection', function (e) {
    errors.push('rejection: ' + e.reason);
  });
  var cerr = console.error;
  console.error = function () {
    errors.push('console.error: ' + Array.from(arguments).join(' '));
    cerr.apply(console, arguments);
  };
  var MARKS = '.scatterlayer .point, .scatterlayer .js-line, .heatmaplayer image, '
    + '.parcoords-lines, .textpoint';
  function figure(gd) {
    var canvases = Array.from(gd.querySelectorAll('canvas'));
    return {
      id: gd.id,
      drawn: !!gd.querySelector('.main-svg'),
      traces: (gd._fullData || []).length,
      marks: gd.querySelectorAll(MARKS).length,
      gl: canvases.filter(function (c) { return c.width > 0 && c.height > 0; }).length,
      has3d: !!(gd._fullLayout && gd._fullLayout.scene),
      no_webgl: (gd.textContent || '').indexOf('WebGL is not supported') >= 0
    };
  }
  window.addEventListener('load', function () { setTimeout(function () {
    var figs = Array.from(document.querySelectorAll('.plotly-graph-div')).map(figure);
    var net = performance.getEntriesByType('resource').map(function (r) { return r.name; })
      .filter(function (n) { return n.indexOf('file:') !== 0; });
    var pre = document.createElement('pre');
    pre.id = 'srnas-probe';
    var imgs = Array.from(document.images).map(function (i) {
      return {alt: i.alt, decoded: i.complete && i.naturalWidth > 0};
    });
    pre.textContent = JSON.stringify({errors: errors, figures: figs, network: net,
                                      images: imgs});
    document.body.appendChild(pre);
  }, 2000); });
})();
</script>"""

_PRE = re.compile(r'<pre id="srnas-probe">(.*?)</pre>', re.S)


def open_page(page: Path, timeout: float = 25.0) -> dict:
    """Open ``page`` (through a probed copy beside it) in headless Chromium, offline; returns
    the probe's ``{"errors", "figures", "network", "images"}``."""
    text = page.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", text, re.I)
    probed = text[: head.end()] + PROBE + text[head.end():] if head else PROBE + text
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(probed, encoding="utf-8")
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
             "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--disable-extensions", "--window-size=1280,1000",
             f"--user-data-dir={page.parent / '.chromium-profile'}",
             "--virtual-time-budget=6000", "--dump-dom", copy.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    finally:
        copy.unlink(missing_ok=True)
    found = _PRE.search(result.stdout)
    assert found, f"no probe output from {page.name}; stderr: {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def assert_page_draws(page: Path, n_figures: int, gl_figures: int = 0) -> dict:
    """Fail on a JavaScript error, a network request, a missing figure or one that draws
    nothing (no SVG marks, and no WebGL canvas for a 3-D / parcoords figure)."""
    probe = open_page(page)
    assert probe["errors"] == [], f"{page.name}: JavaScript errors {probe['errors']}"
    assert probe["network"] == [], f"{page.name}: network requests {probe['network']}"
    figs = probe["figures"]
    assert len(figs) == n_figures, f"{page.name}: {len(figs)} figures, expected {n_figures}"
    for fig in figs:
        assert fig["drawn"] and fig["traces"] > 0, f"{page.name}: {fig['id']} not drawn: {fig}"
        assert not fig["no_webgl"], f"{page.name}: {fig['id']}: no WebGL"
        assert fig["marks"] > 0 or fig["gl"] > 0, f"{page.name}: {fig['id']} draws nothing"
    assert sum(f["has3d"] for f in figs) == gl_figures, figs
    return probe


# --------------------------------------------------------------------------- tiny real data


def darts_log(steps: int = 4) -> pd.DataFrame:
    """A DARTS-like log with few rows (steps 10..13), 12 conv candidates near 1/12, an unused
    loss term at weight 0 and a never-logged one."""
    rng = np.random.default_rng(0)
    cols: dict[str, object] = {
        "step": list(range(10, 10 + steps)),
        "loss_train": np.linspace(1.0, 0.5, steps),
        "loss_params": [0.0] * steps,
        "loss_zero_one": [np.nan] * steps,
        "expected_latency_ms": np.linspace(12, 9, steps),
    }
    convs = [f"conv{i}" for i in range(12)]
    for slot, cands in (("cells.0.conv0", convs), ("cells.1.conv0", convs),
                        ("cells.0.attention", ["esa", "cca", "none"])):
        w = rng.random((steps, len(cands))) * 0.02 + 1.0
        w /= w.sum(axis=1, keepdims=True)
        for j, c in enumerate(cands):
            cols[f"alpha/{slot}/{c}"] = w[:, j]
    return pd.DataFrame(cols)


def trial_table() -> pd.DataFrame:
    rows = []
    for i, (psnr, lat, mem) in enumerate([(28.1, 5.0, 50.0), (27.9, 4.0, 60.0), (27.5, 8.0, 40.0),
                                          (27.0, 9.0, 90.0)]):
        rows.append({"name": f"trial_{i}", "is_zoo": False, "psnr_db": psnr, "latency_ms": lat,
                     "memory_mib": mem})
    for name, psnr, lat, mem in [("rlfn_ntire", 28.2, 6.0, 70.0), ("fmen_s", 28.0, 7.0, 55.0),
                                 ("imdn_ntire", 27.8, 9.5, 95.0)]:
        rows.append({"name": name, "is_zoo": True, "psnr_db": psnr, "latency_ms": lat,
                     "memory_mib": mem})
    df = pd.DataFrame(rows)
    df["state"] = "COMPLETE"
    df["feasible"] = True
    df["study"] = "s"
    df["params_m"] = 0.3
    df["flops_g"] = 20.0
    df["activations_m"] = 30.0
    df["genotype"] = None
    return df


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pages")
    run = root / "darts_run"
    run.mkdir()
    darts_log().to_csv(run / "log.csv", index=False)
    alphas, losses = write_run_plots(run / "log.csv", run)
    retrain = root / "retrain_run"
    retrain.mkdir()
    pd.DataFrame({"step": [0, 1, 2], "loss_train": [0.5, 0.4, 0.3], "lr": [1e-3] * 3,
                  "val_psnr_y_db": [np.nan, 27.0, 27.4]}).to_csv(retrain / "log.csv",
                                                                 index=False)
    training = write_training_plots(retrain)
    pareto = write_pareto_report(trial_table(), root / "pareto")[0]
    separate = write_pareto_report(trial_table(), root / "separate", single_file=False)
    return {"alphas": alphas, "losses": losses, "training": training, "pareto": pareto,
            "pareto_3d": separate[2]}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A real ``report.html``: ``results.report`` on retrained runs of tests/test_report.py's
    derived net and of rlfn_ntire (2 iterations each), with its search study and images."""
    from test_report import retrain_runs, write_images, write_study

    from results.report.command import main as report_main

    root = tmp_path_factory.mktemp("retrained")
    runs = retrain_runs(root, zoo=("rlfn_ntire",))
    out = root / "report"
    assert report_main([str(runs / "derived"), str(runs / "rlfn_ntire"), "--out", str(out),
                        "--sets", str(write_images(root / "images")),
                        "--storage", write_study(root / "s.db"), "--size", "32",
                        "--rounds", "1", "--crop-size", "32"]) == 0
    return out / "report.html"


# --------------------------------------------------------------------------- tests


def test_run_pages_share_one_plotlyjs(pages):
    run = pages["alphas"].parent
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == [
        "alphas.html", "log.csv", "losses.html", "plotly.min.js"]
    for name in ("alphas", "losses"):
        text = pages[name].read_text(encoding="utf-8")
        assert len(text) < 1_000_000 and '<script charset="utf-8" src="plotly.min.js">' in text


def test_alphas_page(pages):
    assert_page_draws(pages["alphas"], n_figures=2)


def test_losses_and_training_pages(pages):
    assert_page_draws(pages["losses"], n_figures=1)
    assert_page_draws(pages["training"], n_figures=1)
    assert "Retraining: retrain_run" in pages["training"].read_text(encoding="utf-8")


def test_pareto_pages(pages):
    probe = assert_page_draws(pages["pareto"], n_figures=4, gl_figures=1)
    assert [f["gl"] > 0 for f in probe["figures"]][2:] == [True, True]  # 3-D, parcoords
    assert_page_draws(pages["pareto_3d"], n_figures=1, gl_figures=1)
    text = pages["pareto"].read_text(encoding="utf-8")
    assert "Hypervolume, searched front / zoo front" in text and "Retrain first" in text


def test_report_page(report):
    # the search front against latency and memory, the retrained nets: three figures
    probe = assert_page_draws(report, n_figures=3)
    text = report.read_text(encoding="utf-8")
    assert "NTIRE-style table" in text and "Crops" in text
    # the crops (HR, bicubic, both nets), embedded as data: URIs, all decoded
    assert len(probe["images"]) == 4 and all(i["decoded"] for i in probe["images"]), probe


def test_missing_plotlyjs_fails(pages, tmp_path):
    """The check can fail: the losses page without its plotly.min.js."""
    page = tmp_path / "losses.html"
    shutil.copy(pages["losses"], page)
    with pytest.raises(AssertionError, match="JavaScript errors.*plotly.min.js"):
        assert_page_draws(page, n_figures=1)


def test_empty_figure_fails(tmp_path):
    """The check can fail: a figure without data draws nothing."""
    import plotly.graph_objects as go

    page = write_html(go.Figure(go.Scatter(x=[], y=[])), tmp_path / "empty.html")
    with pytest.raises(AssertionError, match="draws nothing"):
        assert_page_draws(page, n_figures=1)


def test_network_is_cut(tmp_path):
    """The check can fail: a page that loads plotly.js from a CDN gets no network."""
    import plotly.graph_objects as go

    page = tmp_path / "cdn.html"
    page.write_text(go.Figure(go.Scatter(x=[1], y=[2])).to_html(include_plotlyjs="cdn"),
                    encoding="utf-8")
    with pytest.raises(AssertionError, match="JavaScript errors"):
        assert_page_draws(page, n_figures=1)
