"""Logging set-up, shared by the daemon, its intake writer process and the CLI.

Logs carry ids and counts, never bodies, subjects or reporters' addresses
(DESIGN.md rule 4). cocmail's own lines are written that way; what it does not
write itself — a relay's answer quoted in an error ("550 5.1.1 <rita@…>: no
such user"), the text of an exception in a traceback — passes through
``MaskingFormatter``, which shows every address by its domain only.
"""

from __future__ import annotations

import logging
import sys

from cocmail.telemetry.masking import mask_addresses

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class MaskingFormatter(logging.Formatter):
    """Formats a record as usual, then masks every address in it, traceback and all."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_addresses(super().format(record))


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter(FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    # mail-parser logs a warning for every MIME type it does not render;
    # those are expected and say nothing an operator can act on.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    # aiosmtpd logs every envelope address at INFO; cocmail's logs carry ids
    # and counts, never reporters' addresses (DESIGN.md rule 4).
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Alembic says which database driver it found each time the schema is looked
    # at (every start): nothing to act on. ``cocmail db upgrade`` says what it did.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
