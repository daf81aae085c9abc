"""Allow ``python -m cocmail``."""

from cocmail.cli import main

raise SystemExit(main())
