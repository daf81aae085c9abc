"""Logging set-up, shared by the daemon, its intake writer process and the CLI."""

from __future__ import annotations

import logging
import sys


def setup(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # mail-parser logs a warning for every MIME type it does not render;
    # those are expected and say nothing an operator can act on.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    # aiosmtpd logs every envelope address at INFO; cocmail's logs carry ids
    # and counts, never reporters' addresses (DESIGN.md rule 4).
    logging.getLogger("mail.log").setLevel(logging.WARNING)
