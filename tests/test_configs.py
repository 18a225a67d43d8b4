"""Every shipped config loads with the loader of its command and holds what its comments say.

``configs/*.yaml`` load as their command loads them (:func:`searchers.common.config.load_config`
with the command's config class): DARTS, the Optuna and Ray Tune trials, retraining, the
pipeline and the proxy-rank benchmark; the space presets ``configs/spaces/*.yaml`` through a
config that takes them as ``base:``; the genotypes ``configs/**/*.json`` through
:meth:`Genotype.load` and :func:`build_model`. A renamed or unknown key (both refused by the
loaders), a broken file or a changed value fails here, and so does a shipped file no check
below knows.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from search_space import Genotype, build_model
from search_space.zoo import YARDSTICK, ZOO
from searchers.common.config import ConfigError, load_config
from searchers.differentiable.config import DartsConfig
from searchers.sharing.config import SupernetConfig
from searchers.stages.pipeline import PipelineConfig, equal_budgets
from searchers.training.config import RetrainConfig
from searchers.trials.config import OptunaConfig
from searchers.trials.tune import RayConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
T91_TRAIN, T91_HOLDOUT = "../shared/datasets/T91/HR::train", "../shared/datasets/T91/HR::holdout"
CPU_WIDTHS = [16, 24, 28, 32, 40, 46, 50, 64]


def _darts(path: Path, tmp_path: Path) -> None:
    cfg = load_config(DartsConfig, path)
    assert cfg == DartsConfig()  # the file is the command's defaults, written out
    assert (cfg.space.scale, cfg.space.width, cfg.space.num_cells) == (4, 24, 4)
    assert len(cfg.space.conv_candidates) == 12 and "none" in cfg.space.attention_candidates
    assert (cfg.search.steps, cfg.search.memory_mode, cfg.run.name) == (300, "full", "default")
    assert cfg.profile.yardstick == list(YARDSTICK)
    assert cfg.space.supernet_spec().width == 24


def _darts_t91(path: Path, tmp_path: Path) -> None:
    cfg = load_config(DartsConfig, path)
    # weights on T91's training side, the architecture selected on its hold-out
    assert (cfg.data.train, cfg.data.val) == (T91_TRAIN, T91_HOLDOUT)
    assert (cfg.data.patch_size, cfg.data.batch_size) == (108, 6)
    assert (cfg.space.width, cfg.search.steps, cfg.search.warmup_steps) == (32, 2000, 300)
    assert (cfg.run.name, cfg.run.checkpoint_every) == ("t91_holdout", 100)
    assert cfg.space.conv_candidates == DartsConfig().space.conv_candidates  # not overridden


def _quickstart(path: Path, tmp_path: Path) -> None:
    cfg = load_config(DartsConfig, path)
    darts = load_config(DartsConfig, path.with_name("darts.yaml"))  # its base
    assert (cfg.search.memory_mode, cfg.search.sample_k, cfg.run.name) == (
        "sample", 2, "quickstart")
    assert (cfg.data, cfg.hardware, cfg.loss, cfg.search.steps) == (
        darts.data, darts.hardware, darts.loss, darts.search.steps)
    # the space: darts.yaml's with an elastic width (16, 24, 32 channels)
    assert cfg.space == replace(darts.space, width=32, widths=[16, 24, 32])


def _optuna(path: Path, tmp_path: Path) -> None:
    cfg = load_config(OptunaConfig, path)
    assert cfg == OptunaConfig()  # the command's defaults, written out
    assert (cfg.study.sampler, cfg.study.n_trials, cfg.study.population_size) == ("nsga2", 24, 8)
    assert cfg.study.zoo == list(YARDSTICK) and cfg.space.widths == [16, 24, 32]
    assert (cfg.proxy.steps, cfg.measure.lr_size, cfg.run.workers) == (100, 64, 1)
    ray = load_config(RayConfig, path)  # searchers/ray_tune.py reads the same keys
    assert (ray.space, ray.proxy, ray.study) == (cfg.space, cfg.proxy, cfg.study)


def _optuna_t91(path: Path, tmp_path: Path) -> None:
    cfg = load_config(OptunaConfig, path)
    assert (cfg.proxy.train, cfg.proxy.val) == (T91_TRAIN, T91_HOLDOUT)
    assert (cfg.proxy.steps, cfg.proxy.patch_size, cfg.proxy.batch_size) == (200, 108, 3)
    assert cfg.proxy.val_max_side == 256
    assert (cfg.study.name, cfg.study.n_trials, cfg.run.name) == ("t91_holdout", 40,
                                                                  "t91_holdout")
    assert load_config(RayConfig, path).proxy == cfg.proxy


def _retrain(path: Path, tmp_path: Path) -> None:
    cfg = load_config(RetrainConfig, path)
    assert cfg == RetrainConfig()  # the command's defaults, written out
    assert (cfg.data.batch_size, cfg.data.patch_size, cfg.data.scale) == (16, None, None)
    assert (cfg.optim.iterations, cfg.optim.lr, cfg.optim.loss) == (1000, 5e-4, "l1")
    assert (cfg.run.dir, cfg.run.val_every) == ("runs/retrain", 200)


def _retrain_t91(path: Path, tmp_path: Path) -> None:
    cfg = load_config(RetrainConfig, path)
    assert (cfg.data.train, cfg.data.val) == (T91_TRAIN, T91_HOLDOUT)
    assert (cfg.data.patch_size, cfg.data.batch_size, cfg.data.val_max_side) == (108, 6, None)
    assert (cfg.optim.iterations, cfg.optim.lr, cfg.optim.warmup_iterations) == (1000, 5e-4, 50)
    assert (cfg.run.dir, cfg.run.val_every, cfg.run.checkpoint_every) == (
        "runs/retrain_t91", 250, 250)


def _matched_t91(path: Path, tmp_path: Path) -> None:
    """The matched-latency check's recipe: retrain_t91's data and batch, 1200 iterations."""
    cfg = load_config(RetrainConfig, path)
    base = load_config(RetrainConfig, path.parent / "retrain_t91.yaml")
    assert cfg.data == base.data and cfg.optim.lr == base.optim.lr
    assert (cfg.optim.iterations, cfg.optim.warmup_iterations) == (1200, 60)
    assert (cfg.run.dir, cfg.run.val_every, cfg.run.checkpoint_every) == (
        "runs/matched_t91", 1200, 400)


def _pipeline(path: Path, tmp_path: Path) -> None:
    cfg = load_config(PipelineConfig, path)
    p = cfg.pipeline
    assert (p.name, p.methods, p.patches, p.seeds) == ("default", ["random", "nsga2", "darts"],
                                                       1200, [0])
    assert (p.zoo, p.sets, p.report_size) == (["rlfn_ntire", "span_ntire2024"], ["Set5"], 64)
    b = cfg.trials.budget
    assert (b.reference, b.latency_x, b.memory_x) == ("span_ntire2024", 1.5, 1.0)
    assert (cfg.darts.space.width, cfg.darts.space.num_cells) == (16, 3)
    assert (cfg.darts.loss.mode, cfg.darts.loss.latency_x) == ("budget", 1.5)
    assert (cfg.retrain.optim.iterations, cfg.darts.profile.enabled) == (200, False)
    # its comment: 12 trials of 50 steps x batch 2; DARTS: 300 steps x (2 + 2)
    budgets = equal_budgets(cfg)
    assert (budgets.trials.study.n_trials, budgets.darts.search.steps) == (12, 300)


def _pipeline_t91(path: Path, tmp_path: Path) -> None:
    cfg = load_config(PipelineConfig, path)
    p = cfg.pipeline
    assert (p.name, p.patches, p.seeds, p.sets) == ("t91", 7128, [0, 1, 2],
                                                    ["Set5", "Set14", "B100"])
    assert cfg.trials.space.widths == CPU_WIDTHS  # base: {trials: spaces/cpu.yaml}
    t = cfg.trials
    assert (t.proxy.train, t.proxy.val, t.proxy.steps, t.proxy.seeds) == (
        T91_TRAIN, T91_HOLDOUT, 33, 3)
    assert t.proxy.finetune_steps == 20  # the oneshot method's, chosen by the proxy table
    assert (t.budget.latency_x, t.measure.device, t.study.zoo) == (0.8, "cpu", list(YARDSTICK))
    assert (cfg.darts.data.batch_size, cfg.retrain.optim.iterations) == (6, 1500)
    # its comment: 24 trials x 3 seeds x 33 steps x batch 3; DARTS: 594 steps x (6 + 6)
    budgets = equal_budgets(cfg)
    assert (budgets.trials.study.n_trials, budgets.darts.search.steps) == (24, 594)


def _pipeline_t91_cpu(path: Path, tmp_path: Path) -> None:
    cfg = load_config(PipelineConfig, path)
    p = cfg.pipeline
    assert (p.name, p.patches, p.cpu_seconds, p.search_seeds, p.seeds) == (
        "t91_cpu", None, 150, [0, 1, 2], [0])
    assert p.methods == ["random", "nsga2", "tpe", "gp", "darts", "oneshot", "params"]
    assert len(p.zoo) >= 5  # fewer zoo nets of the converged table cannot vouch for the recipe
    assert (cfg.matched.n, cfg.matched.tolerance, cfg.matched.search_seeds) == (8, 0.1, [0])
    assert cfg.trials.space.widths == CPU_WIDTHS and cfg.trials.proxy.train == T91_TRAIN
    assert (cfg.supernet.data.train, cfg.supernet.train.steps) == (T91_TRAIN, 150)
    assert cfg.trials.proxy.train_over_budget is False  # the budget goes to feasible nets
    assert (cfg.retrain.optim.iterations, cfg.darts.search.warmup_steps) == (600, 20)
    budgets = equal_budgets(cfg)  # the same CPU-seconds for every searcher
    assert budgets.trials.study.cpu_seconds == budgets.darts.search.cpu_seconds == 150


def _proxy_rank_t91(path: Path, tmp_path: Path) -> None:
    # python -m searchers.tools.benchmark proxy-rank --config ... loads the trials' config
    cfg = load_config(OptunaConfig, path)
    assert cfg.space.widths == CPU_WIDTHS and cfg.space.cells_max == 8  # base: spaces/cpu.yaml
    assert (cfg.proxy.train, cfg.proxy.val, cfg.proxy.steps) == (T91_TRAIN, T91_HOLDOUT, 100)
    assert (cfg.proxy.patch_size, cfg.measure.device, cfg.measure.threads) == (108, "cpu", 1)


def _supernet(path: Path, tmp_path: Path) -> None:
    # python searchers/train_supernet.py --config configs/supernet.yaml: 1-3 min on 2 cores
    cfg = load_config(SupernetConfig, path)
    assert (cfg.data.train, cfg.data.val, cfg.run.dir) == ("default:train", "default:val",
                                                           "runs/supernet")
    s = cfg.space
    assert (s.width, s.num_cells, s.widths, s.cells_min) == (24, 3, [12, 16, 24], 1)
    assert (cfg.train.rule, cfg.train.steps, cfg.run.device) == ("sandwich", 120, "cpu")
    assert s.elastic().spec.width == 24 and cfg.train.distill == 0.0


def _supernet_t91(path: Path, tmp_path: Path) -> None:
    # the default supernet's space trained on T91 as the T91 trials train (the fidelity table)
    cfg = load_config(SupernetConfig, path)
    base = load_config(SupernetConfig, path.with_name("supernet.yaml"))
    assert cfg.space == base.space and cfg.train.rule == base.train.rule
    assert cfg.data.train.endswith("T91/HR::train") and cfg.data.val.endswith("T91/HR::holdout")
    t91 = load_config(OptunaConfig, path.with_name("proxy_rank_t91.yaml"))
    assert (cfg.data.patch_size, cfg.data.batch_size) == (t91.proxy.patch_size,
                                                          t91.proxy.batch_size)
    assert (cfg.train.steps, cfg.run.name) == (1000, "t91")


def _supernet_wide(path: Path, tmp_path: Path) -> None:
    # a supernet whose subnets cross the budgets 0.5x-1.2x SPAN (BENCHMARKS.md, many budgets)
    cfg = load_config(SupernetConfig, path)
    s = cfg.space
    assert (s.width, s.num_cells, s.widths, s.cells_min) == (48, 6, [16, 24, 32, 48], 1)
    assert cfg.data.train.endswith("T91/HR::train") and cfg.data.val.endswith("T91/HR::holdout")
    assert (cfg.data.patch_size, cfg.data.batch_size) == (108, 3)  # as the T91 trials
    assert (cfg.train.steps, cfg.run.name) == (1200, "wide")


def _optuna_oneshot_wide(path: Path, tmp_path: Path) -> None:
    # trials over the wide supernet: its space and folder; the rest as optuna_oneshot.yaml
    cfg = load_config(OptunaConfig, path)
    sup = load_config(SupernetConfig, path.with_name("supernet_wide.yaml"))
    base = load_config(OptunaConfig, path.with_name("optuna_oneshot.yaml"))
    assert (cfg.proxy.kind, cfg.proxy.supernet) == ("supernet", f"runs/supernet/{sup.run.name}")
    assert (cfg.proxy.train, cfg.proxy.val) == (sup.data.train, sup.data.val)
    assert (cfg.proxy.patch_size, cfg.proxy.batch_size) == (108, 3)
    s, e = cfg.space, sup.space
    assert (s.widths, s.cells_min, s.cells_max) == (e.widths, e.cells_min, e.num_cells)
    assert (s.cell_types, s.conv_candidates, s.attention_candidates, s.act_candidates) == (
        e.cell_types, e.conv_candidates, e.attention_candidates, e.act_candidates)
    assert (cfg.budget, cfg.proxy.finetune_steps) == (base.budget, base.proxy.finetune_steps)


def _optuna_oneshot(path: Path, tmp_path: Path) -> None:
    # trials over configs/supernet.yaml's supernet: its space, its folder, no zoo trials
    cfg = load_config(OptunaConfig, path)
    sup = load_config(SupernetConfig, path.with_name("supernet.yaml"))
    assert (cfg.proxy.kind, cfg.proxy.supernet) == ("supernet", "runs/supernet/default")
    assert cfg.proxy.finetune_steps == 20  # chosen by the 50-net proxy table (BENCHMARKS.md)
    s, e = cfg.space, sup.space
    assert (s.widths, s.cells_min, s.cells_max) == (e.widths, e.cells_min, e.num_cells)
    assert (s.cell_types, s.conv_candidates, s.attention_candidates, s.act_candidates,
            s.fusion) == (e.cell_types, e.conv_candidates, e.attention_candidates,
                          e.act_candidates, [e.fusion])
    assert not cfg.study.enqueue_zoo and cfg.budget.latency_x == 0.8


def _based_on(space: Path, tmp_path: Path) -> tuple[OptunaConfig, PipelineConfig]:
    """The space preset as the base of a trials config and under a pipeline's ``trials``."""
    trials, pipeline = tmp_path / "trials.yaml", tmp_path / "pipeline.yaml"
    trials.write_text(f"base: {space}\nstudy: {{n_trials: 3}}\n")
    pipeline.write_text(f"base: {{trials: {space}}}\n")
    cfg = load_config(OptunaConfig, trials)
    assert cfg.study.n_trials == 3 and load_config(RayConfig, trials).space == cfg.space
    return cfg, load_config(PipelineConfig, pipeline)


