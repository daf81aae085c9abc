"""Who a message says wrote it: the one mailbox of an address header, read so
that a display name can never pass for an address."""

from __future__ import annotations

import email.errors
import email.headerregistry
import re
from email.utils import parseaddr
from typing import Any

from cocmail.parse.text import clean

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
