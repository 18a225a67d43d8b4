"""Typed experiment configs: dataclasses loaded from YAML, overridden from the command line.

One experiment = one nested ``@dataclass`` (sections are dataclass-typed fields, every field has a
default; the shared sections are :mod:`searchers.common.sections`). A run resolves its config
with the precedence *defaults < YAML file < overrides*::

    parser.add_argument("--config", default=None)
    parser.add_argument("overrides", nargs="*", help="dotted key=value, e.g. search.steps=200")
    args = parser.parse_args()
    cfg = load_config(DartsConfig, args.config, args.overrides)
    RunFolder(run_dir).record(dump_yaml(cfg), sys.argv)  # results.run_folder: config + command

Values are checked against the field annotations (resolved with :func:`typing.get_type_hints`) and
coerced only where unambiguous: ``int`` -> ``float`` for float fields, list -> tuple for tuple
fields, ``str`` -> :class:`~pathlib.Path` for ``Path`` fields. ``bool`` fields take only
``true``/``false``; ``Literal`` fields only their choices; ``X | None`` also takes ``null``.
Every error is a :class:`ConfigError` (a :class:`ValueError`) naming the dotted key, e.g.
``search.arch_lr``. Override values are YAML scalars or flow collections (``seed=3``,
``search.candidates=[conv3x3,sep_conv3x3]``, ``data.val=null``). Unlike PyYAML's defaults, dates
such as ``2024-01-01`` stay strings and ``1e-3`` is a float (in files and overrides alike:
:mod:`searchers.common.yaml_loader`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from searchers.common.yaml_loader import load_yaml, yaml_problem

__all__ = ["ConfigError", "dump_yaml", "from_dict", "load_config", "merge", "parse_overrides",
           "to_dict"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_NONE_TYPE = type(None)


class ConfigError(ValueError):
    """Invalid configuration; ``key`` is the dotted path of the offending entry ("" if none)."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


