"""The Python API (``searchers.api``): the README's example, a DARTS search on the embedded data,
a short retraining of the derived genotype, its evaluation and the report, called as functions
on tiny settings; each returns a typed value, and each run folder records the given command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from searchers import api

TINY_DARTS = ["space.scale=2", "space.width=8", "space.num_cells=1", "space.cell_types=[erb]",
              "space.conv_candidates=[conv3x3,sep_conv3x3]",
              "space.attention_candidates=[none,pa]", "data.patch_size=16", "data.batch_size=2",
              "search.steps=2", "search.warmup_steps=0", "hardware.lr_size=16",
              "hardware.runs=1", "hardware.warmup=0", "profile.enabled=false",
              "run.plots=false", "run.top_k=2"]
TINY_RETRAIN = ["optim.iterations=2", "optim.warmup_iterations=1", "data.batch_size=2",
                "data.patch_size=16", "data.val_max_side=32", "run.val_every=2"]


def _hr_folder(root: Path) -> Path:
    from proxies.data.specs import default_images

    folder = root / "hr"
    folder.mkdir()
    for name, im in default_images()[:2]:
        Image.fromarray((np.asarray(im[:48, :48]) * 255).round().astype("uint8")).save(
            folder / f"{name}.png")
    return folder


def test_the_api_names_each_stage_in_one_place():
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert {"run_search", "run_study", "retrain", "evaluate", "build_report",
            "run_pipeline"} <= set(api.__all__)


def test_search_retrain_evaluate_report_as_functions(tmp_path):
    runs = tmp_path / "runs"
    command = ["notebook", "cell 1"]
    darts = api.load_config(api.DartsConfig, None, [
        *TINY_DARTS, f"run.dir={runs}", f"hardware.cache_dir={tmp_path / 'lut'}"])
    search = api.run_search(darts, command=command)
    assert isinstance(search, api.SearchResult) and search.finished and search.steps == 2
    assert isinstance(search.genotype, api.Genotype) and search.genotype.scale == 2
    assert len(search.top_k) == 2  # the most likely by weight; the net is chosen by perturbation
    assert api.Genotype.load(search.run_dir / "genotype.json") == search.genotype
    assert api.Genotype.load(search.run_dir / "genotype.json") == search.genotype
    assert (search.run_dir / "command.txt").read_text().endswith(" notebook 'cell 1'\n")

    cfg = api.load_config(api.RetrainConfig, None, [*TINY_RETRAIN, f"run.dir={runs}"])
    net = api.retrain(search.genotype, cfg, command=command)  # a Genotype, not a file
    assert isinstance(net, api.RetrainResult) and net.finished and net.iterations == 2
    assert net.run_dir.name.startswith("genotype-") and net.genotype == search.genotype
    assert net.deployed_genotype == search.genotype.deployed()
    assert net.deploy_check is not None and net.deploy_check["equivalent"]
    assert net.deployed_weights.is_file() and net.weights.is_file()
    with pytest.raises(api.ConfigError, match="already holds a run"):
        api.retrain(search.genotype, cfg, command=command)  # the same run folder again

    hr = _hr_folder(tmp_path)
    scores = api.evaluate(net.deployed_genotype, net.deployed_weights, sets=[str(hr)])
    assert isinstance(scores, api.Evaluation) and scores.weights_entry == "state_dict"
    assert isinstance(scores.summary, pd.DataFrame) and len(scores.per_image) == 2
    psnr = float(scores.summary["psnr_y_db"].iloc[0])
    assert np.isfinite(psnr) and list(scores.per_image["set"].unique()) == ["hr"]

    options = api.ReportOptions(sets=[str(hr)], size=16, rounds=1, crop_size=32)
    report = api.build_report([net.run_dir], tmp_path / "report", options, command=command)
    assert isinstance(report, api.ReportResult) and report.html.is_file()
    assert list(report.table["name"]) == [net.run_dir.name]
    assert report.payload["command"].endswith("notebook 'cell 1'")
    row = report.table.iloc[0]
    assert float(row[[c for c in report.table.columns if c.startswith("psnr_y")][0]]) == (
        pytest.approx(psnr, abs=1e-6))  # the report's evaluation is evaluate()'s


def test_bad_options_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="--size: got 8; allowed: >= 16"):
        api.ReportOptions(size=8)
    with pytest.raises(ValueError, match="--reference: got 'spam'"):
        api.ReportOptions(reference="spam")
    cfg = api.load_config(api.RetrainConfig, None, [f"run.dir={tmp_path / 'runs'}"])
    with pytest.raises(ValueError, match="rlfn_nitre"):
        api.retrain("rlfn_nitre", cfg)
    with pytest.raises(api.ConfigError, match="no checkpoint"):
        api.retrain("rlfn_ntire", cfg, resume=True)
    assert not (tmp_path / "runs").exists()
