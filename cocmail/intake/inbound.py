"""What comes into the intake and what becomes of it: one message as an edge
received it (``Inbound``), what is read off its bytes before its transaction
(``Reading``, ``Prepared``), the columns its row is written with, and the answer
(``Accepted``) the edge turns into a reply code."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from cocmail.parse.dedupe import dedupe_key
from cocmail.parse.message import ParsedMessage, read
from cocmail.route.addresses import Recipient


@dataclass(frozen=True)
class Inbound:
    """One message as a protocol edge received it."""

    raw: bytes
    envelope_from: str | None  # '' is the null sender; None when unknown (IMAP)
    recipients: tuple[Recipient, ...]
    channel: str  # smtp | lmtp | pipe | imap
    # Read already by the edge, where it had the time (see ``Reading``); None: the
    # writer reads it.
    reading: Reading | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Reading:
    """What the intake reads off a message's bytes before its transaction: the
    dedupe key, and the parse or why it failed. The writer reads what comes
    unread; an edge with time to spare reads ahead (the IMAP poller, while the
    writer stores the group before), so that the two share the work on two cores."""

    key: str
    parsed: ParsedMessage | None
    parse_error: str | None

    @classmethod
    def of(cls, raw: bytes) -> Reading:
        parsed, parse_error = read(raw)
        return cls(dedupe_key(raw), parsed, parse_error)


@dataclass(frozen=True)
class Accepted:
    """What became of a message. ``duplicate`` is True when it was already stored."""

    message_id: int
    case_id: int | None
    opened: bool
    quarantine_reason: str | None
    duplicate: bool


@dataclass(frozen=True)
class Prepared:
    """A delivery with what can be worked out before the transaction begins."""

    delivery: Inbound
    key: str
    parsed: ParsedMessage | None
    parse_error: str | None
    automatic: str | None  # why it is automatic (RFC 3834), if it is


def message_values(delivery: Inbound, key: str, parsed: ParsedMessage | None,
                   automatic: str | None, now: dt.datetime) -> dict[str, object]:
    """The new message's columns (its case and author are set when it is written)."""
    raw = delivery.raw
    values: dict[str, object] = {
        "direction": "in",
        "channel": delivery.channel,
        "dedupe_key": key,
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
        "raw_size": len(raw),
        "raw": raw,
        # Kept as given, cut to the column's size (a longer one is no address).
        "envelope_from": (None if delivery.envelope_from is None
                          else delivery.envelope_from[:320]),
        "recipients": [r.address for r in delivery.recipients],
        "received_at": now,
        "verified": False,
    }
    if parsed is not None:
        values.update(parsed_values(parsed))
        values["automatic"] = automatic
    return values


def parsed_values(parsed: ParsedMessage) -> dict[str, object]:
    return {
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": " ".join(parsed.references) or None,
        "from_address": parsed.from_address,
        "subject": parsed.subject,
        "sent_at": parsed.date,
        "headers": [[name, value] for name, value in parsed.headers],
        "text": parsed.text,
        "html": parsed.html,
        "defects": list(parsed.defects) or None,
    }


def attachment_rows(parsed: ParsedMessage) -> list[dict[str, object]]:
    return [
        {"part": a.part, "filename": a.filename, "content_type": a.content_type,
         "size": a.size, "sha256": a.sha256}
        for a in parsed.attachments
    ]
