"""Checkpoints that cannot run code (issue 28): every checkpoint this project writes loads with
``torch.load(weights_only=True)``, and a crafted one (its pickle holds an object whose
``__reduce__`` calls ``os.system`` or ``Path.touch``) is refused by every command that loads
checkpoints (DARTS, supernet training and retraining ``--resume``, a study's and Ray Tune's
``proxy.supernet``, a KD teacher, evaluate and export ``--weights``): exit 2, one line naming the
file and the type refused, nothing written, and the marker file the payload would create is not
there. The rows use the bad-input table's checker (``tests/test_bad_input.py``)."""

from __future__ import annotations

import os
import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_input import Case, _refused  # noqa: E402

DARTS = ["space.scale=2", "space.width=8", "space.num_cells=1", "space.cell_types=[erb]",
         "space.conv_candidates=[conv3x3,sep_conv3x3]", "space.attention_candidates=[none]",
         "data.patch_size=16", "data.batch_size=1", "search.steps=1", "search.warmup_steps=0",
         "hardware.lr_size=16", "hardware.runs=1", "hardware.warmup=0", "profile.enabled=false",
         "run.plots=false", "loss.reference=null", "loss.latency_x=null", "loss.memory_x=null"]
SUPERNET = ["space.scale=2", "space.width=8", "space.num_cells=1", "space.widths=[8]",
            "space.cells_min=1", "space.cell_types=[erb]", "space.conv_candidates=[conv3x3]",
            "space.attention_candidates=[none]", "data.patch_size=16", "data.batch_size=1",
            "train.steps=1", "run.checkpoint_every=1", "run.plots=false", "run.device=cpu"]
RETRAIN = ["optim.iterations=1", "optim.warmup_iterations=0", "data.batch_size=1",
           "data.patch_size=16", "data.val_max_side=32", "run.checkpoint_every=1",
           "run.val_every=1"]
GENOTYPE = {"scale": 2, "width": 8, "cells": [
    {"type": "erb", "ops": ["conv3x3", "conv3x3"], "attention": "none"}]}


class _RunsCode:
    """Pickles as the call ``func(*args)``, which unpickling makes: a crafted checkpoint."""

    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.func, self.args


REFUSED = {"system": "posix.system" if os.name == "posix" else "nt.system",
           "touch": "getattr",  # Path.touch is pickled as getattr(PosixPath, 'touch')
           "pickle": "posix.system" if os.name == "posix" else "nt.system"}


def _craft(path: Path, marker: Path, how: str) -> Path:
    """Write at ``path`` a checkpoint whose unpickling creates ``marker``: ``system`` (torch.save,
    ``os.system('touch ...')``), ``touch`` (torch.save, ``Path.touch``) or ``pickle`` (a plain
    pickle of protocol 5, not a torch file)."""
    payload = (_RunsCode(Path.touch, marker) if how == "touch"
               else _RunsCode(os.system, f"touch '{marker}'"))
    ckpt = {"step": 1, "model": {}, "genotype": "{}", "rng": payload}
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "pickle":
        path.write_bytes(pickle.dumps(ckpt, protocol=5))
    else:
        torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real run folders, one step each: a DARTS search, a supernet training and a retraining
    (with its deployed net); the DARTS search's hardware table is cached in ``lut``."""
    from search_space import Genotype
    from searchers.differentiable.search import main as darts
    from searchers.sharing.train import main as supernet
    from searchers.training.retrain import main as retrain

    root = tmp_path_factory.mktemp("runs")
    assert darts([f"run.dir={root}", "run.name=darts", f"hardware.cache_dir={root / 'lut'}",
                  *DARTS]) == 0
    assert supernet([f"run.dir={root}", "run.name=supernet", *SUPERNET]) == 0
    genotype = Genotype.from_dict(GENOTYPE).save(root / "tiny.json")
    assert retrain([str(genotype), f"run.dir={root}", "run.name=retrain", *RETRAIN]) == 0
    return root