# --------------------------------------------------------------------------- dict <-> dataclass


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(tp: Any) -> str:
    """Readable annotation: ``int | null``, ``tuple[str, ...]``, ``one of 'a', 'b'``."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is _NONE_TYPE:
        return "null"
    if tp is Ellipsis:
        return "..."
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in args)
    if origin is Union or origin is types.UnionType:
        return " | ".join(_type_name(arg) for arg in args)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(map(_type_name, args))}]"
    return getattr(tp, "__name__", None) or repr(tp).replace("typing.", "")


def _mismatch(where: str, value: object, tp: Any, detail: str = "") -> ConfigError:
    expected = _type_name(tp)
    origin = get_origin(tp)
    if origin in (list, tuple) or tp in (list, tuple):
        fix = f"write a list, e.g. {where}=[a,b] on the command line"
    elif not isinstance(value, str) and (tp is str or origin is Literal):
        fix = f"quote the value to keep it a string, e.g. {where}='{value}'"
    elif _is_dataclass_type(tp):
        fix = f"give {where} as a mapping of its keys, or override one key as {where}.<key>=..."
    else:
        fix = f"set {where} to a value of type {expected} in the YAML file or as {where}=..."
    got = f"{_short(value)} ({type(value).__name__})"
    return ConfigError(f"{where}: expected {expected}, got {got}{detail}; {fix}", key=where)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError) as exc:
        raise TypeError(
            f"cannot resolve the annotations of config class {cls.__qualname__}: {exc}; "
            "define config dataclasses (and the types they use) at module level"
        ) from exc


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce_union(value: Any, tp: Any, args: tuple[Any, ...], where: str) -> Any:
    if any(isinstance(arg, type) and type(value) is arg for arg in args):
        if type(value) is float:
            return _coerce(value, float, where)  # still refuse NaN and infinities
        return value  # exact match first (``None`` for ``X | None``; ``float | int`` keeps ints)
    errors: list[ConfigError] = []
    for arg in args:
        if arg is _NONE_TYPE:
            continue
        try:
            return _coerce(value, arg, where)
        except ConfigError as exc:
            errors.append(exc)
    deeper = [exc for exc in errors if exc.key != where]  # e.g. a bad key inside a section
    if deeper:
        raise deeper[0]
    raise _mismatch(where, value, tp)


def _coerce_sequence(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp) or tp
    args = get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise _mismatch(where, value, tp)
    if origin is list:
        item_types = [args[0] if args else Any] * len(value)
    elif len(args) == 2 and args[1] is Ellipsis:
        item_types = [args[0]] * len(value)
    elif args or tp is not tuple:  # fixed-length tuple[int, int] (or tuple[()])
        if len(value) != len(args):
            raise _mismatch(where, value, tp, f" with {len(value)} items instead of {len(args)}")
        item_types = list(args)
    else:
        item_types = [Any] * len(value)
    items = [
        _coerce(v, t, f"{where}[{i}]")
        for i, (v, t) in enumerate(zip(value, item_types, strict=True))
    ]
    return items if origin is list else tuple(items)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it, coerced where unambiguous."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        return _coerce_union(value, tp, get_args(tp), where)
    if origin is Literal:
        choices = get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{where}: {_short(value)} is not allowed{hint}; choose one of "
            + ", ".join(repr(c) for c in choices),
            key=where,
        )
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _mismatch(where, value, tp)
        return from_dict(tp, value, where=where)
    if origin in (list, tuple) or tp in (list, tuple):
        return _coerce_sequence(value, tp, where)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _mismatch(where, value, tp)
        key_t, val_t = get_args(tp) or (Any, Any)
        return {
            _coerce(k, key_t, f"{where}[{k!r}]"): _coerce(v, val_t, _join(where, k))
            for k, v in value.items()
        }
    if tp is bool:
        if type(value) is not bool:
            raise _mismatch(where, value, tp, " (only true or false are accepted)")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _mismatch(where, value, tp)
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _mismatch(where, value, tp)
        if not math.isfinite(value):
            raise ConfigError(
                f"{where}: got {value!r}; a finite number is required (NaN and infinities are "
                "refused); give a number, or null where the setting allows none",
                key=where,
            )
        return float(value)
    if tp is _NONE_TYPE:
        if value is not None:
            raise _mismatch(where, value, tp)
        return None
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if not isinstance(value, (str, PurePath)):
            raise _mismatch(where, value, tp)
        return tp(value)
    if isinstance(tp, type) and origin is None:
        if not isinstance(value, tp):
            raise _mismatch(where, value, tp)
        return value
    raise TypeError(
        f"{where}: unsupported annotation {tp!r} in a config dataclass; use bool, int, float, "
        "str, Path, Literal[...], X | None, list[X], tuple[X, ...], dict[K, V] or a dataclass"
    )


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build dataclass ``cls`` from a plain (e.g. YAML-parsed) mapping, recursively.

    Missing keys take the field defaults. Unknown keys, wrong types and values outside a
    ``Literal`` raise :class:`ConfigError` naming the dotted key (prefixed by ``where``). A
    :class:`ValueError` from the dataclass's ``__post_init__`` propagates; for a nested section
    (``where`` non-empty) it is re-raised as a ConfigError prefixed with ``where``.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"from_dict: cls must be a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        if where:
            raise _mismatch(where, data, cls)
        raise ConfigError(
            f"expected a mapping of {cls.__name__} keys, got {_short(data)} ({type(data).__name__})"
        )
    fields = {f.name: f for f in dataclasses.fields(typing.cast(Any, cls)) if f.init}
    hints = _hints(typing.cast(type, cls))
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise _unknown_key(cls, key, where, sorted(fields))
        kwargs[key] = _coerce(value, hints[key], _join(where, key))
    missing = [
        _join(where, name)
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(
            f"missing required config key(s) {', '.join(missing)} of {cls.__name__}; "
            "set them in the YAML file or on the command line",
            key=missing[0],
        )
    try:
        return cls(**kwargs)
    except ValueError as exc:
        if not where:
            raise
        raise ConfigError(f"{where}: {exc}", key=where) from exc


def _unknown_key(cls: type, key: object, where: str, valid: list[str]) -> ConfigError:
    path = _join(where, key)
    close = difflib.get_close_matches(str(key), valid, n=1) if isinstance(key, str) else []
    hint = f" (did you mean {_join(where, close[0])!r}?)" if close else ""
    level = f"in {where!r}" if where else "at the top level"
    return ConfigError(
        f"unknown config key {path!r}{hint}; valid keys {level} ({cls.__name__}): "
        f"{', '.join(valid)}; fix or remove it in the YAML file or the command-line override",
        key=path,
    )


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass instance (tuples as lists), ready for yaml.safe_dump.

    Only ``init`` fields are included, so ``from_dict(type(cfg), to_dict(cfg)) == cfg``.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"to_dict: expected a dataclass instance, got {cfg!r}")
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def dump_yaml(cfg: Any) -> str:
    """YAML text of ``to_dict(cfg)``, keys in field order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


