"""The whole pipeline in one command:
``python searchers/pipeline.py [--config FILE] [key=value ...]``.

The stages live in :mod:`searchers.stages.pipeline`; this file is its entry point.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchers.stages.pipeline import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
