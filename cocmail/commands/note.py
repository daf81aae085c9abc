"""``note``: the rest of the reply goes to the other members (also without it)."""

from __future__ import annotations

from cocmail.commands.base import Request, Result


class Note:
    name = "note"
    usage = "note [text]"
    summary = "send the rest of your reply to the other members (the default)"

    def run(self, request: Request, args: list[str]) -> Result:
        return Result(True, "The rest of your reply goes to the other members.")


COMMAND = Note()