# --------------------------------------------------------------------------- overrides, loading


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: a new dict where ``override`` wins and nested mappings merge recursively."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``["search.steps=200", "seed=3"]`` into ``{"search": {"steps": 200}, "seed": 3}``.

    Values are parsed as YAML (numbers, true/false, null, ``[a,b]`` lists; other text stays a
    string). A later item wins over an earlier one for the same key.
    """
    if isinstance(items, str):
        raise TypeError(f"parse_overrides: items must be a sequence of strings, got {items!r}")
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep:
            raise ConfigError(
                f"override {item!r} has no '='; write it as key=value, e.g. search.steps=200"
            )
        if not all(parts):
            raise ConfigError(
                f"override {item!r} has an empty key part in {key!r}; write dotted keys "
                "like section.name=value"
            )
        try:
            value = load_yaml(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {item!r}: cannot parse the value {raw!r} as YAML "
                f"({getattr(exc, 'problem', None) or exc}); "
                f"quote it to pass a string, e.g. {key}='{raw}'",
                key=key,
            ) from exc
        for part in reversed(parts):
            value = {part: value}
        result = merge(result, value)
    return result


def _read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(
            f"config file {str(file)!r} does not exist; pass the path of an existing YAML "
            "config, or no config file to use the defaults"
        )
    try:
        data = load_yaml(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {str(file)!r} is not valid YAML: {yaml_problem(exc)}; fix the file "
            "(e.g. close brackets and quotes, indent with spaces) or pass another config"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(file)!r} must hold a mapping of keys at the top level, got "
            f"{type(data).__name__} {_short(data)}; write it as 'key: value' lines"
        )
    return data


def _read_config_file(path: str | Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config with its ``base`` files (a path or a list, relative to the file) merged
    under it in order, recursively: ``base: spaces/cpu.yaml`` takes a preset's sections;
    ``base: {trials: spaces/cpu.yaml}`` puts them under ``trials`` (the pipeline's search)."""
    file = Path(path)
    if file.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, file.resolve()))
        raise ConfigError(f"config file {str(file)!r}: its 'base' files include it again "
                          f"({chain}); remove the cycle", key="base")
    data = _read_yaml_mapping(file)
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if isinstance(bases, dict):  # {section: path}: the file's keys go under that section
        pairs = [(k, v) for k, v in bases.items()]
    elif isinstance(bases, list):
        pairs = [(None, b) for b in bases]
    else:
        pairs = [(None, bases)]
    if not all(isinstance(b, str) and (k is None or isinstance(k, str)) for k, b in pairs):
        raise ConfigError(f"{file}: base: expected a path, a list of paths or a mapping of "
                          f"section: path, got {_short(bases)}; e.g. base: spaces/cpu.yaml or "
                          "base: {trials: spaces/cpu.yaml}", key="base")
    out: dict[str, Any] = {}
    for section, base in pairs:
        loaded = _read_config_file(file.parent / base, (*seen, file.resolve()))
        out = merge(out, loaded if section is None else {section: loaded})
    return merge(out, data)


def load_config(cls: type[T], path: str | Path | None, overrides: Sequence[str] = ()) -> T:
    """Resolve a config: defaults of ``cls``, deep-merged with the YAML file (and the files
    its ``base`` key names, under it), then ``overrides``."""
    data = to_dict(cls())
    if path is not None:
        data = merge(data, _read_config_file(path))
        logger.debug("loaded config file %s", path)
    if overrides:
        data = merge(data, parse_overrides(overrides))
    return from_dict(cls, data)
