"""``cocmail quarantine list``, ``quarantine show`` and ``cocmail replay``: messages
that opened no case, one of them read, and routing one of them again."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from cocmail.cli.base import Commands, open_store, print_json, print_rows
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.errors import NotFound
from cocmail.store.db import Store
from cocmail.store.models import Quarantine

QUARANTINE_COLUMNS = [("id", "ID"), ("received_at", "RECEIVED"), ("reason", "REASON"),
                      ("size", "BYTES"), ("claimed_case", "CASE"), ("detail", "DETAIL")]


def register(commands: Commands, sub: Any) -> None:
    quarantine = commands.group(sub, "quarantine", "messages that opened no case")
    p = commands.command(quarantine, "list", cmd_quarantine_list, "list quarantined messages",
                         collect_quarantine)
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="include entries already released")
    p.add_argument("--limit", type=int, help="at most N entries")

    p = commands.command(quarantine, "show", cmd_quarantine_show,
                         "one quarantined message: why it is held, its headers and its text",
                         collect_quarantined)
    p.add_argument("id", type=int, metavar="QUARANTINE_ID")
    p.add_argument("--json", action="store_true")

    p = commands.command(sub, "replay", cmd_replay, "route a quarantined message again")
    p.add_argument("id", type=int, metavar="QUARANTINE_ID")
    p.add_argument("--open-case", action="store_true",
                   help="open a new case with it whatever routing says (a real report "
                        "that was taken for an automatic message)")


def collect_quarantine(config: Config, store: Store,
                       args: argparse.Namespace) -> list[dict[str, Any]]:
    from cocmail.cli.views import list_quarantine

    with store.reading() as session:
        return list_quarantine(session, include_released=args.all, limit=args.limit)


def cmd_quarantine_list(config: Config, args: argparse.Namespace) -> int:
    return print_rows(collect_quarantine(config, open_store(config), args), args,
                      QUARANTINE_COLUMNS, "the quarantine is empty")


def collect_quarantined(config: Config, store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from cocmail.cli.views import show_quarantined

    with store.reading() as session:
        found = show_quarantined(session, args.id)
    if found is None:
        raise NotFound(f"no quarantine entry {args.id}")
    return found


def cmd_quarantine_show(config: Config, args: argparse.Namespace) -> int:
    found = collect_quarantined(config, open_store(config), args)
    if args.json:
        print_json(found)
        return 0
    state = (f"released {found['released_at']}: {found['resolution']}" if found["released_at"]
             else "held")
    print(f"quarantine entry {found['id']} ({state}), message {found['message']}, "
          f"{found['size']} bytes, received {found['received_at']}")
    print(f"reason: {found['reason']}" + (f" ({found['detail']})" if found["detail"] else ""))
    print()
    for name, value in found["headers"]:
        print(f"{name}: {value}")
    print()
    print(found["text"] or "(no text)")
    for attachment in found["attachments"]:
        print(f"[attachment: {attachment['filename'] or '(no name)'}, "
              f"{attachment['content_type']}, {attachment['size']} bytes]")
    return 0


def cmd_replay(config: Config, args: argparse.Namespace) -> int:
    from cocmail import wiring

    store = open_store(config)
    intake = wiring.start_taking_mail(config, store, SystemClock()).intake
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
