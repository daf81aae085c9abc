"""The committee's daily digest: to each member, the open cases they can see and
the mail that failed for good since the day before.

Whether a digest is due is a function of the clock and the store: the digest
of a day is an outbox row keyed (digest, day, member), so a restart, a missed
tick or a second daemon queues it once. A member gets one only when there is
something in it. It carries metadata only (case numbers, states, errors),
never a subject or a body.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cocmail.config import Config
from cocmail.outbox.enqueue import DIGEST, Enqueue, Mail
from cocmail.store.models import Case, Outbox, Participant, Recusal


def due_day(config: Config, now: dt.datetime) -> dt.date | None:
    """The day whose digest is due at ``now``, or None before the day's digest time."""
    local = now.astimezone(zoneinfo.ZoneInfo(config.digest.timezone))
    return local.date() if local.time() >= config.digest.at else None


def queue_digests(session: Session, config: Config, enqueue: Enqueue, now: dt.datetime) -> int:
    """Queue the digests due at ``now`` that are not queued yet; how many were."""
    if not config.digest.enabled:
        return 0
    day = due_day(config, now)
    if day is None:
        return 0
    step = day.isoformat()
    done = set(session.scalars(select(Outbox.recipient).where(
        Outbox.kind == DIGEST, Outbox.step == step)))
    since = now - dt.timedelta(days=1)
    mails = []
    for member in config.committee.members:
        if member.email.lower() in done:
            continue
        content = member_digest(session, member.handle, since)
        if content["cases"] or content["failed"]:
            mails.append(Mail(DIGEST, member.email, step=step,
                              data={"handle": member.handle, "day": step,
                                    "since": since.isoformat()}))
    enqueue.queue(session.connection(), mails, now)
    return len(mails)


def member_digest(session: Session, handle: str, since: dt.datetime) -> dict[str, Any]:
    """What member ``handle`` may see: their open cases, and the failed mail of those
    cases (and of no case) since ``since``."""
    hidden = _hidden_from(session, handle)
    cases = visible_cases(session, handle)
    failed = list(session.scalars(
        select(Outbox).where(Outbox.status == "failed", Outbox.failed_at > since)
        .order_by(Outbox.id)))
    # The member's seats among the few cases with failed mail: a look-up by case,
    # not a read of every seat they ever had (this runs every tick until the
    # day's digest is queued).
    failed_cases = {row.case_id for row in failed if row.case_id is not None}
    seated = {case_id for case_id, in session.execute(
        select(Participant.case_id).where(Participant.case_id.in_(failed_cases),
                                          Participant.role == "member",
                                          Participant.handle == handle,
                                          Participant.cleared_at.is_not(None)))
              } if failed_cases else set()
    failed = [row for row in failed
              if row.case_id is None or (row.case_id in seated and row.case_id not in hidden)]
    return {"cases": cases, "failed": failed}


def visible_cases(session: Session, handle: str, pending: bool = False) -> list[Case]:
    """The open cases member ``handle`` may see: a seat cleared to read it, and no
    recusal. With ``pending``, also those whose conflict check they have not yet
    answered (a hand-off lists those by number to an incoming triager)."""
    hidden = _hidden_from(session, handle)
    cleared = [] if pending else [Participant.cleared_at.is_not(None)]
    return [case for case in session.scalars(
        select(Case).join(Participant, Participant.case_id == Case.id).where(
            Participant.role == "member", Participant.handle == handle, *cleared,
            Case.closed_at.is_(None)).order_by(Case.id))
        if case.id not in hidden]


def _hidden_from(session: Session, handle: str) -> set[int]:
    return {case_id for case_id, in session.execute(
        select(Recusal.case_id).where(Recusal.handle == handle,
                                      Recusal.kind.in_(("hard", "excl"))))}
