"""``help``: the list of commands."""

from __future__ import annotations

from cocmail.commands.base import Request, Result


class Help:
    name = "help"
    usage = "help"
    summary = "this list"

    def run(self, request: Request, args: list[str]) -> Result:
        from cocmail.commands import TABLE

        lines = ["Commands go at the top of a reply, one per line; the rest is a note "
                 "for the other members:"]
        lines += [f"    {command.usage:<34} {command.summary}" for command in TABLE.values()]
        return Result(True, "\n".join(lines))


COMMAND = Help()
