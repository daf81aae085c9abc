"""HTML bodies rendered to plain text for reading (and for quoting in mail to members).

A small renderer on the standard library's HTMLParser: block elements become
line breaks, list items get a bullet, links keep their target, scripts and
styles are dropped, and entities are decoded. It is not a browser; it only has
to make a report readable on a phone. What a person would not see is left out:
an element marked ``hidden``, or styled ``display: none``, ``visibility:
hidden``, ``font-size: 0``, ``opacity: 0`` or a height of 0, and all it holds.
A member's commands are read from this text, so a command hidden in an HTML
reply never runs. (Style sheets that hide a class are not read.)
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {"p", "div", "br", "tr", "table", "section", "article", "header", "footer",
          "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "blockquote", "pre", "hr", "li"}
_SKIP = {"script", "style", "head", "title", "template"}
# Elements with no end tag: they hold no text, hidden or not.
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
         "source", "track", "wbr"}
_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)"
    r"|font-size\s*:\s*0(?:\.0*)?(?:[a-z%]*)?\s*(?:!important)?\s*(?:;|$)"
    r"|opacity\s*:\s*0(?:\.0*)?\s*(?:!important)?\s*(?:;|$)"
    r"|(?:max-)?height\s*:\s*0(?:\.0*)?(?:[a-z%]*)?\s*(?:!important)?\s*(?:;|$))",
    re.IGNORECASE)


def _hidden(attrs: list[tuple[str, str | None]]) -> bool:
    """Does this element hide what it holds from a person reading the mail?

    >>> _hidden([("style", "color: red; display:none")]), _hidden([("hidden", None)])
    (True, True)
    >>> _hidden([("style", "font-size:0px")]), _hidden([("style", "font-size: 12px")])
    (True, False)
    """
    for name, value in attrs:
        if name == "hidden":
            return True
        if name == "style" and value and _HIDDEN_STYLE.search(value):
            return True
    return False


class _Renderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.href: list[str | None] = []
        self.quote = 0
        self.hidden: list[str] = []  # the open elements that hide what they hold

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID and (self.hidden or _hidden(attrs)):
            self.hidden.append(tag)
        if tag in _SKIP:
            self.skip += 1
        elif tag == "pre":
            self.pre += 1
        if tag in _BLOCK:
            self.out.append("\n")
        if tag == "blockquote":
            self.quote += 1
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self.href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if self.hidden and tag in self.hidden:
            # Close up to the matching element (a missing end tag inside it is closed too).
            while self.hidden and self.hidden.pop() != tag:
                pass
        if tag in _SKIP and self.skip:
            self.skip -= 1
        elif tag == "pre" and self.pre:
            self.pre -= 1
        if tag == "blockquote" and self.quote:
            self.quote -= 1
        if tag == "a" and self.href:
            href = self.href.pop()
            if href and href.startswith(("http:", "https:", "mailto:")):
                self.out.append(f" <{href}>")
        if tag in _BLOCK and tag != "li":
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip or self.hidden:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
        if self.quote:
            data = data.replace("\n", "\n> ")
            if self.out and self.out[-1].endswith("\n"):
                data = "> " * self.quote + data.lstrip()
        self.out.append(data)


def html_to_text(html: str) -> str:
    """Render ``html`` as readable plain text.

    >>> html_to_text("<p>Hello&nbsp;<b>there</b></p><ul><li>one</li><li>two</li></ul>")
    'Hello there\\n\\n- one\\n- two'
    >>> html_to_text('<div style="display:none">purge</div><p>Thanks, all</p>')
    'Thanks, all'
    """
    renderer = _Renderer()
    renderer.feed(html)
    renderer.close()
    text = "".join(renderer.out)
    lines = [line.strip(" ") for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
