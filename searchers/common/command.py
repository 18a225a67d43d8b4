"""What the search commands share around the function each one calls: the log on stderr and
the exit status.

:func:`exit_status` runs a command's work and turns what it raises into the status the README
documents: 2 with one line for bad input (:class:`~searchers.common.config.ConfigError`, any
``ValueError`` or ``OSError``: the line names what was wrong, the value and the fix), and the
command's own statuses for its own failures (3 for a diverged search or training, 1 for a failed
worker). Every ``main`` of ``searchers/{darts,optuna_search,ray_tune,retrain,pipeline}.py``
calls it, so the policy is written once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from search_space.files import error_line
from searchers.common.config import ConfigError

Cfg = TypeVar("Cfg")

__all__ = ["exit_status", "log_to_stderr", "run_command"]


def log_to_stderr() -> None:
    """INFO and above on stderr, with the time and the logger's name (every search command)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")


def exit_status(work: Callable[[], object], logger: logging.Logger, *,
                failures: Mapping[type[BaseException], int] | None = None) -> int:
    """Run ``work``; 0 if it returns, else log one line on ``logger`` and return the status: 2
    for bad input (``ConfigError``, ``ValueError``, ``OSError``), else ``failures[type]`` for an
    exception of a type listed there (in order); anything else propagates."""
    failures = failures or {}
    try:
        work()
    except (ConfigError, ValueError, OSError) as exc:  # bad input first: DeviceUnavailable
        logger.error("%s", error_line(exc))           # is a ValueError and a RuntimeError
        return 2
    except BaseException as exc:
        for kind, status in failures.items():
            if isinstance(exc, kind):
                logger.error("%s", exc)
                return status
        raise
    return 0


def run_command(argv: list[str] | None, *, prog: str, description: str, config_help: str,
                config_type: type[Cfg], run: Callable[..., object], logger: logging.Logger,
                failures: Mapping[type[BaseException], int]) -> int:
    """The command of a resumable run (the DARTS search, the supernet training): ``[--config
    FILE] [--resume] [--stop-after STEP] [key=value ...]``; the config from ``--config`` and
    the overrides (with ``--resume``, the run folder's own ``config.yaml`` and the overrides),
    then ``run(cfg, resume=..., stop_after=..., command=...)`` under :func:`exit_status`."""
    import argparse

    from results.run_folder import RunFolder
    from searchers.common.config import load_config

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", help=config_help)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in run.dir/run.name from its last checkpoint")
    p.add_argument("--stop-after", type=int, metavar="STEP",
                   help="stop after this step as if the run were killed (resume with --resume)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    log_to_stderr()

    def work() -> None:
        cfg: Any = load_config(config_type, args.config, args.overrides)
        recorded = RunFolder(cfg.run.folder()).config
        if args.resume and recorded.exists():
            cfg = load_config(config_type, recorded, args.overrides)
        run(cfg, resume=args.resume, stop_after=args.stop_after, command=[sys.argv[0], *argv])

    return exit_status(work, logger, failures=failures)
