"""Re-wrapping under a new master key and sealing what was stored in the clear
(``store/rekey.py``): every case stays readable, a key is under the old master
key or the new one and never lost, and a store written before encryption at
rest keeps no byte of its text in the clear once sealed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, text

from cocmail.case import events
from cocmail.keys import master
from cocmail.store import rekey, sealing
from cocmail.store.db import Store
from cocmail.store.models import ContentKey, Message, Participant
from tests.conftest import MASTER_KEY, utc
from tests.intake.test_intake import deliver, intake_for
from tests.mail import message

NOW = utc(2026, 12, 1)
NEW_KEY = "a7" * 32


def _texts(store: Store) -> list[str | None]:
    with store.reading() as session:
        return [m.text for m in session.scalars(select(Message).order_by(Message.id))]


def _rewrap_all(store: Store, batch: int) -> int:
    batches = 0
    while True:
        with store.transaction() as db:
            if not rekey.rewrap_batch(db, batch):
                return batches
        batches += 1


def test_keys_move_to_the_new_master_key_batch_by_batch_and_all_stay_readable(
        store: Store) -> None:
    intake = intake_for(store)
    for n in range(5):
        assert deliver(intake, message(sender=f"r{n}@reporter.example",
                                       body=f"Report number {n}.\n")).opened
    old = store.keyring.master.current  # type: ignore[union-attr]
    # The key file as ``keys rotate`` leaves it: the new key first, the old after.
    store.keyring.master = master.parse(f"{NEW_KEY}\n{MASTER_KEY}\n", "test")  # type: ignore[union-attr]
    new = store.keyring.master.current  # type: ignore[union-attr]
    with store.transaction() as db:
        assert rekey.rewrap_keyring(db) == 3
    with store.transaction() as db:  # one batch, then stopped: some moved, none lost
        assert rekey.rewrap_batch(db, 2) == 2
    with store.reading() as session:
        status = rekey.status(session.connection(), new)
    assert status.wrapped == {new: 3 + 2, old: 3} and status.behind == 3
    assert _rewrap_all(store, 2) == 2
    with store.reading() as session:
        assert rekey.status(session.connection(), new).wrapped == {new: 3 + 5}
        assert session.scalar(select(func.count()).select_from(ContentKey)) == 5

    # The new key alone opens every case: a process started now knows no other.
    again = Store(store.url)
    try:
        again.use_keys(master.parse(NEW_KEY, "test"), NOW)
        assert _texts(again) == [f"Report number {n}.\n" for n in range(5)]
    finally:
        again.dispose()


def test_content_stored_in_the_clear_is_sealed_once_and_read_the_same(
        store: Store, db_url: str) -> None:
    store.keyring.sealing = False  # type: ignore[union-attr]  # as an earlier cocmail wrote
    intake = intake_for(store)
    assert deliver(intake, message(body="CLEAR-SECRET was said.\n")).opened
    with store.reading() as session:
        raw = session.execute(text("SELECT text FROM messages")).scalar_one()
        seat = session.execute(text("SELECT email FROM participants WHERE role = 'reporter'")
                               ).scalar_one()
    assert raw == "CLEAR-SECRET was said.\n" and seat == "rita@reporter.example"

    store.keyring.sealing = True  # type: ignore[union-attr]
    changed = 0
    for model, by in rekey.SEALED_TABLES:
        after = 0
        while True:
            with store.transaction() as db:
                after, looked, done = rekey.seal_batch(db, model, by, after, 1,
                                                       events.private, NOW)
            if not looked:
                break
            changed += done
    assert changed > 0
    again = 0
    for model, by in rekey.SEALED_TABLES:  # a second run finds nothing in the clear
        with store.transaction() as db:
            again += rekey.seal_batch(db, model, by, 0, 10_000, events.private, NOW)[2]
    assert again == 0
    assert _texts(store) == ["CLEAR-SECRET was said.\n"]
    with store.reading() as session:
        assert session.scalars(select(Participant.email).where(
            Participant.role == "reporter")).one() == "rita@reporter.example"
        stored = session.execute(text("SELECT text FROM messages")).scalar_one()
    assert sealing.is_sealed(stored)
    if db_url.startswith("sqlite"):
        store.scrub()
        path = Path(db_url.removeprefix("sqlite:///"))
        for file in (path, Path(f"{path}-wal")):
            if file.exists():
                data = file.read_bytes()
                assert b"CLEAR-SECRET" not in data and b"rita@reporter.example" not in data
