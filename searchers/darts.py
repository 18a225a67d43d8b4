"""Hardware-aware DARTS search over SR cells, the project's main command:
``python searchers/darts.py [--config FILE] [--resume] [key=value ...]``.

The search lives in :mod:`searchers.differentiable.search`; this file is its entry point.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchers.differentiable.search import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
