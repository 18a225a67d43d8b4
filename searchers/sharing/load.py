"""A trained supernet read back from its run folder: a ``train_supernet`` run (its
``supernet.json`` names the space) or a DARTS search (its ``config.yaml``; fixed width and
depth), for the trials' ``proxy.supernet``. Loaded once per process and folder (until the
checkpoint changes), with :func:`searchers.common.checkpoints.load_checkpoint`
(``torch.load(weights_only=True)``: a damaged or crafted checkpoint is refused in one line)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from results.run_folder import RunFolder
from searchers.common.checkpoints import load_checkpoint
from searchers.common.config import ConfigError, load_config
from searchers.differentiable.elastic import ElasticSpace
from searchers.differentiable.supernet import SuperNet

__all__ = ["SharedSupernet", "load_supernet", "read_supernet_space"]

_FIX = ("give the run folder of searchers/train_supernet.py (e.g. runs/supernet/default) or of a "
        "DARTS search (e.g. runs/darts/default)")


def read_supernet_space(run_dir: str | Path, where: str = "proxy.supernet") -> ElasticSpace:
    """The space of the supernet in ``run_dir`` (no weights read): ``supernet.json`` of a
    supernet training, or a DARTS search's space at its one width and depth."""
    folder = RunFolder(Path(run_dir))
    if folder.supernet.is_file():
        return ElasticSpace.from_dict(folder.read_json(folder.supernet))
    if folder.config.is_file():
        from searchers.differentiable.config import DartsConfig

        try:
            spec = load_config(DartsConfig, folder.config).space.supernet_spec()
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"{where}: {run_dir} is no supernet run ({folder.config.name} is "
                              f"not a DARTS config: {exc}); {_FIX}") from exc
        return ElasticSpace(spec, (spec.width,), spec.num_cells)
    raise FileNotFoundError(f"{where}: {run_dir} holds neither {folder.supernet.name} nor "
                            f"{folder.config.name}; {_FIX}")


@dataclass(frozen=True)
class SharedSupernet:
    """A loaded supernet (on the CPU, eval mode) with its space and folder."""

    net: SuperNet
    space: ElasticSpace
    run_dir: Path


_LOADED: dict[Path, tuple[int, SharedSupernet]] = {}


def load_supernet(run_dir: str | Path, where: str = "proxy.supernet") -> SharedSupernet:
    """The supernet of ``run_dir`` with its checkpoint's weights; cached per process by folder
    and the checkpoint's modification time."""
    folder = RunFolder(Path(run_dir))
    ckpt = folder.checkpoint
    if not ckpt.is_file():
        raise FileNotFoundError(f"{where}: no {ckpt.name} in {run_dir}; {_FIX}, one that has "
                                "run (a killed one resumes with --resume)")
    key, stamp = folder.path.resolve(), ckpt.stat().st_mtime_ns
    hit = _LOADED.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    space = read_supernet_space(run_dir, where)
    state = load_checkpoint(ckpt, keys=())
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"{where}: {ckpt} holds no supernet weights (no 'model'); {_FIX}")
    net = SuperNet(space.spec)
    net.load_state_dict(state["model"])
    shared = SharedSupernet(net=net.eval(), space=space, run_dir=Path(run_dir))
    _LOADED[key] = (stamp, shared)
    return shared
