"""Logging set-up, shared by the daemon, its intake writer process and the CLI.

Logs carry ids and counts, never bodies, subjects or reporters' addresses
(DESIGN.md rule 4). cocmail's own lines are written that way; what it does not
write itself — a relay's answer quoted in an error ("550 5.1.1 <rita@…>: no
such user"), the text of an exception in a traceback — passes through
``MaskingFormatter``, which shows every address by its domain only.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

import orjson

from cocmail.telemetry.masking import mask_addresses

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")


class MaskingFormatter(logging.Formatter):
    """Formats a record as usual, then masks every address in it, traceback and all."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_addresses(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for a log collector: ``time`` (UTC, ISO 8601),
    ``level``, ``logger``, ``message``, ``process`` and, after an exception,
    ``exception`` (its traceback); every address masked as in the text format.

    >>> record = logging.makeLogRecord({"name": "cocmail.x", "levelname": "INFO",
    ...     "msg": "sent to %s", "args": ("rita@b.example",), "created": 0, "msecs": 0})
    >>> import json
    >>> line = json.loads(JsonFormatter().format(record))
    >>> line["time"], line["level"], line["logger"], line["message"]
    ('1970-01-01T00:00:00.000Z', 'INFO', 'cocmail.x', 'sent to …@b.example')
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name,
            "message": mask_addresses(record.getMessage()), "process": record.process}
        if record.exc_info:
            line["exception"] = mask_addresses(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


def setup(level: str, format: str = "text") -> None:
    """Log to standard error at ``level``, as text lines or (``format = "json"``)
    one JSON object a line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else MaskingFormatter(FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    # APScheduler says at INFO each time a job runs (the sweep: every tick, all
    # day): a line a few seconds that tells nothing. Its warnings (a run missed)
    # and errors still show.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # mail-parser logs a warning for every MIME type it does not render;
    # those are expected and say nothing an operator can act on.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    # aiosmtpd logs every envelope address at INFO; cocmail's logs carry ids
    # and counts, never reporters' addresses (DESIGN.md rule 4).
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Alembic says which database driver it found each time the schema is looked
    # at (every start): nothing to act on. ``cocmail db upgrade`` says what it did.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
