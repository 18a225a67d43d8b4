"""The images the NTIRE protocol forwards: ``--images`` resolved to LR images per net scale.

``--images DIR`` is a folder of **LR** images, forwarded as they are. A folder of
**HR** images is downscaled first with the project's degradation (:mod:`proxies.data.downsample`:
mod-crop to the scale, antialiased bicubic ``torch`` interpolation, 8-bit quantisation): a
folder named ``HR`` or ``*_HR`` (e.g. ``../shared/datasets/Set5/HR``) or any folder given as
``hr:DIR``; ``lr:DIR`` forces LR; ``default:val`` / ``default:train`` are the embedded HR sets.
The output says which (:meth:`ImageSource.describe`).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from proxies.data.images import IMAGE_EXTENSIONS, ImageReadError, load_image
from proxies.data.specs import dataset_from_spec
from proxies.protocol.ntire import ProtocolError

DEGRADATION = ("proxies.data.downsample: mod-crop to the scale, antialiased bicubic (torch "
               "F.interpolate), 8-bit quantisation")
HINT = "e.g. --images ../shared/datasets/Set5/HR (HR, downscaled) or --images lr:DIR (LR as is)"


@dataclass(frozen=True)
class ImageSource:
    """Where the protocol's images come from. ``kind`` is ``"lr"`` (forwarded as they are)
    or ``"hr"`` (downscaled per net scale with the project's degradation)."""

    spec: str
    kind: str
    path: str
    names: tuple[str, ...]
    lr_cache: dict[int, tuple[tuple[str, np.ndarray], ...]] = field(
        default_factory=dict, compare=False, repr=False)

    def describe(self, scale: int) -> str:
        images = self.lr_images(scale)
        sizes = collections.Counter(f"{a.shape[0]}x{a.shape[1]}" for _, a in images)
        shown = ", ".join(f"{s} ({n})" if n > 1 else s for s, n in sizes.most_common(4))
        extra = len(sizes) - 4
        more = f", +{extra} other size{'s' if extra > 1 else ''}" if extra > 0 else ""
        if self.kind == "lr":
            what = f"{len(images)} LR images from {self.path}, forwarded as given"
        else:
            what = (f"{len(images)} HR images from {self.path}, downscaled x{scale} with "
                    f"{DEGRADATION}")
        return f"{what}; LR sizes HxW: {shown}{more}"

    def lr_images(self, scale: int) -> tuple[tuple[str, np.ndarray], ...]:
        """``(name, HxWx3 float32 in [0, 1])`` LR images for a net of ``scale``."""
        if self.kind == "lr":
            if 0 not in self.lr_cache:
                folder = Path(self.path)
                self.lr_cache[0] = tuple((Path(n).stem, _read(folder / n)) for n in self.names)
            return self.lr_cache[0]
        if scale not in self.lr_cache:
            data = dataset_from_spec(self.path, scale)
            self.lr_cache[scale] = tuple((im.name, im.lr) for im in data.images)
        return self.lr_cache[scale]


def _read(path: Path) -> np.ndarray:
    try:
        return load_image(path)
    except ImageReadError as exc:
        raise ProtocolError(f"--images: {exc}") from exc


def open_images(spec: str) -> ImageSource:
    """Resolve ``--images``: ``lr:DIR``, ``hr:DIR``, ``default:val|train`` (embedded HR), or a
    folder (HR when named ``HR`` or ``*_HR``, else LR). Every non-hidden file in the folder
    must be an image; each image is decoded once here, so a broken one is named up front.

    Raises:
        ProtocolError: missing, empty or not a folder; a non-image or undecodable file.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ProtocolError(f"--images: got {spec!r}; pass a folder of LR images, {HINT}")
    if spec.startswith("default:"):
        if spec not in ("default:val", "default:train"):
            raise ProtocolError(f"--images: got {spec!r}; the embedded HR sets are "
                                "default:val and default:train")
        names = tuple(im.name for im in dataset_from_spec(spec, 1).images)
        return ImageSource(spec, "hr", spec, names)
    kind = None
    path_text = spec
    for prefix in ("lr:", "hr:"):
        if spec.lower().startswith(prefix):
            kind, path_text = prefix[:2], spec[3:]
    folder = Path(path_text).expanduser()
    if kind is None:
        name = folder.resolve().name if folder.exists() else folder.name
        kind = "hr" if name.upper() == "HR" or name.upper().endswith("_HR") else "lr"
    if not folder.exists():
        raise ProtocolError(f"--images: folder {str(folder)!r} does not exist; pass an "
                            f"existing folder of images, {HINT}")
    if not folder.is_dir():
        raise ProtocolError(f"--images: {str(folder)!r} is a file, not a folder; pass the "
                            f"folder that holds the images, {HINT}")
    files = sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                   key=lambda p: p.name)
    others = [p.name for p in files if not p.is_file()
              or p.suffix.lower() not in IMAGE_EXTENSIONS]
    if others:
        one = len(others) == 1
        raise ProtocolError(
            f"--images: folder {str(folder)!r} holds {'an entry' if one else 'entries'} that "
            f"{'is' if one else 'are'} not an image file: {', '.join(others[:5])}"
            f"{' ...' if len(others) > 5 else ''} (images end in "
            f"{', '.join(IMAGE_EXTENSIONS)}); move {'it' if one else 'them'} out, or point "
            "--images at a folder of images only")
    if not files:
        raise ProtocolError(f"--images: folder {str(folder)!r} is empty; put the images to "
                            f"upscale in it, {HINT}")
    arrays = tuple((p.stem, _read(p)) for p in files)  # a broken file is named up front
    source = ImageSource(spec, kind, str(folder), tuple(p.name for p in files))
    if kind == "lr":
        source.lr_cache[0] = arrays  # LR images do not depend on the net's scale
    return source
