"""A member's reply to their token address: its commands carried out in the
intake's transaction, its note passed on, one confirmation back."""

from __future__ import annotations

import difflib
from typing import Any

from cocmail.commands import TABLE
from cocmail.commands.base import MAX_UNKNOWN, Request, Result, split
from cocmail.commands.conflict import BEFORE_CLEARED


def carry_out(request: Request, text: str) -> tuple[list[dict[str, Any]], str]:
    """Run the commands at the top of ``text``; return the transcript (one entry a
    command: the line, whether it was applied, what it did or why not) and the note."""
    commands, note = split(text, TABLE)
    for line, name, _ in commands:
        if name == "note" and line.split(None, 1)[1:]:
            # "note <text>": the text on the line begins the note.
            first = line.split(None, 1)[1]
            note = f"{first}\n{note}" if note else first
    request.note = note
    transcript = []
    for line, name, args in commands:
        if name == "stop":
            result = Result(False, f"Stopped after {MAX_UNKNOWN} lines that are not commands: "
                                   "nothing after them was carried out or passed on. Reply "
                                   "\"help\" for the list.")
        elif not name:
            word = line.split()[0].lower()
            close = difflib.get_close_matches(word, TABLE, 1, 0.75)
            result = Result(False, f"Unknown command {word!r}"
                                   + (f" (did you mean {close[0]!r}?)" if close else "") + ".")
        elif not request.cleared and name not in BEFORE_CLEARED:
            result = Result(False, "You have not answered the conflict check of case "
                                   f"#{request.case_id} yet: reply \"no-conflict\" or "
                                   "\"recuse\" first.")
        else:
            result = TABLE[name].run(request, args)
        transcript.append({"line": line, "applied": result.applied, "text": result.text})
    return transcript, note
