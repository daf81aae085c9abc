"""Member commands: the first lines of a member's reply to their token address.

One command per line, case-insensitive, from the top of the reply's new text
(quotes and signature already stripped) to the first line that is not a
command, or a "thanks" / "--" line. What follows is the note, for the other
members. Each command is one small module with a name, a usage line, a summary
and ``run``; ``TABLE`` lists them, in the order ``help`` shows them.
"""

from __future__ import annotations

from cocmail.commands import (
    ack,
    assign,
    close,
    conflict,
    deciding,
    emergency,
    follow_up,
    help,
    note,
    party,
    plan,
    purge,
    recuse,
    relay,
    severity,
)
from cocmail.commands.base import Command, Request, Result, split

TABLE: dict[str, Command] = {c.name: c for c in (
    conflict.COMMAND, recuse.COMMAND, ack.COMMAND, severity.COMMAND, assign.COMMAND,
    party.COMMAND, relay.RELAY_COMMAND, relay.APPROVE, plan.COMMAND, emergency.COMMAND,
    deciding.RECONVENE, deciding.VOTE, deciding.DECIDE, follow_up.COMMAND, close.CLOSE,
    close.REOPEN, purge.COMMAND, note.COMMAND, help.COMMAND)}

__all__ = ["TABLE", "Command", "Request", "Result", "split"]
