"""What a log line or an operator's listing may show of an address: its domain."""

from __future__ import annotations

from cocmail.syntax import ADDRESS_IN_TEXT as _ANY_ADDRESS


def masked(address: str) -> str:
    """An address as a log or an operator's listing shows it: its domain only.

    >>> masked("rita@reporter.example")
    '…@reporter.example'
    """
    return "…@" + address.rsplit("@", 1)[-1]


def mask_addresses(text: str) -> str:
    """``text`` with every address in it shown as ``masked`` shows one: a relay's
    "550 5.1.1 <rita@x.example>: no such user", a reply address with its token.

    >>> mask_addresses("550 5.1.1 <Rita.R@Reporter.Example>: no such user")
    '550 5.1.1 <…@Reporter.Example>: no such user'
    >>> mask_addresses("conduct+42.abcdefghijklmnop@example.org, bob@x.org; @decorator")
    '…@example.org, …@x.org; @decorator'
    >>> mask_addresses('"rita smith"@x.example rita{x}@x.example <o\\'brien@x.example> r\u00efta@x')
    '…@x.example …@x.example <…@x.example> …@x'
    """
    return _ANY_ADDRESS.sub(lambda m: "…@" + m.group(1), text)
