"""The per-run report: end to end on tiny retrained runs, the aim verdict, bad input."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from PIL import Image

from proxies.data.specs import default_images
from results.plots.page import write_page_html
from results.plots.pareto_data import pareto_data
from results.report.command import main
from results.report.crops import pick_crop
from results.report.data import (
    aim_latency_ratio,
    aim_verdict,
    link_search_trials,
    repeated_seeds,
    search_points,
    seed_summary,
)
from results.report.render import seeds_markdown
from results.report.runs import (
    ReportError,
    RetrainedRun,
    budget_differences,
    load_run,
    zoo_match,
)
from search_space import Genotype
from search_space.zoo import ZOO
from searchers.training.retrain import main as retrain

DERIVED = {"scale": 4, "width": 8, "cells": [
    {"type": "rfdb", "ops": ["conv3x3", "rep_conv3x3", "sep_conv3x3", "conv1x1"],
     "attention": {"type": "cca"}}]}
TRAIN = ["optim.iterations=2", "optim.warmup_iterations=1", "data.batch_size=2",
         "data.patch_size=108", "data.val_max_side=32", "run.val_every=2", "run.log_every=1"]


def write_images(folder: Path) -> Path:
    """A folder of two 64x64 HR images (crops of the embedded default set)."""
    folder.mkdir()
    for name, hr in default_images()[:2]:
        crop = (np.asarray(hr)[:64, :64] * 255).round().astype(np.uint8)
        Image.fromarray(crop).save(folder / f"{name}.png")
    return folder


def write_study(path: Path) -> str:
    """An Optuna study (SQLite at ``path``) holding the zoo, span_ntire2024 (the latency
    reference) included, and two searched nets of the DERIVED genotype; its storage URL."""
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name="s",
                                directions=["maximize", "minimize", "minimize"])
    study.set_metric_names(["psnr_db", "latency_ms", "memory_mib"])
    trials = [("span_ntire2024", True, [27.0, 10.0, 4.0]),
              ("rlfn_ntire", True, [27.5, 18.0, 6.0]), ("fmen_s", True, [28.1, 29.0, 7.6]),
              ("trial_2", False, [27.6, 12.0, 5.0]), ("trial_3", False, [26.0, 20.0, 8.0])]
    for name, is_zoo, values in trials:
        genotype = ZOO[name] if is_zoo else Genotype.from_dict(DERIVED)
        attrs = {"genotype": genotype.to_json(indent=None), "name": name, "is_zoo": is_zoo,
                 "params_m": 0.3, "flops_g": 20.0, "macs_g": 10.0, "activations_m": 80.0,
                 "num_conv": 30, "device": "cpu", "duration_s": 1.0, "constraints": {}}
        study.add_trial(optuna.trial.create_trial(values=values, user_attrs=attrs))
    return url


def retrain_runs(root: Path, zoo: tuple[str, ...] = ("rlfn_ntire", "fmen_s")) -> Path:
    """Finished retrain runs of the DERIVED net (``derived``) and of the ``zoo`` nets, 2
    iterations each, in ``root / "runs"``."""
    derived = Genotype.from_dict(DERIVED).save(root / "derived.json")
    for spec, name in ((str(derived), ["run.name=derived"]), *((z, []) for z in zoo)):
        assert retrain([spec, f"run.dir={root / 'runs'}", *TRAIN, *name]) == 0
    return root / "runs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three finished retrain runs (a derived net, rlfn_ntire, fmen_s), 2 iterations each,
    a folder of two HR images and an Optuna study holding the zoo (with span_ntire2024, the
    latency reference) and two searched nets."""
    root = tmp_path_factory.mktemp("report")
    folder = retrain_runs(root)
    return {"root": root, "derived": folder / "derived", "rlfn": folder / "rlfn_ntire",
            "fmen": folder / "fmen_s", "images": write_images(root / "images"),
            "storage": write_study(root / "s.db")}


