"""NNI peer (optional): the same search space as an NNI ``ModelSpace``, searched by NNI's DARTS.

For a side-by-side comparison with ``searchers/darts.py``: the same cells, op table, data and
step budget, but NNI's DARTS strategy (no hardware term). The result is profiled with *our*
proxies (NNI's FLOPs profiler fails on PixelShuffle).

NNI 3.0 is archived, pins old packages (``filelock<3.12``) and needs PyTorch Lightning, so it is
not part of the core install. Install it in a separate virtualenv::

    python3 -m venv .venv-nni && .venv-nni/bin/pip install torch==2.13.0
    .venv-nni/bin/pip install -e ".[nni]"
    .venv-nni/bin/python -m searchers.tools.nni_peer [--config configs/darts.yaml] [key=value ...]

Every slot becomes a ``LayerChoice`` labelled with our slot name, so NNI's exported choice maps
straight back to a :class:`~search_space.genotype.Genotype`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from search_space.cells import CELLS, DEFAULT_BUILDER, SlotBuilder
from search_space.genes import Attention
from search_space.genotype import Genotype
from search_space.network import SRSkeleton
from searchers.differentiable.supernet import SupernetSpec

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "NNI is an optional peer, not a core dependency: install it in a separate virtualenv with "
    "`pip install torch==2.13.0 && pip install -e \".[nni]\"` (NNI 3.0 pins filelock<3.12 and "
    "needs pytorch-lightning)."
)


def require_nni() -> Any:
    try:
        import nni
        from nni.nas.nn.pytorch import LayerChoice  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"searchers.tools.nni_peer needs NNI ({exc}). {INSTALL_HINT}") from exc
    return nni


class NNIBuilder(SlotBuilder):
    """Builds an NNI ``LayerChoice`` over the candidates of every searchable slot."""

    def __init__(self, spec: SupernetSpec) -> None:
        require_nni()
        self.spec = spec

    @staticmethod
    def _choice(label: str, modules: dict[str, nn.Module]) -> nn.Module:
        from nni.nas.nn.pytorch import LayerChoice

        if len(modules) == 1:
            return next(iter(modules.values()))
        return LayerChoice(modules, label=label)

    def conv(self, slot: str, op: str, c_in: int, c_out: int, bias: bool = True) -> nn.Module:
        return self._choice(slot, {c: DEFAULT_BUILDER.conv(slot, c, c_in, c_out, bias)
                                   for c in self.spec.conv_candidates})

    def attention(self, slot: str, spec: Attention, channels: int, act: str) -> nn.Module:
        return self._choice(slot, {c: DEFAULT_BUILDER.attention(slot, Attention(c), channels, act)
                                   for c in self.spec.attention_candidates})

    def act(self, slot: str, name: str, channels: int) -> nn.Module:
        return self._choice(slot, {c: DEFAULT_BUILDER.act(slot, c, channels)
                                   for c in self.spec.act_candidates})

    def stateless_act(self, slot: str, name: str, channels: int) -> nn.Module:
        return self._choice(slot, {c: DEFAULT_BUILDER.stateless_act(slot, c, channels)
                                   for c in self.spec.act_candidates})


def build_model_space(spec: SupernetSpec) -> nn.Module:
    """An NNI ``ModelSpace`` with a ``LayerChoice`` per slot, labelled like our slots."""
    require_nni()
    from nni.nas.nn.pytorch import LayerChoice, ModelSpace

    class SRModelSpace(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            builder = NNIBuilder(spec)
            cells: list[nn.Module] = []
            for i in range(spec.num_cells):
                per_type = {t: CELLS[t](spec.template_gene(t), spec.width, builder,
                                        spec.slot_prefix(i, t)) for t in spec.cell_types}
                cells.append(next(iter(per_type.values())) if len(per_type) == 1
                             else LayerChoice(per_type, label=f"cells.{i}.type"))
            self.net = SRSkeleton(spec.scale, spec.width, cells, spec.fusion, "lrelu0.05")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    return SRModelSpace()


def choice_to_genotype(spec: SupernetSpec, choice: dict[str, Any]) -> Genotype:
    """NNI's exported ``{label: choice}`` as our genotype."""
    return spec.genotype_from_choice({str(k): str(v) for k, v in choice.items()})


