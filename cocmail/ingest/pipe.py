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

from cocmail import wiring
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.errors import AddressError, StoreUnavailable
from cocmail.intake.inbound import Inbound
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
        why = migrate.behind(store)
        if why is not None:
            print(f"cocmail: {why}", file=sys.stderr)
            return EX_TEMPFAIL
        taker = wiring.start_taking_mail(config, store, SystemClock())
        try:
            # With the handles the store knows (a former handle keeps its member out).
            parsed_recipient = split_recipient(recipient, config.committee,
                                               taker.started.handles)
        except AddressError as exc:
            print(f"cocmail: {exc}", file=sys.stderr)
            return EX_NOUSER
        accepted = taker.intake.accept(Inbound(
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