def _args(runs, out, *extra):
    return [str(runs["derived"]), str(runs["rlfn"]), str(runs["fmen"]), "--out", str(out),
            "--sets", str(runs["images"]), "--size", "32", "--rounds", "1", "--crop-size", "32",
            *extra]


def test_report_end_to_end(runs, tmp_path, caplog, capsys):
    out = tmp_path / "report"
    assert main(_args(runs, out, "--storage", runs["storage"])) == 0
    page = (out / "report.html").read_text()
    # plotly.js from the plotly.min.js beside the page, no other external script
    assert re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", page) == ["plotly.min.js"]
    assert (out / "plotly.min.js").is_file() and "data:image/png;base64," in page
    for text in ("Search front and retrained nets", "NTIRE-style table", "Crops", "bicubic",
                 "HR", "retrained derived", "Pareto front", "training_budget"):
        assert text in page, text
    table = pd.read_csv(out / "table.csv")
    assert table["name"].tolist() == ["derived", "rlfn_ntire", "fmen_s"]
    assert table["kind"].tolist() == ["derived", "zoo", "zoo"]
    assert "| fmen_s | zoo |" in (out / "table.md").read_text()
    label = runs["images"].name
    assert table[f"psnr_y_{label}"].between(5, 60).all()
    assert (table["latency_ms"] > 0).all() and (table["peak_memory_mib"] > 0).all()
    assert table.loc[1, "params_m"] == pytest.approx(0.317, abs=1e-3)  # rlfn_ntire, exactly
    report = json.loads((out / "report.json").read_text())
    assert report["aim"]["available"] and set(report["aim"]["nets"]) == {"derived"}
    assert report["search"]["trials"] == 5
    # x ref is to SPAN (not among the runs: timed untrained); x rlfn_ntire over rlfn's ratio
    assert report["latency_reference"] == "span_ntire2024" and report["aim_net"] == "rlfn_ntire"
    rlfn = table.loc[1, "latency_ratio"]
    assert report["aim_latency_ratio"] == pytest.approx(rlfn)
    assert table.loc[1, "latency_ratio_aim"] == pytest.approx(1.0)
    derived_x = table.loc[0, "latency_ratio"] / rlfn
    assert table.loc[0, "latency_ratio_aim"] == pytest.approx(derived_x)
    assert report["aim"]["nets"]["derived"]["latency_ratio"] == pytest.approx(derived_x)
    assert "x rlfn_ntire" in (out / "table.md").read_text().splitlines()[0]
    assert report["training_budget"]["optim"]["iterations"] == 2
    assert sorted(p.name for p in (out / "crops").iterdir()) == sorted(
        ["bicubic.png", "derived.png", "rlfn_ntire.png", "fmen_s.png", "HR.png"])
    assert table["search_trial"].tolist() == ["trial_2", "rlfn_ntire", "fmen_s"]
    assert "| derived | derived: trial_2 |" in (out / "table.md").read_text()
    assert "retrained, as searched" in page
    assert "aim" in capsys.readouterr().out
    seeds = pd.read_csv(out / "seeds.csv")  # one run per net: one row each, no spread
    assert seeds["name"].tolist() == ["derived", "rlfn_ntire", "fmen_s"]
    assert (seeds["runs"] == 1).all() and seeds[f"std_psnr_y_{label}"].isna().all()
    assert report["aim_over_seeds"] is None and len(report["seeds"]) == 3
    # a second run reuses the per-image evaluation of unchanged weights
    caplog.clear()
    with caplog.at_level("INFO", logger="results.report"):
        assert main(_args(runs, out)) == 0
    assert caplog.text.count("reusing") == 3


def test_zoo_match_and_budgets(runs):
    assert zoo_match(ZOO["fmen_s_train"]) == "fmen_s"
    assert zoo_match(ZOO["rlfn_ntire"]) == "rlfn_ntire"
    assert zoo_match(ZOO["maffsrn"]) == "maffsrn"
    assert zoo_match(ZOO["maffsrn"].deployed()) == "maffsrn"
    assert zoo_match(ZOO["span_ntire2024_train"]) == "span_ntire2024"
    assert zoo_match(Genotype.from_dict(DERIVED)) is None
    loaded = [load_run(runs[k]) for k in ("derived", "rlfn", "fmen")]
    assert [r.kind for r in loaded] == ["derived", "zoo", "zoo"]
    assert budget_differences(loaded) == {}