def _space_cpu(path: Path, tmp_path: Path) -> None:
    cfg, pipeline = _based_on(path, tmp_path)
    s = cfg.space
    assert (s.widths, s.cells_min, s.cells_max) == (CPU_WIDTHS, 2, 8)
    assert list(s.cell_types) == ["rfdb", "rlfb", "erb", "imdb", "spab"]
    assert "conv3xc" in s.conv_candidates and "mab" not in s.cell_types
    assert pipeline.trials.space == s


def _space_full(path: Path, tmp_path: Path) -> None:
    cfg, pipeline = _based_on(path, tmp_path)
    s = cfg.space
    assert (len(s.widths), s.cells_min, s.cells_max) == (13, 1, 32)
    assert list(s.cell_types) == ["rfdb", "rlfb", "erb", "imdb", "spab", "mab"]
    assert {"esa_mab", "cea", "esa_mab+cea"} <= set(s.attention_candidates)
    assert pipeline.trials.space == s


def _genotype(path: Path, params: int) -> tuple[Genotype, torch.nn.Module]:
    g = Genotype.load(path)
    model = build_model(g).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8 * g.scale, 8 * g.scale)
    return g, model


def _dsclora(path: Path, tmp_path: Path) -> None:
    # SPAN's Conv3XC training form at 26 channels, deploying to exactly dsclora_ntire2025
    g, _ = _genotype(path, 547_944)
    assert (g.scale, g.width, g.num_cells) == (4, 26, 6)
    assert all(c.type == "spab" and set(c.ops) == {"conv3xc"} for c in g.cells)
    assert g.deployed() == ZOO["dsclora_ntire2025"]


