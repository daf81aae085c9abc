"""The content hashes the store matches on are keyed: no plain sha256 of a
reported text is in it, a re-delivery is still found, and a store from before
the index key has its hashes keyed once, matching going on across the change."""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, select, update

from cocmail.intake.service import Intake
from cocmail.parse.dedupe import dedupe_key
from cocmail.store import keyring
from cocmail.store.db import Store
from cocmail.store.models import Attachment, KeyringEntry, Message
from tests.conftest import keyed
from tests.intake.test_intake import deliver, intake_for
from tests.mail import message

ATTACHED = (b"From: rita@reporter.example\r\nTo: conduct@example.org\r\nSubject: photo\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nSee the photo.\r\n"
            b"--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; "
            b"filename=p.png\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n")


def _hashes(store: Store) -> set[str]:
    with store.reading() as session:
        found = set()
        for row in session.execute(select(Message.dedupe_key, Message.raw_sha256,
                                          Message.command_key)):
            found |= {value for value in row if value}
        return found | set(session.scalars(select(Attachment.sha256)))


def _plain(raws: list[bytes]) -> set[str]:
    return ({dedupe_key(raw) for raw in raws} | {hashlib.sha256(raw).hexdigest()
                                                for raw in raws}
            | {hashlib.sha256(b"hello").hexdigest()})


def test_no_plain_hash_is_stored_and_a_redelivery_is_found(store: Store) -> None:
    intake: Intake = intake_for(store)
    raws = [message(), ATTACHED]
    first = [deliver(intake, raw) for raw in raws]
    assert all(r.opened for r in first)
    assert len(_hashes(store)) == 5 and not _hashes(store) & _plain(raws)
    again = deliver(intake, b"Received: by another.example\r\n" + raws[0])
    assert again.duplicate and again.message_id == first[0].message_id


def test_a_store_from_before_the_index_key_has_its_hashes_keyed_once(store: Store,
                                                                     db_url: str) -> None:
    intake = intake_for(store)
    raws = [message(), ATTACHED]
    first = [deliver(intake, raw) for raw in raws]
    with store.transaction() as db:  # as an earlier cocmail left it: plain hashes
        index = keyring.of(db).key(keyring.INDEX)
        db.execute(delete(KeyringEntry).where(KeyringEntry.name == keyring.INDEX))
        for raw, result in zip(raws, first, strict=True):
            db.execute(update(Message).where(Message.id == result.message_id).values(
                dedupe_key=dedupe_key(raw), raw_sha256=hashlib.sha256(raw).hexdigest()))
        db.execute(update(Attachment).values(sha256=hashlib.sha256(b"hello").hexdigest()))
    assert _hashes(store) <= _plain(raws)

    later = keyed(Store(db_url))  # the next start makes the index key, keys every hash
    assert later.keyring is not None and later.keyring.key(keyring.INDEX) != index
    converted = _hashes(later)
    assert len(converted) == 5 and not converted & _plain(raws)
    again = deliver(intake_for(later), raws[1])
    assert again.duplicate and again.message_id == first[1].message_id
    keyed(Store(db_url))  # and a start after that keys nothing again
    assert _hashes(later) == converted