def test_every_checkpoint_the_project_writes_loads_weights_only(runs: Path) -> None:
    for name in ("darts", "supernet", "retrain"):
        ckpt = torch.load(runs / name / "checkpoint.pt", weights_only=True)
        assert ckpt["step"] == 1 and ckpt["model"], name
        if "rng" in ckpt:
            assert isinstance(ckpt["rng"]["numpy"], dict), name
    for name in ("model.pt", "deployed.pt"):
        assert torch.load(runs / "retrain" / name, weights_only=True)


def _copy(runs: Path, name: str, to: Path, marker: Path, how: str,
          file: str = "checkpoint.pt") -> Path:
    """A copy of the real run ``name`` at ``to`` with its ``file`` crafted."""
    shutil.copytree(runs / name, to)
    _craft(to / file, marker, how)
    return to


Make = Callable[[Path, Path, Path, str], Callable[[Path], int]]


def _resume(which: str) -> Make:
    """``--resume`` of the real run ``which`` (darts, supernet, retrain), its checkpoint crafted."""

    def make(runs: Path, tmp: Path, marker: Path, how: str) -> Callable[[Path], int]:
        _copy(runs, which, tmp / "runs" / which, marker, how)

        def run(tmp: Path) -> int:
            target = [f"run.dir={tmp / 'runs'}", f"run.name={which}"]
            if which == "darts":
                from searchers.differentiable.search import main

                return main(["--resume", *target, f"hardware.cache_dir={runs / 'lut'}"])
            if which == "supernet":
                from searchers.sharing.train import main as train

                return train(["--resume", *target])
            from searchers.training.retrain import main as retrain

            return retrain([str(runs / "tiny.json"), "--resume", *target, *RETRAIN])

        return run

    return make


def _proxy_supernet(command: str) -> Make:
    """A study (``optuna``) or Ray Tune (``ray``) with ``proxy.supernet`` a real supernet
    training whose checkpoint is crafted (the folder lies outside ``runs/``)."""

    def make(runs: Path, tmp: Path, marker: Path, how: str) -> Callable[[Path], int]:
        shared = _copy(runs, "supernet", tmp / "shared" / "supernet", marker, how)

        def run(tmp: Path) -> int:
            argv = [f"run.dir={tmp / 'runs'}", "run.name=existing", "study.n_trials=1",
                    f"proxy.supernet={shared}"]
            if command == "ray":
                from searchers.trials.tune import main as tune

                return tune(argv)
            from searchers.trials.study import main as study

            return study(argv)

        return run

    return make


def _weights(command: str) -> Make:
    """``--weights`` of evaluate or export, or a retraining's ``--teacher`` (a copy of the real
    retraining with its ``deployed.pt`` crafted), all outside ``runs/``."""

    def make(runs: Path, tmp: Path, marker: Path, how: str) -> Callable[[Path], int]:
        weights = _craft(tmp / "inputs" / "weights.pt", marker, how)
        teacher = _copy(runs, "retrain", tmp / "inputs" / "teacher", marker, how, "deployed.pt")

        def run(tmp: Path) -> int:
            if command == "evaluate":
                from results.evaluate.command import main as evaluate

                return evaluate(["rlfn_ntire", "--weights", str(weights), "--sets", "Set5",
                                 "--out", str(tmp / "runs" / "eval.csv")])
            if command == "export":
                from results.export.command import main as export

                return export(["rlfn_ntire", "--weights", str(weights), "--out",
                               str(tmp / "runs" / "export")])
            from searchers.training.retrain import main as retrain

            return retrain([str(runs / "tiny.json"), "--teacher", str(teacher),
                            f"run.dir={tmp / 'runs'}", "run.name=taught", *RETRAIN])

        return run

    return make