def _table(psnr, ratio, mem, rlfn_ratio=1.0):
    rows = [("d", "derived", None, psnr, ratio, mem),
            ("r", "zoo", "rlfn_ntire", 28.0, rlfn_ratio, 25.0),
            ("f", "zoo", "fmen_s", 28.2, 1.4 * rlfn_ratio, 30.0)]
    return pd.DataFrame([{"name": n, "kind": k, "zoo_name": z, "psnr_y_Set5": p,
                          "ssim_y_Set5": 0.8, "latency_ratio": r, "peak_memory_mib": m}
                         for n, k, z, p, r, m in rows])


def test_aim_verdict():
    met = aim_verdict(_table(28.1, 0.5, 20.0))
    assert met["met_by"] == ["d"]
    assert met["nets"]["d"]["psnr_margin_db"]["Set5"] == pytest.approx(0.1)
    slow = aim_verdict(_table(28.1, 1.1, 20.0))["nets"]["d"]
    assert not slow["met"] and not slow["faster"] and slow["reaches_psnr"]
    weak = aim_verdict(_table(27.9, 0.5, 31.0))["nets"]["d"]
    assert not weak["reaches_psnr"] and not weak["within_memory"]
    seeds = _table(28.1, 0.5, 20.0)
    seeds = pd.concat([seeds, seeds.iloc[[1]].assign(name="r2", psnr_y_Set5=28.4)])
    two = aim_verdict(seeds)  # rlfn_ntire twice: their mean, 28.2 dB, is the bar
    assert two["reference_runs"] == {"rlfn_ntire": 2, "fmen_s": 1}
    assert two["nets"]["d"]["psnr_margin_db"]["Set5"] == pytest.approx(-0.1)
    assert not two["nets"]["d"]["met"]
    missing = aim_verdict(_table(28.1, 0.5, 20.0).iloc[:2])
    assert not missing["available"] and "fmen_s" in missing["reason"]


def test_aim_latency_is_judged_against_rlfn_not_the_latency_reference():
    # Ratios are to SPAN, the latency reference; RLFN's is 2.0 and FMEN-S's 2.8. A net at 1.5x
    # SPAN is 0.75x RLFN: faster than RLFN, so it meets the aim; one at 2.5x SPAN does not,
    # though it is faster than FMEN-S.
    fast = aim_verdict(_table(28.1, 1.5, 20.0, rlfn_ratio=2.0))["nets"]["d"]
    assert fast["latency_ratio"] == pytest.approx(0.75) and fast["faster"] and fast["met"]
    slow = aim_verdict(_table(28.1, 2.5, 20.0, rlfn_ratio=2.0))["nets"]["d"]
    assert slow["latency_ratio"] == pytest.approx(1.25) and not slow["faster"]


def _run(name, genotype, seed, budget=None):
    return RetrainedRun(name=name, run_dir=Path(name), genotype=genotype,
                        deployed=genotype.deployed(), zoo_name=zoo_match(genotype),
                        budget=budget or {}, deploy_check={}, command="", seed=seed)


