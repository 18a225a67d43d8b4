"""Typed experiment configs: dataclasses loaded from YAML, overridden from the command line.

One experiment = one nested ``@dataclass`` (sections are dataclass-typed fields, every field has a
default). A run resolves its config with the precedence *defaults < YAML file < overrides*::

    parser.add_argument("--config", default=None)
    parser.add_argument("overrides", nargs="*", help="dotted key=value, e.g. search.steps=200")
    args = parser.parse_args()
    cfg = load_config(DartsConfig, args.config, args.overrides)
    save_run_config(run_dir, cfg, sys.argv)  # run_dir/config.yaml + run_dir/command.txt

Values are checked against the field annotations (resolved with :func:`typing.get_type_hints`) and
coerced only where unambiguous: ``int`` -> ``float`` for float fields, list -> tuple for tuple
fields, ``str`` -> :class:`~pathlib.Path` for ``Path`` fields. ``bool`` fields take only
``true``/``false``; ``Literal`` fields only their choices; ``X | None`` also takes ``null``.
Every error is a :class:`ConfigError` (a :class:`ValueError`) naming the dotted key, e.g.
``search.arch_lr``. Override values are YAML scalars or flow collections (``seed=3``,
``search.candidates=[conv3x3,sep_conv3x3]``, ``data.val=null``). Unlike PyYAML's defaults, dates
such as ``2024-01-01`` stay strings and ``1e-3`` is a float (in files and overrides alike).

The run-folder helpers write atomically (temporary file in the same folder, ``fsync``,
:func:`os.replace`), so a run killed mid-write never leaves a truncated config or checkpoint;
The metric log (:class:`searchers.common.logs.CsvLogger`) lives in its own module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import logging
import math
import os
import re
import secrets
import shlex
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin

import torch
import yaml

from search_space.files import atomic_write, atomic_write_text, fsync_dir

if TYPE_CHECKING:
    from proxies.measure.settings import MeasureSettings

__all__ = [
    "ConfigError",
    "atomic_torch_save",
    "atomic_write_text",
    "dump_yaml",
    "from_dict",
    "load_config",
    "merge",
    "parse_overrides",
    "save_run_config",
    "to_dict",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_NONE_TYPE = type(None)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class ConfigError(ValueError):
    """Invalid configuration; ``key`` is the dotted path of the offending entry ("" if none)."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


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


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line account of a YAML parse error: what is wrong and at which line and column."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


@dataclasses.dataclass
class RunSection:
    """The one run-section type: where a command's run goes, the folder ``dir``/``name``. Each
    command's section extends it with what only that command needs: the DARTS search's
    (:class:`searchers.differentiable.config.DartsRun`), retraining's
    (:class:`searchers.training.retrain.RetrainRun`), the trial searches' on Optuna and Ray Tune
    (:class:`searchers.trials.study.TrialsRun`) and the pipeline's
    (:class:`searchers.stages.pipeline.PipelineSection`)."""

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
    backend: str = "torch"  # torch | onnxruntime (proxies.measure.runtime.BACKENDS)

    def __post_init__(self) -> None:
        from proxies.measure.runtime import check_backend

        check_backend(self.backend, "backend")

    def settings(self) -> MeasureSettings:
        """The measurement settings: one round of ``runs`` runs per net."""
        from proxies.measure.settings import MeasureSettings

        return MeasureSettings(device=self.device, lr_size=(self.lr_size, self.lr_size),
                               rounds=1, runs_per_round=self.runs, warmup=self.warmup,
                               threads=self.threads, backend=self.backend)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # safe: _ConfigLoader derives from SafeLoader


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
            value = _load_yaml(raw)
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
        data = _load_yaml(file.read_text(encoding="utf-8"))
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


# --------------------------------------------------------------------------- run folder


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` atomically: a kill mid-write never leaves a truncated file."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def previous_checkpoint(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint before the newest one:
    ``checkpoint.pt`` -> ``checkpoint.prev.pt``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def save_checkpoint(obj: Any, path: str | Path) -> Path:
    """Save a training checkpoint atomically (:func:`search_space.files.atomic_write`), keeping
    the one it replaces as :func:`previous_checkpoint`. The new file is written and fsynced
    first, the old one is then hard-linked to the ``.prev`` name, and only then does the new one
    take the name: at every instant ``path`` is a whole checkpoint (the old or the new), so a
    kill, even mid-write, loses at most the steps since the last one. Temporary files a killed
    writer left behind (one process writes a run's checkpoint) are removed by the next save."""
    target = Path(path)

    def keep_previous(target: Path) -> None:
        if target.exists():
            link = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.prev")
            os.link(target, link)
            try:
                os.replace(link, previous_checkpoint(target))
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
                raise

    atomic_write(target, lambda fh: torch.save(obj, fh), before_replace=keep_previous)
    for stale in target.parent.glob(f".{target.name}.*"):  # left by a writer killed mid-write
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    fsync_dir(target.parent)
    return target


def load_checkpoint(path: str | Path, map_location: Any = "cpu",
                    keys: Sequence[str] = ("step",)) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing a damaged one (empty,
    truncated, not a checkpoint, or missing ``keys``) with a :class:`ConfigError` that names
    the file and the last good one to go back to; it never returns half a checkpoint."""
    target = Path(path)
    prev = previous_checkpoint(target)
    size = target.stat().st_size
    try:
        if size == 0:
            raise ValueError("the file is empty (0 bytes)")
        ckpt = torch.load(target, map_location=map_location, weights_only=False)
        if not isinstance(ckpt, dict) or any(k not in ckpt for k in keys):
            found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
            raise ValueError(f"it holds {found}, not a checkpoint with {list(keys)}")
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        if prev.is_file() and prev.stat().st_size > 0:
            fix = (f"the last good one is {prev} (the checkpoint before it): "
                   f"`mv {prev} {target}` and --resume again continues from there")
        else:
            fix = "no earlier checkpoint is kept; start a new run (another run.name=...)"
        raise ConfigError(f"checkpoint {target} is damaged ({size} bytes; {exc}); {fix}"
                          ) from exc
    return ckpt


def save_run_config(run_dir: str | Path, cfg: Any, argv: Sequence[str]) -> Path:
    """Write ``run_dir/config.yaml`` (resolved config) and ``run_dir/command.txt``.

    ``command.txt`` holds ``shlex.join([sys.executable, *argv])``; pass ``sys.argv``. Both files
    are written atomically; ``run_dir`` is created if needed and returned.
    """
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.yaml", dump_yaml(cfg))
    atomic_write_text(folder / "command.txt", shlex.join([sys.executable, *argv]) + "\n")
    logger.info("wrote %s and %s", folder / "config.yaml", folder / "command.txt")
    return folder


def record_run(run_dir: str | Path, cfg: Any, argv: Sequence[str], *, resume: bool) -> Path:
    """Write the run folder's ``config.yaml`` and ``command.txt``.

    A new run gets both (:func:`save_run_config`). A resumed run rewrites ``config.yaml`` and
    keeps the original command, appending the command that resumed it.
    """
    folder = Path(run_dir)
    if not resume:
        return save_run_config(folder, cfg, argv)
    command = folder / "command.txt"
    previous = command.read_text(encoding="utf-8") if command.exists() else ""
    atomic_write_text(folder / "config.yaml", dump_yaml(cfg))
    atomic_write_text(command, f"{previous}# resumed with:\n"
                               f"{shlex.join([sys.executable, *argv])}\n")
    return folder
