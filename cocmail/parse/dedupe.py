"""When two deliveries are the same message: the dedupe key.

A message can reach cocmail twice: an MTA retries after a timeout, a provider
forwards it by SMTP and also keeps it in the IMAP mailbox cocmail drains. The
bytes then differ only in what the transport added on the way in (trace header
fields) and perhaps in line endings, so the key is the sha256 of the message
without those, line endings made LF.
"""

from __future__ import annotations

import hashlib
import re

# Header fields a transport adds on the way in. They differ between two
# deliveries of the same message (a retry, or SMTP and IMAP), so the dedupe key
# leaves them out.
_TRACE_FIELDS = frozenset({
    b"received", b"return-path", b"delivered-to", b"x-original-to", b"x-delivered-to",
    b"x-envelope-to", b"x-envelope-from", b"authentication-results", b"received-spf",
    b"arc-seal", b"arc-message-signature", b"arc-authentication-results",
})
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")


def dedupe_key(raw: bytes) -> str:
    """sha256 of the message without trace header fields, line endings made LF.

    >>> a = b"Received: by a\\r\\nSubject: x\\r\\n\\r\\nhi\\r\\n"
    >>> b = b"Received: by b\\nReceived: by c\\nSubject: x\\n\\nhi\\n"
    >>> dedupe_key(a) == dedupe_key(b)
    True
    """
    end = _end_of_header(raw)
    head = raw[:end].replace(b"\r\n", b"\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        match = _FIELD_NAME.match(line)
        skipping = bool(match and match.group(1).lower() in _TRACE_FIELDS)
        if not skipping:
            kept.append(line)
    digest = hashlib.sha256(b"\n".join(kept))
    # The body is hashed in pieces that end at a line feed, so a large message is
    # never copied whole.
    view = memoryview(raw)
    pos = end
    while pos < len(raw):
        stop = raw.find(b"\n", pos + _CHUNK)
        stop = len(raw) if stop < 0 else stop + 1
        digest.update(bytes(view[pos:stop]).replace(b"\r\n", b"\n"))
        pos = stop
    return digest.hexdigest()


_CHUNK = 1 << 20


def _end_of_header(raw: bytes) -> int:
    """Where the header block ends: at its blank line (which stays with the header)."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return min(ends) if ends else len(raw)