def test_seed_summary_groups_runs_by_architecture():
    derived = Genotype.from_dict(DERIVED)
    runs = [_run("d_s0", derived, 0), _run("r_s0", ZOO["rlfn_ntire"], 0),
            _run("d_s1", derived, 1), _run("r_s1", ZOO["rlfn_ntire"], 1),
            _run("f", ZOO["fmen_s_train"], 0), _run("d_s2", derived, 2)]
    psnr = {"d_s0": 28.0, "r_s0": 28.0, "d_s1": 28.3, "r_s1": 29.0, "f": 28.5, "d_s2": 28.6}
    table = pd.DataFrame([{
        "name": r.name, "kind": r.kind, "zoo_name": r.zoo_name, "psnr_y_Set5": psnr[r.name],
        "ssim_y_Set5": 0.8, "latency_ratio": 0.5 if r.kind == "derived" else 1.0,
        "peak_memory_mib": 20.0} for r in runs])
    summary = seed_summary(table, runs)
    assert summary["name"].tolist() == ["d", "rlfn_ntire", "fmen_s"]
    assert summary["runs"].tolist() == [3, 2, 1] and summary.loc[0, "seeds"] == "0,1,2"
    d = summary.iloc[0]
    assert d["psnr_y_Set5"] == pytest.approx(28.3)
    assert d["std_psnr_y_Set5"] == pytest.approx(0.3)  # sample std of 28.0, 28.3, 28.6
    assert (d["min_psnr_y_Set5"], d["max_psnr_y_Set5"]) == (28.0, 28.6)
    assert "28.30 \u00b1 0.30 [28.00-28.60]" in seeds_markdown(summary)
    assert "| fmen_s | zoo | 1 (0) | 28.50 \u00b1 - [28.50-28.50] |" in seeds_markdown(summary)
    # the aim on the means: d's 28.3 dB against rlfn_ntire's mean 28.5 dB
    over = aim_verdict(summary)
    assert over["nets"]["d"]["psnr_margin_db"]["Set5"] == pytest.approx(-0.2)
    assert repeated_seeds(summary) == {}
    again = [*runs, _run("d_again", derived, 2)]
    table = pd.concat([table, table.iloc[[5]].assign(name="d_again")], ignore_index=True)
    assert repeated_seeds(seed_summary(table, again)) == {"d": ["0", "1", "2", "2"]}


def test_seed_summary_keeps_recipes_apart():
    # MemSR's benchmark: one student genotype trained directly, with KD, with init + KD
    kd = {"kd": {"teacher": "t", "weight": 1.0}}
    init = {"kd": {"teacher": "t", "weight": 1.0, "init": "memsr", "init_patches": 16}}
    student = Genotype.from_dict(DERIVED)
    runs = [_run(f"{label}_s{k}", g, k, b) for k in (0, 1)
            for label, g, b in (("direct", student, None), ("kd", student, kd),
                                ("init_kd", student, init), ("span", ZOO["span_ntire2024"], kd))]
    table = pd.DataFrame([{"name": r.name, "kind": r.kind, "zoo_name": r.zoo_name,
                           "psnr_y_Set5": 28.0 + k, "ssim_y_Set5": 0.8} for k, r in
                          enumerate(runs)])
    summary = seed_summary(table, runs)
    assert summary["name"].tolist() == ["direct", "kd", "init_kd", "span_ntire2024 +KD"]
    assert summary["runs"].tolist() == [2, 2, 2, 2]


def test_the_rlfn_column_divides_by_the_mean_of_the_rlfn_runs():
    from proxies.measure.profile_rows import ProfileRow

    runs = [_run("d", Genotype.from_dict(DERIVED), 0), _run("r_s0", ZOO["rlfn_ntire"], 0),
            _run("r_s1", ZOO["rlfn_ntire"], 1), _run("s", ZOO["span_ntire2024_train"], 0)]
    ratios = {"d": 1.5, "r_s0": 1.8, "r_s1": 2.2, "s": 1.0}
    profiles = {n: ProfileRow(n, 4, 0.1, 1.0, 0.5, 1.0, 3, latency_ratio=x)
                for n, x in ratios.items()}
    assert aim_latency_ratio(runs, profiles, "span_ntire2024") == pytest.approx(2.0)
    assert aim_latency_ratio(runs, profiles, "rlfn_ntire") == 1.0  # the reference itself
    assert aim_latency_ratio(runs[::3], profiles, "span_ntire2024") is None  # no rlfn run


def test_pick_crop_finds_the_detail():
    img = np.zeros((64, 80, 3))
    img[40:56, 8:24] = np.indices((16, 16)).sum(0)[..., None] % 2
    top, left, _ = pick_crop(img, 16)
    assert (top, left) == (40, 8)
    with pytest.raises(ReportError, match="crop size 99"):
        pick_crop(img, 99)


