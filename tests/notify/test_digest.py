"""The daily digest in process: due once a day, once per member, with what each
member may see; its settings checked, its time zone the rotation's by default."""


from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cocmail import config as config_module
from cocmail.case import members
from cocmail.clock import FixedClock
from cocmail.intake.inbound import Inbound
from cocmail.intake.service import Intake
from cocmail.notify import context
from cocmail.notify.enqueue import Enqueue
from cocmail.notify.template_context import Context
from cocmail.notify.templates import Templates
from cocmail.route.addresses import split_recipient
from cocmail.schedule.digest import queue_digests
from cocmail.store import writes
from cocmail.store.db import Store
from cocmail.store.models import Outbox, Participant
from tests.conftest import DOMAIN, MEMBERS, write_config
from tests.mail import message

KEY = b"k" * 32


MORNING = dt.datetime(2026, 11, 25, 7, 59, tzinfo=dt.UTC)


DIGEST_AT_8 = {"digest": {"enabled": True, "at": "08:00"}}


def test_digests_are_due_once_a_day_with_what_each_member_may_see(
        store: Store, tmp_path: Path, db_url: str) -> None:
    config = config_module.load(write_config(tmp_path, db_url, DIGEST_AT_8))
    enqueue = Enqueue.for_config(config, KEY)
    members.start(store, config.committee, MORNING - dt.timedelta(hours=2))
    intake = Intake(store, config.committee, KEY, FixedClock(MORNING - dt.timedelta(hours=2)),
                    enqueue)
    committee = config.committee
    for to in ("conduct@" + DOMAIN, f"conduct+without-bob@{DOMAIN}"):
        intake.accept(Inbound(message(), "rita@reporter.example",
                               (split_recipient(to, committee),), "smtp"))
    # Every member answered "no-conflict" (a digest lists only the cases a member
    # reads); both acknowledgements failed for good an hour ago.
    with store.unit_of_work() as session:
        session.execute(update(Participant).where(Participant.role == "member").values(
            cleared_at=MORNING - dt.timedelta(hours=2)))
        for row in session.scalars(select(Outbox).where(Outbox.kind == "ack")).all():
            session.execute(update(Outbox).where(Outbox.id == row.id).values(
                **writes.outbox_values(session.connection(), row.case_id, {
                    "status": "failed", "failed_at": MORNING - dt.timedelta(hours=1),
                    "attempts": 1, "last_error": "550 5.1.1 <rita@reporter.example>: no such user"},
                    MORNING)))

    with store.unit_of_work() as session:
        assert queue_digests(session, config, enqueue, MORNING) == 0  # not 08:00 yet
    at_eight = MORNING + dt.timedelta(minutes=2)
    with store.unit_of_work() as session:
        assert queue_digests(session, config, enqueue, at_eight) == len(MEMBERS)
    with store.unit_of_work() as session:  # again, and later that day: nothing more
        assert queue_digests(session, config, enqueue, at_eight) == 0
        assert queue_digests(session, config, enqueue, at_eight + dt.timedelta(hours=9)) == 0

    templates = Templates()
    with store.unit_of_work() as session:
        digests = {row.data["handle"]: row for row in session.scalars(
            select(Outbox).where(Outbox.kind == "digest"))}
        assert sorted(digests) == sorted(m[0] for m in MEMBERS)
        bob = context.build(session, digests["bob"], config, KEY)
        alice = context.build(session, digests["alice"], config, KEY)
        assert isinstance(bob, Context) and isinstance(alice, Context)
        assert [c.id for c in bob.cases] == [1]  # kept out of case 2
        assert [f.case for f in bob.failed_mail] == [1]
        assert [c.id for c in alice.cases] == [1, 2]
        assert [f.case for f in alice.failed_mail] == [1, 2]
        text = templates.render("digest", alice)
        assert text.subject == "Daily digest: 2 open cases, 2 failed mail"
        assert "conduct #2" in text.text and "550 5.1.1" in text.text
        assert "rita@reporter.example" not in text.text  # "the reporter" instead

    # The next day there are digests again (the cases are still open).
    with store.unit_of_work() as session:
        assert queue_digests(session, config, enqueue, at_eight + dt.timedelta(days=1)) == 4


def test_no_digest_when_there_is_nothing_in_it(store: Store, tmp_path: Path,
                                               db_url: str) -> None:
    config = config_module.load(write_config(tmp_path, db_url, DIGEST_AT_8))
    with store.unit_of_work() as session:
        assert queue_digests(session, config, Enqueue.for_config(config, KEY),
                             MORNING + dt.timedelta(hours=1)) == 0


@pytest.mark.parametrize("digest, reason", [
    ({"at": "25:00"}, "digest.at: must be a time"),
    ({"at": 8}, "digest.at: must be a time"),
    ({"timezone": "Mars/Olympus"}, "digest.timezone: unknown time zone"),
    ({"enabled": "yes"}, "digest.enabled: must be a bool"),
])
def test_digest_settings_are_checked(tmp_path: Path, digest: dict, reason: str) -> None:
    from cocmail.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        config_module.load(write_config(tmp_path, "sqlite:///:memory:", {"digest": digest}))
    assert reason in str(info.value)


def test_the_digest_follows_the_rotation_time_zone_by_default(tmp_path: Path) -> None:
    config = config_module.load(write_config(tmp_path, "sqlite:///:memory:", {
        "rotation": {"timezone": "Europe/Berlin"}, "digest": {"enabled": True}}))
    assert config.digest.timezone == "Europe/Berlin"
    from cocmail.schedule.digest import due_day

    assert due_day(config, dt.datetime(2026, 11, 25, 6, 59, tzinfo=dt.UTC)) is None
    assert due_day(config, dt.datetime(2026, 11, 25, 7, 0, tzinfo=dt.UTC)) == dt.date(2026, 11, 25)
