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

import binascii
import datetime as dt
import email
import email.errors
import email.header
import email.headerregistry
import email.parser
import email.policy
import email.utils
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parseaddr
from typing import Any

import mailparser

from cocmail.parse.html import html_to_text

log = logging.getLogger(__name__)

_MSGID = re.compile(r"<([^<>\s]{1,900})>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Bodies(mailparser.MailParser):  # type: ignore[misc]
    """mail-parser for what cocmail uses of it: bodies with charset recovery, and
    defects. Its JSON-ready summaries (built twice, each with a copy of every
    body) are skipped; they were a third of its time and most of its memory."""

    def _make_mail(self, complete: bool = True) -> dict[str, object]:
        return {}


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
    if "=?" not in raw:  # nothing encoded: skip the (slow) RFC 2047 machinery
        unfolded = re.sub(r"\r?\n[ \t]*", " ", raw)
        return clean(_CONTROL.sub("", unfolded)).strip()
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
        msg = _parse_bytes(raw)
    except RecursionError as exc:
        raise ParseError(f"{type(exc).__name__}: MIME nested too deep") from None
    if not msg.keys():
        raise ParseError("no header fields: this is not a mail message")
    defects = [
        f"{type(d).__name__}" for part in msg.walk() for d in getattr(part, "defects", [])
    ]
    looks = _Looks()
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
        attachments=tuple(_attachments(msg, looks)),
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
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]+")


def _measure(part: Message) -> tuple[int, str]:
    """Size and sha256 of a leaf part's decoded content. Base64 (how nearly every large
    attachment travels) is decoded piece by piece, never held whole."""
    payload = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte == "base64" and isinstance(payload, str):
        digest, size, carry, pos = hashlib.sha256(), 0, "", 0
        try:
            while pos < len(payload):
                stop = payload.find("\n", pos + (1 << 20))
                stop = len(payload) if stop < 0 else stop + 1
                chunk = carry + _NOT_BASE64.sub("", payload[pos:stop])
                usable = len(chunk) - len(chunk) % 4
                data = binascii.a2b_base64(chunk[:usable])
                carry = chunk[usable:]
                digest.update(data)
                size += len(data)
                pos = stop
            if not carry.strip("="):
                return size, digest.hexdigest()
        except binascii.Error:
            pass  # malformed base64: let the email package decide what it says
    content = part.get_payload(decode=True)
    content = content if isinstance(content, bytes) else b""
    return len(content), hashlib.sha256(content).hexdigest()


class _Looks:
    """Each MIME part's content type, disposition and whether it is named, read
    once for a whole parse. The email package reads them off the header fields
    again on every call: a one-part report asked 17 times (reading them once
    took its parse from 0.168 to 0.158 ms)."""

    def __init__(self) -> None:
        self._types: dict[int, str] = {}
        self._dispositions: dict[int, str] = {}
        self._named: dict[int, bool] = {}

    def content_type(self, part: Message) -> str:
        found = self._types.get(id(part))
        if found is None:
            found = self._types[id(part)] = part.get_content_type()
        return found

    def disposition(self, part: Message) -> str:
        """Lower case; '' when there is none."""
        found = self._dispositions.get(id(part))
        if found is None:
            found = (part.get_content_disposition() or "").lower()
            self._dispositions[id(part)] = found
        return found

    def named(self, part: Message) -> bool:
        found = self._named.get(id(part))
        if found is None:
            found = self._named[id(part)] = bool(part.get_filename())
        return found


def _decode_bodies(msg: Message, looks: _Looks) -> tuple[list[str], list[str]] | None:
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


MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: a path holds at most 256 octets with its <>

# The address headers whose one mailbox says who wrote a message: From, and where
# a group that rewrites From (for DMARC) keeps the original sender.
ADDRESS_HEADERS = frozenset({"from", "reply-to", "x-original-from", "x-original-sender"})
_ADDR = r"[^\s<>()\[\]@,;:\"\\]+@[^\s<>()\[\]@,;:\"\\]+"
# The forms nearly every client writes, read without the header parser (which
# costs about 60 us): a bare address, "Name <address>", "\"Name\" <address>".
_SIMPLE = re.compile(rf"\s*(?:(?P<bare>{_ADDR})|(?P<name>[^<>\"@,;:()\\=]*?)\s*<(?P<a1>{_ADDR})>"
                     rf"|\"(?P<quoted>(?:[^\"\\\r\n]|\\.)*)\"\s*<(?P<a2>{_ADDR})>)\s*")
