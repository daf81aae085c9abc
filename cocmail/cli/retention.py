"""``cocmail purge [--dry-run]``: the content retention removes, listed with when
it goes, or removed now (what the daemon's daily run would do)."""

from __future__ import annotations

import argparse
from typing import Any

from cocmail.cli.base import Commands, open_store, print_rows
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.schedule import retention
from cocmail.store.db import Store

COLUMNS = [("what", "WHAT"), ("id", "ID"), ("since", "CLOSED/RECEIVED"), ("at", "PURGED AT"),
           ("when", "WHEN")]
NOT_SET = ("retention is not set (retention.closed_after, retention.quarantine_after): "
           "nothing is purged by age")


def register(commands: Commands, sub: Any) -> None:
    p = commands.command(sub, "purge", cmd_purge,
                         "purge the content retention no longer keeps (--dry-run: list "
                         "what goes, and when)", collect_purge)
    p.add_argument("--dry-run", action="store_true",
                   help="purge nothing: list every closed case and quarantined message "
                        "with the time its content goes")
    p.add_argument("--json", action="store_true")


def collect_purge(config: Config, store: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every case and quarantine entry retention will purge, with when."""
    now = SystemClock().now()
    with store.reading() as session:
        going = retention.due(session.connection(), config.retention, now, upcoming=True)
    return [{"what": d.what, "id": d.id, "since": d.since.isoformat(), "at": d.at.isoformat(),
             "when": "at the next daily run" if d.at <= now else d.at.date().isoformat()}
            for d in going]


def cmd_purge(config: Config, args: argparse.Namespace) -> int:
    kept = config.retention
    if kept.closed_after is None and kept.quarantine_after is None:
        print(NOT_SET)
        return 0
    store = open_store(config)
    if args.dry_run:
        return print_rows(collect_purge(config, store, args), args, COLUMNS,
                          "nothing for retention to purge")
    with store.transaction() as db:
        cases, messages = retention.apply(db, kept, SystemClock().now())
    print(f"purged {cases} case(s) and {messages} quarantined message(s)")
    return 0
