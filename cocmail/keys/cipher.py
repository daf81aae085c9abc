"""AES-256-GCM with the layout cocmail stores: what a sealed value and a wrapped
key look like as bytes, and the keyed hashes that stand in for a value where the
store must match without reading it.

A sealed value is ``VERSION || nonce (12) || ciphertext || tag (16)``. The
associated data binds it to where it belongs (a table, a column, a row's case),
so a ciphertext copied into another row, or another case, does not open.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"
KEY_BYTES = 32
NONCE_BYTES = 12
OVERHEAD = len(VERSION) + NONCE_BYTES + 16


class Unreadable(Exception):
    """A sealed value that does not open with the key given: a wrong key, another
    row's value, or bytes changed since they were sealed."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def seal(key: bytes, plaintext: bytes, aad: bytes, prefix: bytes = b"") -> bytes:
    """``plaintext`` encrypted and authenticated under ``key``, bound to ``aad``
    (after ``prefix``, in one allocation: a 20 MB report is copied once, not
    once per part put before it).

    >>> key = bytes(32)
    >>> open_sealed(key, seal(key, b"a report", b"messages.raw 7"), b"messages.raw 7")
    b'a report'
    """
    nonce = os.urandom(NONCE_BYTES)
    return b"".join((prefix, VERSION, nonce, AESGCM(key).encrypt(nonce, plaintext, aad)))


def open_sealed(key: bytes, sealed: bytes | memoryview, aad: bytes) -> bytes:
    """What ``seal`` was given; ``Unreadable`` when ``sealed`` was not made by
    ``seal(key, …, aad)``.

    >>> open_sealed(bytes(32), seal(bytes(32), b"x", b"case 1"), b"case 2")
    Traceback (most recent call last):
    ...
    cocmail.keys.cipher.Unreadable: the value does not open with this key here
    """
    if len(sealed) < OVERHEAD or sealed[:1] != VERSION:
        raise Unreadable("not a value cocmail sealed")
    view = memoryview(sealed)  # slices of it copy nothing
    nonce, body = bytes(view[1:1 + NONCE_BYTES]), view[1 + NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise Unreadable("the value does not open with this key here") from None


def keyed_hash(key: bytes, value: bytes) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, in hex: equal values give equal
    hashes, and without the key nobody can tell which value a hash stands for.

    >>> keyed_hash(bytes(32), b"a") == keyed_hash(bytes(32), b"a") != keyed_hash(bytes(32), b"b")
    True
    """
    return hmac.new(key, value, hashlib.sha256).hexdigest()


def derive(key: bytes, purpose: str) -> bytes:
    """A key for one ``purpose`` made from ``key`` (HMAC-SHA256 as the
    extract-and-expand of one block), so one secret never serves two jobs."""
    return hmac.new(key, b"cocmail " + purpose.encode(), hashlib.sha256).digest()
