"""The MIME parts of a message: what each is (read once a parse), and its
attachments, each with its part number, so it can be found again in the raw
bytes, and its size and sha256 (base64 decoded piece by piece)."""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

from cocmail.parse.text import clean, decode_header

_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]+")


@dataclass(frozen=True)
class AttachmentInfo:
    part: str
    filename: str | None
    content_type: str
    size: int
    sha256: str


class Looks:
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


def _is_attachment(part: Message, looks: Looks) -> bool:
    if looks.disposition(part) == "attachment" or looks.named(part):
        return True
    return looks.content_type(part) not in ("text/plain", "text/html")


def attachment_parts(msg: Message,
                     looks: Looks | None = None) -> Iterator[tuple[str, Message]]:
    """Each attachment of ``msg`` with its MIME part number ("1", "2.1", …): the
    numbers the attachments table keeps. A forwarded message is one attachment."""
    looks = looks or Looks()

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


def attachments(msg: Message, looks: Looks) -> list[AttachmentInfo]:
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
