"""The ``cocmail`` command: argument parsing and one function per subcommand.

Exit codes: 0 success, 2 bad usage or bad config (one line naming the key and
the reason), 1 anything else. ``deliver`` uses sysexits codes instead, for MTAs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cocmail import config as config_module
from cocmail import files, logs, tokens
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.errors import ConfigError, NotFound, StoreUnavailable
from cocmail.store import migrate
from cocmail.store.db import Store
from cocmail.store.models import Case, Quarantine

DEFAULT_CONFIG = "/etc/cocmail/config.toml"

CASE_COLUMNS = [("id", "ID"), ("state", "STATE"), ("severity", "SEVERITY"),
                ("opened_at", "OPENED"), ("acknowledged_at", "ACKNOWLEDGED"),
                ("message_count", "MESSAGES"), ("recused", "RECUSED"), ("decision", "DECISION")]
OUTBOX_COLUMNS = [("id", "ID"), ("case", "CASE"), ("kind", "KIND"), ("recipient", "TO"),
                  ("status", "STATUS"), ("attempts", "TRIES"), ("created_at", "QUEUED"),
                  ("due_at", "NEXT TRY"), ("last_error", "LAST ERROR")]
QUARANTINE_COLUMNS = [("id", "ID"), ("received_at", "RECEIVED"), ("reason", "REASON"),
                      ("size", "BYTES"), ("claimed_case", "CASE"), ("detail", "DETAIL")]


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def open_store(config: Config) -> Store:
    """The store, checked to be at the schema this cocmail expects."""
    store = Store(config.database.url, config.database.busy_timeout)
    current, head = migrate.current_revision(store), migrate.head_revision(store)
    if current != head:
        store.dispose()
        raise NotMigrated(
            f"the database is at revision {current or 'none (empty)'}, this cocmail needs "
            f"{head}: run `cocmail db upgrade`"
        )
    return store


class NotMigrated(Exception):
    pass


class UsageError(Exception):
    """A command's arguments are wrong: exit 2 with the reason."""


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from cocmail.daemon import Daemon, OutdatedDatabase

    logs.setup(config.logging.level)
    try:
        asyncio.run(Daemon(config).run())
    except OutdatedDatabase as exc:
        print(f"cocmail: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cocmail: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def cmd_db_upgrade(config: Config, args: argparse.Namespace) -> int:
    store = Store(config.database.url, config.database.busy_timeout)
    try:
        before = migrate.current_revision(store)
        migrate.upgrade(store)
        after = migrate.current_revision(store)
    finally:
        store.dispose()
    if before == after:
        print(f"database is up to date (revision {after})")
    else:
        print(f"database upgraded from {before or 'empty'} to revision {after}")
    return 0


def cmd_cases_list(config: Config, args: argparse.Namespace) -> int:
    from cocmail.views import list_cases, table

    store = open_store(config)
    with store.unit_of_work() as session:
        rows = list_cases(session, open_only=args.open, limit=args.limit)
    if args.json:
        _print_json(rows)
    elif rows:
        print(table(rows, CASE_COLUMNS))
    else:
        print("no cases")
    return 0


def cmd_case_show(config: Config, args: argparse.Namespace) -> int:
    from cocmail.case import access
    from cocmail.commands.plan import plan_of
    from cocmail.schedule.escalation import sla_status
    from cocmail.views import case_detail, list_outbox, utc_text

    store = open_store(config)
    key = tokens.load_key(config)
    with store.unit_of_work() as session:
        case = session.get(Case, args.id)
        if case is None:
            raise NotFound(f"no case #{args.id}")
        detail = case_detail(case, config.committee, key,
                             access.load(session.connection(), [case.id])[case.id])
        detail["mail"] = list_outbox(session, failed_only=False, limit=None, case_id=case.id)
        detail["first_response_due"] = utc_text(case.opened_at + config.sla.first_response)
        detail["sla"] = sla_status(case.opened_at, case.acknowledged_at,
                                   config.sla.first_response, SystemClock().now())
        detail["plan"] = plan_of(session.connection(), case.id)
    if args.json:
        _print_json(detail)
        return 0
    print(f"Case #{detail['id']}: {detail['state']}, severity {detail['severity'] or 'not set'}")
    print(f"  opened {detail['opened_at']}, acknowledged {detail['acknowledged_at'] or 'no'} "
          f"(first response due {detail['first_response_due']}: {detail['sla']})")
    print(f"  recused: {', '.join(detail['recused']) or 'nobody'}; "
          f"decision: {detail['decision'] or 'none'}")
    print("  plan: " + ", ".join(f"{item} {state}" for item, state in detail["plan"].items()))
    print("Participants:")
    for p in detail["participants"]:
        waiting = {"pending": "  (conflict check not answered)",
                   "recused-hard": "  (recused)", "recused-soft": "  (recused: soft)",
                   "kept-out": "  (kept out by the reporter)",
                   "removed": "  (no longer a member)"}.get(p["standing"] or "", "")
        print(f"  {p['role']:<10} {p['email']}  reply to {p['reply_address']}{waiting}")
    print("Messages:")
    for m in detail["messages"]:
        who = m["sender_role"] or "unknown"
        mark = "verified" if m["verified"] else "unverified"
        print(f"  {m['id']:>6} {m['received_at']} {m['direction']:<3} {who:<10} {mark:<10} "
              f"{m['size']} bytes, {m['attachments']} attachment(s)")
    print("History:")
    for e in detail["events"]:
        data = e["data"]
        step = f" step {data['step']}" if data.get("step") else ""
        whom = f": {', '.join(data['members']) or 'nobody'}" if "members" in data else ""
        print(f"  {e['at']} {e['kind']:<12} by {e['actor']}{step}{whom}")
    print("Mail:")
    for m in reversed(detail["mail"]):
        print(f"  {m['id']:>6} {m['created_at']} {m['kind']:<12} to {m['recipient']:<20} "
              f"{m['status']}{' (' + m['last_error'] + ')' if m['last_error'] else ''}")
    return 0


def cmd_quarantine_list(config: Config, args: argparse.Namespace) -> int:
    from cocmail.views import list_quarantine, table

    store = open_store(config)
    with store.unit_of_work() as session:
        rows = list_quarantine(session, include_released=args.all, limit=args.limit)
    if args.json:
        _print_json(rows)
    elif rows:
        print(table(rows, QUARANTINE_COLUMNS))
    else:
        print("the quarantine is empty")
    return 0


def cmd_outbox_list(config: Config, args: argparse.Namespace) -> int:
    from cocmail.views import list_outbox, table

    store = open_store(config)
    with store.unit_of_work() as session:
        rows = list_outbox(session, failed_only=args.failed, limit=args.limit, case_id=args.case)
    if args.json:
        _print_json(rows)
    elif rows:
        print(table(rows, OUTBOX_COLUMNS))
    else:
        print("no failed mail" if args.failed else "the outbox is empty")
    return 0


def cmd_outbox_retry(config: Config, args: argparse.Namespace) -> int:
    from sqlalchemy import update

    from cocmail.store.models import Outbox

    store = open_store(config)
    with store.unit_of_work() as session:
        row = session.get(Outbox, args.id)
        if row is None:
            raise NotFound(f"no outbox entry {args.id}")
        if row.status != "failed":
            print(f"outbox entry {args.id} is {row.status}; only failed mail is retried")
            return 1
        session.execute(update(Outbox).where(Outbox.id == args.id).values(
            status="queued", due_at=SystemClock().now(), attempts=0, failed_at=None,
            claimed_by=None, claimed_until=None))
    print(f"outbox entry {args.id} queued again; the daemon sends it within a tick")
    return 0


def cmd_roster_check(config: Config, args: argparse.Namespace) -> int:
    from cocmail.schedule.roster import load_schedule, problems
    from cocmail.schedule.rotation import Schedule

    now = SystemClock().now()
    schedule: Schedule | None
    try:
        store = open_store(config)
        with store.unit_of_work() as session:
            schedule = load_schedule(session, config, since=now)
    except ValueError:
        schedule = None
    found = problems(config, schedule, now)
    if args.json:
        _print_json({"ok": not found, "problems": found})
    elif found:
        for problem in found:
            print(f"problem: {problem}")
    else:
        members = config.committee.members
        print(f"roster ok: {len(members)} members, rotation of {len(config.rotation.order)}, "
              f"two on duty at all times for the next 12 weeks")
    return 1 if found else 0


def cmd_imap_check(config: Config, args: argparse.Namespace) -> int:
    from cocmail.ingest.imap_check import check

    if config.imap is None:
        raise UsageError(f"{args.config} has no [imap] section: there is no mailbox to check")
    try:
        store: Store | None = open_store(config)
    except (NotMigrated, StoreUnavailable):
        store = None  # the mailbox is still worth checking; the position is left out
    found = check(config.imap, store)
    if args.json:
        _print_json(found)
        return 0 if found["ok"] else 1
    how = "no TLS" if found["security"] == "none" else found["security"].upper()
    where = f"{found['server']} as {found['username']} ({found['auth']}, {how})"
    if "capabilities" not in found:
        print(f"imap: {where}: {found['error']}")
        return 1
    print(f"imap: logged in to {where}")
    offered = ", ".join(f"{name} {'yes' if has else 'no'}"
                        for name, has in found["capabilities"].items())
    waits = "waits in IDLE" if found["idle"] else (
        f"looks every {config.imap.poll_interval.total_seconds():g} s")
    print(f"server: {offered}; cocmail {waits}; a stored message leaves the folder by "
          f"{found['stored_messages_leave_by']}")
    folder = found["folder"]
    if not folder["exists"]:
        print(f"{folder['name']}: does not exist")
    else:
        held = ""
        if "position" in found:  # the store could be read
            position = found["position"]
            if position is None:
                held = "; cocmail has taken nothing from it yet"
            elif position["current"]:
                held = f"; cocmail took up to UID {position['last_uid']}"
            else:
                held = (f"; its UIDVALIDITY is new (cocmail's position was taken under "
                        f"{position['uidvalidity']}): cocmail reads it from the start, and "
                        "recognises the copies it has stored")
        print(f"{folder['name']}: {folder['messages']} message(s), UIDVALIDITY "
              f"{folder['uidvalidity']}{held}")
    for name, exists in found["folders"].items():
        print(f"{name}: {'exists' if exists else 'missing (made when serve logs in)'}")
    return 0 if found["ok"] else 1


def _shift_row(shift: Any) -> dict[str, Any]:
    from cocmail.views import utc_text

    return {"start": utc_text(shift.start), "end": utc_text(shift.end),
            "on_duty": list(shift.on_duty)}


def cmd_rotation_show(config: Config, args: argparse.Namespace) -> int:
    import datetime as dt

    from cocmail.schedule.roster import load_schedule

    if args.weeks < 1:
        raise UsageError("--weeks must be at least 1")
    now = SystemClock().now()
    store = open_store(config)
    with store.unit_of_work() as session:
        schedule = load_schedule(session, config, since=now)
    shifts = [_shift_row(s) for s in schedule.shifts(now, now + dt.timedelta(weeks=args.weeks))]
    if args.json:
        _print_json(shifts)
        return 0
    print(f"hand-off: {_WEEKDAY_NAMES[config.rotation.handoff_weekday]} "
          f"{config.rotation.handoff_time:%H:%M} {config.rotation.timezone}")
    from cocmail.views import table

    print(table([{**row, "on_duty": " + ".join(row["on_duty"])} for row in shifts],
                [("start", "FROM"), ("end", "UNTIL"), ("on_duty", "ON DUTY")]))
    return 0


_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def cmd_override_add(config: Config, args: argparse.Namespace) -> int:
    from cocmail.schedule.roster import load_schedule
    from cocmail.schedule.rotation import Override, OverrideRefused
    from cocmail.store.models import RotationOverride
    from cocmail.units import parse_moment

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


def cmd_override_list(config: Config, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from cocmail.store.models import RotationOverride
    from cocmail.views import table, utc_text

    now = SystemClock().now()
    store = open_store(config)
    with store.unit_of_work() as session:
        query = select(RotationOverride).order_by(RotationOverride.starts_at,
                                                  RotationOverride.id)
        if not args.all:
            query = query.where(RotationOverride.ends_at > now)
        rows = [{"id": r.id, "member": r.member, "instead_of": r.instead_of,
                 "start": utc_text(r.starts_at), "end": utc_text(r.ends_at),
                 "reason": r.reason} for r in session.scalars(query)]
    if args.json:
        _print_json(rows)
    elif rows:
        print(table(rows, [("id", "ID"), ("member", "MEMBER"), ("instead_of", "INSTEAD OF"),
                           ("start", "FROM"), ("end", "UNTIL"), ("reason", "REASON")]))
    else:
        print("no overrides")
    return 0


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


def cmd_replay(config: Config, args: argparse.Namespace) -> int:
    from cocmail.case import members
    from cocmail.intake import Intake
    from cocmail.outbox.enqueue import Enqueue

    store = open_store(config)
    clock = SystemClock()
    started = members.start(store, config.committee, clock.now())
    key = tokens.load_key(config, may_create=started.empty)
    intake = Intake(store, config.committee, key, clock, Enqueue.for_config(config, key))
    with store.unit_of_work() as session:
        entry = session.scalars(
            select(Quarantine).where(Quarantine.id == args.id).with_for_update()
        ).first()
        if entry is None:
            raise NotFound(f"no quarantine entry {args.id}")
        if entry.released_at is not None:
            print(f"quarantine entry {args.id} was already released: {entry.resolution}")
            return 0
        result = intake.replay(session, entry, open_case=args.open_case)
    if result.quarantine_reason:
        print(f"still quarantined: {result.quarantine_reason}")
        return 1
    print(f"message {result.message_id} {'opened' if result.opened else 'joined'} "
          f"case #{result.case_id}")
    return 0


def cmd_deliver(config: Config, args: argparse.Namespace) -> int:
    from cocmail.ingest.pipe import deliver

    logs.setup("warning")
    return deliver(config, args.recipient, args.sender, sys.stdin.buffer)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=Path(os.environ.get("COCMAIL_CONFIG", DEFAULT_CONFIG)),
        help=f"the TOML config file (default: $COCMAIL_CONFIG or {DEFAULT_CONFIG})",
    )
    parser = argparse.ArgumentParser(
        prog="cocmail", description="Mail service for Code of Conduct committees."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(parent: Any, name: str, func: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help,
                                                       description=help)
        p.set_defaults(func=func)
        return p

    def group(parent: Any, name: str, help: str) -> Any:
        """A command with subcommands (``cocmail NAME SUBCOMMAND``)."""
        return parent.add_parser(name, help=help).add_subparsers(
            dest=f"{name}_command", required=True)

    add(sub, "serve", cmd_serve, "run the daemon: SMTP/LMTP listeners and the HTTP port")

    db = group(sub, "db", "database schema")
    add(db, "upgrade", cmd_db_upgrade, "apply the migrations the database does not have yet")

    cases = group(sub, "cases", "list cases")
    p = add(cases, "list", cmd_cases_list, "list cases (metadata only)")
    p.add_argument("--open", action="store_true", help="only cases that are not closed")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, help="at most N cases")

    case = group(sub, "case", "one case")
    p = add(case, "show", cmd_case_show, "show one case: participants, messages, history")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")

    quarantine = group(sub, "quarantine", "messages that opened no case")
    p = add(quarantine, "list", cmd_quarantine_list, "list quarantined messages")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="include entries already released")
    p.add_argument("--limit", type=int, help="at most N entries")

    roster = group(sub, "roster", "the committee's members")
    p = add(roster, "check", cmd_roster_check,
            "check the roster: at least three members, no shared addresses, no employer "
            "majority, a mediator, two on duty for the next 12 weeks (exit 1 on a problem)")
    p.add_argument("--json", action="store_true")

    rotation = group(sub, "rotation", "triage duty")
    p = add(rotation, "show", cmd_rotation_show, "the coming shifts, overrides applied")
    p.add_argument("--weeks", type=int, default=4, help="how far ahead (default 4)")
    p.add_argument("--json", action="store_true")
    override = group(rotation, "override", "stand-ins for holidays and swaps")
    p = add(override, "add", cmd_override_add,
            "put --member on duty instead of --instead-of between --from and --to "
            "(dates and times are local to rotation.timezone unless they carry an offset)")
    p.add_argument("--member", required=True)
    p.add_argument("--instead-of", required=True)
    p.add_argument("--from", dest="start", required=True, metavar="WHEN")
    p.add_argument("--to", dest="end", required=True, metavar="WHEN")
    p.add_argument("--reason", help="a word on why (shown in `override list`)")
    p = add(override, "list", cmd_override_list, "overrides not yet over")
    p.add_argument("--all", action="store_true", help="include those already over")
    p.add_argument("--json", action="store_true")
    p = add(override, "remove", cmd_override_remove, "delete an override")
    p.add_argument("id", type=int, metavar="OVERRIDE_ID")

    imap = group(sub, "imap", "the hosted mailbox ([imap])")
    p = add(imap, "check", cmd_imap_check,
            "log in to the mailbox as serve would and say what is there, taking nothing "
            "(exit 1 when the login fails or the folder is missing)")
    p.add_argument("--json", action="store_true")

    outbox = group(sub, "outbox", "outgoing mail")
    p = add(outbox, "list", cmd_outbox_list,
            "list outgoing mail, newest first: queued, sent, failed, cancelled")
    p.add_argument("--failed", action="store_true", help="only mail given up as failed")
    p.add_argument("--case", type=int, help="only mail about case N")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, help="at most N entries")
    p = add(outbox, "retry", cmd_outbox_retry,
            "queue a failed mail again (after fixing what made it fail)")
    p.add_argument("id", type=int, metavar="OUTBOX_ID")

    p = add(sub, "replay", cmd_replay, "route a quarantined message again")
    p.add_argument("id", type=int, metavar="QUARANTINE_ID")
    p.add_argument("--open-case", action="store_true",
                   help="open a new case with it whatever routing says (a real report "
                        "that was taken for an automatic message)")

    p = add(sub, "deliver", cmd_deliver,
            "store one message from standard input (for an MTA pipe transport)")
    p.add_argument("--recipient", required=True, help="the envelope recipient")
    p.add_argument("--sender", default=None,
                   help="the envelope sender ('' for the null sender of a bounce)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Whatever any command writes (the database, mail, keys) is the user's alone.
    files.private()
    is_deliver = args.func is cmd_deliver
    try:
        config = config_module.load(args.config)
        return int(args.func(config, args))
    except ConfigError as exc:
        print(f"cocmail: config: {exc}", file=sys.stderr)
        # An MTA must keep the message while the operator fixes the config.
        return 75 if is_deliver else 2
    except UsageError as exc:
        print(f"cocmail: {exc}", file=sys.stderr)
        return 2
    except (NotFound, NotMigrated) as exc:
        print(f"cocmail: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"cocmail: store unavailable: {exc}", file=sys.stderr)
        return 75 if is_deliver else 1
    except Exception as exc:
        if not is_deliver:
            raise
        print(f"cocmail: internal error ({type(exc).__name__}); try again later", file=sys.stderr)
        return 75
