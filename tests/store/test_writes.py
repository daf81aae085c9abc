"""The intake's hot-path inserts, on SQLite and PostgreSQL: each row's new id is
the id it was stored under, whatever the mix of columns and whatever ids the
table held before."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError

from cocmail.store import bulk, content, writes
from cocmail.store.db import Store
from cocmail.store.models import Message, Participant
from cocmail.telemetry.masking import mask_addresses

NOW = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)


def _rows(case_id: int, tag: str) -> list[dict[str, object]]:
    # Runs of rows with different columns: with and without a name and a clearing.
    return [
        {"case_id": case_id, "role": "reporter", "email": f"r-{tag}@x.example",
         "created_at": NOW},
        *({"case_id": case_id, "role": "member", "email": f"m{n}-{tag}@x.example",
           "name": f"M{n}", "handle": f"m{n}", "created_at": NOW, "cleared_at": NOW}
          for n in range(3)),
        {"case_id": case_id, "role": "party", "email": f"p-{tag}@x.example",
         "created_at": NOW},
        {"case_id": case_id, "role": "member", "email": f"m9-{tag}@x.example",
         "name": "M9", "handle": "m9", "created_at": NOW, "cleared_at": None},
    ]


def _stored_as(store: Store, ids: list[int]) -> list[str]:
    with store.unit_of_work() as s:
        emails = dict(s.execute(select(Participant.id, Participant.email)
                                .where(Participant.id.in_(ids))).all())
    return [emails[i] for i in ids]


def test_ids_given_back_are_the_rows_stored(store: Store) -> None:
    with store.transaction() as db:
        first, second = writes.insert_cases(db, ["email", "email"], NOW)
        rows = _rows(first, "a") + _rows(second, "b")
        ids = writes.insert_participants(db, rows)
    assert len(set(ids)) == len(rows)
    assert _stored_as(store, ids) == [r["email"] for r in rows]

    # Rows whose columns differ go in as runs of their own: the ids still match.
    with store.transaction() as db:
        rows = _rows(first, "mixed")
        ref = content.case_refs(db, [first], NOW)[first]
        mixed = bulk.insert_many(db, Participant.__table__, [
            content.seal_row(db, Participant.__table__, ref, dict(r)) for r in rows])
    assert _stored_as(store, mixed) == [r["email"] for r in rows]

    # The newest rows gone (a purge, a restore): the next ids are taken again.
    with store.transaction() as db:
        db.execute(text("DELETE FROM participants WHERE id >= :id"), {"id": ids[-3]})
    with store.transaction() as db:
        rows = _rows(second, "c")
        again = writes.insert_participants(db, rows)
    assert _stored_as(store, again) == [r["email"] for r in rows]


def test_times_are_stored_as_given_when_they_repeat_and_change(store: Store) -> None:
    # A time's text is remembered for the last value bound: the same object again,
    # an equal one, another one, None, and the first once more all come back as given.
    later = NOW + dt.timedelta(seconds=1)
    equal = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)
    elsewhere = dt.datetime(2026, 11, 25, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    cleared = [NOW, NOW, equal, later, None, elsewhere, NOW, None, later]
    with store.transaction() as db:
        [case_id] = writes.insert_cases(db, ["email"], NOW)
        ids = writes.insert_participants(db, [
            {"case_id": case_id, "role": "member", "email": f"m{n}@x.example",
             "handle": f"m{n}", "created_at": NOW, "cleared_at": when}
            for n, when in enumerate(cleared)])
    with store.unit_of_work() as s:
        stored = dict(s.execute(select(Participant.id, Participant.cleared_at)
                                .where(Participant.id.in_(ids))).all())
    assert [stored[i] for i in ids] == cleared


def test_a_failed_insert_shows_none_of_its_values(store: Store) -> None:
    # The error of a bug goes to the log with its traceback: it names the statement,
    # never the values (a report's text, a reporter's address). PostgreSQL's own
    # detail names the key, address included; the log masks that (logs.py).
    seat = {"case_id": 0, "role": "reporter", "email": "rita.secret@reporter.example",
            "name": "Rita Secretname", "created_at": NOW}
    with store.transaction() as db:
        [seat["case_id"]] = writes.insert_cases(db, ["email"], NOW)
        writes.insert_participants(db, [seat])
    with pytest.raises(IntegrityError) as hot_path, store.transaction() as db:
        writes.insert_participants(db, [seat])
    with pytest.raises(IntegrityError) as orm, store.unit_of_work() as s:
        db = s.connection()
        ref = content.case_refs(db, [seat["case_id"]], NOW)[seat["case_id"]]
        s.add(Participant(**content.seal_row(db, Participant.__table__, ref, {
            **seat, "email_index": writes.participant_index(db, seat["email"])})))
    # An address in the clear never gets as far as the database: the column refuses it.
    with pytest.raises(StatementError, match=r"participants\.email: given in the clear") as clear, \
            store.unit_of_work() as s:
        s.add(Participant(**seat))
    assert "rita.secret" not in str(clear.value)
    for error in (hot_path.value, orm.value):
        assert "INSERT INTO participants" in str(error)
        assert "Secretname" not in str(error)
        assert "rita.secret" not in mask_addresses(str(error))


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "clear"])
def test_a_large_message_is_stored_whole_beside_small_ones(store: Store, sealed: bool) -> None:
    # On SQLite a large raw message is written into its blob piece by piece (sealed
    # as it goes); elsewhere, and when small, as a bound value. Either way the same
    # bytes come back, and sealed ones are not in the database in the clear.
    assert store.keyring is not None
    store.keyring.sealing = sealed
    marker = b"THE-RECORDING-"
    large = b"".join(marker + str(n).encode() + b"\r\n" for n in range(content.LARGE // 8))
    raws = [b"small one\r\n", large, b"small two\r\n"]
    with store.transaction() as db:
        [case_id] = writes.insert_cases(db, ["email"], NOW)
        ids = writes.insert_messages(db, [
            {"case_id": case_id, "direction": "in", "channel": "smtp", "raw_sha256": str(n),
             "raw_size": len(raw), "raw": raw, "recipients": [], "received_at": NOW,
             "verified": False}
            for n, raw in enumerate(raws)])
    with store.unit_of_work() as s:
        stored = dict(s.execute(select(Message.id, Message.raw).where(Message.id.in_(ids))).all())
        in_table = [bytes(value) for value in s.execute(
            text("SELECT raw FROM messages ORDER BY id")).scalars()]
    assert [stored[i] for i in ids] == raws
    assert len(large) > content.LARGE
    assert all((marker in value) is not sealed for value in in_table if len(value) > 1000)