ROWS: dict[str, tuple[Make, str, str]] = {  # the command, the file it names, the payload
    "darts --resume": (_resume("darts"), "checkpoint.pt", "system"),
    "darts --resume, a plain pickle": (_resume("darts"), "checkpoint.pt", "pickle"),
    "train_supernet --resume": (_resume("supernet"), "checkpoint.pt", "touch"),
    "retrain --resume": (_resume("retrain"), "checkpoint.pt", "system"),
    "study proxy.supernet": (_proxy_supernet("optuna"), "checkpoint.pt", "system"),
    "ray_tune proxy.supernet": (_proxy_supernet("ray"), "checkpoint.pt", "touch"),
    "retrain --teacher": (_weights("teacher"), "deployed.pt", "system"),
    "evaluate --weights": (_weights("evaluate"), "weights.pt", "system"),
    "export --weights": (_weights("export"), "weights.pt", "pickle"),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_a_crafted_checkpoint_runs_no_code_and_is_refused(row: str, runs: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    make, file, how = ROWS[row]
    marker = tmp_path / "MARKER"
    case = Case(row, make(runs, tmp_path, marker, how),
                (file, "refused", REFUSED[how], "never writes"))
    _refused(case, tmp_path, capsys)
    assert not marker.exists(), f"the crafted checkpoint ran its code: {marker} was created"


def test_the_supernet_loaders_of_the_trials_refuse_it(runs: Path, tmp_path: Path) -> None:
    """``proxy.supernet`` as the trials load it (searchers/trials/inherit.py)."""
    from search_space import Genotype, build_model
    from searchers.common.config import ConfigError
    from searchers.trials.inherit import inherit_supernet_weights, shared_subnet

    marker = tmp_path / "MARKER"
    shared = _copy(runs, "supernet", tmp_path / "supernet", marker, "system")
    genotype = Genotype.from_dict(GENOTYPE)
    for load in (lambda: shared_subnet(genotype, shared),
                 lambda: inherit_supernet_weights(build_model(genotype), shared)):
        with pytest.raises(ConfigError, match=r"checkpoint\.pt was refused: it needs "
                           + REFUSED["system"]):
            load()
    assert not marker.exists()


@pytest.mark.parametrize("form", ["zip", "legacy", "pickle"])
def test_refused_is_told_from_damaged(form: str, tmp_path: Path) -> None:
    """A crafted file in each of torch's formats and as a plain pickle is refused naming the
    type; a damaged one (random bytes, truncated) keeps the 'damaged' line with the checkpoint
    to go back to."""
    from searchers.common.checkpoints import load_checkpoint, previous_checkpoint, save_checkpoint
    from searchers.common.config import ConfigError

    path, marker = tmp_path / "checkpoint.pt", tmp_path / "MARKER"
    save_checkpoint({"step": 1, "w": torch.zeros(100)}, path)
    save_checkpoint({"step": 2, "w": torch.zeros(100)}, path)  # checkpoint.prev.pt is step 1
    good = path.read_bytes()
    crafted = {"step": 3, "rng": _RunsCode(os.system, f"touch '{marker}'")}
    if form == "pickle":
        path.write_bytes(pickle.dumps(crafted, protocol=4))
    else:
        torch.save(crafted, path, _use_new_zipfile_serialization=form == "zip")
    with pytest.raises(ConfigError) as refused:
        load_checkpoint(path)
    line = str(refused.value)
    assert f"checkpoint {path} was refused: it needs {REFUSED['system']}" in line, line
    assert "damaged" not in line and "\n" not in line and not marker.exists()
    for damage in (os.urandom(4096), good[:len(good) // 2], b"\x80\x02}q\x00."):
        path.write_bytes(damage)
        with pytest.raises(ConfigError) as damaged:
            load_checkpoint(path)
        line = str(damaged.value)
        assert f"checkpoint {path} is damaged" in line and "was refused" not in line, line
        assert f"the last good one is {previous_checkpoint(path)}" in line and "\n" not in line
