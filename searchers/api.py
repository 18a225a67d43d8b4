"""The project's Python API in one place: each stage of a search as a function that takes a typed
config (and values) and returns a typed result, as the commands and the pipeline call them::

    from searchers.api import DartsConfig, RetrainConfig, load_config, retrain, run_search

    search = run_search(load_config(DartsConfig, "configs/quickstart.yaml", ["run.dir=runs/nb"]))
    net = retrain(search.genotype, load_config(RetrainConfig, None, ["run.dir=runs/nb"]))

==========================  ===================================================================
:func:`run_search`          DARTS search (``searchers/darts.py``) -> :class:`SearchResult`
:func:`run_study`           Optuna study (``searchers/optuna_search.py``) -> :class:`StudyResult`
:func:`train_supernet`      supernet training (``searchers/train_supernet.py``) ->
                            :class:`SupernetResult`
:func:`retrain`             retraining (``searchers/retrain.py``) -> :class:`RetrainResult`
:func:`evaluate`            metrics (``python -m results.evaluate``) -> :class:`Evaluation`
:func:`build_report`        the report (``python -m results.report``) -> :class:`ReportResult`
:func:`run_pipeline`        the pipeline (``searchers/pipeline.py``) -> its ``pipeline.md``
==========================  ===================================================================

A config is built with :func:`load_config` (defaults < a YAML file < ``key=value`` overrides,
checked as the commands check them) or as the dataclass itself. Each function raises
``ValueError``/``OSError`` (a :class:`ConfigError` for a config) with a one-line message for bad
input, before it writes anything; the commands turn those into exit status 2.

A module of its own rather than names exported by ``searchers/__init__.py``: importing a part of
the package (a command, a worker process importing :mod:`searchers.trials.study`) stays as light
as that part, with no lazy-attribute machinery, and type checkers and editors see every name.
"""

from __future__ import annotations

from results.evaluate.command import Evaluation, evaluate
from results.report.command import ReportOptions, ReportResult, build_report
from search_space import Genotype
from searchers.common.config import ConfigError, load_config
from searchers.differentiable.config import DartsConfig
from searchers.differentiable.search import SearchResult, run_search
from searchers.sharing.config import SupernetConfig
from searchers.sharing.train import SupernetResult, train_supernet
from searchers.stages.pipeline import PipelineConfig, run_pipeline
from searchers.training.config import RetrainConfig
from searchers.training.retrain import RetrainResult, retrain
from searchers.trials.config import OptunaConfig
from searchers.trials.study import StudyResult, run_study

__all__ = [
    "ConfigError",
    "DartsConfig",
    "Evaluation",
    "Genotype",
    "OptunaConfig",
    "PipelineConfig",
    "ReportOptions",
    "ReportResult",
    "RetrainConfig",
    "RetrainResult",
    "SearchResult",
    "StudyResult",
    "SupernetConfig",
    "SupernetResult",
    "build_report",
    "evaluate",
    "load_config",
    "retrain",
    "run_pipeline",
    "run_search",
    "run_study",
    "train_supernet",
]
