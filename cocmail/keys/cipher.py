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
from collections.abc import Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = len(VERSION) + NONCE_BYTES + TAG_BYTES
_KEPT = 4096  # keys whose cipher is kept made (a process uses few at a time)
_ciphers: dict[bytes, AESGCM] = {}


class Unreadable(Exception):
    """A sealed value that does not open with the key given: a wrong key, another
    row's value, or bytes changed since they were sealed."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def _cipher(key: bytes) -> AESGCM:
    """The AES-GCM cipher of ``key``, made once (making one costs as much as
    sealing a short value)."""
    made = _ciphers.get(key)
    if made is None:
        if len(_ciphers) >= _KEPT:
            _ciphers.clear()
        made = _ciphers[key] = AESGCM(key)
    return made


def forget(key: bytes) -> None:
    """``key`` is destroyed: its cipher is not kept either."""
    _ciphers.pop(key, None)


def seal(key: bytes, plaintext: bytes, aad: bytes, prefix: bytes = b"") -> bytes:
    """``plaintext`` encrypted and authenticated under ``key``, bound to ``aad``,
    after ``prefix``.

    >>> key = bytes(32)
    >>> open_sealed(key, seal(key, b"a report", b"messages.raw 7"), b"messages.raw 7")
    b'a report'
    """
    nonce = os.urandom(NONCE_BYTES)
    return b"".join((prefix, VERSION, nonce, _cipher(key).encrypt(nonce, plaintext, aad)))


def sealed_size(plaintext: bytes, prefix: bytes = b"") -> int:
    """How long ``seal(…, plaintext, …, prefix)`` is."""
    return len(prefix) + OVERHEAD + len(plaintext)


def seal_pieces(key: bytes, plaintext: bytes, aad: bytes, prefix: bytes = b"",
                piece: int = 1 << 20) -> Iterator[bytes]:
    """What ``seal`` makes, in pieces of about ``piece`` bytes as they are
    encrypted, for a writer that takes it piecewise (a large report is never
    held sealed whole beside its text in the clear). The same GCM: the joined
    pieces open with ``open_sealed``.

    >>> key = bytes(32)
    >>> sealed = b"".join(seal_pieces(key, b"a report", b"x", piece=3))
    >>> open_sealed(key, sealed, b"x")
    b'a report'
    """
    nonce = os.urandom(NONCE_BYTES)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    yield prefix + VERSION + nonce
    view = memoryview(plaintext)
    for start in range(0, len(view), piece):
        yield encryptor.update(view[start:start + piece])
    yield encryptor.finalize() + encryptor.tag


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
        return _cipher(key).decrypt(nonce, body, aad)
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
