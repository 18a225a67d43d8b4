"""The run folder: the one place its file names are spelled, and the writing and reading of the
files that the commands writing a run (``searchers``) and those reading one (``results``) share.

A run folder (``run.dir``/``run.name``) of the DARTS search, a supernet training, a trial search,
the pipeline or a retraining holds, as each writes them:

==========================  ==============================================================
``config.yaml``             the resolved config (:meth:`RunFolder.record`)
``command.txt``             the command that started the run, then each that resumed it
``checkpoint.pt``           the training state (the one before it: ``checkpoint.prev.pt``)
``log.csv``                 the metric log (:class:`searchers.common.logs.CsvLogger`)
``genotype.json``           the searched genotype, or the genotype a retraining trains
``model.pt``                a retraining's final weights (the EMA where enabled)
``deployed.pt``             the weights of its deployed (re-parameterised) form
``deployed_genotype.json``  the deployed form's genotype
``deploy.json``             the deployed form checked against the trained one
``teacher.json``            with distillation, the teacher's identity
``init.json``               with MemSR's initialisation, the fit per layer
``supernet.json``           a supernet training's space: the spec, widths and fewest cells
``.lock``                   while a process writes the folder: its PID, host and start
                            (:meth:`RunFolder.lock`; :mod:`results.run_lock`)
==========================  ==============================================================

Every file is written atomically (:mod:`search_space.files`). This module imports no torch and
nothing above ``results``; the weights are saved and loaded by their owners, who take the
paths from here.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from results.run_lock import RunFolderBusy, RunLock
from search_space.files import atomic_write_text, error_line

__all__ = ["RunFolder", "RunFolderBusy", "RunFolderError", "RunLock"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.txt"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.csv"
GENOTYPE_FILE = "genotype.json"
MODEL_FILE = "model.pt"
DEPLOYED_FILE = "deployed.pt"
DEPLOYED_GENOTYPE_FILE = "deployed_genotype.json"
DEPLOY_CHECK_FILE = "deploy.json"
TEACHER_FILE = "teacher.json"
INIT_FILE = "init.json"
SUPERNET_FILE = "supernet.json"
SELECTION_FILE = "selection.json"
LOCK_FILE = ".lock"

RESUMED_MARK = "# resumed with:"
"""The line of ``command.txt`` before each command that resumed the run."""


class RunFolderError(ValueError):
    """A file of a run folder that cannot be read as what it should hold."""


@dataclass(frozen=True)
class RunFolder:
    """The files of the run folder ``path`` (which need not exist yet)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- the files ------------------------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def command(self) -> Path:
        return self.path / COMMAND_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def log(self) -> Path:
        return self.path / LOG_FILE

    @property
    def genotype(self) -> Path:
        return self.path / GENOTYPE_FILE

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def deployed(self) -> Path:
        return self.path / DEPLOYED_FILE

    @property
    def deployed_genotype(self) -> Path:
        return self.path / DEPLOYED_GENOTYPE_FILE

    @property
    def deploy_check(self) -> Path:
        return self.path / DEPLOY_CHECK_FILE

    @property
    def teacher(self) -> Path:
        return self.path / TEACHER_FILE

    @property
    def init(self) -> Path:
        return self.path / INIT_FILE

    @property
    def supernet(self) -> Path:
        return self.path / SUPERNET_FILE

    @property
    def lock_file(self) -> Path:
        """The lock file, there while a process writes the folder (:meth:`lock`)."""
        return self.path / LOCK_FILE

    def lock(self, *, rename: str = "run.name") -> RunLock:
        """The folder's lock, for ``with folder.lock():`` around everything a command writes
        into it, taken before its first write (the folder is created as needed; folders it
        created are removed again where the command leaves them empty). A second process
        raises :class:`RunFolderBusy` (exit 2) naming the folder and the holder's PID and
        host; ``rename`` is the key its line suggests to write elsewhere. A lock its process
        left behind when killed is taken over. See :mod:`results.run_lock`."""
        return RunLock(self.path, self.lock_file, rename=rename)

    # -- the record of the run --------------------------------------------------------------

    @property
    def selection(self) -> Path:
        """How a DARTS search chose each slot (``search.select``): scores, budget swaps."""
        return self.path / SELECTION_FILE

    def record(self, config_yaml: str, argv: Sequence[str], *, resume: bool = False) -> Path:
        """Write ``config.yaml`` (``config_yaml``, the resolved config) and ``command.txt``
        (``shlex.join([sys.executable, *argv])``; pass ``sys.argv``); the folder is created if
        needed and returned.

        A resumed run (``resume``) rewrites ``config.yaml`` and keeps the original command,
        appending the command that resumed it after a ``# resumed with:`` line.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        command = shlex.join([sys.executable, *argv]) + "\n"
        if resume:
            previous = self.command.read_text(encoding="utf-8") if self.command.exists() else ""
            command = f"{previous}{RESUMED_MARK}\n{command}"
        atomic_write_text(self.config, config_yaml)
        atomic_write_text(self.command, command)
        logger.info("wrote %s and %s", self.config, self.command)
        return self.path

    def read_command(self) -> str:
        """``command.txt`` without its final newline ("" where there is none)."""
        return self.command.read_text(encoding="utf-8").strip() if self.command.exists() else ""

    def first_command(self) -> str:
        """The command that started the run ("" where none is recorded)."""
        lines = self.read_command().splitlines()
        return lines[0] if lines else ""

    def read_config(self) -> dict[str, Any]:
        """``config.yaml`` as a plain mapping (``{}`` for an empty file); a file that is no YAML
        mapping raises :class:`RunFolderError` naming it. A command reads its own typed config
        with ``searchers.common.config.load_config(cls, folder.config)``."""
        try:
            data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RunFolderError(f"{CONFIG_FILE} is not valid YAML ({error_line(exc)})") from exc
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise RunFolderError(f"{CONFIG_FILE} holds a {type(data).__name__}, not a mapping "
                                 "of config sections")
        return data

    # -- JSON records and results -----------------------------------------------------------

    def write_json(self, path: Path, data: Any) -> Path:
        """Write ``data`` as indented JSON to one of this folder's files (``deploy_check``,
        ``teacher``, ``init``, ``supernet``)."""
        return atomic_write_text(path, json.dumps(data, indent=2) + "\n")

    def read_json(self, path: Path) -> dict[str, Any]:
        """One of this folder's JSON records as a mapping; :class:`RunFolderError` names the
        file when it cannot be read or holds no JSON object."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunFolderError(f"{path.name}: cannot read {str(path)!r} ({exc})") from exc
        if not isinstance(data, dict):
            raise RunFolderError(f"{path.name}: {str(path)!r} holds a {type(data).__name__}, "
                                 "not an object")
        return data

    def missing(self, *paths: Path) -> list[str]:
        """The names of those of ``paths`` that are not files (in the order given)."""
        return [p.name for p in paths if not p.is_file()]

    def unfinished(self) -> list[str]:
        """The deployment results a finished retraining has and this folder lacks
        (``deployed.pt``, ``deployed_genotype.json``, ``deploy.json``); empty when finished."""
        return self.missing(self.deployed, self.deployed_genotype, self.deploy_check)

    def trained_weights(self) -> tuple[Path, Path] | None:
        """A retraining's weights and the genotype they are for: the deployed form's where both
        files are there, else the final training-form weights, else None."""
        for weights, genotype in ((self.deployed, self.deployed_genotype),
                                  (self.model, self.genotype)):
            if weights.is_file() and genotype.is_file():
                return weights, genotype
        return None
