"""``cocmail serve``, ``cocmail db upgrade`` and ``cocmail deliver``: the daemon, the
schema, and one message from an MTA's pipe transport."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from cocmail.cli.base import Commands
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.store import migrate
from cocmail.store.db import Store
from cocmail.store.unlock import unlock
from cocmail.telemetry import logs


def register(commands: Commands, sub: Any) -> None:
    commands.command(sub, "serve", cmd_serve,
                     "run the daemon: SMTP/LMTP listeners and the HTTP port")
    db = commands.group(sub, "db", "database schema")
    commands.command(db, "upgrade", cmd_db_upgrade,
                     "apply the migrations the database does not have yet")
    p = commands.command(sub, "deliver", cmd_deliver,
                         "store one message from standard input (for an MTA pipe transport)")
    p.add_argument("--recipient", required=True, help="the envelope recipient")
    p.add_argument("--sender", default=None,
                   help="the envelope sender ('' for the null sender of a bounce)")


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from cocmail.daemon.serve import Daemon, OutdatedDatabase

    logs.setup(config.logging.level, config.logging.format)
    try:
        asyncio.run(Daemon(config).run())
    except OutdatedDatabase as exc:
        print(f"cocmail: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_db_upgrade(config: Config, args: argparse.Namespace) -> int:
    store = Store.of(config.database)
    try:
        before = migrate.current_revision(store)
        migrate.upgrade(store)
        after = migrate.current_revision(store)
        # The history written before it was a chain is chained now.
        unlock(config, store, SystemClock().now())
    finally:
        store.dispose()
    if before == after:
        print(f"database is up to date (revision {after})")
    else:
        print(f"database upgraded from {before or 'empty'} to revision {after}")
    return 0


def cmd_deliver(config: Config, args: argparse.Namespace) -> int:
    from cocmail.ingest.pipe import deliver

    logs.setup("warning")
    return deliver(config, args.recipient, args.sender, sys.stdin.buffer)
