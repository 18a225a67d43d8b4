"""Bad input, as one table: each row runs a real command (its ``main``, in this process) on one
kind of bad input and checks that it exits with status 2, prints ONE line that names what was
wrong and the value it got (and, where there is a choice, what is allowed), shows no traceback,
and writes or changes nothing: the temporary folder, with an existing run folder in it, is byte
for byte as it was. Two rows also run as subprocesses, for the real exit status and stderr.

The same list is in the README's troubleshooting section. The rows that need a setting of
their own run through the same checker (:func:`_refused`) beside their feature: a run folder
another process holds (``test_run_lock.py``), crafted checkpoints and weights
(``test_safe_checkpoints.py``), sizes that cannot fit (``test_memory_estimate.py``), foreign
study storages and an unreachable Ray address (``test_storage_ray_refusals.py``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

TINY_DARTS = ["space.scale=2", "space.width=8", "space.num_cells=1", "space.cell_types=[erb]",
              "space.conv_candidates=[conv3x3,sep_conv3x3]",
              "space.attention_candidates=[none,pa]", "data.patch_size=16",
              "data.batch_size=2", "search.steps=2", "search.warmup_steps=0",
              "hardware.lr_size=16", "hardware.runs=1", "hardware.warmup=0",
              "profile.enabled=false", "run.plots=false"]


@dataclass(frozen=True)
class Case:
    """One bad input: ``run(tmp)`` calls a command's ``main`` and returns its exit status;
    ``expect`` are fragments the one-line message must hold (case-insensitive)."""

    name: str
    run: Callable[[Path], int]
    expect: tuple[str, ...]


# -- inputs -------------------------------------------------------------------------------------


def _good_images(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            folder / f"im{i}.png")
    return folder


def _data_folder(tmp: Path, extra: Callable[[Path], object] | None) -> Path:
    folder = tmp / "data"
    if extra is not None:
        _good_images(folder)
        extra(folder)
    return folder


def _truncate(folder: Path) -> None:
    data = (folder / "im0.png").read_bytes()
    (folder / "im0.png").write_bytes(data[: len(data) // 2])


def _save(name: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda folder: Image.fromarray(array).save(folder / name)


def _darts(*overrides: str, data: Callable[[Path], object] | None | bool = False
           ) -> Callable[[Path], int]:
    """``python searchers/darts.py`` on the tiny space; ``data`` (a function that spoils a
    folder of good images, or None for no folder at all) sets data.train and data.val."""

    def run(tmp: Path) -> int:
        from searchers.differentiable.search import main

        argv = [f"run.dir={tmp / 'runs'}", "run.name=existing",
                f"hardware.cache_dir={tmp / 'lut'}", *TINY_DARTS]
        if data is not False:
            if data is None:
                folder = tmp / "no_such_folder"
            elif data is True:
                folder = tmp / "data"
                folder.mkdir(exist_ok=True)
            else:
                folder = _data_folder(tmp, data)  # type: ignore[arg-type]
            argv += [f"data.train={folder}", f"data.val={folder}"]
        return main([*argv, *overrides])

    return run


def _malformed_yaml(tmp: Path) -> int:
    from searchers.differentiable.search import main

    (tmp / "bad.yaml").write_text("search:\n  steps: [1, 2\n")
    return main(["--config", str(tmp / "bad.yaml"), f"run.dir={tmp / 'runs'}"])


def _optuna(*overrides: str) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from searchers.trials.study import main

        return main([f"run.dir={tmp / 'runs'}", "run.name=existing", "study.n_trials=1",
                     *overrides])

    return run


def _other_objectives(tmp: Path) -> int:
    import optuna

    from searchers.trials.study import main

    db = tmp / "other.db"
    study = optuna.create_study(study_name="srnas", storage=f"sqlite:///{db}",
                                directions=["minimize"])
    study.set_metric_names(["loss"])
    return main([f"run.dir={tmp / 'runs'}", "run.name=existing", f"study.storage=sqlite:///{db}",
                 "study.name=srnas", "study.n_trials=1"])


def _genotype_version(tmp: Path) -> int:
    from searchers.training.retrain import main

    path = tmp / "g99.json"
    path.write_text(json.dumps({"version": 99, "scale": 2, "width": 8, "cells": []}))
    return main([str(path), f"run.dir={tmp / 'runs'}"])


def _evaluate_weights(write: Callable[[Path], None]) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from results.evaluate.command import main

        weights = tmp / "weights.pt"
        write(weights)
        return main(["rlfn_ntire", "--weights", str(weights), "--sets", "Set5",
                     "--out", str(tmp / "runs" / "eval.csv")])

    return run


def _fmen_state(path: Path) -> None:
    import torch

    from search_space import build_model
    from search_space.zoo import ZOO

    torch.save(build_model(ZOO["fmen_s"]).state_dict(), path)


def _retrain(*argv: str) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from searchers.training.retrain import main

        return main([*argv, f"run.dir={tmp / 'runs'}", "run.name=existing"])

    return run


def _ray(*overrides: str) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from searchers.trials.tune import main

        return main([f"run.dir={tmp / 'runs'}", "run.name=existing", *overrides])

    return run


def _pipeline(*overrides: str) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        from searchers.stages.pipeline import main

        return main([f"pipeline.dir={tmp / 'runs'}", "pipeline.name=existing", *overrides])

    return run


def _results_storage(tmp: Path) -> int:
    from results.summary.command import main

    return main(["--storage", f"sqlite:///{tmp / 'none.db'}", "--out", str(tmp / "runs" / "r")])


CASES = [
    # data folders (DARTS reads data.train and data.val before it writes anything)
    Case("missing data folder", _darts(data=None), ("no_such_folder", "does not exist")),
    Case("empty data folder", _darts(data=True), ("data", "no image")),
    Case("truncated png", _darts(data=_truncate), ("im0.png", "truncated")),
    Case("1-px image", _darts(data=_save("dot.png", np.zeros((1, 1, 3), np.uint8))),
         ("dot.png", "1x1")),
    Case("greyscale image", _darts(data=_save("grey.png", np.zeros((40, 40), np.uint8))),
         ("grey.png", "'L'", "RGB")),
    Case("rgba image", _darts(data=_save("rgba.png", np.zeros((40, 40, 4), np.uint8))),
         ("rgba.png", "'RGBA'", "RGB")),
    Case("16-bit image", _darts(data=_save("deep.png", np.zeros((40, 40), np.uint16))),
         ("deep.png", "16", "8-bit")),
    Case("non-image file", _darts(data=lambda f: (f / "notes.png").write_text("not a png")),
         ("notes.png", "cannot decode", "valid image")),
    # the search space and genotypes
    Case("unknown op", _darts("space.conv_candidates=[conv9x9]"), ("conv9x9", "conv3x3")),
    Case("unknown cell type", _darts("space.cell_types=[rrdb]"), ("rrdb", "rlfb")),
    Case("unknown attention", _darts("space.attention_candidates=[swin]"), ("swin", "esa")),
    Case("unknown activation", _darts("space.act_candidates=[gelu9]"), ("gelu9", "relu")),
    Case("genotype of another version", _genotype_version, ("version", "99", "allowed: 1")),
    Case("unknown zoo name", _retrain("rlfn_nitre"), ("rlfn_nitre", "rlfn_ntire")),
    Case("scale 5", _darts("space.scale=5"), ("space.scale", "5", "2, 3, 4")),
    Case("width 0", _darts("space.width=0"), ("width", "0", ">= 4")),
    # configs
    Case("negative loss weight", _darts("loss.latency_weight=-1"),
         ("latency_weight", "-1", ">= 0")),
    Case("NaN in a config", _darts("search.lr=.nan"), ("search.lr", "nan", "finite")),
    Case("infinity in a config", _darts("search.arch_lr=.inf"), ("search.arch_lr", "inf")),
    Case("unknown config key", _darts("search.lrr=0.1"), ("search.lrr", "search.lr")),
    Case("malformed yaml", _malformed_yaml, ("bad.yaml", "not valid YAML", "at line")),
    Case("unknown pipeline key", _pipeline("nonsense.key=1"), ("nonsense",)),
    Case("ray n_trials 0", _ray("study.n_trials=0"), ("n_trials", "0", ">= 1")),
    # studies, checkpoints and devices
    Case("bad storage url", _optuna("study.storage=foo://bar"),
         ("foo://bar", "sqlite", "postgresql")),
    Case("study with other objectives", _other_objectives, ("srnas", "loss", "psnr")),
    Case("checkpoint of another genotype", _evaluate_weights(_fmen_state),
         ("weights.pt", "does not fit", "rlfn_ntire")),
    Case("weights file not a checkpoint",
         _evaluate_weights(lambda p: p.write_text("not a checkpoint")),
         ("weights.pt", "cannot read")),
    Case("device that does not exist", _darts("run.device=cuda:7"), ("cuda:7", "cpu")),
    Case("device of another kind", _darts("run.device=tpu"), ("tpu", "cpu")),
]


# -- the table ----------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: relative path -> content hash ('/' for a folder)."""
    return {str(p.relative_to(root)): "/" if p.is_dir()
            else hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))}


