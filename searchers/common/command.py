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
from collections.abc import Callable, Mapping

from search_space.files import error_line
from searchers.common.config import ConfigError

__all__ = ["exit_status", "log_to_stderr"]


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
