"""``python -m proxies.data.downsample_check SPEC ... [--scales 2 3 4]``: how close the torch
bicubic
downsampler comes to MATLAB imresize, per data set and scale, as a Markdown table.

Each ``SPEC`` is a data-set spec (:func:`proxies.data.specs.dataset_from_spec`): ``default:train``,
``default:val`` or a folder of HR images; every image is compared with
:func:`proxies.data.downsample.compare_downsamplers`. BENCHMARKS.md holds the measured table.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from proxies.data.downsample import compare_downsamplers
from proxies.data.specs import dataset_from_spec


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m proxies.data.downsample_check SPEC ... [--scales 2 3 4]``: torch vs MATLAB, per
    set."""
    parser = argparse.ArgumentParser(
        prog="python -m proxies.data.downsample_check",
        description="Measure how close the torch bicubic downsampler comes to MATLAB imresize.",
    )
    parser.add_argument("specs", nargs="+", help="'default:train', 'default:val' or HR folders")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    args = parser.parse_args(argv)
    print("| images | scale | mean abs [levels] | max abs | max abs inside 2-px margin | "
          "min PSNR [dB] |")
    print("|---|---|---|---|---|---|")
    for spec in args.specs:
        images = dataset_from_spec(spec, 1).images
        for scale in args.scales:
            rows = [compare_downsamplers(im.hr, scale) for im in images]
            print(f"| {spec} ({len(rows)}) | x{scale} | "
                  f"{np.mean([r['mean_abs_levels'] for r in rows]):.4f} | "
                  f"{max(r['max_abs_levels'] for r in rows):.0f} | "
                  f"{max(r['interior_max_abs_levels'] for r in rows):.0f} | "
                  f"{min(r['psnr_db'] for r in rows):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