def _existing_run(tmp: Path) -> None:
    """A run folder the refused command is pointed at; it must stay as it was."""
    run = tmp / "runs" / "existing"
    if run.exists():
        return
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("an earlier run's files\n")


@pytest.fixture(autouse=True)
def _optuna_logs_to_root():
    """Optuna's own stderr handler keeps the stream of the test that first logged (pytest closes
    it afterwards); send its records to the root logger instead, where the tests read them."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    yield
    optuna.logging.disable_propagation()
    optuna.logging.enable_default_handler()


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _refused(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``case`` and check the exit status, the one line and the untouched folder; returns
    the line."""
    _existing_run(tmp)
    before = _snapshot(tmp / "runs")  # the inputs a case makes lie outside runs/
    errors = _Errors()
    root = logging.getLogger()
    root.addHandler(errors)
    try:
        status = case.run(tmp)
    finally:
        root.removeHandler(errors)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [r.getMessage() for r in errors.records]
    lines += [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 2, (status, lines, err[-2000:])
    assert len(lines) == 1, lines
    line = lines[0]
    assert "\n" not in line and all(r.exc_info is None for r in errors.records), line
    for fragment in case.expect:
        assert fragment.lower() in line.lower(), (fragment, line)
    assert _snapshot(tmp / "runs") == before, "the refused command wrote or changed files"
    return line


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_in_one_line(case: Case, tmp_path: Path, capsys):
    _refused(case, tmp_path, capsys)


def test_the_table_covers_at_least_25_kinds():
    assert len({c.name for c in CASES}) == len(CASES) >= 25


# -- the environment: a read-only run folder, a full disk, Ray or ONNX Runtime absent ------------


def _refuse_writes_under(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int) -> None:
    """Make every file or folder creation under ``folder`` fail with ``code`` (EROFS for a
    read-only folder, ENOSPC for a full disk): ``os.open`` and ``os.mkdir`` are what Python's
    ``open``, ``Path.mkdir`` and the atomic writer call underneath."""
    import builtins
    import io
    import os

    real_open, real_mkdir, real_builtin_open = os.open, os.mkdir, builtins.open

    def blocked(path: object) -> bool:
        try:
            return Path(os.fspath(path)).resolve().is_relative_to(folder.resolve())  # type: ignore[arg-type]
        except TypeError:
            return False

    def fail(path: object) -> OSError:
        return OSError(code, os.strerror(code), os.fspath(path))  # type: ignore[arg-type]

    def os_open(path, flags, *args, **kwargs):  # noqa: ANN001, ANN202
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and blocked(path):
            raise fail(path)
        return real_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):  # noqa: ANN001, ANN202
        if blocked(path) and not os.path.isdir(path):
            raise fail(path)
        return real_mkdir(path, *args, **kwargs)

    def builtin_open(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN202
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and blocked(file):
            raise fail(file)
        return real_builtin_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", builtin_open)
    monkeypatch.setattr(io, "open", builtin_open)  # what pathlib's write_text calls


@pytest.mark.parametrize("code, expect", [(errno.EROFS, ("read-only", "writable")),
                                          (errno.ENOSPC, ("no space", "free disk space"))],
                         ids=["read-only run folder", "full disk"])
def test_a_run_folder_that_cannot_be_written_is_refused_in_one_line(tmp_path, capsys, monkeypatch,
                                                                    code, expect):
    _existing_run(tmp_path)
    _refuse_writes_under(monkeypatch, tmp_path / "runs", code)
    case = Case("unwritable", _darts(), ("runs/existing", *expect))
    _refused(case, tmp_path, capsys)


def test_ray_absent_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    _refused(Case("no ray", _ray(), ("ray", "pip install")), tmp_path, capsys)


def test_onnx_runtime_absent_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "onnxruntime" or m.startswith("onnxruntime.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    case = Case("no onnxruntime", _darts("hardware.backend=onnxruntime"),
                ("onnxruntime", "pip install"))
    _refused(case, tmp_path, capsys)


def test_openvino_absent_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """OpenVINO is an optional dependency: without it, ``measure.backend=openvino`` is refused
    with the extra that brings it (with it, the trial search would measure on it)."""
    for name in [m for m in sys.modules if m == "openvino" or m.startswith("openvino.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "openvino", None)
    case = Case("no openvino", _optuna("measure.backend=openvino"),
                ("measure: backend", "openvino", 'pip install -e ".[openvino]"'))
    _refused(case, tmp_path, capsys)


# -- the real entry points ----------------------------------------------------------------------


@pytest.mark.parametrize("argv, expect", [
    (["searchers/darts.py", "space.conv_candidates=[conv9x9]"], "conv9x9"),
    (["searchers/optuna_search.py", "study.storage=foo://bar"], "foo://bar"),
], ids=["darts unknown op", "optuna bad storage"])
def test_the_commands_exit_2_with_one_line_on_stderr(tmp_path, argv, expect):
    done = subprocess.run([sys.executable, *argv, f"run.dir={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and expect in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())
