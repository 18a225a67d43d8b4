"""The YAML dialect of the config files and overrides: PyYAML's safe loader, except that dates
(``2024-01-01``) stay strings and ``1e-3`` is a float (YAML 1.2; PyYAML's YAML 1.1 rules need a
dot, ``1.0e-3``); and a parse error as one line (:func:`yaml_problem`)."""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["load_yaml", "yaml_problem"]

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that keeps dates (``2024-01-01``) as strings and reads ``1e-3`` as a
    float (YAML 1.2; PyYAML's YAML 1.1 rules need a dot, ``1.0e-3``)."""


_ConfigLoader.yaml_implicit_resolvers = {  # fresh lists: SafeLoader's own table is untouched
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse ``text`` in the configs' dialect (raises :class:`yaml.YAMLError`)."""
    return yaml.load(text, Loader=_ConfigLoader)  # safe: _ConfigLoader derives from SafeLoader


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line account of a YAML parse error: what is wrong and at which line and column."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())