def test_search_points_need_the_reference(runs):
    from results.table.optuna_study import from_optuna

    points = search_points(from_optuna(runs["storage"]))  # ratios to SPAN, by default
    assert points.loc[points["name"] == "span_ntire2024", "latency_x"].item() == 1.0
    assert points.loc[points["name"] == "rlfn_ntire", "latency_x"].item() == pytest.approx(1.8)
    assert points.loc[points["name"] == "trial_2", "memory_x"].item() == pytest.approx(5 / 4)
    front = pareto_data(points, x="latency_x", y="psnr_db").front  # ratio axes plot
    assert front["name"].tolist() == ["span_ntire2024", "trial_2", "fmen_s"]
    rlfn = search_points(from_optuna(runs["storage"]), "rlfn_ntire")
    assert rlfn.loc[rlfn["name"] == "rlfn_ntire", "latency_x"].item() == 1.0
    fmen = RetrainedRun(name="fmen_s_train", run_dir=Path("."), genotype=ZOO["fmen_s_train"],
                        deployed=ZOO["fmen_s"], zoo_name="fmen_s", budget={}, deploy_check={},
                        command="")
    assert link_search_trials(points, [fmen]) == {"fmen_s_train": "fmen_s"}
    with pytest.raises(ReportError, match="no complete 'imdn_ntire' trial"):
        search_points(from_optuna(runs["storage"]), "imdn_ntire")


