"""Supernet training for weight sharing (elastic width and depth): ``python
searchers/train_supernet.py [--config FILE] [--resume] [--stop-after STEP] [key=value ...]``.

The training lives in :mod:`searchers.sharing.train`; this file is its entry point.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchers.sharing.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
