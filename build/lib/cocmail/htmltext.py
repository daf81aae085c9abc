"""HTML bodies rendered to plain text for reading (and for quoting in mail to members).

A small renderer on the standard library's HTMLParser: block elements become
line breaks, list items get a bullet, links keep their target, scripts and
styles are dropped, and entities are decoded. It is not a browser; it only has
to make a report readable on a phone.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {"p", "div", "br", "tr", "table", "section", "article", "header", "footer",
          "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "blockquote", "pre", "hr", "li"}
_SKIP = {"script", "style", "head", "title", "template"}


class _Renderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.href: list[str | None] = []
        self.quote = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
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
        if self.skip:
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
    """
    renderer = _Renderer()
    renderer.feed(html)
    renderer.close()
    text = "".join(renderer.out)
    lines = [line.strip(" ") for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
