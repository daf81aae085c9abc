"""Raw bytes to a typed ``ParsedMessage``: headers decoded, bodies as text, attachments
described (name, type, size, sha256), defects listed.

The standard ``email`` package parses the message once. Well-formed bodies are
decoded with their declared charset directly; a message with MIME defects, or a
body that does not decode with its declared charset, goes through mail-parser,
whose charset recovery and defect reports are what such mail needs. (Running
mail-parser on every message cost more than the rest of accepting it, and for
well-formed mail it decodes exactly as the fast path does; a test holds the two
paths to the same result over the corpus.) Attachments are walked here, so each
keeps its MIME part number and can be found again in the raw bytes.
Every string leaving this module is safe to store: no NUL, no lone surrogate.
"""

from __future__ import annotations

import datetime as dt
import email
import email.errors
import email.header
import email.headerregistry
import email.parser
import email.policy
import email.utils
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

import mailparser

from cocmail.parse.html import html_to_text
from cocmail.parse.mailbox import ADDRESS_HEADERS, mailbox_of
from cocmail.parse.parts import AttachmentInfo, Looks, attachments
from cocmail.parse.text import clean, decode_header

log = logging.getLogger(__name__)

_MSGID = re.compile(r"<([^<>\s]{1,900})>")


class _Bodies(mailparser.MailParser):  # type: ignore[misc]
    """mail-parser for what cocmail uses of it: bodies with charset recovery, and
    defects. Its JSON-ready summaries (built twice, each with a copy of every
    body) are skipped; they were a third of its time and most of its memory."""

    def _make_mail(self, complete: bool = True) -> dict[str, object]:
        return {}


class ParseError(Exception):
    """The bytes are not a mail message we can read at all."""


