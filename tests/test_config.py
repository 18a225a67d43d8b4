"""Tests for typed experiment configs (``searchers.common.config``, ``searchers.common.sections``),
the atomic writers and the metric log (``searchers.common.logs``); the run folder's record is
tested in ``tests/test_run_folder.py``."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import pytest
import torch
import yaml

from search_space.files import atomic_write_text
from searchers.common.checkpoints import atomic_torch_save
from searchers.common.config import (
    ConfigError,
    dump_yaml,
    from_dict,
    load_config,
    merge,
    parse_overrides,
    to_dict,
)
from searchers.common.logs import CsvLogger


@dataclass(frozen=True)
class DataSection:
    train: str = "../shared/datasets/T91/HR"
    val: str | None = None
    patch: tuple[int, int] = (48, 48)
    scales: list[int] = field(default_factory=lambda: [2])


@dataclass(frozen=True)
class SearchSection:
    steps: int = 100
    arch_lr: float = 3e-4
    candidates: tuple[str, ...] = ("conv3x3", "skip")
    optimizer: Literal["adam", "sgd"] = "adam"
    warm_start: bool = False


@dataclass(frozen=True)
class LossSection:
    latency_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_weight < 0:
            raise ValueError(f"latency_weight must be >= 0, got {self.latency_weight}")


@dataclass(frozen=True)
class ExpConfig:
    seed: int = 0
    name: str = "exp"
    data: DataSection = field(default_factory=DataSection)
    search: SearchSection = field(default_factory=SearchSection)
    loss: LossSection = field(default_factory=LossSection)
    extra: SearchSection | None = None


@dataclass
class PathConfig:
    out: Path = Path("runs")
    table: dict[str, float] = field(default_factory=dict)


@dataclass
class NeedsValue:
    value: int


@dataclass
class Unsupported:
    ids: set[int] = field(default_factory=set)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        from_dict(ExpConfig, data)
    return str(info.value)


# --------------------------------------------------------------------------- round trip


def test_defaults_round_trip_through_dict_and_yaml():
    cfg = ExpConfig()
    plain = to_dict(cfg)
    assert plain["data"]["patch"] == [48, 48]
    assert plain["search"]["candidates"] == ["conv3x3", "skip"]
    assert from_dict(ExpConfig, plain) == cfg
    assert from_dict(ExpConfig, yaml.safe_load(yaml.safe_dump(plain))) == cfg
    assert from_dict(ExpConfig, {}) == cfg

    custom = replace(
        cfg,
        seed=7,
        data=DataSection(val="Set5", patch=(32, 64), scales=[2, 4]),
        extra=SearchSection(steps=3, optimizer="sgd", candidates=("a",)),
    )
    text = dump_yaml(custom)
    assert text.splitlines()[0] == "seed: 7"  # field order, not sorted
    back = from_dict(ExpConfig, yaml.safe_load(text))
    assert back == custom
    assert isinstance(back.data.patch, tuple) and isinstance(back.extra, SearchSection)


def test_missing_keys_take_defaults_and_nested_sections_are_built():
    cfg = from_dict(ExpConfig, {"search": {"steps": 5}})
    assert cfg.search == SearchSection(steps=5)
    assert cfg.data == DataSection()


# --------------------------------------------------------------------------- loading


def test_precedence_defaults_then_file_then_overrides(tmp_path):
    path = _write(tmp_path / "exp.yaml", "seed: 1\nname: file\nsearch:\n  steps: 50\n")
    cfg = load_config(ExpConfig, path, ["seed=3", "search.arch_lr=0.1"])
    assert cfg.seed == 3  # override beats file
    assert cfg.name == "file"  # file beats default
    assert cfg.search.steps == 50  # file value kept next to an override in the same section
    assert cfg.search.arch_lr == 0.1
    assert cfg.search.candidates == ("conv3x3", "skip")  # deep merge keeps defaults
    assert cfg.data == DataSection()
    assert load_config(ExpConfig, str(path)).seed == 1
    assert load_config(ExpConfig, None, ["name=x"]) == ExpConfig(name="x")


def test_empty_file_gives_defaults_and_non_mapping_file_is_rejected(tmp_path):
    assert load_config(ExpConfig, _write(tmp_path / "empty.yaml", "")) == ExpConfig()
    with pytest.raises(ConfigError, match=r"list\.yaml.*mapping"):
        load_config(ExpConfig, _write(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml.*does not exist"):
        load_config(ExpConfig, missing)


def test_bad_yaml_names_the_file(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "search: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*not valid YAML"):
        load_config(ExpConfig, bad)


# --------------------------------------------------------------------------- overrides


def test_parse_overrides_builds_nested_dict():
    items = [
        "search.steps=200",
        "data.train=../shared/datasets/T91/HR",
        "search.candidates=[conv3x3,sep_conv3x3]",
        "loss.latency_weight=0.1",
        "seed=3",
    ]
    assert parse_overrides(items) == {
        "search": {"steps": 200, "candidates": ["conv3x3", "sep_conv3x3"]},
        "data": {"train": "../shared/datasets/T91/HR"},
        "loss": {"latency_weight": 0.1},
        "seed": 3,
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12", 12),
        ("-0.5", -0.5),
        ("1e-3", 1e-3),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ("[]", []),
        ("hello", "hello"),
        ("'12'", "12"),
        ("../shared/x", "../shared/x"),
        ("/abs/p=q", "/abs/p=q"),
        ("2024-01-01", "2024-01-01"),
    ],
)
def test_override_values_are_yaml(raw, expected):
    value = parse_overrides([f"a.b={raw}"])["a"]["b"]
    assert value == expected and type(value) is type(expected)


def test_later_override_wins_and_merges():
    assert parse_overrides(["seed=1", "seed=2"]) == {"seed": 2}
    assert parse_overrides(["s={a: 1, b: 2}", "s.b=3"]) == {"s": {"a": 1, "b": 3}}


def test_override_without_equals_or_with_empty_key_part():
    with pytest.raises(ConfigError, match=r"'search\.steps'.*key=value"):
        parse_overrides(["search.steps"])
    for item in ["search..steps=1", "=3", ".seed=1", "seed.=1"]:
        with pytest.raises(ConfigError, match="empty key part"):
            parse_overrides([item])
    with pytest.raises(ConfigError, match="cannot parse"):
        parse_overrides(["a=[1, 2"])


def test_merge_is_deep_and_does_not_mutate():
    base = {"a": {"x": 1, "y": 2}, "b": 1}
    override = {"a": {"y": 3}, "c": 4}
    assert merge(base, override) == {"a": {"x": 1, "y": 3}, "b": 1, "c": 4}
    assert base == {"a": {"x": 1, "y": 2}, "b": 1} and override == {"a": {"y": 3}, "c": 4}
    assert merge({"a": {"x": 1}}, {"a": None}) == {"a": None}


# --------------------------------------------------------------------------- validation


def test_unknown_top_level_key_lists_valid_keys_and_suggests():
    msg = _error({"sead": 1})
    assert "'sead'" in msg and "did you mean 'seed'" in msg
    assert "data, extra, loss, name, search, seed" in msg
    assert "did you mean" not in _error({"zzzzzz": 1})


def test_unknown_nested_key_names_dotted_path_and_suggests(tmp_path):
    msg = _error({"search": {"arch_lrr": 0.1}})
    assert "'search.arch_lrr'" in msg and "did you mean 'search.arch_lr'" in msg
    assert "arch_lr, candidates, optimizer, steps, warm_start" in msg
    # same error from a YAML file and from an override
    path = _write(tmp_path / "exp.yaml", "search:\n  arch_lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"'search\.arch_lrr'.*did you mean 'search\.arch_lr'"):
        load_config(ExpConfig, path)
    with pytest.raises(ConfigError, match=r"'search\.arch_lrr'.*did you mean 'search\.arch_lr'"):
        load_config(ExpConfig, None, ["search.arch_lrr=0.1"])
    # inside an optional section too
    assert "'extra.stepz'" in _error({"extra": {"stepz": 1}})


def test_wrong_types_name_key_value_and_expected_type():
    msg = _error({"search": {"steps": "many"}})
    assert "search.steps" in msg and "'many'" in msg and "expected int" in msg
    assert "search.steps" in _error({"search": {"steps": 2.5}})
    assert "data.patch" in _error({"data": {"patch": [1, 2, 3]}})  # fixed-length tuple
    assert "search.candidates" in _error({"search": {"candidates": "conv3x3"}})  # not a list
    assert "data.scales[1]" in _error({"data": {"scales": [2, "x"]}})
    assert "expected str" in _error({"name": 12})
    assert "search" in _error({"search": 3})
    assert "data.val" in _error({"data": {"val": 5}})


def test_literal_choices():
    msg = _error({"search": {"optimizer": "adamw"}})
    assert "search.optimizer" in msg and "'adamw'" in msg and "'adam', 'sgd'" in msg
    assert from_dict(ExpConfig, {"search": {"optimizer": "sgd"}}).search.optimizer == "sgd"


@pytest.mark.parametrize("value", [1, 0, "true", "yes", None])
def test_bool_fields_accept_only_true_false(value):
    assert "search.warm_start" in _error({"search": {"warm_start": value}})


def test_bool_true_false_accepted_and_bool_not_an_int():
    assert from_dict(ExpConfig, {"search": {"warm_start": True}}).search.warm_start is True
    assert load_config(ExpConfig, None, ["search.warm_start=false"]).search.warm_start is False
    assert "search.steps" in _error({"search": {"steps": True}})


def test_int_coerced_to_float_but_not_float_to_int():
    value = from_dict(ExpConfig, {"search": {"arch_lr": 1}}).search.arch_lr
    assert value == 1.0 and type(value) is float
    assert "search.arch_lr" in _error({"search": {"arch_lr": "fast"}})


def test_optional_accepts_null_and_value():
    cfg = load_config(ExpConfig, None, ["data.val=null", "extra.steps=4"])
    assert cfg.data.val is None and cfg.extra == SearchSection(steps=4)
    assert load_config(ExpConfig, None, ["data.val=Set5"]).data.val == "Set5"
    assert from_dict(ExpConfig, {"extra": None}).extra is None


def test_post_init_error_carries_dotted_path():
    msg = _error({"loss": {"latency_weight": -1}})
    assert msg.startswith("loss: latency_weight must be >= 0")
    with pytest.raises(ConfigError, match=r"^loss: latency_weight must be >= 0"):
        load_config(ExpConfig, None, ["loss.latency_weight=-0.5"])
    with pytest.raises(ValueError, match="latency_weight must be >= 0"):
        from_dict(LossSection, {"latency_weight": -1})


def test_path_and_dict_fields_round_trip():
    cfg = from_dict(PathConfig, {"out": "x/y", "table": {"a": 1}})
    assert cfg.out == Path("x/y") and cfg.table == {"a": 1.0} and type(cfg.table["a"]) is float
    assert to_dict(cfg) == {"out": "x/y", "table": {"a": 1.0}}
    assert from_dict(PathConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"table\.b: expected float"):
        from_dict(PathConfig, {"table": {"b": "x"}})


def test_missing_required_key_top_level_non_mapping_and_unsupported_annotation():
    with pytest.raises(ConfigError, match="missing required config key.*value"):
        from_dict(NeedsValue, {})
    with pytest.raises(ConfigError, match="expected a mapping of ExpConfig keys"):
        from_dict(ExpConfig, [1, 2])
    with pytest.raises(TypeError, match=r"ids: unsupported annotation"):
        from_dict(Unsupported, {"ids": [1]})


# --------------------------------------------------------------------------- run folder


def test_atomic_write_text_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "second ü\n")
    assert target.read_text(encoding="utf-8") == "second ü\n"
    assert os.listdir(tmp_path) == ["a.txt"]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("boom")


def test_atomic_torch_save_round_trip_and_failure_keeps_old_file(tmp_path):
    target = tmp_path / "ckpt.pt"
    state = {"step": 3, "w": torch.arange(6.0).reshape(2, 3)}
    atomic_torch_save(state, target)
    loaded = torch.load(target, weights_only=True)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], state["w"])

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"w": state["w"], "bad": _Unpicklable()}, target)  # fails mid-write
    assert torch.equal(torch.load(target, weights_only=True)["w"], state["w"])
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def _rows(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_csv_logger_appends_and_resumes(tmp_path):
    path = tmp_path / "logs" / "metrics.csv"
    with CsvLogger(path, ["step", "loss"]) as log:
        log.log({"step": 1, "loss": 0.5})
        assert _rows(path) == ["step,loss", "1,0.5"]  # flushed after each row
        log.log({"step": 2})
    with CsvLogger(path, ["step", "loss"]) as log:
        log.log({"step": 3, "loss": 0.25})
    assert _rows(path) == ["step,loss", "1,0.5", "2,", "3,0.25"]
    with CsvLogger(path, ["step", "loss"]) as log, pytest.raises(ValueError, match="psnr"):
        log.log({"step": 4, "psnr": 30.0})


def test_csv_logger_header_mismatch_names_file(tmp_path):
    path = tmp_path / "metrics.csv"
    CsvLogger(path, ["step", "loss"]).close()
    with pytest.raises(ValueError, match=r"metrics\.csv.*header"):
        CsvLogger(path, ["step", "psnr"])
    assert _rows(path) == ["step,loss"]


def test_csv_logger_drops_incomplete_last_line_on_resume(tmp_path):
    path = _write(tmp_path / "metrics.csv", "step,loss\n1,0.5\n2,0.")
    with CsvLogger(path, ["step", "loss"]) as log:
        log.log({"step": 2, "loss": 0.4})
    assert _rows(path) == ["step,loss", "1,0.5", "2,0.4"]


def test_csv_logger_truncate_after(tmp_path):
    path = tmp_path / "metrics.csv"
    with CsvLogger(path, ["step", "loss"]) as log:
        for step in range(1, 6):
            log.log({"step": step, "loss": 1.0 / step})
        assert log.truncate_after("step", 3) == 2
        log.log({"step": 4, "loss": 9.0})  # still usable after the rewrite
    assert _rows(path) == ["step,loss", "1,1.0", "2,0.5", "3,0.3333333333333333", "4,9.0"]
    assert os.listdir(tmp_path) == ["metrics.csv"]
    with CsvLogger(path, ["step", "loss"]) as log, pytest.raises(ValueError, match="epoch"):
        log.truncate_after("epoch", 1)


def test_one_run_section_type_for_every_command():
    """Every command's run section is a RunSection: the folder is dir/name, a null name takes
    what names the run, and a name that is not one folder name is refused."""
    from searchers.common.config import ConfigError, from_dict
    from searchers.common.sections import RunSection
    from searchers.differentiable.config import DartsConfig
    from searchers.stages.pipeline import PipelineConfig
    from searchers.training.config import RetrainConfig
    from searchers.trials.config import OptunaConfig

    sections = [DartsConfig().run, OptunaConfig().run, RetrainConfig().run,
                PipelineConfig().pipeline]
    assert all(isinstance(s, RunSection) for s in sections)
    assert DartsConfig().run.folder() == Path("runs/darts/default")
    assert RetrainConfig().run.folder("rlfn_ntire") == Path("runs/retrain/rlfn_ntire")
    with pytest.raises(ConfigError, match="name is null"):
        RetrainConfig().run.folder()
    for bad in ("a/b", "..", " "):
        with pytest.raises(ConfigError, match="a run name is one folder name"):
            from_dict(DartsConfig, {"run": {"name": bad}})


def test_one_measurement_settings_type_for_every_section():
    """The hardware table's, the profile's and the trials' settings are all MeasureSettings,
    with the runs each section asks for."""
    from proxies.measure.settings import MeasureSettings
    from searchers.differentiable.config import DartsConfig
    from searchers.trials.config import OptunaConfig

    cfg, trials = DartsConfig(), OptunaConfig()
    table = cfg.hardware.settings()
    profile = cfg.profile.settings("cpu", "onnxruntime")
    measure = trials.measure.settings()
    assert all(isinstance(s, MeasureSettings) for s in (table, profile, measure))
    assert (table.lr_size, table.runs, table.backend) == (
        (cfg.hardware.lr_size,) * 2, cfg.hardware.runs, cfg.hardware.backend)
    assert (profile.rounds, profile.runs_per_round, profile.backend) == (
        cfg.profile.rounds, cfg.profile.runs_per_round, "onnxruntime")
    assert (measure.lr_size, measure.runs) == ((trials.measure.lr_size,) * 2, trials.measure.runs)
    # one section type: the trials' measure section, and the table's, which adds its cache
    from searchers.common.sections import MeasureSection

    assert type(trials.measure) is MeasureSection and isinstance(cfg.hardware, MeasureSection)
    assert {f.name for f in dataclasses.fields(cfg.hardware)} - {
        f.name for f in dataclasses.fields(MeasureSection)} == {"cache_dir"}
