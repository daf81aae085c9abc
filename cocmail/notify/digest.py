"""What a member's daily digest holds: the open cases they may read, and the mail
of those cases that failed for good."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cocmail.case import access
from cocmail.store.models import Case, Outbox


def member_digest(session: Session, member_id: int, since: dt.datetime) -> dict[str, Any]:
    """What member ``member_id`` may see: the open cases they may read, and the mail of
    those cases that failed for good since ``since``. Mail about no case (a notice
    to a reporter's address) is the operator's to see (``cocmail outbox list
    --failed``, ``/metrics``), never a member's."""
    db = session.connection()
    readable = access.cases_seen_by(db, member_id)
    cases = list(session.scalars(select(Case).where(Case.id.in_(readable)).order_by(Case.id)))
    failed = list(session.scalars(
        select(Outbox).where(Outbox.status == "failed", Outbox.failed_at > since,
                             Outbox.case_id.is_not(None)).order_by(Outbox.id)))
    if failed:
        # Closed cases too: mail of a case closed since can have failed.
        seen = set(access.cases_seen_by(db, member_id,
                                        among={row.case_id for row in failed if row.case_id}))
        failed = [row for row in failed if row.case_id in seen]
    return {"cases": cases, "failed": failed}
