"""The new text of a reply, over every client in ../shared/corpus/replies and every
body in ../shared/corpus/reply-bodies, and over hostile shapes of our own."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocmail.parse.message import parse
from cocmail.parse.reply_text import new_text
from tests.conftest import CORPUS, corpus_files


@pytest.mark.parametrize("path", corpus_files("replies"), ids=lambda p: p.name)
def test_every_client_s_reply_is_just_what_was_written(path: Path) -> None:
    """Each of these replies says "Hello" above (or below) what it quotes."""
    assert new_text(parse(path.read_bytes()).text) == "Hello"


# For each body: text the new text starts with, ends with, and must not contain.
BODIES = {
    "correct_sig.txt": ("this is an email", "correct -- signature.", "rick"),
    "email_1_1.txt": ("Hi folks", "-Abhishek Kona", "riak-users mailing list"),
    "email_1_2.txt": ("Hi,", "delete them all individually.\"", "riak-users mailing list"),
    "email_1_3.txt": ("Oh thanks.", "-Abhishek Kona", "Russell Brown wrote"),
    "email_1_4.txt": ("Awesome!", "problem with it.", "wrote:"),
    "email_1_5.txt": ("One: Here's what", "for a while.", ">"),
    "email_1_6.txt": ("I get proper", "torch of pixels", "Corey Donohoe"),
    "email_1_7.txt": (":+1:", ":+1:", "wrote"),
    "email_1_8.txt": ("I will reply under this one", "and under this.", ">"),
    "email_2_1.txt": ("Outlook with a reply", "Outlook with a reply", "Google Apps"),
    "email_2_2.txt": ("Outlook with a reply", "above line", "From:"),
    "email_2_3.txt": ("Outlook with a reply", "above line", "From:"),
    "email_BlackBerry.txt": ("Here is another email", "Here is another email", "Sent"),
    "email_bullets.txt": ("test 2 this should", "- and another", "wrote"),
    "email_iPhone.txt": ("Here is another email", "Here is another email", "iPhone"),
    "email_long_quote.txt": ("Hi folks", "", "riak-users mailing list"),
    "email_multi_word_sent_from_my_mobile_device.txt": ("Here is another", "email",
                                                        "Verizon"),
    "email_one_is_not_on.txt": ("Thank, this is", "when I run...", "wrote:"),
    "email_sent_from_my_not_signature.txt": ("Here is another", "my mobile phone.", ">"),
    "email_sig_delimiter_in_middle_of_line.txt": ("Hi there!", "kthxbai", "wrote"),
    "greedy_on.txt": ("On your remote host", "is not working.", "wrote:"),
    "pathological.txt": ("I think you're onto", "back to a computer.", ">"),
}


def test_every_body_in_the_corpus_is_covered() -> None:
    assert sorted(BODIES) == sorted(p.name for p in corpus_files("reply-bodies"))


@pytest.mark.parametrize("name", sorted(BODIES))
def test_bodies(name: str) -> None:
    starts, ends, absent = BODIES[name]
    text = new_text((CORPUS / "reply-bodies" / name).read_text(errors="replace"))
    assert text.startswith(starts)
    assert text.endswith(ends)
    assert absent not in text
    assert not any(line.startswith(">") for line in text.splitlines())


@pytest.mark.parametrize("body, expected", [
    ("ack\r\nseverity high\r\n\r\nOn Tue, Bob wrote:\r\n> the report\r\n", "ack\nseverity high"),
    ("ack\n\n---------- Forwarded message ---------\nFrom: x\n", "ack"),
    ("ack\n________________________________\nFrom: Bob\nSent: Monday\nTo: c\n", "ack"),
    ("ack\n*From:* Bob\n*Sent:* Monday\n", "ack"),
    ("> only a quote\n> and more\n", ""),
    ("", ""),
    ("Le 2 avr. 2012 à 18:26, Megan a écrit :\n> Salut\nMerci", "Merci"),
    ("Am 02.04.2012 um 18:26 schrieb Megan:\n> Hallo\nDanke", "Danke"),
    ("Here is the list:\n- one\n- two", "Here is the list:\n- one\n- two"),
], ids=["gmail-crlf", "forward", "outlook-line", "outlook-stars", "quote-only", "empty",
        "french", "german", "colon-not-a-header"])
def test_shapes(body: str, expected: str) -> None:
    assert new_text(body) == expected
