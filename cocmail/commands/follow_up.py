"""``follow-up <when> <what>``: something to come back to (a ban's end, a
check-in with someone), as a reminder mail on the day.

``when`` is a date (then 09:00 in the member's own time zone), an ISO 8601
time with its offset, or a delay such as ``30d`` or ``12h``. The scheduler's
sweep mails the reminder to the members who can see the case when it is due,
once (``schedule/reminders.py``).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.config import member_of
from cocmail.config.units import parse_duration
from cocmail.store import writes


class FollowUpCommand:
    name = "follow-up"
    usage = "follow-up <date|delay> <what>"
    summary = "a reminder to the members on that date (like: follow-up 2027-03-01 ban ends)"

    def run(self, request: Request, args: list[str]) -> Result:
        if len(args) < 2:
            return Result(False, "Say when and what, like: follow-up 2027-03-01 the ban ends, "
                                 "or: follow-up 14d check in with the reporter.")
        when = due_at(args[0], request)
        if when is None:
            return Result(False, f"{args[0]!r} is not a date or a delay: write 2027-03-01, "
                                 "2027-03-01T09:00+01:00, 14d or 12h.")
        if when <= request.now:
            return Result(False, f"{args[0]} is in the past.")
        what = " ".join(args[1:])
        writes.insert_follow_up(request.db, {
            "case_id": request.case_id, "due_at": when, "what": what[:1000],
            "by": request.handle, "created_at": request.now, "message_id": request.message_id})
        request.event(EventKind.FOLLOW_UP, due_at=when.isoformat(), what=what[:1000])
        return Result(True, f"The members who can see case #{request.case_id} will be "
                            f"reminded on {when:%Y-%m-%d %H:%M} UTC: {what}")


def due_at(text: str, request: Request) -> dt.datetime | None:
    """
    >>> from cocmail.config import Member
    >>> member = Member("alice", "Alice", "a@x.org", "", "Europe/Berlin", ())
    >>> now = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)
    >>> from cocmail.case.access import CaseAccess, Seat, Standing
    >>> seat = Seat(1, 1, "alice", "a@x.org", Standing.READS)
    >>> request = Request(None, CaseAccess(1, (seat,)), seat, 1, now,  # type: ignore[arg-type]
    ...                   (member,))
    >>> due_at("2027-03-01", request).isoformat()
    '2027-03-01T08:00:00+00:00'
    >>> due_at("14d", request).isoformat()
    '2026-12-09T10:00:00+00:00'
    >>> due_at("soon", request) is None
    True
    """
    try:
        return request.now + parse_duration(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        member = member_of(request.members, request.handle)
        zone = member.timezone if member is not None else "UTC"
        if len(text) <= 10:  # a date alone: the morning of that day
            moment = moment.replace(hour=9)
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return moment.astimezone(dt.UTC)


COMMAND = FollowUpCommand()
