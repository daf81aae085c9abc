"""The address forms cocmail answers to, and how an address is split into one of them.

Forms, for a conduct address ``conduct@example.org`` and separator ``+``:

    conduct@example.org               intake: a new report (or a reply threaded by headers)
    conduct+without-<handle>@example.org intake, keeping that committee member out of the case
    conduct+<case>.<token>@example.org   reply: a participant's private reply address

Anything else is refused at RCPT time with a sentence a person understands.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from cocmail.config import Committee
from cocmail.errors import AddressError
from cocmail.route.tokens import TOKEN_ALPHABET, TOKEN_LENGTH
from cocmail.syntax import HANDLE_PATTERN


@dataclass(frozen=True)
class Recipient:
    kind: str  # "intake" | "reply"
    address: str
    case_id: int | None = None
    token: str | None = None
    without: str | None = None  # the handle of a member to keep out
    # A keep-out address that names no member (a typo, a handle never given): the
    # message is refused (SMTP) or kept and shown to nobody (IMAP, replay).
    unknown: bool = False


class UnknownKeepOut(AddressError):
    """A ``without-<handle>`` address whose handle names no committee member."""

    def __init__(self, message: str, recipient: Recipient) -> None:
        super().__init__(message)
        self.recipient = recipient


def _reply(match: re.Match[str], address: str, committee: Committee,
           handles: Collection[str]) -> Recipient:
    return Recipient("reply", address, case_id=int(match.group(1)), token=match.group(2))


def _without(match: re.Match[str], address: str, committee: Committee,
             handles: Collection[str]) -> Recipient:
    handle = match.group(1)
    if handle not in handles:
        raise UnknownKeepOut(
            f"{address}: there is no committee member {handle!r}; "
            f"reports go to {committee.address}",
            Recipient("intake", address, without=handle, unknown=True))
    return Recipient("intake", address, without=handle)


# The sub-address forms after the separator, tried in order (STYLE.md §2).
_DETAIL_FORMS: list[
    tuple[re.Pattern[str],
          Callable[[re.Match[str], str, Committee, Collection[str]], Recipient]]
] = [
    (re.compile(rf"([1-9][0-9]{{0,17}})\.([{TOKEN_ALPHABET}]{{{TOKEN_LENGTH}}})"), _reply),
    (re.compile(rf"without-({HANDLE_PATTERN})"), _without),
]


def split_recipient(address: str, committee: Committee,
                    handles: Collection[str] | None = None) -> Recipient:
    """Classify one envelope recipient, or raise ``AddressError`` with the reason
    (``UnknownKeepOut`` for a keep-out address of no member). ``handles`` are the
    handles a keep-out address may name: the members' own and those they had
    before (``case.members.keep_out_handles``); the roster's by default.

    >>> from cocmail.config import Committee
    >>> c = Committee("C", "conduct", "conduct@example.org", "+", None, None, ())
    >>> split_recipient("Conduct@Example.org", c).kind
    'intake'
    >>> r = split_recipient("conduct+42.abcdefghijklmnop@example.org", c)
    >>> (r.kind, r.case_id, r.token)
    ('reply', 42, 'abcdefghijklmnop')
    """
    address = address.strip().strip("<>").strip()
    if address.count("@") != 1:
        raise AddressError(f"{address!r} is not an email address")
    local, domain = address.rsplit("@", 1)
    local, domain = local.lower(), domain.lower()
    if domain != committee.domain:
        raise AddressError(
            f"this server only accepts mail for {committee.address}; it does not relay"
        )
    normalized = f"{local}@{domain}"
    if local == committee.local_part:
        return Recipient("intake", normalized)
    prefix = committee.local_part + committee.plus_separator
    if local.startswith(prefix):
        detail = local[len(prefix):]
        known = handles if handles is not None else {m.handle for m in committee.members}
        for pattern, build in _DETAIL_FORMS:
            match = pattern.fullmatch(detail)
            if match:
                return build(match, normalized, committee, known)
        raise AddressError(
            f"{address} is not a valid reply address of {committee.address}; "
            "check it was copied whole, or write to the address itself"
        )
    raise AddressError(f"there is no mailbox {address}; reports go to {committee.address}")


def reply_address(committee: Committee, case_id: int, token: str) -> str:
    return f"{committee.local_part}{committee.plus_separator}{case_id}.{token}@{committee.domain}"


def without_address(committee: Committee, handle: str) -> str:
    """The intake address that keeps member ``handle`` out of the case it opens."""
    return (f"{committee.local_part}{committee.plus_separator}without-{handle}"
            f"@{committee.domain}")

