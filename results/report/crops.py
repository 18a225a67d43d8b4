"""The side-by-side crops of a report: bicubic, every net and HR, each with its crop PSNR.

:func:`pick_crop` finds the window with the most detail, :func:`make_crops` runs the nets on
it and ``_crops_html`` writes the crops (``crops/<net>.png``) and their block of the page.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from proxies.quality import psnr, tensor_to_uint8
from results.evaluate.inference import sr_forward
from results.report.runs import ReportError
from search_space import Genotype

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "make_crops",
    "pick_crop",
]

CROPS_DIR = "crops"


def pick_crop(hr: np.ndarray, size: int) -> tuple[int, int, float]:
    """``(top, left, score)`` of the ``size x size`` window of ``hr`` (HxWx3 in [0, 1]) with the
    most detail (mean gradient magnitude of the grey image), on a grid of stride ``size // 4``.

    Raises:
        ReportError: the image is smaller than the window.
    """
    h, w = hr.shape[:2]
    if h < size or w < size:
        raise ReportError(f"crop size {size} does not fit an image of {h}x{w}; pass a smaller "
                          "--crop-size")
    grey = hr.mean(axis=2)
    grad = np.zeros_like(grey)
    grad[:, 1:] += np.abs(np.diff(grey, axis=1))
    grad[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(grad.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    stride = max(1, size // 4)
    best = (0, 0, -1.0)
    for top in range(0, h - size + 1, stride):
        for left in range(0, w - size + 1, stride):
            total = (integral[top + size, left + size] - integral[top, left + size]
                     - integral[top + size, left] + integral[top, left])
            score = float(total) / (size * size)
            if score > best[2]:
                best = (top, left, score)
    return best


def _png_data_uri(img: np.ndarray) -> tuple[str, bytes]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), data


def make_crops(
    models: Mapping[str, nn.Module],
    deployed: Mapping[str, Genotype],
    folder: Path,
    *,
    image: str | None,
    size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Crops of one image of ``folder``: bicubic, each net, HR, each with its Y-PSNR.

    ``image`` picks the file stem; None picks the image and window with the most detail
    (:func:`pick_crop`). Returns ``{"image", "box": [top, left, size], "panels": [(label,
    uint8 HxWx3, psnr or None)]}``.
    """
    from proxies.data.imageset import SRImageSet

    scale = next(iter(deployed.values())).scale
    data = SRImageSet.from_folder(folder, scale)
    items = list(data)
    if image is not None:
        chosen = [item for item in items if item[0] == image]
        if not chosen:
            raise ReportError(f"--crop-image {image!r} is not in {str(folder)!r}; its images: "
                              f"{[item[0] for item in items]}")
        items = chosen
    size = size - size % scale
    best: tuple[float, str, int, int] | None = None
    for name, _lr, hr in items:
        arr = hr[0].permute(1, 2, 0).numpy()
        top, left, score = pick_crop(arr, size)
        if best is None or score > best[0]:
            best = (score, name, top - top % scale, left - left % scale)
    assert best is not None
    _, name, top, left = best
    _, lr, hr = next(item for item in items if item[0] == name)

    def cut(t: torch.Tensor) -> np.ndarray:
        return tensor_to_uint8(t[..., top:top + size, left:left + size], 1.0)

    hr8 = cut(hr)
    panels: list[tuple[str, np.ndarray, float | None]] = []
    bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    panels.append(("bicubic", cut(bicubic.clamp(0, 1)), None))
    for label, model in models.items():
        sr = sr_forward(model, lr, data_range=deployed[label].data_range, device=device)
        panels.append((label, cut(sr.cpu()), None))
    panels = [(lab, img, psnr(img, hr8, crop_border=0, y_channel=True)) for lab, img, _ in panels]
    panels.append(("HR", hr8, None))
    return {"image": name, "box": [top, left, size], "panels": panels}


def _crops_html(crops: Mapping[str, Any], out: Path) -> str:
    folder = out / CROPS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    top, left, size = crops["box"]
    figures = []
    for label, img, value in crops["panels"]:
        uri, data = _png_data_uri(img)
        (folder / f"{label}.png").write_bytes(data)
        caption = html.escape(label) + ("" if value is None else f"<br>{value:.2f} dB")
        figures.append(f'<figure><img src="{uri}" width="{2 * size}" height="{2 * size}" '
                       f'alt="{html.escape(label)}"><figcaption>{caption}</figcaption></figure>')
    return (f"<h2>Crops</h2><p>{html.escape(crops['image'])}, HR window top={top}, left={left}, "
            f"{size}x{size} px, shown at 2x (PSNR-Y of the crop)</p>"
            f'<div class="crops">{"".join(figures)}</div>')
