"""What a running pipeline shows: a progress line before each stage (the stage, how many are
done, the time spent and an estimate of the time left) and ``pipeline.md`` rewritten after each
stage with the stages so far, so that a run of hours can be watched (``watch cat
pipeline.md``); the report replaces it with the final summary (:mod:`searchers.stages.summary`).

The estimate of a stage still to run is the mean wall time of the finished stages of its kind
(searches, retrainings); a search under ``pipeline.cpu_seconds`` is expected to take its budget
until one has run. It is an estimate: a net's retraining time depends on the net."""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from results.run_folder import RunFolder

logger = logging.getLogger("searchers.stages.pipeline")


def _kind(stage: str) -> str:
    return stage.split(".", 1)[0]


MADE_ELSEWHERE_S = 1.0
"""A stage done in less (its output made by another process, e.g. a second one retraining
the same folder) says nothing of what its kind costs, and is left out of the estimate."""


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """The progress line and the in-progress ``pipeline.md`` of one pipeline."""

    def __init__(self, pipeline: Any) -> None:
        """``pipeline``: the :class:`~searchers.stages.pipeline.Pipeline` it reports on."""
        self.pipeline = pipeline

    def estimate(self, state: dict[str, Any], stages: list[str]) -> tuple[float, int]:
        """The seconds expected for the stages still to run that can be estimated, and how
        many cannot be yet."""
        done = set(state["done"])
        seconds = state["seconds"]
        budget = self.pipeline.cfg.pipeline.cpu_seconds
        left, untimed = 0.0, 0
        for stage in stages:
            if stage in done:
                continue
            kind = _kind(stage)
            past = [seconds[s] for s in done
                    if _kind(s) == kind and seconds.get(s, 0.0) >= MADE_ELSEWHERE_S]
            if past:
                left += sum(past) / len(past)
            elif kind == "search" and budget is not None:
                left += budget
            elif kind != "select":
                untimed += 1
        return left, untimed

    def left_text(self, state: dict[str, Any], stages: list[str]) -> str:
        """``about 12m00s left`` (``+ 4 stages not yet timed`` where some cannot be
        estimated until one of their kind has run)."""
        left, untimed = self.estimate(state, stages)
        more = f" + {untimed} stages not yet timed" if untimed else ""
        return f"about {_duration(left)}{more} left"

    def line(self, stage: str, state: dict[str, Any]) -> None:
        """Log ``[k/N] STAGE: running; X spent, about Y left``."""
        stages = self.pipeline.stages()
        k = stages.index(stage) + 1 if stage in stages else len(state["done"]) + 1
        spent = sum(state["seconds"].values())
        logger.info("[%d/%d] %s: running; %s spent so far, %s (the report aside)",
                    k, len(stages), stage, _duration(spent), self.left_text(state, stages))

    def status(self, state: dict[str, Any]) -> str:
        """``pipeline.md`` while the pipeline runs: every stage with its state, wall time and
        spend, the estimate left, and the nets selected so far."""
        p = self.pipeline
        stages = p.stages()
        done = set(state["done"])
        lines = [f"# Pipeline {p.cfg.pipeline.name} (in progress: {len(done)} of {len(stages)} "
                 "stages done; the report is written at the end)", "",
                 f"Budget: {p.budget_text()}. Time spent: "
                 f"{_duration(sum(state['seconds'].values()))}; "
                 f"{self.left_text(state, stages)}, the report aside.", "",
                 "| stage | state | wall time | spent [CPU-s] |", "|---|---|---|---|"]
        for stage in stages:
            wall = state["seconds"].get(stage)
            cpu = state["cpu_seconds"].get(stage)
            lines.append(f"| {stage} | {'done' if stage in done else 'to run'} | "
                         f"{'' if wall is None else _duration(wall)} | "
                         f"{'' if cpu is None else f'{cpu:.0f}'} |")
        selected = p.root / "selected" / "selected.json"
        if "select" in done and selected.exists():
            lines += ["", "Selected (to retrain):", ""]
            for label, info in json.loads(selected.read_text()).items():
                lines.append(f"- {label}: {_chosen_text(info)}")
        return "\n".join(lines) + "\n"


def finished_steps(folder: RunFolder) -> int:
    """The last step a run (a supernet training, a DARTS search) logged in its ``log.csv``
    (0 without a log)."""
    import csv

    if not folder.log.exists():
        return 0
    with folder.log.open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("step")]
    return max(steps, default=0)


def _chosen_text(info: dict[str, Any]) -> str:
    """What a search handed over, as ``selected.json`` records it."""
    if "none" in info:
        return "no net under the budget"
    if "trial" not in info:
        return str(info.get("source") or "its derived net")
    score = info.get("proxy_psnr_db")
    unit = "M params" if info.get("method") == "params" else "dB"
    latency = info.get("latency_ratio")
    return (f"trial {info['trial']}, proxy {math.nan if score is None else score:.3f} {unit}, "
            f"latency x{math.nan if latency is None else latency:.2f}")
