"""``python -m results.evaluate``: benchmark evaluation (see :mod:`results.evaluate.command`)."""

from results.evaluate.command import main

raise SystemExit(main())
