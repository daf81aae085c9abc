"""How a case stands against its first-response SLA, and a duration as people say
it: the words the casefile, the digest and ``case show`` use."""

from __future__ import annotations

import datetime as dt


def sla_status(opened_at: dt.datetime, acknowledged_at: dt.datetime | None,
               first_response: dt.timedelta, now: dt.datetime) -> str:
    """How the case stands against the first-response SLA, in words.

    >>> t = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    >>> day = dt.timedelta(days=1)
    >>> sla_status(t, None, 3 * day, t + day)
    'answer due in 2 days'
    >>> sla_status(t, None, 3 * day, t + 4 * day)
    'overdue by 1 day'
    >>> sla_status(t, t + day, 3 * day, t + 4 * day)
    'acknowledged after 1 day'
    """
    if acknowledged_at is not None:
        return f"acknowledged after {age(acknowledged_at - opened_at)}"
    due = opened_at + first_response
    if now < due:
        return f"answer due in {age(due - now)}"
    return f"overdue by {age(now - due)}"


def age(delta: dt.timedelta, *, exact: bool = False) -> str:
    """A duration as people say it: in its largest whole unit (rounded down), or,
    ``exact``, in the largest unit it is a whole number of (a config's duration).

    >>> [age(dt.timedelta(seconds=s)) for s in (30, 150, 7300, 90000, 200000)]
    ['30 seconds', '2 minutes', '2 hours', '1 day', '2 days']
    >>> [age(dt.timedelta(seconds=s), exact=True) for s in (259200, 14400, 90, 30)]
    ['3 days', '4 hours', '90 seconds', '30 seconds']
    """
    seconds = max(0, int(delta.total_seconds()))
    unit, size = next(((u, s) for u, s in (("day", 86400), ("hour", 3600), ("minute", 60))
                       if seconds >= s and (not exact or seconds % s == 0)), ("second", 1))
    count = seconds // size
    return f"{count} {unit}{'' if count == 1 else 's'}"
