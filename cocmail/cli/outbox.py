"""``cocmail outbox list`` and ``cocmail outbox retry``: outgoing mail, and a failed
one queued again."""

from __future__ import annotations

import argparse
from typing import Any

from cocmail.cli.base import Commands, open_store, print_rows
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
                         "queue a failed mail again (after fixing what made it fail)")
    p.add_argument("id", type=int, metavar="OUTBOX_ID")


def collect_outbox(config: Config, store: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    from cocmail.cli.views import list_outbox

    with store.reading() as session:
        return list_outbox(session, failed_only=args.failed, limit=args.limit,
                           case_id=args.case)


def cmd_outbox_list(config: Config, args: argparse.Namespace) -> int:
    return print_rows(collect_outbox(config, open_store(config), args), args, OUTBOX_COLUMNS,
                      "no failed mail" if args.failed else "the outbox is empty")


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
