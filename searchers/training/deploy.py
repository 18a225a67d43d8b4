"""The end of a retraining: the trained net re-parameterised into its deployed form, both saved,
and the deployment check (the two forms on the validation images: their largest difference and
Y-PSNR each), written to ``deploy.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from results.run_folder import RunFolder
from search_space.network import super_resolve
from searchers.common.checkpoints import atomic_torch_save
from searchers.training.loop import centre_crop, validate

logger = logging.getLogger("searchers.training.retrain")

EQUIVALENT_MAX_DIFF = 1e-4
"""The largest difference (in [0, 1] units) for which the deployed form counts as the trained
one."""


def deploy(model: torch.nn.Module, val: Any, run_dir: Path, *, scale: int, side: int | None,
           device: torch.device, iterations: int) -> dict[str, Any]:
    """Save ``model`` (``model.pt``) and its deployed form (``deployed.pt`` with
    ``deployed_genotype.json``) in ``run_dir``, compare the two on ``val`` (each image
    centre-cropped to the HR side ``side``) and write the check to ``deploy.json``; returns it:
    ``max_abs_diff_0_1``, ``psnr_y_db_trained``, ``psnr_y_db_deployed``, ``equivalent``,
    ``iterations`` and ``deployed_value_range``."""
    from search_space import reparameterize

    model = model.eval()
    folder = RunFolder(run_dir)
    atomic_torch_save(model.state_dict(), folder.model)
    deployed = reparameterize(model)  # type: ignore[arg-type]
    atomic_torch_save(deployed.state_dict(), folder.deployed)
    deployed.genotype.save(folder.deployed_genotype)
    max_diff = 0.0
    with torch.inference_mode():
        for _, lr, hr in val:
            lr, _ = centre_crop(lr, hr, scale, side)
            x = lr.to(device)
            diff = super_resolve(model, x) - super_resolve(deployed, x)
            max_diff = max(max_diff, float(diff.abs().max()))
    psnr_trained = validate(model, val, scale=scale, device=device, side=side)
    psnr_deployed = validate(deployed, val, scale=scale, device=device, side=side)
    report = {"max_abs_diff_0_1": max_diff, "psnr_y_db_trained": psnr_trained,
              "psnr_y_db_deployed": psnr_deployed,
              "equivalent": max_diff <= EQUIVALENT_MAX_DIFF,
              "iterations": iterations, "deployed_value_range": deployed.data_range}
    folder.write_json(folder.deploy_check, report)
    if not report["equivalent"]:
        logger.warning("the deployed form differs from the trained one by %.2e", max_diff)
    logger.info("val Y-PSNR %.3f dB (deployed %.3f dB, max diff %.1e); results in %s",
                psnr_trained, psnr_deployed, max_diff, run_dir)
    return report
