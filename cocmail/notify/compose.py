"""One outgoing mail as bytes: the rendered template, cocmail's headers, and for a
report the reporter's attachments attached again.

Nothing that came in with a report reaches a header unchecked: subjects,
display names and file names go through ``header_text`` (one line, no control
characters, bounded), Message-IDs through ``_ids`` (only well-formed ids), and
the ``email`` package encodes what is left (RFC 2047 / RFC 2231), so no inbound
text can end a header or start a new one.
"""

from __future__ import annotations

import email
import email.errors
import email.policy
import functools
import re
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.utils import format_datetime
from typing import Any

from cocmail.config import Committee
from cocmail.notify.kinds import KINDS
from cocmail.notify.template_context import Context
from cocmail.notify.templates import Rendered
from cocmail.parse.automatic import LOOP_HEADER
from cocmail.parse.parts import attachment_parts
from cocmail.parse.text import decode_header
from cocmail.store.models import Outbox


class _RememberingPolicy(email.policy.EmailPolicy):
    """The email package's policy, remembering the header fields it made and how
    it folded them. Most fields of a mail are those of the mail before (From,
    cocmail's own fields, the MIME fields, the Date within a second), and the
    package parses each value into a header object and folds it again for
    every mail: a third of the time composing one took. A header object
    is immutable (a ``str``), and what it is and how it folds depend only on
    the policy, the name and the value, which are the key. A value with a line
    break is refused as before (by the package, before anything is kept)."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if isinstance(value, Address):
            return name, _stored(self, name, ("address", value.display_name, value.username,
                                              value.domain))
        if isinstance(value, str) and not hasattr(value, "name"):
            return name, _stored(self, name, value)
        return super().header_store_parse(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if hasattr(value, "name"):  # a header object (every field set through this policy)
            return _folded(self, name, value)
        return super().fold_binary(name, value)


@functools.lru_cache(maxsize=1024)
def _stored(policy: email.policy.EmailPolicy, name: str,
            value: str | tuple[str, str, str, str]) -> Any:
    if isinstance(value, tuple):
        _, display_name, username, domain = value
        value = Address(display_name, username=username, domain=domain)  # type: ignore[assignment]
    return email.policy.EmailPolicy.header_store_parse(policy, name, value)[1]


@functools.lru_cache(maxsize=1024)
def _folded(policy: email.policy.EmailPolicy, name: str, value: Any) -> bytes:
    return email.policy.EmailPolicy.fold_binary(policy, name, value)


# CRLF line ends, lines folded at 78, non-ASCII text encoded (quoted-printable or
# base64): a mail any relay takes, 8BITMIME or not.
POLICY = _RememberingPolicy(linesep="\r\n", cte_type="7bit")
# The same, with UTF-8 header fields, for a recipient whose address needs them.
POLICY_UTF8 = POLICY.clone(utf8=True)


def needs_smtputf8(address: str) -> bool:
    """Can this address only be written with SMTPUTF8 (RFC 6531)?

    >>> needs_smtputf8("rita@example.net"), needs_smtputf8("r\u00efta@example.net")
    (False, True)
    """
    return not address.isascii()


def _address(name: str, address: str) -> Address:
    """``Address`` for a stored address; one whose local part is not ASCII (which
    the email package refuses to parse) is given by its parts."""
    try:
        return Address(name, addr_spec=address)
    except email.errors.NonASCIILocalPartDefect:
        username, domain = address.rsplit("@", 1)
        return Address(name, username=username, domain=domain)

_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,250}>")
_MAX_REFERENCES = 20


def header_text(value: str | None, limit: int = 200) -> str:
    """``value`` as one safe line of header text.

    >>> header_text("Hi\\r\\nBcc: victim@example.org")
    'Hi Bcc: victim@example.org'
    >>> header_text("a\\u2028b\\x00c\\td")
    'a b c d'
    """
    if not value:
        return ""
    printable = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(printable.split())[:limit]


def subject_line(committee: Committee, case_id: int | None, subject: str) -> str:
    """``[<short name> #<case>] <subject>``, without a second tag when a reply
    already carries one.

    >>> from cocmail.config import Committee
    >>> c = Committee("C", "conduct", "conduct@example.org", "+", None, None, ())
    >>> subject_line(c, 42, "Re: [conduct #42] Re: trouble\\nBcc: x@y")
    '[conduct #42] Re: Re: trouble Bcc: x@y'
    """
    text = header_text(subject)
    if case_id is None:
        return text or committee.name
    tag = f"[{committee.short_name} #{case_id}]"
    text = " ".join(text.replace(tag, " ").split())
    return f"{tag} {text}".rstrip()


def _ids(value: str | None) -> list[str]:
    return _ID.findall(value or "")


def compose(
    row: Outbox, rendered: Rendered, context: Context, committee: Committee,
    raw_source: bytes | None = None, parts: list[str] | None = None,
) -> bytes:
    """The mail for ``row``. ``parts`` are MIME part numbers of ``raw_source`` to
    attach (a report's attachments)."""
    # An address with a non-ASCII local part (rïta@…, as SMTPUTF8 delivered it to
    # us) is written in UTF-8 headers (RFC 6532); the transport then asks the
    # relay for SMTPUTF8 (``needs_smtputf8``).
    msg = EmailMessage(policy=POLICY_UTF8 if needs_smtputf8(row.recipient) else POLICY)
    msg["From"] = Address(header_text(committee.name, 100), addr_spec=committee.address)
    msg["To"] = _address(header_text(context.recipient.name, 100), row.recipient)
    msg["Reply-To"] = Address(header_text(committee.name, 100),
                              addr_spec=context.reply_address)
    msg["Subject"] = subject_line(committee, row.case_id, rendered.subject)
    msg["Date"] = format_datetime(row.created_at)
    msg["Message-ID"] = row.message_id
    in_reply_to = _ids(row.in_reply_to)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to[0]
    references = _ids(row.references)[-_MAX_REFERENCES:]
    if references:
        msg["References"] = " ".join(references)
    auto_submitted = KINDS[row.kind].auto_submitted
    if auto_submitted is not None:
        # A relay is a member's own words to a party, who should answer it: it is
        # not marked as automatic mail (RFC 3834), so their client does not hide it.
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = committee.address
    msg["X-Cocmail-Kind"] = row.kind
    if row.case_id is not None:
        msg["X-Cocmail-Case"] = str(row.case_id)
    msg.set_content(rendered.text)
    if rendered.html is not None:
        msg.add_alternative(rendered.html, subtype="html")
    if raw_source is not None and parts:
        _attach(msg, raw_source, parts)
    return msg.as_bytes()


def _attach(msg: EmailMessage, raw: bytes, wanted: list[str]) -> None:
    source = email.message_from_bytes(raw)
    found = dict(attachment_parts(source))
    for number in wanted:
        part = found.get(number)
        if part is None:
            continue
        filename = _filename(part)
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            content = inner.as_bytes() if isinstance(inner, Message) else b""
            maintype, subtype = "application", "octet-stream"
            filename = filename or "forwarded-message.eml"
        else:
            decoded = part.get_payload(decode=True)
            content = decoded if isinstance(decoded, bytes) else b""
            maintype, subtype = part.get_content_type().split("/", 1)
        msg.add_attachment(content, maintype=maintype, subtype=subtype,
                           filename=filename or f"attachment-{number}")


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (LookupError, UnicodeError, ValueError):
        return None
    if not name:
        return None
    name = re.split(r"[/\\]", decode_header(name))[-1]
    return header_text(name, 150) or None
