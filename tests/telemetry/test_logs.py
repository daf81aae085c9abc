"""What the log shows: ids and counts, never a reporter's address (DESIGN.md rule 4),
even where the text comes from someone else (a relay's answer, an exception)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from cocmail.telemetry.logs import FORMAT, MaskingFormatter


def _record(message: str, *args: object, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord("cocmail.notify.worker", logging.ERROR, __file__, 1, message,
                             args, exc_info)


def test_addresses_in_the_message_and_its_arguments_show_their_domain_only() -> None:
    formatter = MaskingFormatter(FORMAT)
    line = formatter.format(_record(
        "outbox %d (%s) failed for good after %d attempts: %s", 7, "ack", 1,
        "relay refused the recipient: 550 5.1.1 <Rita.R@Reporter.Example>: no such user"))
    assert "Rita.R" not in line
    assert "<…@Reporter.Example>: no such user" in line
    assert "outbox 7 (ack) failed for good after 1 attempts" in line


def test_a_traceback_is_masked_too() -> None:
    try:
        raise ValueError("cannot reach conduct+42.abcdefghijklmnop@example.org for rita@x.example")
    except ValueError:
        record = _record("intake failed, answered 451", exc_info=sys.exc_info())
    line = MaskingFormatter(FORMAT).format(record)
    assert "Traceback" in line and "ValueError: cannot reach …@example.org for …@x.example" in line
    assert "abcdefghijklmnop" not in line and "rita" not in line
