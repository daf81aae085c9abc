"""``cocmail outbox list`` and ``cocmail outbox retry``: outgoing mail, and failed
mail queued again (one, or all of it after an outage), each retry a line in its
case's history with the operator who asked."""

from __future__ import annotations

import argparse
from typing import Any

from cocmail.cli.base import Commands, UsageError, open_store, os_user, print_rows
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.errors import NotFound
from cocmail.store.db import Store

OUTBOX_COLUMNS = [("id", "ID"), ("case", "CASE"), ("kind", "KIND"), ("recipient", "TO"),
                  ("status", "STATUS"), ("attempts", "TRIES"), ("created_at", "QUEUED"),
                  ("due_at", "NEXT TRY"), ("last_error", "LAST ERROR")]


def register(commands: Commands, sub: Any) -> None:
    outbox = commands.group(sub, "outbox", "outgoing mail")
    p = commands.command(outbox, "list", cmd_outbox_list,
                         "list outgoing mail, newest first: queued, sent, failed, cancelled",
                         collect_outbox)
    p.add_argument("--failed", action="store_true", help="only mail given up as failed")
    p.add_argument("--case", type=int, help="only mail about case N")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, help="at most N entries")
    p = commands.command(outbox, "retry", cmd_outbox_retry,
                         "queue failed mail again (after fixing what made it fail)")
    p.add_argument("id", type=int, metavar="OUTBOX_ID", nargs="?", help="the one to retry")
    p.add_argument("--failed", action="store_true",
                   help="every mail given up as failed (after an outage of the relay)")


def collect_outbox(config: Config, store: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    from cocmail.cli.views import list_outbox

    with store.reading() as session:
        return list_outbox(session, failed_only=args.failed, limit=args.limit,
                           case_id=args.case)


def cmd_outbox_list(config: Config, args: argparse.Namespace) -> int:
    return print_rows(collect_outbox(config, open_store(config), args), args, OUTBOX_COLUMNS,
                      "no failed mail" if args.failed else "the outbox is empty")


def cmd_outbox_retry(config: Config, args: argparse.Namespace) -> int:
    from sqlalchemy import select, update

    from cocmail.case import events
    from cocmail.store import writes
    from cocmail.store.models import Outbox

    rows: list[tuple[int, int | None, str]]
    if (args.id is None) == (not args.failed):
        raise UsageError("outbox retry: give one OUTBOX_ID or --failed")
    store = open_store(config)
    now = SystemClock().now()
    with store.unit_of_work() as session:
        if args.failed:
            rows = [(row.id, row.case_id, row.kind) for row in session.execute(
                select(Outbox.id, Outbox.case_id, Outbox.kind).where(Outbox.status == "failed")
                .order_by(Outbox.id).with_for_update())]
            if not rows:
                print("no failed mail to retry")
                return 0
        else:
            row = session.get(Outbox, args.id, with_for_update=True)
            if row is None:
                raise NotFound(f"no outbox entry {args.id}")
            if row.status != "failed":
                print(f"outbox entry {args.id} is {row.status}; only failed mail is retried")
                return 1
            rows = [(row.id, row.case_id, row.kind)]
        session.execute(update(Outbox).where(Outbox.id.in_([r[0] for r in rows])).values(
            status="queued", due_at=now, attempts=0, failed_at=None, claimed_by=None,
            claimed_until=None))
        actor = events.operator(os_user())
        writes.insert_events(session.connection(), [
            events.row(case_id, now, events.EventKind.MAIL_RETRIED,
                       {"outbox_id": outbox_id, "mail": kind}, actor=actor)
            for outbox_id, case_id, kind in rows if case_id is not None])
    if args.failed:
        print(f"{len(rows)} failed mail{'s' if len(rows) != 1 else ''} queued again; "
              "the daemon sends them within a tick")
    else:
        print(f"outbox entry {args.id} queued again; the daemon sends it within a tick")
    return 0
