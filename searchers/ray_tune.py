"""The same multi-objective trials on Ray Tune:
``python searchers/ray_tune.py [--address HOST:PORT] [--config FILE] [key=value ...]``.

The run lives in :mod:`searchers.trials.tune` (so that Ray unpickles its classes from
there); this file is its entry point.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchers.trials.tune import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
