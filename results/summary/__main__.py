"""``python -m results.summary``: summarise a search (see :mod:`results.summary.command`)."""

from results.summary.command import main

raise SystemExit(main())
