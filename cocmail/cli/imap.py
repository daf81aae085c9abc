"""``cocmail imap check``: log in to the hosted mailbox as serve would and say what is
there, taking nothing."""

from __future__ import annotations

import argparse
from typing import Any

from cocmail.cli.base import Commands, NotMigrated, UsageError, open_store, print_json
from cocmail.config import Config
from cocmail.errors import StoreUnavailable
from cocmail.store.db import Store


def register(commands: Commands, sub: Any) -> None:
    imap = commands.group(sub, "imap", "the hosted mailbox ([imap])")
    p = commands.command(imap, "check", cmd_imap_check,
                         "log in to the mailbox as serve would and say what is there, taking "
                         "nothing (exit 1 when the login fails or the folder is missing)")
    p.add_argument("--json", action="store_true")


def cmd_imap_check(config: Config, args: argparse.Namespace) -> int:
    from cocmail.ingest.imap.check import check

    if config.imap is None:
        raise UsageError(f"{args.config} has no [imap] section: there is no mailbox to check")
    try:
        store: Store | None = open_store(config)
    except (NotMigrated, StoreUnavailable):
        store = None  # the mailbox is still worth checking; the position is left out
    found = check(config.imap, store)
    if args.json:
        print_json(found)
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
