"""The roster as the store and the config have it: the rotation with its stored
overrides, and the checks ``cocmail roster check`` runs."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from cocmail.config import Config, Rotation
from cocmail.schedule.rotation import Override, Schedule, weeks_with_too_few
from cocmail.store.models import RotationOverride

CHECK_WEEKS = 12


def load_schedule(session: Session, config: Config, since: dt.datetime | None = None) -> Schedule:
    """The rotation with its overrides (those still running after ``since``, or all)."""
    query = select(RotationOverride).order_by(RotationOverride.starts_at, RotationOverride.id)
    if since is not None:
        query = query.where(RotationOverride.ends_at > since)
    return Schedule(config.rotation, [
        Override(row.member, row.instead_of, row.starts_at, row.ends_at, row.id)
        for row in session.scalars(query)])


def on_call(db: Connection, rotation: Rotation, now: dt.datetime,
            seated: Sequence[str]) -> list[str]:
    """Whom to page for a case opened ``now``: the two on duty, overrides applied;
    one who has no seat in the case (kept out by the reporter) is replaced by the
    next member of the rotation who has one."""
    return replace_unseated(on_duty_now(db, rotation, now), rotation, seated)


def on_duty_now(db: Connection, rotation: Rotation, now: dt.datetime) -> tuple[str, ...]:
    """The pair on duty at ``now``, with the overrides in force then (one query)."""
    if len(rotation.order) < 2:
        return tuple(rotation.order)
    overrides = [Override(row.member, row.instead_of, row.starts_at, row.ends_at, row.id)
                 for row in db.execute(select(RotationOverride).where(
                     RotationOverride.starts_at <= now, RotationOverride.ends_at > now))]
    return Schedule(rotation, overrides).on_duty(now)


def replace_unseated(pair: Sequence[str], rotation: Rotation,
                     seated: Sequence[str]) -> list[str]:
    """``pair``, with a member who has no seat in the case replaced by the next
    member of the rotation who has one."""
    if len(rotation.order) < 2:
        return [h for h in rotation.order if h in seated][:2]
    paged = [h for h in pair if h in seated]
    for handle in pair:
        if handle in seated:
            continue
        start = rotation.order.index(handle) if handle in rotation.order else 0
        for offset in range(1, len(rotation.order)):
            candidate = rotation.order[(start + offset) % len(rotation.order)]
            if candidate in seated and candidate not in paged and candidate not in pair:
                paged.append(candidate)
                break
    return paged


def problems(config: Config, schedule: Schedule | None, now: dt.datetime) -> list[str]:
    """What is wrong with the roster, one sentence each; empty when all is well."""
    found = []
    members = config.committee.members
    if len(members) < 3:
        found.append(f"the committee has {len(members)} member(s); it needs at least three")
    addresses = Counter(m.email.lower() for m in members)
    for address, count in sorted(addresses.items()):
        if count > 1:
            owners = ", ".join(m.handle for m in members if m.email.lower() == address)
            found.append(f"{address} is the address of {count} members ({owners})")
    mediator = config.committee.mediator
    if mediator is None:
        found.append("no mediator (committee.mediator): a case every member recuses from "
                     "would have nobody to go to")
    elif mediator.lower() in addresses:
        found.append(f"the mediator {mediator} is a committee member; the mediator must be "
                     "a third party")
    employers = Counter(m.employer.strip() for m in members if m.employer.strip())
    for employer, count in sorted(employers.items()):
        if count * 2 > len(members):
            found.append(f"{count} of {len(members)} members work for {employer}: a single "
                         "employer must not hold a majority of the committee")
    if schedule is None:
        found.append("the rotation has fewer than two members: two must be on duty at all times")
    else:
        handles = [m.handle for m in members]
        for shift in weeks_with_too_few(schedule, now, CHECK_WEEKS, handles):
            found.append(f"from {shift.start:%Y-%m-%d %H:%M} to {shift.end:%Y-%m-%d %H:%M} UTC "
                         f"only {', '.join(sorted(set(shift.on_duty))) or 'nobody'} on duty")
    return found