def test_bad_input(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs["derived"], unfinished)
    (unfinished / "deployed.pt").unlink()
    assert main([str(unfinished), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(runs["rlfn"], other)
    cfg = (other / "config.yaml").read_text().replace("iterations: 2", "iterations: 3")
    (other / "config.yaml").write_text(cfg)
    assert main([str(runs["derived"]), str(other), "--out", str(out)]) == 2
    assert "optim.iterations" in capsys.readouterr().err
    assert main([*_args(runs, out)[:5], "--sets", str(tmp_path / "no_set")]) == 2
    assert "no_set" in capsys.readouterr().err
    assert main([*_args(runs, out), "--device", "tpu"]) == 2
    assert "device='tpu'" in capsys.readouterr().err
    assert main([*_args(runs, out), "--storage", runs["storage"], "--reference",
                 "imdn_ntire"]) == 2
    assert "imdn_ntire" in capsys.readouterr().err


def test_page_mixes_figures_and_html(tmp_path):
    import plotly.graph_objects as go

    with pytest.raises(ValueError, match="blocks is empty"):
        write_page_html([], tmp_path / "x.html", "t")
    figs = [go.Figure(go.Scatter(x=[1], y=[2])), "<p id='mid'>text</p>",
            go.Figure(go.Bar(x=[1], y=[2]))]
    page = write_page_html(figs, tmp_path / "p.html", "T", style="p {color: red}")
    text = page.read_text()
    assert "<p id='mid'>text</p>" in text and "p {color: red}" in text
    assert text.count("figure-0") >= 1 and text.count("figure-2") >= 1


def test_a_kd_run_is_another_budget(runs, tmp_path):
    kd_run = tmp_path / "kd"
    shutil.copytree(runs["rlfn"], kd_run)
    cfg = yaml.safe_load((kd_run / "config.yaml").read_text())
    cfg["kd"] = {"teacher": "runs/teacher", "weight": 1.0}
    (kd_run / "config.yaml").write_text(yaml.safe_dump(cfg))
    plain, distilled = load_run(runs["rlfn"]), load_run(kd_run)
    assert "kd" not in plain.budget and distilled.budget["kd"]["teacher"] == "runs/teacher"
    assert "kd.teacher" in budget_differences([plain, distilled])


def test_report_on_onnx_runtime(runs, tmp_path, monkeypatch):
    """``--backend onnxruntime``: every net's latency and memory come from ONNX Runtime running
    its deployed ONNX export, and the page and report.json say so (issue 12, item 1)."""
    import proxies.measure.profile_rows as profile_rows
    import results.report.command as command

    measured: dict[str, list] = {"ratio": [], "memory": [], "reference_memory": []}

    def spy(kind, fn):
        def wrapped(*args, **kwargs):
            result = fn(*args, **kwargs)
            measured[kind].append(result)
            return result
        return wrapped

    monkeypatch.setattr(profile_rows, "measure_latency_ratio",
                        spy("ratio", profile_rows.measure_latency_ratio))
    monkeypatch.setattr(profile_rows, "measure_peak_memory",
                        spy("memory", profile_rows.measure_peak_memory))
    monkeypatch.setattr(command, "measure_peak_memory",
                        spy("reference_memory", command.measure_peak_memory))
    out = tmp_path / "ort"  # one run (and the reference): each net is exported and timed
    assert main([str(runs["derived"]), "--out", str(out), "--sets", str(runs["images"]),
                 "--size", "32", "--rounds", "1", "--crop-size", "32",
                 "--backend", "onnxruntime"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["profile_settings"]["backend"] == "onnxruntime"
    assert "measured in this process on onnxruntime (the ONNX export" in (
        out / "report.html").read_text()
    # measured by ONNX Runtime: the derived net against SPAN, then an untrained RLFN against
    # SPAN for the x rlfn_ntire column (no retrained RLFN among the runs); peak memory of the
    # derived net and of SPAN, each the session's resident-set rise
    derived, aim = measured["ratio"]
    for r in measured["ratio"]:
        assert (r.model.backend, r.reference.backend, r.rounds) == ("onnxruntime",) * 2 + (1,)
    (memory,), (ref_memory,) = measured["memory"], measured["reference_memory"]
    for m in (memory, ref_memory):
        assert (m.backend, m.method) == ("onnxruntime", "onnxruntime_rss_hwm")
    # ... and those are the report's figures
    table = pd.read_csv(out / "table.csv")
    assert table["name"].tolist() == ["derived"]
    row = table.iloc[0]
    assert row["latency_ms"] == pytest.approx(derived.model.median_ms)
    assert row["latency_ratio"] == pytest.approx(derived.ratio_median)
    # one round: the ratio is the net's median over SPAN's, both timed in that round
    assert row["latency_ratio"] == pytest.approx(row["latency_ms"]
                                                 / derived.reference.median_ms)
    assert report["latency_reference"] == "span_ntire2024"
    assert report["aim_latency_ratio"] == pytest.approx(aim.ratio_median)
    assert row["latency_ratio_aim"] == pytest.approx(derived.ratio_median / aim.ratio_median)
    assert row["peak_memory_mib"] == pytest.approx(memory.peak_memory_mib) and (
        row["peak_memory_mib"] > 0)
    assert row["memory_ratio"] == pytest.approx(memory.peak_memory_mib
                                                / ref_memory.peak_memory_mib)
    assert report["table"][0]["latency_ms"] == pytest.approx(row["latency_ms"])


def test_report_on_openvino(runs, tmp_path):
    """``--backend openvino``: latency from OpenVINO's CPU plugin running the deployed ONNX
    export; no peak-memory figure (n/a, the page says why) rather than a guessed one."""
    pytest.importorskip("openvino", reason='pip install -e ".[openvino]"')
    out = tmp_path / "ov"
    assert main([str(runs["derived"]), "--out", str(out), "--sets", str(runs["images"]),
                 "--size", "32", "--rounds", "1", "--crop-size", "32", "--device", "cpu",
                 "--backend", "openvino"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["profile_settings"]["backend"] == "openvino"
    assert ("measured in this process on openvino (the ONNX export compiled for the CPU; peak "
            "memory: n/a") in (out / "report.html").read_text()
    row = pd.read_csv(out / "table.csv").iloc[0]
    assert row["latency_ms"] > 0 and row["latency_ratio"] > 0
    assert math.isnan(row["peak_memory_mib"]) and math.isnan(row["memory_ratio"])
