"""The KD teacher of a retraining: any net trained with ``python searchers/retrain.py``, read
from a run folder or a checkpoint file (:func:`load_teacher`), in its deployed form, frozen,
with the SHA-256 of its weights as its identity (:func:`weights_sha256`) so that a resumed run
refuses another teacher.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from results.run_folder import RunFolder
from searchers.common.config import ConfigError

if TYPE_CHECKING:
    from search_space import Genotype


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of ``model.state_dict()``: every entry's name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


TEACHER_EXPECTED = (
    "a finished run folder of python searchers/retrain.py (deployed.pt with "
    "deployed_genotype.json, or model.pt with genotype.json) or a checkpoint file (a run's "
    "checkpoint.pt, or a model.pt/deployed.pt beside its genotype.json/deployed_genotype.json)")


@dataclass(frozen=True)
class Teacher:
    """A KD teacher: its deployed net (eval mode, frozen, on the CPU until moved) and identity.

    ``path`` is as given; ``source`` names the files it was read from; ``weights_sha256`` is
    :func:`weights_sha256` of the deployed net, which identifies it on ``--resume``.
    """

    model: torch.nn.Module
    genotype: Genotype  # the deployed one
    path: str
    source: str
    weights_sha256: str

    @property
    def identity(self) -> dict[str, Any]:
        return {"path": self.path, "resolved": str(Path(self.path).expanduser().resolve()),
                "weights_sha256": self.weights_sha256, "source": self.source,
                "genotype": self.genotype.to_json(indent=None)}


def _deployed_from_weights(weights: Path, genotype: Genotype, genotype_name: str
                           ) -> tuple[torch.nn.Module, Genotype]:
    """``genotype``'s net with ``weights`` loaded (the EMA of a checkpoint where it has one),
    re-parameterised into its deployed form, and the deployed genotype."""
    from results.evaluate.command import load_checkpoint
    from search_space import build_model, reparameterize

    model = build_model(genotype)
    load_checkpoint(model, weights, genotype_name=genotype_name)
    return reparameterize(model), genotype.deployed()


def load_teacher(spec: str) -> Teacher:
    """The KD teacher at ``spec`` (:data:`TEACHER_EXPECTED`), in its deployed form on the CPU.

    A run folder is read with :func:`results.report.runs.load_run` and
    :func:`results.report.runs.build_deployed` when it holds ``deployed.pt``; otherwise its
    ``model.pt`` is loaded into ``genotype.json``'s net and re-parameterised, as is a checkpoint
    file. Raises :class:`ConfigError` naming ``spec`` and what was expected.
    """
    from results.evaluate.command import CheckpointError, read_state_dict
    from search_space import Genotype, GenotypeError

    path = Path(spec).expanduser()
    where = f"kd.teacher (--teacher) {spec!r}"
    if not path.exists():
        raise ConfigError(f"{where} does not exist; pass {TEACHER_EXPECTED}", key="kd.teacher")
    try:
        if path.is_dir():
            folder = RunFolder(path)
            found = folder.trained_weights()
            if found is None:
                raise ConfigError(
                    f"{where} is a folder without {folder.deployed.name} + "
                    f"{folder.deployed_genotype.name} or {folder.model.name} + "
                    f"{folder.genotype.name}; pass {TEACHER_EXPECTED} (a run that has not "
                    "finished: resume it first)", key="kd.teacher")
            weights, file = found
            if weights == folder.deployed:
                from results.report.runs import build_deployed, load_run

                run = load_run(path)
                model, deployed = build_deployed(run, torch.device("cpu")), run.deployed
            else:
                model, deployed = _deployed_from_weights(weights, Genotype.load(file), str(file))
            source = str(weights)
        else:
            _, _, ckpt = read_state_dict(path)
            recorded = ckpt.get("genotype")
            if isinstance(recorded, str):
                genotype, genotype_name = Genotype.from_json(recorded), f"{path}['genotype']"
            else:
                beside = RunFolder(path.parent)
                file = (beside.deployed_genotype if path.name == beside.deployed.name
                        else beside.genotype)
                if not file.is_file():
                    raise ConfigError(
                        f"{where} holds weights that do not record their genotype, and there is "
                        f"no {file.name} beside it; pass {TEACHER_EXPECTED}", key="kd.teacher")
                genotype, genotype_name = Genotype.load(file), str(file)
            model, deployed = _deployed_from_weights(path, genotype, genotype_name)
            source = str(path)
    except ConfigError:
        raise
    except (CheckpointError, GenotypeError, ValueError) as exc:  # ReportError is a ValueError
        raise ConfigError(f"{where}: {exc}", key="kd.teacher") from exc
    model.eval().requires_grad_(False)
    return Teacher(model=model, genotype=deployed, path=spec, source=source,
                   weights_sha256=weights_sha256(model))


def teacher_words(identity: dict[str, Any] | None) -> str:
    """How an error names a run's teacher (:attr:`Teacher.identity`, None for no teacher)."""
    if identity is None:
        return "without a teacher"
    return (f"with teacher {identity['path']!r} (deployed weights sha256 "
            f"{identity['weights_sha256'][:16]}...)")