@dataclass(frozen=True)
class ParsedMessage:
    """What cocmail reads of a message: plain values. It keeps no reference to
    the parser's MIME tree, so the parser's copy of the bodies is freed once
    the message is parsed, not held while it is stored."""

    content_types: tuple[str, ...]  # of every part, in order (the first is the message's)
    headers: list[tuple[str, str]]
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    from_address: str | None
    from_name: str | None
    subject: str | None
    date: dt.datetime | None
    text: str
    html: str | None
    attachments: tuple[AttachmentInfo, ...]
    defects: tuple[str, ...]
    first_values: dict[str, str] = field(repr=False, default_factory=dict)
    # The one mailbox of each address header that names exactly one (``mailbox_of``):
    # From, and the headers a group rewriting From keeps the sender in.
    mailboxes: dict[str, str] = field(repr=False, default_factory=dict)

    def header(self, name: str) -> str | None:
        """The first decoded value of header ``name`` (case-insensitive), or None."""
        return self.first_values.get(name.lower())

    def mailbox(self, name: str) -> str | None:
        """The one mailbox header ``name`` names (lower case), or None when it is
        missing, appears twice, or names none or several."""
        return self.mailboxes.get(name.lower())

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this message answers, nearest first: In-Reply-To, then References
        from the newest."""
        ids = [self.in_reply_to] if self.in_reply_to else []
        ids += [r for r in reversed(self.references) if r not in ids]
        return tuple(ids)


def message_ids(value: str | None) -> list[str]:
    """The Message-IDs in a header value, without angle brackets.

    >>> message_ids("<a@x> <b@y>\\r\\n <c@z>")
    ['a@x', 'b@y', 'c@z']
    >>> message_ids("bare@id")
    ['bare@id']
    """
    if not value:
        return []
    found = _MSGID.findall(value)
    if not found:
        token = value.strip().strip("<>").split()
        return [token[0][:900]] if token else []
    return found


def parse(raw: bytes) -> ParsedMessage:
    """Parse ``raw``; raise ``ParseError`` when it is not a message at all."""
    try:
        msg = _parse_bytes(raw)
    except RecursionError as exc:
        raise ParseError(f"{type(exc).__name__}: MIME nested too deep") from None
    if not msg.keys():
        raise ParseError("no header fields: this is not a mail message")
    defects = [
        f"{type(d).__name__}" for part in msg.walk() for d in getattr(part, "defects", [])
    ]
    looks = Looks()
    bodies = None if defects else _decode_bodies(msg, looks)
    if bodies is None:
        try:
            recovered = _Bodies(msg)
        except (RecursionError, mailparser.exceptions.MailParserError) as exc:
            raise ParseError(f"{type(exc).__name__}: {exc}") from None
        bodies = (list(recovered.text_plain), list(recovered.text_html))
        defects += sorted(recovered.defects_categories - set(defects))
    plain, html_bodies = bodies

    raw_items = list(msg.raw_items())
    headers = [(clean(name), decode_header(value)) for name, value in raw_items]
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    raw_address_fields: dict[str, list[str]] = {}
    for name, value in raw_items:
        if name.lower() in ADDRESS_HEADERS:
            raw_address_fields.setdefault(name.lower(), []).append(str(value))
    mailboxes: dict[str, str] = {}
    from_name = None
    for name, values in raw_address_fields.items():
        found = mailbox_of(values)
        if found is not None:
            mailboxes[name] = found[0]
            if name == "from":
                from_name = found[1]
    ids = message_ids(first.get("message-id"))
    in_reply_to = message_ids(first.get("in-reply-to"))

    text_parts = [_text(t) for t in plain]
    html_parts = [_text(h) for h in html_bodies]
    text = "\n\n".join(t for t in text_parts if t.strip())
    html = "\n".join(html_parts) if html_parts else None
    if not text.strip() and html:
        text = html_to_text(html)

    return ParsedMessage(
        content_types=tuple(looks.content_type(part) for part in msg.walk()),
        headers=headers,
        message_id=ids[0] if ids else None,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=tuple(message_ids(first.get("references"))),
        from_address=mailboxes.get("from"),
        from_name=clean(from_name) if from_name else None,
        subject=first.get("subject"),
        date=_date(first.get("date")),
        text=text,
        html=html,
        attachments=tuple(attachments(msg, looks)),
        defects=tuple(dict.fromkeys(defects)),
        first_values=first,
        mailboxes=mailboxes,
    )


def read(raw: bytes) -> tuple[ParsedMessage | None, str | None]:
    """``parse(raw)`` that never raises: the message, or None and why it could not
    be read. A bug in the parser, or a message that trips one, is logged and
    reported as a reason: the message is kept (quarantined) all the same."""
    try:
        return parse(raw), None
    except ParseError as exc:
        return None, str(exc)
    except Exception as exc:
        log.exception("parser failed on a message of %d bytes", len(raw))
        return None, f"parser failed: {type(exc).__name__}"


def _parse_bytes(raw: bytes) -> Message:
    """The standard parser's message for ``raw``.

    A body that is not MIME parts (plain text, most reports) becomes the payload
    as it stands: the parser would cut it into lines only to join them again,
    which was a third of its time. Only when the parser, given the header block
    alone, reads it as we cut it — headers up to the first blank line, nothing
    left over — is that taken; anything else is parsed whole."""
    blank_line = _BLANK_LINE.search(raw)
    if blank_line is not None and blank_line.end() < len(raw):
        head = email.parser.BytesFeedParser(policy=email.policy.compat32)
        head.feed(raw[:blank_line.end()])
        msg = head.close()
        if (msg.get_content_maintype() not in ("multipart", "message")
                and msg.get_payload() == ""):
            # As the parser does: bytes as ASCII, any others kept as surrogates.
            # (Decoded from a view: a large body is not copied on the way.)
            body = memoryview(raw)[blank_line.end():]
            msg.set_payload(str(body, "ascii", "surrogateescape"))
            return msg
    return _parse_whole(raw)


def _parse_whole(raw: bytes) -> Message:
    """The standard parser, fed in pieces: given the whole of a large message at once
    it holds the message as text and again as a list of lines, about seven times its
    size; fed in pieces it holds a fraction of that."""
    parser = email.parser.BytesFeedParser(policy=email.policy.compat32)
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(bytes(view[start:start + _FEED_CHUNK]))
    return parser.close()


_FEED_CHUNK = 1 << 16
_BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of the header block, as LF or CRLF


def _decode_bodies(msg: Message, looks: Looks) -> tuple[list[str], list[str]] | None:
    """The text/plain and text/html bodies, decoded with their declared charsets; None
    when one of them does not decode (then mail-parser's recovery takes over)."""
    plain: list[str] = []
    html: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        content_type = looks.content_type(part)
        if content_type not in ("text/plain", "text/html"):
            continue
        disposition = looks.disposition(part)
        # As mail-parser does: named text is a body only when marked inline.
        if disposition == "attachment" or (looks.named(part) and disposition != "inline"):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        try:
            text = payload.decode(part.get_content_charset() or "utf-8")
        except (LookupError, UnicodeError):
            return None
        (html if content_type == "text/html" else plain).append(text)
    return plain, html


def _text(value: str) -> str:
    return clean(value.replace("\r\n", "\n").replace("\r", "\n"))


def _date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": time given in UTC, zone unknown
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None


