"""The command lines at the top of a member's reply, each run by its command
(``commands.TABLE``) if the member's standing allows it (``case/access.py``),
else answered with why not: the transcript the confirmation shows, and the
note (the rest of the text)."""

from __future__ import annotations

import difflib

from cocmail.case import access
from cocmail.commands import TABLE
from cocmail.commands.base import MAX_UNKNOWN, Request, Result, split
from cocmail.notify.payloads import TranscriptLine


def carry_out(request: Request, text: str) -> tuple[list[TranscriptLine], str]:
    """Run the commands at the top of ``text``; return the transcript (one entry a
    command: the line, whether it was applied, what it did or why not) and the note."""
    commands, note = split(text, TABLE)
    for line, name, _ in commands:
        if name == "note" and line.split(None, 1)[1:]:
            # "note <text>": the text on the line begins the note.
            first = line.split(None, 1)[1]
            note = f"{first}\n{note}" if note else first
    request.note = note
    transcript: list[TranscriptLine] = []
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
        elif not access.may_run(request.seat.standing, name):
            result = Result(False, _refused(request, name))
        else:
            result = TABLE[name].run(request, args)
        transcript.append(TranscriptLine(line, result.applied, result.text))
    return transcript, note


def _refused(request: Request, name: str) -> str:
    """Why the rule does not let the sender run ``name`` in the case."""
    if request.seat.standing is access.Standing.PENDING:
        return (f"You have not answered the conflict check of case #{request.case_id} yet: "
                "reply \"no-conflict\" or \"recuse\" first.")
    if name == "vote":
        return "You have recused from this case: a member with a conflict may not vote."
    if name == "decide":
        return "You have recused from this case: you cannot decide it."
    return f"You cannot do that in case #{request.case_id}."
