"""``python -m searchers.tools.gpu_check``: every GPU measurement in one run (see
:mod:`searchers.tools.gpu_check`)."""

from searchers.tools.gpu_check.command import main

raise SystemExit(main())
