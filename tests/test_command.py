"""The exit statuses every search command shares (searchers.common.command.exit_status)."""

from __future__ import annotations

import logging

import pytest

from proxies.measure.settings import DeviceUnavailable
from searchers.common import command
from searchers.common.config import ConfigError

LOG = logging.getLogger("test.command")


def status(work, logger, **kwargs):
    """Through the module, so that a patched ``exit_status`` is the one tested."""
    return command.exit_status(work, logger, **kwargs)


class Diverged(RuntimeError):
    pass


def _raise(exc: BaseException):
    def work() -> None:
        raise exc
    return work


def test_statuses_and_one_line(caplog):
    assert status(lambda: None, LOG) == 0
    with caplog.at_level(logging.ERROR, logger="test.command"):
        assert status(_raise(ConfigError("search.lrr: unknown key")), LOG) == 2
        assert status(_raise(OSError(28, "No space left on device")), LOG) == 2
        assert status(_raise(Diverged("loss is nan")), LOG, failures={Diverged: 3}) == 3
    assert [r.getMessage() for r in caplog.records][0] == "search.lrr: unknown key"
    assert "loss is nan" in caplog.records[-1].getMessage()


def test_bad_input_wins_over_a_listed_failure_type():
    """A device that does not exist is bad input (exit 2) although it is a RuntimeError too,
    as the pipeline lists RuntimeError for its failed stages (exit 1)."""
    bad = DeviceUnavailable("device: got 'cuda:7'; this machine has no CUDA device")
    assert status(_raise(bad), LOG, failures={RuntimeError: 1}) == 2
    assert status(_raise(RuntimeError("stage failed")), LOG, failures={RuntimeError: 1}) == 1


def test_anything_else_propagates():
    with pytest.raises(KeyError):
        status(_raise(KeyError("bug")), LOG, failures={Diverged: 3})
