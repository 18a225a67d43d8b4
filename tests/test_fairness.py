"""Fair comparisons: no degenerate attention in training, selection off the report's sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from proxies.data.specs import dataset_from_spec
from proxies.data.splits import holdout_split
from results.report.runs import RetrainedRun, selection_overlaps
from search_space.checks import GenotypeError
from search_space.patch import ATTENTION_MIN_INPUT, min_patch_size, training_patch_size
from search_space.zoo import ZOO

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def test_min_input_is_where_esa_pools_to_3x3():
    for lr in (ATTENTION_MIN_INPUT["esa"], ATTENTION_MIN_INPUT["esa_lite"]):
        x = torch.zeros(1, 1, lr, lr)
        pooled = F.max_pool2d(F.conv2d(x, torch.zeros(1, 1, 3, 3), stride=2), 7, 3)
        assert pooled.shape[-2:] == (3, 3)
        smaller = F.max_pool2d(F.conv2d(x[..., 1:, 1:], torch.zeros(1, 1, 3, 3), stride=2), 7, 3)
        assert smaller.shape[-1] < 3
    assert min_patch_size(["esa"], 4) == 108 and min_patch_size(["pa", "cca"], 4) == 4


def test_training_patch_is_checked_and_defaults_to_the_smallest_that_works():
    att = ZOO["rlfn_ntire"].attentions
    assert training_patch_size(None, att, 4, default=64) == 108
    assert training_patch_size(None, ("none",), 4, default=64) == 64
    assert training_patch_size(None, att, 3, default=64) == 81
    with pytest.raises(GenotypeError, match=r"data.patch_size: got 64 .*'esa_lite'.*108"):
        training_patch_size(64, att, 4, default=64, where="data.patch_size")


def test_holdout_split_is_fixed_and_disjoint():
    names = [f"img{i:02d}.png" for i in range(20)]
    held, train = holdout_split(names, "holdout", "x"), holdout_split(names, "train", "x")
    assert held == ["img04.png", "img13.png"] and not set(held) & set(train)
    assert len(held) + len(train) == 20
    with pytest.raises(ValueError, match="allowed: train, holdout"):
        holdout_split(names, "test", "x")


@pytest.mark.skipif(not (DATASETS / "T91" / "HR").is_dir(), reason="../shared/datasets absent")
def test_t91_holdout_spec_gives_ten_images():
    held = dataset_from_spec(str(DATASETS / "T91" / "HR") + "::holdout", 4)
    train = dataset_from_spec(str(DATASETS / "T91" / "HR") + "::train", 4)
    assert len(held.images) == 10 and len(train.images) == 81


def _run(name: str, val: str) -> RetrainedRun:
    g = ZOO["rlfn_ntire"]
    return RetrainedRun(name=name, run_dir=Path(name), genotype=g, deployed=g, zoo_name=None,
                        budget={"data": {"val": val}, "optim": {}}, deploy_check={},
                        command="")


def test_report_flags_runs_selected_on_a_reported_set(tmp_path):
    for name in ("Set5", "T91"):
        (tmp_path / name / "HR").mkdir(parents=True)
    runs = [_run("bad", str(tmp_path / "Set5" / "HR")),
            _run("good", str(tmp_path / "T91" / "HR") + "::holdout"),
            _run("embedded", "default:val")]
    assert selection_overlaps(runs, ["Set5"], tmp_path) == {"bad": ["Set5"]}
