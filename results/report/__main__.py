"""``python -m results.report``: one report per set of runs (see :mod:`results.report.command`)."""

from results.report.command import main

raise SystemExit(main())
