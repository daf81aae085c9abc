"""A member's reply to their token address: its commands carried out in the
intake's transaction, its note passed on, one confirmation back."""

from __future__ import annotations

from typing import Any

from cocmail.commands import TABLE
from cocmail.commands.base import Request


def carry_out(request: Request, text: str) -> tuple[list[dict[str, Any]], str]:
    """Run the commands at the top of ``text``; return the transcript (one entry a
    command: the line, whether it was applied, what it did or why not) and the note."""
    from cocmail.commands.base import split

    commands, note = split(text, TABLE)
    transcript = []
    for line, name, args in commands:
        if name == "note" and args:
            # "note <text>": the text on the line begins the note.
            first = line.split(None, 1)[1]
            note = f"{first}\n{note}" if note else first
        result = TABLE[name].run(request, args)
        transcript.append({"line": line, "applied": result.applied, "text": result.text})
    return transcript, note
