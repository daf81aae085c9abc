"""The shapes of what people type: an address and a member's handle.

One home for both, read by the config (a member's address and handle), filing
(``on-behalf-of``), routing (``conduct+without-<handle>``) and the masking of
logs (``telemetry/masking.py``), which looks for anything address-shaped.
"""

from __future__ import annotations

import re

HANDLE_PATTERN = r"[a-z][a-z0-9_-]{0,31}"
HANDLE = re.compile(HANDLE_PATTERN)
"""A member's handle: lower case, a letter first, at most 32 characters."""

ADDRESS = re.compile(r"[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")
"""An address a person gives (``fullmatch``): a plain local part, a dotted domain.

>>> bool(ADDRESS.fullmatch("rita@example.net")), bool(ADDRESS.fullmatch("rita@localhost"))
(True, False)
"""

# Anything shaped like an address in free text: every local part RFC 5322 (and
# RFC 6532) allows, a quoted one with its spaces included ("rita smith"@…,
# rita{x}@…, o'brien@…, rïta@…), then a domain of dotted labels or a literal.
# Wider than ADDRESS on purpose: what it finds is hidden, so it errs wide.
_LOCAL_PART = r'(?:"(?:[^"\\\r\n]|\\.)*"|[^\s<>()\[\]\\,;:@"]+)'
ADDRESS_IN_TEXT = re.compile(_LOCAL_PART + r"@((?:[\w-]+\.)*[\w-]+|\[[^\]\s]*\])")
"""Every address in a text (``finditer``); group 1 is its domain."""
