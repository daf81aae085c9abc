"""The store's own long-lived keys, each kept in table ``keyring`` wrapped by a
master key (``keys/master.py``) and never written anywhere in the clear.

``audit`` is the key of the history's hash chain (``store/chain.py``);
``index`` keys the content hashes the store matches on (a message's dedupe
key and sha256, a reply's command key, an attachment's sha256: ``keyed``), so
a dump cannot confirm that a given text was reported. A key here outlives a
change of master key: re-wrapped, what it made stays valid.

A store opened with its master keys (``Store.use_keys``) makes the missing rows
in a transaction of their own before anything needs them; a key is never made
inside a caller's transaction, which might roll back after the key was used.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from cocmail.keys import cipher
from cocmail.keys.master import MasterKeys
from cocmail.store.models import Attachment, KeyringEntry, Message

AUDIT = "audit"
INDEX = "index"
NAMES = (AUDIT, INDEX)
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


def _aad(name: str) -> bytes:
    return b"cocmail keyring " + name.encode()


class Keyring:
    def __init__(self, master: MasterKeys) -> None:
        self.master = master
        self._keys: dict[str, bytes] = {}

    def prepare(self, engine: Engine, now: dt.datetime, reading: dict[str, Any]) -> None:
        """Every key of ``NAMES`` made (if the store has none yet) and opened.
        Two processes starting at once make one: the second finds the first's.
        The keys are read in a transaction that only reads (``reading``: on
        SQLite it takes no write lock, so a start does not wait on a busy
        writer); one that writes is begun only to make a missing key."""
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
                    wrapped = cipher.seal(self.master.key, key, _aad(name))
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
            return cipher.open_sealed(self.master.get(key_id), wrapped, _aad(name))
        except (KeyError, cipher.Unreadable) as exc:
            raise KeysMissing(f"the {name} key does not open: {exc.args[0]}") from None