def _memsr_teacher(path: Path, tmp_path: Path) -> None:
    g, _ = _genotype(path, 232_963)
    assert (g.width, g.num_cells, g.tail) == (32, 8, "edsr")
    assert all(c.type == "erb" and c.block_residual and c.act == "relu" for c in g.cells)


def _memsr_student(path: Path, tmp_path: Path) -> None:
    from search_space.plain import plain_genotype

    g, _ = _genotype(path, 131_523)
    assert g == plain_genotype(8, 24)  # plain: no residual inside, so MemSR can initialise it


CHECKS: dict[str, Callable[[Path, Path], None]] = {
    "darts.yaml": _darts,
    "darts_t91.yaml": _darts_t91,
    "quickstart.yaml": _quickstart,
    "optuna.yaml": _optuna,
    "optuna_t91.yaml": _optuna_t91,
    "optuna_oneshot.yaml": _optuna_oneshot,
    "optuna_oneshot_wide.yaml": _optuna_oneshot_wide,
    "retrain.yaml": _retrain,
    "retrain_t91.yaml": _retrain_t91,
    "matched_t91.yaml": _matched_t91,
    "pipeline.yaml": _pipeline,
    "pipeline_t91.yaml": _pipeline_t91,
    "pipeline_t91_cpu.yaml": _pipeline_t91_cpu,
    "proxy_rank_t91.yaml": _proxy_rank_t91,
    "supernet.yaml": _supernet,
    "supernet_t91.yaml": _supernet_t91,
    "supernet_wide.yaml": _supernet_wide,
    "spaces/cpu.yaml": _space_cpu,
    "spaces/full.yaml": _space_full,
    "dsclora_ntire2025_train.json": _dsclora,
    "memsr/edsr_teacher.json": _memsr_teacher,
    "memsr/plain_student.json": _memsr_student,
}


def _shipped(root: Path) -> list[str]:
    files = [*root.glob("*.yaml"), *root.glob("spaces/*.yaml"), *root.rglob("*.json")]
    return sorted(p.relative_to(root).as_posix() for p in files)


def test_every_shipped_config_is_checked():
    assert _shipped(CONFIGS) == sorted(CHECKS), "add a check for each new file in configs/"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_shipped_config_loads(name, tmp_path):
    CHECKS[name](CONFIGS / name, tmp_path)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_an_unknown_key_in_a_shipped_config_is_refused(name, tmp_path):
    """The loaders above are strict: a copy of the configs where ``name`` gains one unknown
    key fails its check with an error naming the key."""
    from search_space import GenotypeError

    root = tmp_path / "configs"
    shutil.copytree(CONFIGS, root)
    path = root / name
    if path.suffix == ".json":
        path.write_text(path.read_text().replace("{", '{"srnas_unknown_key": 1, ', 1))
    else:
        path.write_text(path.read_text() + "\nsrnas_unknown_key: 1\n")
    with pytest.raises((ConfigError, GenotypeError), match="srnas_unknown_key"):
        CHECKS[name](path, tmp_path)