_REGISTRY = email.headerregistry.HeaderRegistry()
# Defects that leave a mailbox unambiguous: a non-ASCII local part (SMTPUTF8).
_HARMLESS = (email.errors.NonASCIILocalPartDefect,)


def mailbox_of(values: list[str]) -> tuple[str, str | None] | None:
    """The one mailbox (address, display name) of an address header, from its raw
    value, before any display name is decoded; None when the header appears more
    than once or does not name exactly one mailbox unambiguously. An encoded word
    that decodes to an address is a display name, never the address.

    >>> mailbox_of(["Rita R <Rita@Example.net>"])
    ('rita@example.net', 'Rita R')
    >>> mailbox_of(['"alice@members.example" <evil@x.example>'])
    ('evil@x.example', 'alice@members.example')
    >>> mailbox_of(["=?utf-8?q?alice=40members.example?= <evil@x.example>"])
    ('evil@x.example', 'alice@members.example')
    >>> [mailbox_of(v) for v in (["=?utf-8?q?alice=40members.example?="],
    ...  ["alice@members.example, evil@x.example"], ["a@x.example", "b@x.example"], [])]
    [None, None, None, None]
    """
    if len(values) != 1:
        return None
    value = values[0]
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        # Raw 8-bit bytes (SMTPUTF8): kept by the parser as surrogates.
        value = value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    value = re.sub(r"\r?\n[ \t]*", " ", value)
    simple = None if "=?" in value else _SIMPLE.fullmatch(value)
    if simple is not None:
        address = simple.group("bare") or simple.group("a1") or simple.group("a2")
        name = simple.group("name") or (
            re.sub(r"\\(.)", r"\1", simple.group("quoted")) if simple.group("quoted") else None)
        found = mailbox(address)
        return (found, clean(name.strip()) or None if name else None) if found else None
    try:
        header: Any = _REGISTRY("From", value)
    except Exception:  # the header parser's own failures: no mailbox to trust
        return None
    if len(header.addresses) != 1 or any(
            not isinstance(d, _HARMLESS) for d in header.defects):
        return None
    [one] = header.addresses
    if not one.username or not one.domain:
        return None
    found = mailbox(one.addr_spec)
    return (found, clean(one.display_name) or None) if found else None


def mailbox(address: str) -> str | None:
    """A usable, lower-cased address, or None (no @, or longer than any real one)."""
    address = clean(address.strip().lower())
    return address if "@" in address and len(address) <= MAX_ADDRESS else None


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


def _is_attachment(part: Message, looks: _Looks) -> bool:
    if looks.disposition(part) == "attachment" or looks.named(part):
        return True
    return looks.content_type(part) not in ("text/plain", "text/html")


def attachment_parts(msg: Message,
                     looks: _Looks | None = None) -> Iterator[tuple[str, Message]]:
    """Each attachment of ``msg`` with its MIME part number ("1", "2.1", …): the
    numbers the attachments table keeps. A forwarded message is one attachment."""
    looks = looks or _Looks()

    def walk(part: Message, number: str) -> Iterator[tuple[str, Message]]:
        if looks.content_type(part) == "message/rfc822" and number != "":
            yield number, part
        elif part.is_multipart():
            children = part.get_payload()
            assert isinstance(children, list)
            for index, child in enumerate(children, 1):
                yield from walk(child, f"{number}.{index}" if number else str(index))
        elif _is_attachment(part, looks):
            yield number or "1", part

    return walk(msg, "")


def _attachments(msg: Message, looks: _Looks) -> list[AttachmentInfo]:
    found: list[AttachmentInfo] = []
    for number, part in attachment_parts(msg, looks):
        content_type = looks.content_type(part)
        if content_type == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            inner_bytes = inner.as_bytes() if isinstance(inner, Message) else b""
            found.append(_info(part, content_type, number, len(inner_bytes),
                               hashlib.sha256(inner_bytes).hexdigest()))
        else:
            found.append(_info(part, content_type, number, *_measure(part)))
            # The content stays in the raw bytes; the parsed copy is not needed
            # again, and for a large attachment it is most of the memory held.
            part.set_payload("")
    return found


def _info(part: Message, content_type: str, number: str, size: int,
          sha256: str) -> AttachmentInfo:
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
        content_type=clean(content_type)[:200],
        size=size,
        sha256=sha256,
    )


def address_of(header_value: str | None) -> str | None:
    """The lower-cased address in a From-like header value, or None.

    >>> address_of('"Rita R." <Rita@Example.NET>')
    'rita@example.net'
    """
    if not header_value:
        return None
    _, addr = parseaddr(header_value)
    addr = addr.strip().lower()
    return addr if "@" in addr else None
