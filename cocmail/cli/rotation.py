"""``cocmail roster check`` and ``cocmail rotation …``: the committee's members, the
coming shifts of triage duty, and the overrides (stand-ins for holidays and swaps)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from cocmail.cli.base import Commands, UsageError, open_store, print_json, print_rows
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.errors import NotFound
from cocmail.store.db import Store

OVERRIDE_COLUMNS = [("id", "ID"), ("member", "MEMBER"), ("instead_of", "INSTEAD OF"),
                    ("start", "FROM"), ("end", "UNTIL"), ("reason", "REASON")]
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def register(commands: Commands, sub: Any) -> None:
    roster = commands.group(sub, "roster", "the committee's members")
    p = commands.command(roster, "check", cmd_roster_check,
                         "check the roster: at least three members, no shared addresses, no "
                         "employer majority, a mediator, two on duty for the next 12 weeks "
                         "(exit 1 on a problem)", collect_roster_check)
    p.add_argument("--json", action="store_true")

    rotation = commands.group(sub, "rotation", "triage duty")
    p = commands.command(rotation, "show", cmd_rotation_show,
                         "the coming shifts, overrides applied", collect_shifts)
    p.add_argument("--weeks", type=int, default=4, help="how far ahead (default 4)")
    p.add_argument("--json", action="store_true")
    override = commands.group(rotation, "override", "stand-ins for holidays and swaps")
    p = commands.command(override, "add", cmd_override_add,
                         "put --member on duty instead of --instead-of between --from and --to "
                         "(dates and times are local to rotation.timezone unless they carry an "
                         "offset)")
    p.add_argument("--member", required=True)
    p.add_argument("--instead-of", required=True)
    p.add_argument("--from", dest="start", required=True, metavar="WHEN")
    p.add_argument("--to", dest="end", required=True, metavar="WHEN")
    p.add_argument("--reason", help="a word on why (shown in `override list`)")
    p = commands.command(override, "list", cmd_override_list, "overrides not yet over",
                         collect_overrides)
    p.add_argument("--all", action="store_true", help="include those already over")
    p.add_argument("--json", action="store_true")
    p = commands.command(override, "remove", cmd_override_remove, "delete an override")
    p.add_argument("id", type=int, metavar="OVERRIDE_ID")


def collect_roster_check(config: Config, store: Store | None,
                         args: argparse.Namespace) -> dict[str, Any]:
    """``{"ok": …, "problems": […]}``; without a store (none yet, or not migrated) the
    rotation is checked from the config alone."""
    from cocmail.schedule.roster import load_schedule, problems
    from cocmail.schedule.rotation import Schedule

    now = SystemClock().now()
    schedule: Schedule | None = None
    if store is not None:
        try:
            with store.reading() as session:
                schedule = load_schedule(session, config, since=now)
        except ValueError:
            schedule = None
    found = problems(config, schedule, now)
    return {"ok": not found, "problems": found}


def cmd_roster_check(config: Config, args: argparse.Namespace) -> int:
    try:
        store: Store | None = open_store(config)
    except ValueError:
        store = None
    found = collect_roster_check(config, store, args)
    if args.json:
        print_json(found)
    elif found["problems"]:
        for problem in found["problems"]:
            print(f"problem: {problem}")
    else:
        members = config.committee.members
        print(f"roster ok: {len(members)} members, rotation of {len(config.rotation.order)}, "
              f"two on duty at all times for the next 12 weeks")
    return 0 if found["ok"] else 1


def collect_shifts(config: Config, store: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    from cocmail.cli.views import utc_text
    from cocmail.schedule.roster import load_schedule

    if args.weeks < 1:
        raise UsageError("--weeks must be at least 1")
    now = SystemClock().now()
    with store.reading() as session:
        schedule = load_schedule(session, config, since=now)
    return [{"start": utc_text(s.start), "end": utc_text(s.end), "on_duty": list(s.on_duty)}
            for s in schedule.shifts(now, now + dt.timedelta(weeks=args.weeks))]


def cmd_rotation_show(config: Config, args: argparse.Namespace) -> int:
    from cocmail.cli.views import table

    if args.weeks < 1:
        raise UsageError("--weeks must be at least 1")
    shifts = collect_shifts(config, open_store(config), args)
    if args.json:
        print_json(shifts)
        return 0
    print(f"hand-off: {_WEEKDAY_NAMES[config.rotation.handoff_weekday]} "
          f"{config.rotation.handoff_time:%H:%M} {config.rotation.timezone}")
    print(table([{**row, "on_duty": " + ".join(row["on_duty"])} for row in shifts],
                [("start", "FROM"), ("end", "UNTIL"), ("on_duty", "ON DUTY")]))
    return 0


def cmd_override_add(config: Config, args: argparse.Namespace) -> int:
    from cocmail.config.units import parse_moment
    from cocmail.schedule.roster import load_schedule
    from cocmail.schedule.rotation import Override, OverrideRefused
    from cocmail.store.models import RotationOverride

    handles = {m.handle for m in config.committee.members}
    for option, handle in (("--member", args.member), ("--instead-of", args.instead_of)):
        if handle not in handles:
            raise UsageError(f"{option}: {handle!r} is not a committee member")
    try:
        starts = parse_moment(args.start, config.rotation.timezone)
        ends = parse_moment(args.end, config.rotation.timezone)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    now = SystemClock().now()
    if ends <= now:
        raise UsageError("the override would already be over")
    store = open_store(config)
    with store.unit_of_work() as session:
        schedule = load_schedule(session, config, since=now)
        try:
            schedule.with_override(Override(args.member, args.instead_of, starts, ends))
        except OverrideRefused as exc:
            print(f"cocmail: override refused: {exc}", file=sys.stderr)
            return 1
        row = RotationOverride(member=args.member, instead_of=args.instead_of,
                               starts_at=starts, ends_at=ends, reason=args.reason,
                               created_at=now)
        session.add(row)
        session.flush()
        override_id = row.id
    print(f"override {override_id}: {args.member} on duty instead of {args.instead_of} "
          f"from {starts:%Y-%m-%d %H:%M} to {ends:%Y-%m-%d %H:%M} UTC")
    return 0


def collect_overrides(config: Config, store: Store,
                      args: argparse.Namespace) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from cocmail.cli.views import utc_text
    from cocmail.store.models import RotationOverride

    now = SystemClock().now()
    with store.reading() as session:
        query = select(RotationOverride).order_by(RotationOverride.starts_at,
                                                  RotationOverride.id)
        if not args.all:
            query = query.where(RotationOverride.ends_at > now)
        return [{"id": r.id, "member": r.member, "instead_of": r.instead_of,
                 "start": utc_text(r.starts_at), "end": utc_text(r.ends_at),
                 "reason": r.reason} for r in session.scalars(query)]


def cmd_override_list(config: Config, args: argparse.Namespace) -> int:
    return print_rows(collect_overrides(config, open_store(config), args), args,
                      OVERRIDE_COLUMNS, "no overrides")


def cmd_override_remove(config: Config, args: argparse.Namespace) -> int:
    from cocmail.store.models import RotationOverride

    store = open_store(config)
    with store.unit_of_work() as session:
        row = session.get(RotationOverride, args.id)
        if row is None:
            raise NotFound(f"no override {args.id}")
        session.delete(row)
    print(f"override {args.id} removed")
    return 0
