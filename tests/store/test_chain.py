"""The history as a hash chain: an untouched store verifies, after a purge too; an
event changed, removed, added or swapped is named as the first broken link."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import Connection

from cocmail.case import purge
from cocmail.case.events import EventKind
from cocmail.store import chain
from cocmail.store.db import Store
from cocmail.store.models import Case, Event
from tests.committee import Committee


@pytest.fixture
def committee(store: Store, tmp_path: Path, db_url: str) -> Committee:
    return Committee(store, tmp_path, db_url)


def _worked_case(committee: Committee) -> int:
    """A case with a history of every sort: opened, pages, no-conflicts, a vote with
    a reason, a follow-up, a note."""
    case = committee.report()
    committee.no_conflict(case)
    committee.reply(case, "bob", "ack\nseverity high\nfollow-up 3d call the venue\n")
    committee.reply(case, "carol", "reconvene\nvote coaching two sessions, REASON-MARKER\n")
    return case


def _broken(store: Store, case_id: int | None = None) -> list[chain.Broken]:
    with store.reading() as session:
        return [found for _, found in chain.verify(
            session.connection(), EventKind.PURGED, purge.cleared_keys, case_id)
            if found is not None]


def _events(store: Store, case_id: int) -> list[Event]:
    with store.unit_of_work() as session:
        return list(session.scalars(select(Event).where(Event.case_id == case_id)
                                    .order_by(Event.id)))


def _unguarded(db: Connection) -> None:
    """What an attacker with the database's password does first: the append-only
    triggers are gone."""
    if db.dialect.name == "sqlite":
        db.execute(text("DROP TRIGGER events_no_update"))
        db.execute(text("DROP TRIGGER events_no_delete"))
    else:
        db.execute(text("ALTER TABLE events DISABLE TRIGGER events_append_only"))


def test_an_untouched_history_verifies_and_every_event_is_a_link(committee: Committee) -> None:
    case = _worked_case(committee)
    second = committee.report()
    events = _events(committee.store, case)
    assert len(events) > 8
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].prev_hash is None
    assert all(later.prev_hash == earlier.hash
               for earlier, later in itertools.pairwise(events))
    with committee.store.reading() as session:
        head = session.execute(select(Case.head_seq, Case.head_hash).where(
            Case.id == case)).one()
    assert tuple(head) == (len(events), events[-1].hash)
    assert _broken(committee.store) == []
    assert _broken(committee.store, second) == []


def test_a_changed_value_is_named(committee: Committee) -> None:
    case = _worked_case(committee)
    vote = next(e for e in _events(committee.store, case) if e.kind == "vote")
    with committee.store.transaction() as db:
        # Allowed by the trigger (a purge clears free text), caught by the chain.
        db.execute(update(Event).where(Event.id == vote.id).values(
            data={**vote.data, "action": "ban"}))
    [broken] = _broken(committee.store)
    assert (broken.case_id, broken.event_id, broken.seq) == (case, vote.id, vote.seq)
    assert "'action' was changed" in broken.why


def test_free_text_removed_outside_a_purge_is_named(committee: Committee) -> None:
    case = _worked_case(committee)
    vote = next(e for e in _events(committee.store, case) if e.data.get("details"))
    with committee.store.transaction() as db:
        db.execute(update(Event).where(Event.id == vote.id).values(
            data={**vote.data, "details": None}))
    [broken] = _broken(committee.store)
    assert broken.event_id == vote.id and "never purged" in broken.why


@pytest.mark.parametrize("column, value", [("actor", "mallory"), ("kind", "closed")])
def test_a_changed_fixed_column_is_named(committee: Committee, column: str,
                                         value: str) -> None:
    case = _worked_case(committee)
    third = _events(committee.store, case)[2]
    with committee.store.transaction() as db:
        _unguarded(db)
        db.execute(update(Event).where(Event.id == third.id).values({column: value}))
    [broken] = _broken(committee.store)
    assert broken.event_id == third.id and "changed since it was written" in broken.why


def test_a_removed_event_is_named_in_the_middle_and_at_the_end(committee: Committee) -> None:
    case = _worked_case(committee)
    events = _events(committee.store, case)
    with committee.store.transaction() as db:
        _unguarded(db)
        db.execute(delete(Event).where(Event.id == events[3].id))
    [broken] = _broken(committee.store)
    assert broken.event_id == events[4].id and "does not follow" in broken.why

    other = _worked_case(committee)
    last = _events(committee.store, other)[-1]
    with committee.store.transaction() as db:
        db.execute(delete(Event).where(Event.id == last.id))
    broken_other = _broken(committee.store, other)
    assert [(b.event_id, "removed from its end" in b.why) for b in broken_other] == [
        (None, True)]


def test_swapped_events_are_named(committee: Committee) -> None:
    case = _worked_case(committee)
    a, b = _events(committee.store, case)[2:4]
    columns = ("at", "kind", "actor", "message_id", "data", "seq", "prev_hash", "digests",
               "hash")
    with committee.store.transaction() as db:
        _unguarded(db)
        for target, source in ((a, b), (b, a)):
            db.execute(update(Event).where(Event.id == target.id).values(
                {c: getattr(source, c) for c in columns}))
    [broken] = _broken(committee.store)
    assert broken.event_id == a.id and "reordered" in broken.why


def test_a_forged_event_with_a_plain_hash_does_not_verify(committee: Committee) -> None:
    """Whoever writes to the database without the master key cannot make a link:
    an event added at the end, head moved on, still fails."""
    case = _worked_case(committee)
    last = _events(committee.store, case)[-1]
    with committee.store.transaction() as db:
        forged = chain.link_hash(b"\0" * 32, case, last.seq + 1, last.at, "closed", "bob",
                                 None, {}, last.hash)
        db.execute(insert(Event).values(case_id=case, at=last.at, kind="closed", actor="bob",
                                        data={}, seq=last.seq + 1, prev_hash=last.hash,
                                        digests={}, hash=forged))
        db.execute(update(Case).where(Case.id == case).values(head_seq=last.seq + 1,
                                                              head_hash=forged))
    [broken] = _broken(committee.store)
    assert broken.seq == last.seq + 1 and "changed since" in broken.why


def test_a_purge_keeps_the_chain_verifiable(committee: Committee) -> None:
    case = _worked_case(committee)
    committee.reply(case, "bob", "purge\n")
    committee.reply(case, "carol", "purge\n")
    events = _events(committee.store, case)
    assert [e.kind for e in events].count("purged") == 1
    assert not any(e.data.get("details") for e in events)  # the free text went
    assert _broken(committee.store) == []
    # What a purge does not clear may not go, purged or not.
    paged = next(e for e in events if e.kind == "paged")
    with committee.store.transaction() as db:
        db.execute(update(Event).where(Event.id == paged.id).values(data={}))
    [broken] = _broken(committee.store)
    assert broken.event_id == paged.id and "'members' was removed" in broken.why


def test_a_history_from_before_the_chain_is_chained_once_at_start(
        committee: Committee) -> None:
    case = _worked_case(committee)
    with committee.store.transaction() as db:
        _unguarded(db)  # a store as an earlier cocmail left it
        db.execute(update(Event).values(seq=None, prev_hash=None, digests=None, hash=None))
        db.execute(update(Case).values(head_seq=0, head_hash=None))
    assert "not chained" in _broken(committee.store)[0].why
    with committee.store.transaction() as db:
        assert chain.seal_unchained(db) == 1
        assert chain.seal_unchained(db) == 0
    assert _broken(committee.store) == []
    assert [e.seq for e in _events(committee.store, case)][:3] == [1, 2, 3]
