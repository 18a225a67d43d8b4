"""``python -m proxies.profile``: the NTIRE-style profile table (see
:mod:`proxies.profile.command`)."""

from proxies.profile.command import main

raise SystemExit(main())
