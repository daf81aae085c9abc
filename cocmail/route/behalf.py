"""Reports that reached a member elsewhere (a chat DM, an event, a moderator's
escalation), filed by the member: their first lines say for whom and from where.

    on-behalf-of rita@example.net     (or: on-behalf-of anonymous)
    channel chat                      (chat | event | github | moderator | other)

Only a committee member's mail to the bare address is read this way. The lines
stay in the message as it was sent; the case records the channel, and who it
was filed for.
"""

from __future__ import annotations

from dataclasses import dataclass

from cocmail.syntax import ADDRESS

CHANNELS = ("chat", "event", "github", "moderator", "other")


@dataclass(frozen=True)
class OnBehalf:
    reporter: str | None  # the address of the person who reported; None: anonymous
    channel: str


def read(text: str) -> OnBehalf | None:
    """The filing lines at the top of ``text``, or None when it has none.

    >>> read("on-behalf-of Rita@Example.net\\nchannel chat\\n\\nShe said ...")
    OnBehalf(reporter='rita@example.net', channel='chat')
    >>> read("On-Behalf-Of anonymous\\nWhat happened ...")
    OnBehalf(reporter=None, channel='other')
    >>> read("channel event") is None  # for whom is what makes it a filing
    True
    >>> read("Hello, I want to report ...") is None
    True
    """
    reporter: str | None = None
    channel = "other"
    named = False
    for line in text.strip().splitlines()[:4]:
        words = line.strip().split()
        if len(words) != 2:
            continue
        key, value = words[0].lower(), words[1].strip("<>")
        if key == "on-behalf-of" and (value.lower() == "anonymous" or ADDRESS.fullmatch(value)):
            reporter = None if value.lower() == "anonymous" else value.lower()
            named = True
        elif key == "channel" and value.lower() in CHANNELS:
            channel = value.lower()
    return OnBehalf(reporter, channel) if named else None
