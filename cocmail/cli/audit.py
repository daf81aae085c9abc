"""``cocmail audit verify``: every case's history checked link by link."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import func, select

from cocmail.case import purge
from cocmail.case.events import EventKind
from cocmail.cli.base import Commands, open_store, print_json
from cocmail.config import Config
from cocmail.errors import NotFound
from cocmail.store import chain
from cocmail.store.db import Store
from cocmail.store.models import Case, Event


def register(commands: Commands, sub: Any) -> None:
    audit = commands.group(sub, "audit", "the history's integrity")
    p = commands.command(audit, "verify", cmd_audit_verify,
                         "check that no event of any case was changed, removed or reordered "
                         "(exit 1 naming the first broken link)", collect_audit)
    p.add_argument("--case", type=int, help="only case N")
    p.add_argument("--json", action="store_true")


def collect_audit(config: Config, store: Store, args: argparse.Namespace) -> dict[str, Any]:
    """How many cases and events were checked, and each broken chain's first
    broken link."""
    with store.reading() as session:
        db = session.connection()
        if args.case is not None and session.get(Case, args.case) is None:
            raise NotFound(f"no case {args.case}")
        broken = [found for _case, found in chain.verify(
            db, EventKind.PURGED, purge.cleared_keys, args.case) if found is not None]
        events = select(func.count(Event.id))
        cases = select(func.count(Case.id))
        if args.case is not None:
            events, cases = (events.where(Event.case_id == args.case),
                             cases.where(Case.id == args.case))
        return {"cases": db.execute(cases).scalar_one(),
                "events": db.execute(events).scalar_one(),
                "broken": [{"case": b.case_id, "event": b.event_id, "seq": b.seq,
                            "why": b.why, "text": str(b)} for b in broken]}


def cmd_audit_verify(config: Config, args: argparse.Namespace) -> int:
    result = collect_audit(config, open_store(config), args)
    if args.json:
        print_json(result)
    else:
        for found in result["broken"]:
            print(f"broken: {found['text']}")
        verdict = ("every chain holds" if not result["broken"] else
                   f"{len(result['broken'])} broken")
        print(f"audit: {result['cases']} cases, {result['events']} events: {verdict}")
    return 1 if result["broken"] else 0
