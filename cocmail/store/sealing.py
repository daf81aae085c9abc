"""Values sealed under a content key, as the store holds them, and the column
types that open them as they are read.

A case's content (and a quarantined message's, and the mail cocmail queues
without a case) is sealed under a data key of its own (``store/content.py``
makes them and says which column holds what), so destroying the key is
destroying every copy of the content, wherever a dead row version or a
replica still holds its bytes.

A sealed value names its key: ``ref (8 bytes) || cipher.seal(…)``, bound to its
column (the associated data), so a value copied into another column does not
open. Bytes are stored as ``MAGIC || that`` (and so is text on SQLite, whose
text columns keep bytes as given); text elsewhere, and JSON, as ``PREFIX`` and
its base64. A value without the mark is one written before encryption at rest
(``cocmail keys rotate`` seals those): it is read as it is.

The column types refuse a value in the clear (``sealed.Refused``): the only way
in is ``content.seal_row`` and its kin. Reading opens with the keyring of the
store the connection belongs to (``Store.use_keys`` puts it on the engine's
dialect, which is all a type is given).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from functools import cache
from typing import Any, Protocol

from sqlalchemy import JSON, LargeBinary, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from cocmail.keys import cipher
from cocmail.store.jsontext import json_text

REF_BYTES = 8
PREFIX = "sealed:"
MAGIC = b"\xffsealed:"
GENERAL = bytes(REF_BYTES)  # the ref of the store's own content key (mail without a case)
KEYRING = "cocmail_content_keys"  # the dialect attribute that carries the keyring


class Refused(TypeError):
    """A value in the clear given to a sealed column."""


class ContentKeys(Protocol):
    sealing: bool  # False: a value in the clear is taken (``secrets.encrypt_content``)

    def content_key(self, ref: bytes) -> bytes: ...


@cache
def _aad(column: str) -> bytes:
    return b"cocmail " + column.encode()


def seal_bytes(key: bytes, ref: bytes, column: str, plaintext: bytes) -> bytes:
    return cipher.seal(key, plaintext, _aad(column), prefix=MAGIC + ref)


def sealed_bytes_size(ref: bytes, plaintext: bytes) -> int:
    return cipher.sealed_size(plaintext, MAGIC + ref)


def seal_bytes_pieces(key: bytes, ref: bytes, column: str, plaintext: bytes) -> Iterator[bytes]:
    """``seal_bytes``'s value, in pieces as it is made (``cipher.seal_pieces``)."""
    return cipher.seal_pieces(key, plaintext, _aad(column), prefix=MAGIC + ref)


def seal_text(key: bytes, ref: bytes, column: str, plaintext: str) -> str:
    blob = ref + cipher.seal(key, plaintext.encode("utf-8", "surrogateescape"), _aad(column))
    return PREFIX + base64.b64encode(blob).decode()


def is_sealed(value: object) -> bool:
    if isinstance(value, str):
        return value.startswith(PREFIX)
    if isinstance(value, bytes | memoryview):
        return bytes(value[:len(MAGIC)]) == MAGIC
    return False


def ref_of(value: str | bytes) -> bytes:
    """The ref of the key a sealed value was sealed under."""
    if isinstance(value, str):
        return base64.b64decode(value[len(PREFIX):len(PREFIX) + 16])[:REF_BYTES]
    return bytes(value[len(MAGIC):len(MAGIC) + REF_BYTES])


def open_bytes(keys: ContentKeys, column: str, sealed: bytes) -> bytes:
    blob = memoryview(sealed)[len(MAGIC):]  # a view: a large message is not copied
    ref = bytes(blob[:REF_BYTES])
    return cipher.open_sealed(keys.content_key(ref), blob[REF_BYTES:], _aad(column))


def open_text(keys: ContentKeys, column: str, sealed: str) -> str:
    blob = base64.b64decode(sealed[len(PREFIX):])
    ref = blob[:REF_BYTES]
    return cipher.open_sealed(keys.content_key(ref), blob[REF_BYTES:],
                              _aad(column)).decode("utf-8", "surrogateescape")


