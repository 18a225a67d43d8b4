"""Retrain a derived or zoo net:
``python searchers/retrain.py GENOTYPE.json|ZOO_NAME [--config FILE] [--resume] [key=value ...]``
(also under ``torchrun``).

Retraining lives in :mod:`searchers.training.retrain`; this file is its entry point.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchers.training.retrain import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
