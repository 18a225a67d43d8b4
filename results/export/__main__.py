"""``python -m results.export``: ONNX and ``torch.export`` files (see
:mod:`results.export.command`)."""

from results.export.command import main

raise SystemExit(main())