def _refuse(column: str, dialect: Dialect) -> None:
    keys = getattr(dialect, KEYRING, None)
    if keys is None or keys.sealing:
        raise Refused(f"{column}: given in the clear")


def _keys(dialect: Dialect) -> ContentKeys:
    keys = getattr(dialect, KEYRING, None)
    if keys is None:
        raise cipher.Unreadable("a sealed value read from a store opened without its "
                                "master keys (Store.use_keys)")
    return keys  # type: ignore[no-any-return]


class Sealed:
    """What the sealed column types share: the column they are bound to, and how
    long the value in the clear may be (a longer one is cut before sealing,
    as ``Bounded`` cuts a column in the clear)."""

    column: str
    length: int | None

    def clear_value(self, value: Any) -> Any:
        """``value`` as it is sealed: text cut to ``length``, JSON as its text."""
        return value

    def seal(self, key: bytes, ref: bytes, clear: Any, dialect: Dialect) -> Any:
        """``clear`` (what ``clear_value`` made) sealed in the form the column
        stores: text, which any database's text column takes."""
        return seal_text(key, ref, self.column, clear)


class SealedBytes(TypeDecorator[bytes], Sealed):
    impl = LargeBinary
    cache_ok = True

    def __init__(self, column: str) -> None:
        super().__init__()
        self.column, self.length = column, None

    def seal(self, key: bytes, ref: bytes, clear: Any, dialect: Dialect) -> Any:
        return seal_bytes(key, ref, self.column, bytes(clear))

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        if value is None or is_sealed(value):
            return value
        _refuse(self.column, dialect)
        return value

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        if value is None or not is_sealed(value):
            return None if value is None else bytes(value)
        return open_bytes(_keys(dialect), self.column, value)


class SealedText(TypeDecorator[str], Sealed):
    impl = Text
    cache_ok = True

    def __init__(self, column: str, length: int | None = None) -> None:
        super().__init__()
        self.column, self.length = column, length

    def clear_value(self, value: Any) -> Any:
        if isinstance(value, str) and self.length is not None:
            return value[:self.length]
        return value

    def seal(self, key: bytes, ref: bytes, clear: Any, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            # SQLite keeps bytes in a text column as given: the bytes form, without
            # base64, is a third shorter to write and needs no encoding either way.
            return seal_bytes(key, ref, self.column, clear.encode("utf-8", "surrogateescape"))
        return seal_text(key, ref, self.column, clear)

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or is_sealed(value):
            return value
        _refuse(self.column, dialect)
        return value

    def process_result_value(self, value: str | bytes | None, dialect: Dialect) -> str | None:
        if isinstance(value, bytes) and is_sealed(value):
            return open_bytes(_keys(dialect), self.column, value).decode(
                "utf-8", "surrogateescape")
        if value is None or not is_sealed(value):
            return value  # type: ignore[return-value]
        return open_text(_keys(dialect), self.column, value)  # type: ignore[arg-type]


class SealedJSON(TypeDecorator[Any], Sealed):
    """A JSON value sealed whole: the column holds the sealed text of its JSON."""

    impl = JSON
    cache_ok = True

    def __init__(self, column: str) -> None:
        super().__init__()
        self.column, self.length = column, None

    def clear_value(self, value: Any) -> Any:
        return json_text(value)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or is_sealed(value):
            return value
        _refuse(self.column, dialect)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if not is_sealed(value):
            return value
        return json.loads(open_text(_keys(dialect), self.column, value))


class PartlySealedJSON(SealedJSON):
    """A JSON value some of whose parts are sealed: the whole of it (a mail's
    payload, ``SealedJSON``'s way), or single values of an object (the free
    text of an event, each sealed as its JSON). The rest stays in the clear,
    so a value is taken as it is given."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if is_sealed(value):
            return json.loads(open_text(_keys(dialect), self.column, value))
        if isinstance(value, dict) and any(is_sealed(v) for v in value.values()):
            keys = _keys(dialect)
            return {name: json.loads(open_text(keys, self.column, v)) if is_sealed(v) else v
                    for name, v in value.items()}
        return value
