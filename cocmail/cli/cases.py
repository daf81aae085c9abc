"""``cocmail cases list`` and ``cocmail case show``: the cases, metadata only, and
one case whole (participants, messages, history, mail, plan)."""

from __future__ import annotations

import argparse
from typing import Any

from cocmail.cli.base import Commands, open_store, print_json, print_rows
from cocmail.clock import SystemClock
from cocmail.config import Config
from cocmail.errors import NotFound
from cocmail.route import tokens
from cocmail.store.db import Store
from cocmail.store.models import Case

CASE_COLUMNS = [("id", "ID"), ("state", "STATE"), ("severity", "SEVERITY"),
                ("opened_at", "OPENED"), ("acknowledged_at", "ACKNOWLEDGED"),
                ("message_count", "MESSAGES"), ("recused", "RECUSED"), ("decision", "DECISION")]

_STANDING_NOTES = {"pending": "  (conflict check not answered)",
                   "recused-hard": "  (recused)", "recused-soft": "  (recused: soft)",
                   "kept-out": "  (kept out by the reporter)",
                   "removed": "  (no longer a member)"}


def register(commands: Commands, sub: Any) -> None:
    cases = commands.group(sub, "cases", "list cases")
    p = commands.command(cases, "list", cmd_cases_list, "list cases (metadata only)",
                         collect_cases)
    p.add_argument("--open", action="store_true", help="only cases that are not closed")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, help="at most N cases")

    case = commands.group(sub, "case", "one case")
    p = commands.command(case, "show", cmd_case_show,
                         "show one case: participants, messages, history", collect_case)
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")


def collect_cases(config: Config, store: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    from cocmail.cli.views import list_cases

    with store.reading() as session:
        return list_cases(session, open_only=args.open, limit=args.limit)


def cmd_cases_list(config: Config, args: argparse.Namespace) -> int:
    return print_rows(collect_cases(config, open_store(config), args), args, CASE_COLUMNS,
                      "no cases")


def collect_case(config: Config, store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from cocmail.case import access
    from cocmail.case.sla import sla_status
    from cocmail.cli.views import case_detail, list_outbox, utc_text
    from cocmail.commands.plan import plan_of

    key = tokens.load_key(config)
    with store.reading() as session:
        case = session.get(Case, args.id)
        if case is None:
            raise NotFound(f"no case #{args.id}")
        detail = case_detail(case, config.committee, key,
                             access.load(session.connection(), [case.id])[case.id])
        detail["mail"] = list_outbox(session, failed_only=False, limit=None, case_id=case.id)
        detail["first_response_due"] = utc_text(case.opened_at + config.sla.first_response)
        detail["sla"] = sla_status(case.opened_at, case.acknowledged_at,
                                   config.sla.first_response, SystemClock().now())
        detail["plan"] = plan_of(session.connection(), case.id)
    return detail


def cmd_case_show(config: Config, args: argparse.Namespace) -> int:
    detail = collect_case(config, open_store(config), args)
    if args.json:
        print_json(detail)
        return 0
    print(f"Case #{detail['id']}: {detail['state']}, severity {detail['severity'] or 'not set'}")
    print(f"  opened {detail['opened_at']}, acknowledged {detail['acknowledged_at'] or 'no'} "
          f"(first response due {detail['first_response_due']}: {detail['sla']})")
    print(f"  recused: {', '.join(detail['recused']) or 'nobody'}; "
          f"decision: {detail['decision'] or 'none'}")
    print("  plan: " + ", ".join(f"{item} {state}" for item, state in detail["plan"].items()))
    print("Participants:")
    for p in detail["participants"]:
        waiting = _STANDING_NOTES.get(p["standing"] or "", "")
        print(f"  {p['role']:<10} {p['email']}  reply to {p['reply_address']}{waiting}")
    print("Messages:")
    for m in detail["messages"]:
        who = m["sender_role"] or "unknown"
        mark = "verified" if m["verified"] else "unverified"
        print(f"  {m['id']:>6} {m['received_at']} {m['direction']:<3} {who:<10} {mark:<10} "
              f"{m['size']} bytes, {m['attachments']} attachment(s)")
    print("History:")
    for e in detail["events"]:
        data = e["data"]
        step = f" step {data['step']}" if data.get("step") else ""
        whom = f": {', '.join(data['members']) or 'nobody'}" if "members" in data else ""
        print(f"  {e['at']} {e['kind']:<12} by {e['actor']}{step}{whom}")
    print("Mail:")
    for m in reversed(detail["mail"]):
        print(f"  {m['id']:>6} {m['created_at']} {m['kind']:<12} to {m['recipient']:<20} "
              f"{m['status']}{' (' + m['last_error'] + ')' if m['last_error'] else ''}")
    return 0
