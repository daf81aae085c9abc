"""Retention: a case closed longer ago than ``closed_after`` loses its content at
the next daily run, once, with an event; a newer one stays; a quarantined
message goes after ``quarantine_after``; ``--dry-run`` lists the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from cocmail.case import purge
from cocmail.case.events import EventKind
from cocmail.schedule import retention
from cocmail.store import chain
from cocmail.store.db import Store
from cocmail.store.models import Event, Message, Quarantine, RetentionRun
from tests.committee import OPENED, Committee
from tests.conftest import CONDUCT, MASTER_KEY, run_cli
from tests.mail import message

DAY = OPENED - OPENED.replace(day=OPENED.day - 1)


@pytest.fixture
def committee(store: Store, tmp_path: Path, db_url: str) -> Committee:
    return Committee(store, tmp_path, db_url,
                     retention={"closed_after": "30d", "quarantine_after": "7d"})


def _closed_case(committee: Committee, body: str) -> int:
    case = committee.report()
    committee.no_conflict(case)
    committee.reply(case, "bob", f"note {body}\nclose\n")
    return case


def _quarantined(committee: Committee) -> int:
    from cocmail.intake.inbound import Inbound
    from cocmail.route.addresses import split_recipient

    committee.intake.accept(Inbound(
        message(headers={"Auto-Submitted": "auto-replied"}, body="QUARANTINE-MARKER\n"),
        "bot@elsewhere.example", (split_recipient(CONDUCT, committee.config.committee),),
        "smtp"))
    with committee.store.reading() as session:
        return session.scalars(select(Quarantine.id)).one()


def _run(committee: Committee, at) -> None:  # type: ignore[no-untyped-def]
    with committee.store.unit_of_work() as session:
        assert retention.run_retention(session, committee.config, committee.enqueue, at) == 0


def _text_of(committee: Committee, case_id: int | None) -> list[str | None]:
    with committee.store.reading() as session:
        return list(session.scalars(select(Message.text).where(
            Message.case_id == case_id if case_id else Message.case_id.is_(None))))


def _retention_events(committee: Committee) -> list[tuple[int, str, dict]]:
    with committee.store.reading() as session:
        return [(e.case_id, e.actor, e.data) for e in session.scalars(select(Event).where(
            Event.kind == EventKind.PURGED).order_by(Event.id))]


def test_a_case_past_its_time_goes_once_a_newer_one_stays(committee: Committee) -> None:
    old = _closed_case(committee, "OLD-MARKER")
    committee.clock._now = OPENED + 10 * DAY
    newer = _closed_case(committee, "NEWER-MARKER")
    entry = _quarantined(committee)

    at = OPENED + 31 * DAY
    with committee.store.reading() as session:
        listed = retention.due(session.connection(), committee.config.retention, at)
        upcoming = retention.due(session.connection(), committee.config.retention, at,
                                 upcoming=True)
    assert [(d.what, d.id) for d in listed] == [("quarantine", entry), ("case", old)]
    assert [(d.what, d.id, d.at) for d in upcoming] == [
        ("quarantine", entry, OPENED + 17 * DAY), ("case", old, OPENED + 30 * DAY),
        ("case", newer, OPENED + 40 * DAY)]

    _run(committee, at)
    assert not any("OLD-MARKER" in (t or "") for t in _text_of(committee, old))
    assert any("NEWER-MARKER" in (t or "") for t in _text_of(committee, newer))
    assert _text_of(committee, None) == [None]  # the quarantined message's text
    assert _retention_events(committee) == [
        (old, "cocmail", {"by": "retention", "closed_at": OPENED.isoformat()})]
    with committee.store.reading() as session:
        held = session.get(Quarantine, entry)
        assert held is not None and held.released_at == at
        assert held.resolution == "content purged by retention"
        assert session.scalars(select(RetentionRun.cases)).all() == [1]

    _run(committee, at + DAY / 2)  # the same day again: nothing more
    assert len(_retention_events(committee)) == 1
    _run(committee, OPENED + 39 * DAY)  # the next days: the newer case is not due yet
    assert len(_retention_events(committee)) == 1
    _run(committee, OPENED + 40 * DAY)
    assert [case for case, _, _ in _retention_events(committee)] == [old, newer]
    with committee.store.reading() as session:
        broken = [b for _, b in chain.verify(session.connection(), EventKind.PURGED,
                                             purge.cleared_keys) if b is not None]
    assert broken == []


def test_an_open_or_reopened_case_is_kept(committee: Committee) -> None:
    still_open = committee.report()
    reopened = _closed_case(committee, "REOPENED-MARKER")
    committee.reply(reopened, "bob", "reopen\n")
    _run(committee, OPENED + 400 * DAY)
    assert _retention_events(committee) == []
    assert still_open and any("REOPENED-MARKER" in (t or "")
                              for t in _text_of(committee, reopened))


def test_without_retention_nothing_is_purged_by_age(store: Store, tmp_path: Path,
                                                    db_url: str) -> None:
    committee = Committee(store, tmp_path, db_url)
    case = _closed_case(committee, "KEPT-MARKER")
    _run(committee, OPENED + 4000 * DAY)
    assert any("KEPT-MARKER" in (t or "") for t in _text_of(committee, case))
    with store.reading() as session:
        assert session.scalars(select(RetentionRun)).all() == []


def test_purge_dry_run_lists_what_goes_and_purge_removes_it(committee: Committee) -> None:
    """From the CLI, on the real clock: a case closed on the committee's clock
    (days ago) is past a 1-day retention."""
    config = committee.config.path
    config.write_text(config.read_text().replace('closed_after = "30d"',
                                                 'closed_after = "1d"'))
    old = _closed_case(committee, "CLI-MARKER")
    env = {"COCMAIL_MASTER_KEY": MASTER_KEY}
    listed = run_cli(config, "purge", "--dry-run", "--json", env=env)
    assert listed.returncode == 0, listed.stderr.decode()
    rows = json.loads(listed.stdout)
    assert [(r["what"], r["id"], r["when"]) for r in rows] == [
        ("case", old, "at the next daily run")]
    assert any("CLI-MARKER" in (t or "") for t in _text_of(committee, old))  # dry: kept
    done = run_cli(config, "purge", env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "purged 1 case(s) and 0 quarantined message(s)\n"
    assert not any("CLI-MARKER" in (t or "") for t in _text_of(committee, old))
    again = run_cli(config, "purge", "--dry-run", env=env)
    assert again.stdout.decode() == "nothing for retention to purge\n"
