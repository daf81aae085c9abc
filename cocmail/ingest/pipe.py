"""``cocmail deliver``: one message on standard input from an MTA pipe transport.

Exit codes are sysexits(3), which Postfix, Exim and sendmail understand:
0 stored, 75 (EX_TEMPFAIL) the MTA keeps the message and retries, 67
(EX_NOUSER) unknown recipient, 65 (EX_DATAERR) no message or too big. The
reason is one line on standard error, which the MTA puts in its log or bounce.
"""

from __future__ import annotations

import logging
import sys
from typing import BinaryIO

from cocmail.case import members
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.errors import AddressError, StoreUnavailable
from cocmail.intake.service import Delivery, Intake
from cocmail.notify.enqueue import Enqueue
from cocmail.route import tokens
from cocmail.route.addresses import UnknownKeepOut, split_recipient
from cocmail.store import migrate
from cocmail.store.db import Store

log = logging.getLogger(__name__)

EX_OK = 0
EX_DATAERR = 65
EX_NOUSER = 67
EX_TEMPFAIL = 75


def deliver(config: Config, recipient: str, sender: str | None, source: BinaryIO) -> int:
    try:
        split_recipient(recipient, config.committee)
    except UnknownKeepOut:
        pass  # perhaps a handle the member had before: the store says, below
    except AddressError as exc:
        print(f"cocmail: {exc}", file=sys.stderr)
        return EX_NOUSER
    limit = config.smtp.max_message_size
    raw = source.read(limit + 1)
    if not raw.strip():
        print("cocmail: no message on standard input", file=sys.stderr)
        return EX_DATAERR
    if len(raw) > limit:
        print(f"cocmail: message too big: the limit here is {limit} bytes", file=sys.stderr)
        return EX_DATAERR
    store = Store.of(config.database)
    try:
        if migrate.current_revision(store) != migrate.head_revision(store):
            print("cocmail: the database is not migrated; run `cocmail db upgrade`",
                  file=sys.stderr)
            return EX_TEMPFAIL
        clock = SystemClock()
        started = members.start(store, config.committee, clock.now())
        try:
            # With the handles the store knows (a former handle keeps its member out).
            parsed_recipient = split_recipient(recipient, config.committee, started.handles)
        except AddressError as exc:
            print(f"cocmail: {exc}", file=sys.stderr)
            return EX_NOUSER
        key = tokens.load_key(config, may_create=started.empty)
        intake = Intake(store, config.committee, key, clock, Enqueue.for_config(config, key))
        accepted = intake.accept(Delivery(
            raw=raw,
            envelope_from=sender,
            recipients=(parsed_recipient,),
            channel="pipe",
        ))
    except StoreUnavailable as exc:
        print(f"cocmail: store unavailable, try again later ({exc})", file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        store.dispose()
    state = "already stored" if accepted.duplicate else "stored"
    log.info("%s as message %d", state, accepted.message_id)
    return EX_OK
