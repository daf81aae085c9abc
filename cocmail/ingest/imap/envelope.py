"""Where a message from the folder was addressed: the header fields the poller
reads (Return-Path, what the receiving server recorded, To, Cc), and the
recipients among our addresses they name."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Collection, Sequence

from cocmail.config import Committee
from cocmail.errors import AddressError
from cocmail.intake.inbound import Inbound
from cocmail.route.addresses import Recipient, UnknownKeepOut, split_recipient

_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
_ADDRESSED = (*_DELIVERED_TO, "To", "Cc")
# How many sets of address fields' values the poller remembers the recipients of.
RECIPIENTS_KEPT = 1024
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# A line the email package takes as part of a header block (a field, a folded
# line, an mbox "From "); the first line that is not ends the block.
_NOT_A_FIELD = re.compile(rb"^(?!From |[!-9;-~]*:|[ \t])", re.M)
_ADDRESS_FIELD = re.compile(
    rb"^(%s):(.*(?:\n[ \t].*)*)"
    % "|".join(("Return-Path", *_DELIVERED_TO, "To", "Cc")).lower().encode(), re.I | re.M)
# UIDs to fetch together, and the sizes of (at least) those messages.


class Addressing:
    """The deliveries of one folder's messages, with the recipients read from
    their address fields (``recipients``)."""

    def __init__(self, committee: Committee, handles: Collection[str] | None) -> None:
        self.committee = committee
        self.handles = handles  # those a keep-out address may name
        # The recipients read from the address fields' values (see recipients).
        self._addressed: dict[tuple[tuple[str, ...], ...], tuple[Recipient, ...]] = {}

    def delivery(self, raw: bytes) -> Inbound:
        fields = address_fields(raw)
        return Inbound(raw, return_path(fields.get("return-path", [])),
                        self.recipients(fields), "imap")

    def recipients(self, fields: dict[str, list[str]]) -> tuple[Recipient, ...]:
        """Where the message was addressed among our addresses: what the receiving
        server recorded, else To and Cc; the conduct address when none is ours.
        Remembered by the fields' values (up to ``RECIPIENTS_KEPT`` of them): most
        messages of a folder carry the same ones, and the email package reads
        addresses slowly (measured: 33 us a message down to 18 for the whole
        delivery, 1,000 reports from 1,000 senders)."""
        key = tuple(tuple(fields.get(name.lower(), ())) for name in _ADDRESSED)
        found = self._addressed.get(key)
        if found is None:
            found = self._read(fields)
            if len(self._addressed) >= RECIPIENTS_KEPT:
                self._addressed.clear()
            self._addressed[key] = found
        return found

    def _read(self, fields: dict[str, list[str]]) -> tuple[Recipient, ...]:
        committee = self.committee
        found: dict[str, Recipient] = {}
        for names in (_DELIVERED_TO, ("To", "Cc")):
            values = [v for name in names for v in fields.get(name.lower(), [])]
            for _, address in email.utils.getaddresses(values):
                try:
                    recipient = split_recipient(address, committee, self.handles)
                except UnknownKeepOut as exc:
                    # Kept, and shown to nobody: whom it should be kept from is unknown.
                    recipient = exc.recipient
                except AddressError:
                    continue
                found.setdefault(recipient.address, recipient)
            if found:
                break
        if not found:
            return (split_recipient(committee.address, committee),)
        return tuple(found.values())


def address_fields(raw: bytes) -> dict[str, list[str]]:
    """The values of the header fields the poller reads (Return-Path, where the
    server delivered it, To, Cc), by lower-case name, in order, as the email
    package reads them (folded lines joined, bytes that are not ASCII replaced):
    the header block ends at its blank line or at the first line that is not a
    header field. A regular expression over the header block: a fifth of what
    parsing it as a message cost, for each message of a drain."""
    head = _HEADER_END.split(raw, maxsplit=1)[0].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = _NOT_A_FIELD.search(head)
    if end is not None:
        head = head[:end.start()]
    found: dict[str, list[str]] = {}
    for name, value in _ADDRESS_FIELD.findall(head):
        found.setdefault(name.decode("ascii").lower(), []).append(
            value.lstrip(b" \t").decode("ascii", "replace"))
    return found


def return_path(values: Sequence[str]) -> str | None:
    """The envelope sender the receiving server recorded ('' for a bounce's <>)."""
    if not values:
        return None
    value = str(values[0]).strip()
    if value in ("<>", ""):
        return ""
    return email.utils.parseaddr(value)[1] or None
