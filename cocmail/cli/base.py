"""What every ``cocmail`` subcommand shares: the store opened at the right schema,
JSON output, the errors that pick an exit code, and the way a command is added.

A command that shows data splits in two: ``collect(config, store, args)`` gathers
it (what ``--json`` prints, and what the tests read in process), and the command
prints it for a person."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.store import migrate
from cocmail.store.db import Store
from cocmail.store.unlock import unlock

Run = Callable[[Config, argparse.Namespace], int]
Collect = Callable[[Config, Store, argparse.Namespace], Any]


class NotMigrated(Exception):
    """The database is not at this cocmail's schema: exit 1 naming `db upgrade`."""


class UsageError(Exception):
    """A command's arguments are wrong: exit 2 with the reason."""


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_rows(rows: list[dict[str, Any]], args: argparse.Namespace,
               columns: list[tuple[str, str]], empty: str) -> int:
    """A listing: ``rows`` as JSON with ``--json``, else as a table, or ``empty``
    when there is nothing to list."""
    from cocmail.cli.views import table

    if args.json:
        print_json(rows)
    elif rows:
        print(table(rows, columns))
    else:
        print(empty)
    return 0


def os_user() -> str:
    """Who runs this command, as the operating system knows them (the real
    uid's name, not ``$USER``, which anyone sets): an operator's action in a
    case's history names them."""
    import os
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no entry (a container's)
        return f"uid {os.getuid()}"


def open_store(config: Config) -> Store:
    """The store, checked to be at the schema this cocmail expects."""
    store = Store.of(config.database)
    why = migrate.behind(store)
    if why is not None:
        store.dispose()
        raise NotMigrated(why)
    unlock(config, store, SystemClock().now())
    return store


class Commands:
    """Adds subcommands to the parser: ``command(parent, name, run, help)`` and
    ``group(parent, name, help)`` for a command with subcommands."""

    def __init__(self, common: argparse.ArgumentParser) -> None:
        self.common = common

    def command(self, parent: Any, name: str, run: Run, help: str,
                collect: Collect | None = None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[self.common], help=help,
                                                       description=help)
        p.set_defaults(func=run, collect=collect)
        return p

    def group(self, parent: Any, name: str, help: str) -> Any:
        return parent.add_parser(name, help=help).add_subparsers(
            dest=f"{name}_command", required=True)