def _patch_tensors(data: Any, n: int, patch: int, rng: np.random.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    lrs, hrs = [], []
    for start in range(0, n, 64):
        lr, hr = data.random_patches(min(64, n - start), patch, rng)
        lrs.append(lr)
        hrs.append(hr)
    return torch.cat(lrs), torch.cat(hrs)


def run_nni_darts(cfg: Any, out_dir: Path) -> Genotype:
    """NNI's DARTS on the same space, data and step budget as the DARTS config ``cfg``."""
    require_nni()
    from nni.nas.evaluator.pytorch import DataLoader, Regression
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import DARTS
    from torch.utils.data import TensorDataset

    from proxies.data.specs import dataset_from_spec
    from results.run_folder import RunFolder
    from search_space.patch import training_patch_size
    from searchers.differentiable.config import DEFAULT_PATCH

    d, sc, sp = cfg.data, cfg.search, cfg.space
    spec = sp.supernet_spec()
    if spec.elastic:
        raise ValueError(f"space.widths: got {sp.widths}; NNI's model space here has one width "
                         f"(space.width={sp.width}): run the NNI peer with space.widths=[]")
    torch.manual_seed(cfg.run.seed)
    rng = np.random.default_rng(cfg.run.seed)
    patch = training_patch_size(d.patch_size, sp.attention_candidates, sp.scale,
                                default=DEFAULT_PATCH, where="data.patch_size")
    train = dataset_from_spec(d.train, sp.scale, patch_size=patch)
    val = dataset_from_spec(d.val, sp.scale, patch_size=patch)
    n = sc.steps * d.batch_size
    train_ds = TensorDataset(*_patch_tensors(train, n, patch, rng))
    val_ds = TensorDataset(*_patch_tensors(val, n, patch, rng))
    evaluator = Regression(
        criterion=nn.L1Loss, learning_rate=sc.lr, weight_decay=0.0,
        train_dataloaders=DataLoader(train_ds, batch_size=d.batch_size, shuffle=True),
        val_dataloaders=DataLoader(val_ds, batch_size=d.batch_size),
        max_epochs=1, accelerator="cpu" if cfg.run.device in ("cpu", "auto")
        and not torch.cuda.is_available() else "auto",
        # Lightning's logs and checkpoints go inside the run folder, never into the cwd.
        default_root_dir=str(out_dir / "lightning"),
    )
    space = build_model_space(spec)
    exp = NasExperiment(space, evaluator, DARTS(arc_learning_rate=sc.arch_lr))
    exp.run()
    choice = exp.export_top_models(formatter="dict", top_k=1)[0]
    genotype = choice_to_genotype(spec, choice)
    out_dir.mkdir(parents=True, exist_ok=True)
    genotype.save(RunFolder(out_dir).genotype)
    (out_dir / "nni_choice.json").write_text(json.dumps(choice, indent=2, default=str))
    return genotype


def main(argv: list[str] | None = None) -> int:
    from searchers.common.config import load_config
    from searchers.differentiable.config import DartsConfig

    p = argparse.ArgumentParser(prog="python -m searchers.tools.nni_peer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config")
    p.add_argument("--compare", action="append", default=[], metavar="GENOTYPE_JSON",
                   help="also profile these genotypes (e.g. runs/darts/default/genotype.json)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        require_nni()
    except ImportError as exc:
        logger.error("%s", exc)
        return 2
    cfg = load_config(DartsConfig, args.config, args.overrides)
    out_dir = Path(cfg.run.dir).parent / "nni" / cfg.run.folder().name
    genotype = run_nni_darts(cfg, out_dir)

    from proxies.measure.profile_rows import profile_genotypes
    from proxies.profile.table import format_table, ratio_note
    from search_space.zoo import AIM_NET, REFERENCE_NET, ZOO, at_scale

    pc = cfg.profile
    settings = pc.settings(cfg.run.device, cfg.hardware.backend)
    nets = [("nni darts", genotype)]
    nets += [(Path(c).parent.name + " (ours)", Genotype.load(c)) for c in args.compare]
    nets += [(n, at_scale(ZOO[n], genotype.scale)) for n in pc.yardstick]
    rows = profile_genotypes(nets, settings, at_scale(ZOO[REFERENCE_NET], genotype.scale),
                             at_scale(ZOO[AIM_NET], genotype.scale))
    table = format_table(rows, markdown=True) + f"\n\n{ratio_note(REFERENCE_NET)}."
    (out_dir / "profile.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
