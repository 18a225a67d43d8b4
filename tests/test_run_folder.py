"""The run folder (``results.run_folder``): the record of the config and the command (with
resume), the reading of its files, and that its file names are spelled in that module only."""

from __future__ import annotations

import ast
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from results import run_folder
from results.run_folder import RunFolder, RunFolderError
from search_space.zoo import ZOO
from searchers.common.config import dump_yaml, load_config

ROOT = Path(__file__).resolve().parents[1]
FILE_NAMES = {value for name, value in vars(run_folder).items() if name.endswith("_FILE")}


@dataclass
class _Search:
    steps: int = 3
    candidates: tuple[str, ...] = ("conv3x3",)


@dataclass
class _Config:
    seed: int = 0
    search: _Search = field(default_factory=_Search)


def test_the_record_of_a_run_round_trips_and_a_resume_appends_its_command(tmp_path):
    cfg = load_config(_Config, None, ["seed=5", "search.candidates=[a,b]"])
    argv = ["searchers/darts.py", "--config", "configs/my exp.yaml", "seed=5"]
    folder = RunFolder(tmp_path / "runs" / "r1")
    assert folder.record(dump_yaml(cfg), argv) == folder.path
    assert sorted(os.listdir(folder.path)) == ["command.txt", "config.yaml"]
    assert load_config(_Config, folder.config) == cfg
    assert folder.read_config() == {"seed": 5, "search": {"steps": 3, "candidates": ["a", "b"]}}
    first = shlex.join([sys.executable, *argv])
    assert folder.command.read_text(encoding="utf-8") == first + "\n"
    assert shlex.split(folder.read_command()) == [sys.executable, *argv]

    resumed = load_config(_Config, folder.config, ["search.steps=9"])
    folder.record(dump_yaml(resumed), [*argv, "--resume"], resume=True)
    assert load_config(_Config, folder.config) == resumed  # the config is the resumed one
    lines = folder.read_command().splitlines()
    assert lines == [first, "# resumed with:", shlex.join([sys.executable, *argv, "--resume"])]
    assert folder.first_command() == first
    assert sorted(os.listdir(folder.path)) == ["command.txt", "config.yaml"]  # no temporaries


def test_reading_a_config_that_is_no_mapping_names_the_file(tmp_path):
    folder = RunFolder(tmp_path)
    folder.config.write_text("", encoding="utf-8")
    assert folder.read_config() == {}
    folder.config.write_text("search: [1, 2\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"config\.yaml is not valid YAML \(.*line"):
        folder.read_config()
    folder.config.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"config\.yaml holds a list, not a mapping"):
        folder.read_config()
    assert folder.read_command() == "" and folder.first_command() == ""


def test_json_records_round_trip_and_a_bad_one_is_named(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_json(folder.deploy_check, {"equivalent": True, "max_abs_diff_0_1": 0.0})
    assert folder.read_json(folder.deploy_check) == {"equivalent": True, "max_abs_diff_0_1": 0.0}
    folder.teacher.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"teacher\.json: .* holds a list, not an object"):
        folder.read_json(folder.teacher)
    with pytest.raises(RunFolderError, match=r"init\.json: cannot read"):
        folder.read_json(folder.init)


def test_a_finished_retraining_is_recognised_and_its_deployed_weights_come_first(tmp_path):
    folder = RunFolder(tmp_path)
    genotype = ZOO["rlfn_ntire"]
    assert folder.unfinished() == ["deployed.pt", "deployed_genotype.json", "deploy.json"]
    assert folder.trained_weights() is None
    genotype.save(folder.genotype)
    folder.model.write_bytes(b"weights")
    assert folder.trained_weights() == (folder.model, folder.genotype)
    folder.deployed.write_bytes(b"weights")
    assert folder.trained_weights() == (folder.model, folder.genotype)  # no deployed genotype
    genotype.deployed().save(folder.deployed_genotype)
    assert folder.trained_weights() == (folder.deployed, folder.deployed_genotype)
    assert folder.unfinished() == ["deploy.json"]
    folder.write_json(folder.deploy_check, {})
    assert folder.unfinished() == []


def _spelled_names(source: str) -> set[str]:
    """The run folder's file names that ``source`` spells as a string of their own."""
    return {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and node.value in FILE_NAMES}


def test_the_file_names_of_a_run_folder_are_spelled_in_one_module():
    """No module of the four packages but ``results/run_folder.py`` spells ``"config.yaml"``,
    ``"checkpoint.pt"``, ``"deployed.pt"``, ... as a string: writers and readers take the paths
    from :class:`RunFolder` (docstrings and messages may name them)."""
    assert {"config.yaml", "command.txt", "checkpoint.pt", "log.csv", "genotype.json",
            "model.pt", "deployed.pt", "deployed_genotype.json", "deploy.json", "teacher.json",
            "init.json"} <= FILE_NAMES
    assert _spelled_names('ckpt = run_dir / "checkpoint.pt"') == {"checkpoint.pt"}  # it can fail
    spelled = {}
    for package in ("search_space", "proxies", "results", "searchers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "results" / "run_folder.py":
                continue
            names = _spelled_names(path.read_text(encoding="utf-8"))
            if names:
                spelled[str(path.relative_to(ROOT))] = sorted(names)
    assert not spelled, f"run-folder file names spelled outside results/run_folder.py: {spelled}"
