"""The committee's daily digest: to each member, the open cases they can see and
the mail of those cases that failed for good since the day before (who may
see which case is ``case/access.py``'s to say).

Whether a digest is due is a function of the clock and the store: the digest
of a day is an outbox row keyed (digest, day, member), so a restart, a missed
tick or a second daemon queues it once. A member gets one only when there is
something in it. It carries metadata only (case numbers, states, errors),
never a subject or a body.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from cocmail.case import members
from cocmail.config import Config
from cocmail.notify import payloads
from cocmail.notify.digest import member_digest
from cocmail.notify.enqueue import Enqueue, Mail
from cocmail.notify.kinds import DIGEST
from cocmail.store.models import Outbox


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
    for member in members.roster(session.connection()):
        if member.is_mediator or member.email.lower() in done:
            continue
        content = member_digest(session, member.id, since)
        if content["cases"] or content["failed"]:
            mails.append(Mail(DIGEST, member.email, step=step,
                              payload=payloads.Digest(member.handle, day, since)))
    enqueue.queue(session.connection(), mails, now)
    return len(mails)


