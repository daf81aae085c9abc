"""The new text of a reply: what the sender wrote, without what they quoted and
without their signature.

Mail clients quote in two ways. Most put "> " before each quoted line under a
header such as "On Mon, 2 Apr 2012, Megan wrote:" (in the sender's language,
sometimes wrapped over two lines); that header and the quoted lines are
dropped, and text written between quoted lines (an answer inline) is kept.
Outlook, AOL, Yahoo and forwards put the original below a separator line or a
From:/Sent: block without any "> "; everything from there on is dropped. A
signature ("-- ", "Sent from my iPhone") ends the new text too.
"""

from __future__ import annotations

import re

# A line that ends the new text: what follows is quoted, forwarded or a signature.
_STOPS = [re.compile(p, re.IGNORECASE) for p in (
    r"^\s*-{2,}\s*original message\s*-{2,}\s*$",
    r"^\s*-{3,}\s*forwarded message\s*-{3,}\s*$",
    r"^\s*begin forwarded message:\s*$",
    r"^\s*[-_=]{20,}\s*$",  # Outlook's and lists' separator lines
    r"^-- ?$",  # the signature delimiter (RFC 3676)
    r"^--$",
    # "Sent from my iPhone", "Sent with Sparrow (…)": short, no sentence after it.
    r"^sent from my [\w .'-]{1,40}$",
    r"^sent (with|from) (sparrow|blackberry|outlook|mail for)\b",
    r"^get outlook for ",
)]
# A From: line that starts a block of the quoted message's headers (Outlook).
_HEADER_BLOCK = re.compile(r"^\s*\*?from:\*?\s+\S", re.IGNORECASE)
_HEADER_FOLLOWS = re.compile(r"^\s*\*?(sent|date|to|subject|cc):\*?\s", re.IGNORECASE)
# "On <date>, <someone> wrote:" and its translations; the quote block follows it.
_QUOTE_HEADER = re.compile(
    r"(wrote|writes|schrieb|a écrit|escribió|ha scritto|schreef|написал|napisał|kirjoitti"
    r"|skrev|escreveu)\s*:\s*$", re.IGNORECASE)
# The first line of a quote header wrapped over two lines.
_HEADER_START = re.compile(r"^\s*(on|le|am|el|il|op|em|den|w dniu|\d{1,4}[./-]\d{1,2}[./-]\d{1,4})"
                           r"\b", re.IGNORECASE)


def new_text(text: str) -> str:
    """The new text of a reply body.

    >>> new_text("Hello\\n\\nOn Mon, Apr 2, 2012 at 6:26 PM, Megan <m@x.org> wrote:\\n\\n> Hi\\n")
    'Hello'
    >>> new_text("ack\\nseverity high\\n\\n-- \\nAlice")
    'ack\\nseverity high'
    >>> new_text("On 04/02/2012 06:26 PM, Megan wrote:\\n> Hi\\nHello")
    'Hello'
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith(">"):
            index += 1
            continue
        if _QUOTE_HEADER.search(line) or (line.rstrip().endswith(":")
                                          and _quote_follows(lines, index + 1)):
            if not _quote_follows(lines, index + 1):
                break  # "... wrote:" over an unquoted original: the rest is the original
            # Drop the header, and its first lines when the client wrapped it.
            for size in (2, 1):
                head = kept[-size:] if len(kept) >= size else []
                if head and all(h.strip() for h in head) and _HEADER_START.match(head[0]):
                    del kept[-size:]
                    break
            index += 1
            continue
        if any(stop.match(line) for stop in _STOPS):
            break
        if _HEADER_BLOCK.match(line) and any(
                _HEADER_FOLLOWS.match(following) for following in lines[index + 1:index + 5]):
            break
        kept.append(line)
        index += 1
    return _tidy(kept)


def _quote_follows(lines: list[str], start: int) -> bool:
    """Do the next non-blank lines from ``start`` begin a "> " quote?"""
    for line in lines[start:start + 4]:
        if line.strip():
            return line.lstrip().startswith(">")
    return False


def _tidy(lines: list[str]) -> str:
    """Trailing spaces off, runs of blank lines to one, no blank lines at the ends."""
    out: list[str] = []
    for line in (line.rstrip() for line in lines):
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)
