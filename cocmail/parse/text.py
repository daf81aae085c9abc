"""Text from mail made safe to store and show: no NUL, no lone surrogate, a
header value as one line (RFC 2047 decoded)."""

from __future__ import annotations

import email.errors
import email.header
import re

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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
