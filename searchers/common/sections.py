"""The config sections every command shares: the run folder (:class:`RunSection`) and how nets
are measured (:class:`MeasureSection`). Each command's config extends them with what only it
needs; the YAML-to-dataclass engine that fills them is :mod:`searchers.common.config`."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING

from searchers.common.config import ConfigError

if TYPE_CHECKING:
    from proxies.measure.settings import MeasureSettings

__all__ = ["MeasureSection", "RunSection"]


@dataclasses.dataclass
class RunSection:
    """The one run-section type: where a command's run goes, the folder ``dir``/``name``. Each
    command's section extends it with what only that command needs: the DARTS search's
    (:class:`searchers.differentiable.config.DartsRun`), retraining's
    (:class:`searchers.training.config.RetrainRun`), the trial searches' on Optuna and Ray Tune
    (:class:`searchers.trials.config.TrialsRun`) and the pipeline's
    (:class:`searchers.stages.config.PipelineSection`)."""

    dir: str = "runs"
    name: str | None = "default"

    def __post_init__(self) -> None:
        if not self.dir.strip():
            raise ValueError("dir: got ''; give the folder runs go in, e.g. runs")
        if self.name is not None and (not self.name.strip() or "/" in self.name
                                      or self.name in (".", "..")):
            raise ValueError(f"name: got {self.name!r}; a run name is one folder name (no '/'), "
                             "e.g. default")

    def folder(self, unset: str | None = None) -> Path:
        """The run folder; ``unset`` names it when ``name`` is null (retraining: the net)."""
        name = self.name or unset
        if not name:
            raise ConfigError("name is null and nothing names the run; set it, e.g. name=default",
                              key="name")
        return Path(self.dir) / name


@dataclasses.dataclass
class MeasureSection:
    """The one measurement section of the configs: how latency and peak memory are measured,
    each net timed alone (``runs`` runs after ``warmup``) on an ``lr_size`` x ``lr_size`` LR
    input. :meth:`settings` turns it into :class:`proxies.measure.settings.MeasureSettings`, the
    one settings type the measurements take. The trials' ``measure`` section is this type; the
    DARTS search's ``hardware`` section extends it with the lookup table's cache folder
    (:class:`searchers.differentiable.config.HardwareConfig`)."""

    device: str = "auto"
    lr_size: int = 64
    runs: int = 10
    warmup: int = 2
    threads: int | None = 1
    backend: str = "torch"  # torch | onnxruntime | openvino (proxies.measure.backends)

    def __post_init__(self) -> None:
        self.settings()  # every value is checked once, where MeasureSettings is built

    def settings(self) -> MeasureSettings:
        """The measurement settings: one round of ``runs`` runs per net. A bad value is the
        settings' ValueError, naming the section's key (``runs``, not ``runs_per_round``)."""
        from proxies.measure.settings import MeasureSettings

        try:
            return MeasureSettings(device=self.device, lr_size=(self.lr_size, self.lr_size),
                                   rounds=1, runs_per_round=self.runs, warmup=self.warmup,
                                   threads=self.threads, backend=self.backend)
        except ValueError as exc:
            raise ValueError(re.sub(r"\bruns_per_round\b", "runs", str(exc))) from exc
