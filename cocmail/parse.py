"""Raw bytes to a typed ``ParsedMessage``: headers decoded, bodies as text, attachments
described (name, type, size, sha256), defects listed.

mail-parser (on the standard ``email`` package) decodes the bodies, with its
charset recovery, and reports defects; the attachments are walked here, so each
keeps its MIME part number and can be found again in the raw bytes.
Every string leaving this module is safe to store: no NUL, no lone surrogate.
"""

from __future__ import annotations

import datetime as dt
import email
import email.errors
import email.header
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message

import mailparser

from cocmail.htmltext import html_to_text

_MSGID = re.compile(r"<([^<>\s]{1,900})>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ParseError(Exception):
    """The bytes are not a mail message we can read at all."""


@dataclass(frozen=True)
class AttachmentInfo:
    part: str
    filename: str | None
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ParsedMessage:
    message: Message = field(repr=False)
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

    def header(self, name: str) -> str | None:
        """The first decoded value of header ``name`` (case-insensitive), or None."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this message answers, nearest first: In-Reply-To, then References
        from the newest."""
        ids = [self.in_reply_to] if self.in_reply_to else []
        ids += [r for r in reversed(self.references) if r not in ids]
        return tuple(ids)


def clean(text: str) -> str:
    """Make ``text`` storable on every backend: NUL and lone surrogates (from
    undecodable bytes) become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def decode_header(value: str | email.header.Header | None) -> str:
    """An RFC 2047 header value as one clean line of text."""
    if value is None:
        return ""
    raw = str(value)
    try:
        decoded = str(email.header.make_header(email.header.decode_header(raw)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        decoded = raw
    decoded = re.sub(r"\r?\n[ \t]*", " ", decoded)
    return clean(_CONTROL.sub("", decoded)).strip()


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
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        parsed_bodies = mailparser.MailParser(msg)
    except (RecursionError, mailparser.exceptions.MailParserError) as exc:
        raise ParseError(f"{type(exc).__name__}: {exc}") from None
    if not msg.keys():
        raise ParseError("no header fields: this is not a mail message")

    headers = [(clean(name), decode_header(value)) for name, value in msg.raw_items()]
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)

    from_name, from_address = email.utils.parseaddr(first.get("from", ""))
    ids = message_ids(first.get("message-id"))
    in_reply_to = message_ids(first.get("in-reply-to"))

    text_parts = [_text(t) for t in parsed_bodies.text_plain]
    html_parts = [_text(h) for h in parsed_bodies.text_html]
    text = "\n\n".join(t for t in text_parts if t.strip())
    html = "\n".join(html_parts) if html_parts else None
    if not text.strip() and html:
        text = html_to_text(html)

    defects = [
        f"{type(d).__name__}" for part in msg.walk() for d in getattr(part, "defects", [])
    ]
    defects += sorted(parsed_bodies.defects_categories - set(defects))

    return ParsedMessage(
        message=msg,
        headers=headers,
        message_id=ids[0] if ids else None,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=tuple(message_ids(first.get("references"))),
        from_address=from_address.strip().lower() if "@" in from_address else None,
        from_name=clean(from_name) or None,
        subject=first.get("subject"),
        date=_date(first.get("date")),
        text=text,
        html=html,
        attachments=tuple(_attachments(msg)),
        defects=tuple(dict.fromkeys(defects)),
    )


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


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment" or part.get_filename():
        return True
    return part.get_content_type() not in ("text/plain", "text/html")


def _attachments(msg: Message) -> list[AttachmentInfo]:
    found: list[AttachmentInfo] = []

    def walk(part: Message, number: str) -> None:
        if part.get_content_type() == "message/rfc822" and number != "":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            inner_bytes = inner.as_bytes() if isinstance(inner, Message) else b""
            found.append(_info(part, number, inner_bytes))
        elif part.is_multipart():
            children = part.get_payload()
            assert isinstance(children, list)
            for index, child in enumerate(children, 1):
                walk(child, f"{number}.{index}" if number else str(index))
        elif _is_attachment(part):
            content = part.get_payload(decode=True)
            found.append(_info(part, number or "1", content if isinstance(content, bytes) else b""))

    walk(msg, "")
    return found


def _info(part: Message, number: str, content: bytes) -> AttachmentInfo:
    try:
        filename = part.get_filename()
    except (LookupError, UnicodeError, ValueError):
        filename = None
    name = decode_header(filename) if filename else None
    if name:
        # A name is shown and later attached again: keep only its last path
        # component, without control characters.
        name = re.split(r"[/\\]", name)[-1][:255] or None
    return AttachmentInfo(
        part=number,
        filename=name,
        content_type=clean(part.get_content_type())[:200],
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )
