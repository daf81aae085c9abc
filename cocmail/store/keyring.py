"""The store's own long-lived keys, each kept in table ``keyring`` wrapped by a
master key (``keys/master.py``) and never written anywhere in the clear.

``audit`` is the key of the history's hash chain (``store/chain.py``);
``index`` keys the content hashes the store matches on (a message's dedupe
key and sha256, a reply's command key, an attachment's sha256: ``keyed``; an
address: ``content.address_index``), so a dump cannot confirm that a given
text was reported, or by whom; ``content`` seals the mail queued without a
case (``store/content.py``). A key here outlives a change of master key:
re-wrapped, what it made stays valid.

The keyring also opens the data keys of case content (``content_keys``) as
they are needed, and keeps them open for the process's life (a purge drops
the one it deletes).

A store opened with its master keys (``Store.use_keys``) makes the missing rows
in a transaction of their own before anything needs them; a key is never made
inside a caller's transaction, which might roll back after the key was used.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from cocmail.clock import Clock, SystemClock
from cocmail.keys import cipher
from cocmail.keys.master import MasterKeys
from cocmail.store import sealing
from cocmail.store.models import Attachment, ContentKey, KeyringEntry, Message

AUDIT = "audit"
INDEX = "index"
CONTENT = "content"
NAMES = (AUDIT, INDEX, CONTENT)
KEYS = "cocmail_keyring"  # where a connection carries its store's keyring (its info)


class KeysMissing(Exception):
    """The store was opened without its master keys, or they do not open a key
    it holds: nothing that needs a key can be written or checked."""


def of(db: Connection) -> Keyring:
    """The keyring of the store ``db`` belongs to."""
    keyring = db.info.get(KEYS)
    if keyring is None:
        raise KeysMissing("the store was opened without its master keys (Store.use_keys)")
    assert isinstance(keyring, Keyring)
    return keyring


def keyed(db: Connection, digest: str) -> str:
    """The stored form of the content hash ``digest`` (hex): keyed by ``index``.

    Content hashes are computed where the content is (``parse/dedupe.py``, the
    attachments, a reply's command key) and keyed here, where they are written
    and matched, so no plain one is stored."""
    return cipher.keyed_hash(of(db).key(INDEX), digest.encode())


def _key_stored_hashes(db: Connection, key: bytes) -> None:
    """A store from before the index key: its plain content hashes keyed, in the
    transaction that makes the key (keying a keyed hash is how a new one is made,
    so matching goes on across the change)."""
    def keyed_now(digest: str | None) -> str | None:
        return None if digest is None else cipher.keyed_hash(key, digest.encode())

    for row in db.execute(select(Message.id, Message.dedupe_key, Message.raw_sha256,
                                 Message.command_key)).all():
        db.execute(update(Message).where(Message.id == row.id).values(
            dedupe_key=keyed_now(row.dedupe_key), raw_sha256=keyed_now(row.raw_sha256),
            command_key=keyed_now(row.command_key)))
    for attachment_id, digest in db.execute(select(Attachment.id, Attachment.sha256)).all():
        db.execute(update(Attachment).where(Attachment.id == attachment_id).values(
            sha256=keyed_now(digest)))


def holds_keys(db: Connection) -> bool:
    """Whether the store holds a key already (then its master key must be found,
    never made anew)."""
    return db.execute(select(KeyringEntry.name).limit(1)).first() is not None


def keyring_aad(name: str) -> bytes:
    return b"cocmail keyring " + name.encode()


def content_aad(ref: bytes) -> bytes:
    """What a wrapped data key is bound to: its ref."""
    return b"cocmail content key " + ref.hex().encode()


class Keyring:
    def __init__(self, master: MasterKeys, clock: Clock | None = None,
                 reload: Callable[[], MasterKeys] | None = None) -> None:
        self.master = master
        # Reads the master keys again: a key wrapped under one this process was not
        # given (``cocmail keys rotate`` ran while it did) is opened after a reload.
        self.reload = reload
        # False (``secrets.encrypt_content``): content is written in the clear.
        self.sealing = True
        self.clock: Clock = clock or SystemClock()  # when a data key is made unasked
        self._keys: dict[str, bytes] = {}
        self._content: dict[bytes, bytes] = {}
        self._engine: Engine | None = None
        self._reading: dict[str, Any] = {}

    def prepare(self, engine: Engine, now: dt.datetime, reading: dict[str, Any]) -> None:
        """Every key of ``NAMES`` made (if the store has none yet) and opened.
        Two processes starting at once make one: the second finds the first's.
        The keys are read in a transaction that only reads (``reading``: on
        SQLite it takes no write lock, so a start does not wait on a busy
        writer); one that writes is begun only to make a missing key."""
        self._engine, self._reading = engine, reading
        with engine.connect().execution_options(**reading) as db:
            stored = {row.name: row for row in db.execute(select(KeyringEntry))}
        if any(name not in stored for name in NAMES):
            self._make(engine, now)
            with engine.connect().execution_options(**reading) as db:
                stored = {row.name: row for row in db.execute(select(KeyringEntry))}
        for row in stored.values():
            self._keys[row.name] = self._open(row.name, row.key_id, row.wrapped)

    def _make(self, engine: Engine, now: dt.datetime) -> None:
        with engine.begin() as db:
            stored = {row.name: row for row in db.execute(select(KeyringEntry))}
            for name in NAMES:
                if name not in stored:
                    key = cipher.new_key()
                    wrapped = cipher.seal(self.master.key, key, keyring_aad(name))
                    make = postgresql_insert if db.dialect.name == "postgresql" else sqlite_insert
                    made = db.execute(make(KeyringEntry).values(
                        name=name, key_id=self.master.current, wrapped=wrapped,
                        created_at=now).on_conflict_do_nothing()
                        .returning(KeyringEntry.name)).first()
                    if made is not None and name == INDEX:
                        _key_stored_hashes(db, key)

    def key(self, name: str) -> bytes:
        try:
            return self._keys[name]
        except KeyError:
            raise KeysMissing(f"the {name} key was not prepared (Store.use_keys)") from None

    def _open(self, name: str, key_id: str, wrapped: bytes) -> bytes:
        try:
            return cipher.open_sealed(self._master_key(key_id), wrapped, keyring_aad(name))
        except (KeyError, cipher.Unreadable) as exc:
            raise KeysMissing(f"the {name} key does not open: {exc.args[0]}") from None

    def content_key(self, ref: bytes) -> bytes:
        """The data key ``ref`` names, opened. One made by another process is read
        from the store on a connection of its own: a key is committed before
        anything it sealed can be seen, and one made in this process is known."""
        if ref == sealing.GENERAL:
            return self.key(CONTENT)
        key = self._content.get(ref)
        if key is not None:
            return key
        if self._engine is None:
            raise KeysMissing("the keyring was not prepared (Store.use_keys)")
        with self._engine.connect().execution_options(**self._reading) as db:
            row = db.execute(select(ContentKey.key_id, ContentKey.wrapped)
                             .where(ContentKey.ref == ref.hex())).first()
        if row is None:
            raise cipher.Unreadable(f"data key {ref.hex()} is gone (its case was purged)")
        key = self.open_content_key(ref, row.key_id, row.wrapped)
        self._content[ref] = key
        return key

    def open_stored(self, rows: Iterable[Any]) -> None:
        """Data keys read by the caller (rows of ``content_keys``: ref, key_id,
        wrapped) opened and kept, those not known yet."""
        for row in rows:
            ref = bytes.fromhex(row.ref)
            if ref not in self._content:
                self._content[ref] = self.open_content_key(ref, row.key_id, row.wrapped)

    def open_content_key(self, ref: bytes, key_id: str, wrapped: bytes) -> bytes:
        try:
            return cipher.open_sealed(self._master_key(key_id), wrapped, content_aad(ref))
        except (KeyError, cipher.Unreadable) as exc:
            raise KeysMissing(f"data key {ref.hex()} does not open: {exc.args[0]}") from None

    def index_of(self, address: str) -> str:
        """The keyed hash an address is matched by (its case folded):
        ``participants.email_index``, ``outbox.recipient_index``."""
        return cipher.keyed_hash(self.key(INDEX),
                                 b"address " + address.strip().lower().encode())

    def _master_key(self, key_id: str) -> bytes:
        if key_id not in self.master.keys and self.reload is not None:
            self.master = self.reload()
        return self.master.get(key_id)

    def remember(self, ref: bytes, key: bytes) -> None:
        self._content[ref] = key

    def forget(self, ref: bytes) -> None:
        key = self._content.pop(ref, None)
        if key is not None:
            cipher.forget(key)
