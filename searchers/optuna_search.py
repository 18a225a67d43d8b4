"""Multi-objective architecture trials with Optuna:
``python searchers/optuna_search.py [--config FILE] [key=value ...]``.

The study lives in :mod:`searchers.trials.study` (so that worker processes unpickle its
classes from there, not from this script's ``__main__``); this file is its entry point.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchers.trials.study import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
