"""Parsing: encoded headers, charsets, HTML-only mail, attachments, missing fields."""

from __future__ import annotations

import hashlib

import pytest

from cocmail.parse.message import ParseError, parse
from cocmail.parse.text import decode_header
from tests.conftest import corpus_files, stdlib_email_messages


class TestHeaders:
    def test_rfc2047_subject_and_name(self) -> None:
        raw = (b"From: =?utf-8?q?Ren=C3=A9e_M=C3=BCller?= <renee@x.example>\r\n"
               b"Subject: =?iso-8859-1?q?=C4rger_im_Chat?=\r\n\r\nhi\r\n")
        m = parse(raw)
        assert m.subject == "\u00c4rger im Chat"
        assert m.from_name == "Ren\u00e9e M\u00fcller"
        assert m.from_address == "renee@x.example"

    def test_folded_and_control_characters_become_one_clean_line(self) -> None:
        assert decode_header("a\r\n b\x00c\x07") == "a bc"

    def test_unknown_charset_does_not_fail(self) -> None:
        m = parse(b"Subject: =?x-unknown?q?abc?=\r\n\r\nhi\r\n")
        assert m.subject is not None

    def test_missing_date_and_message_id(self) -> None:
        m = parse(b"From: a@b.example\r\nSubject: bare\r\n\r\nbody\r\n")
        assert m.message_id is None and m.date is None
        assert m.text.strip() == "body"

    def test_bad_date_is_none(self) -> None:
        assert parse(b"Date: yesterday-ish\r\nSubject: x\r\n\r\n.\r\n").date is None

    def test_thread_ids_nearest_first(self) -> None:
        m = parse(b"In-Reply-To: <c@x>\r\nReferences: <a@x> <b@x> <c@x>\r\n\r\nx\r\n")
        assert m.thread_ids == ("c@x", "b@x", "a@x")


class TestBodies:
    def test_latin1_body(self) -> None:
        raw = (b"Content-Type: text/plain; charset=iso-8859-1\r\n"
               b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe\r\n")
        assert parse(raw).text.strip() == "Gr\u00fc\u00dfe"

    def test_wrong_charset_label_keeps_the_text(self) -> None:
        raw = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
               b"caf\xe9 \x00 ok\r\n")
        text = parse(raw).text
        assert "ok" in text and "\x00" not in text
        text.encode("utf-8")  # storable

    def test_html_only_is_rendered_to_text(self) -> None:
        raw = (b"Content-Type: text/html; charset=utf-8\r\n\r\n"
               b"<html><body><p>He said <b>that</b>.</p><script>x()</script></body></html>\r\n")
        m = parse(raw)
        assert m.text == "He said that."
        assert m.html is not None and "<b>that</b>" in m.html

    def test_attachment_metadata(self) -> None:
        payload = bytes(range(256)) * 4
        import base64

        encoded = base64.encodebytes(payload)
        raw = (b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
               b"Content-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\n"
               b"Content-Type: application/octet-stream\r\n"
               b"Content-Disposition: attachment; filename=\"../../etc/evil.bin\"\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--XX--\r\n")
        m = parse(raw)
        assert m.text.strip() == "see attached"
        [a] = m.attachments
        assert (a.part, a.filename, a.content_type, a.size) == (
            "2", "evil.bin", "application/octet-stream", 1024)
        assert a.sha256 == hashlib.sha256(payload).hexdigest()


class TestNotMail:
    @pytest.mark.parametrize("raw", [b"", b"just some words\r\n", b"\x00\x01\x02"])
    def test_no_header_block_is_a_parse_error(self, raw: bytes) -> None:
        with pytest.raises(ParseError):
            parse(raw)


@pytest.mark.parametrize("path", corpus_files("replies") + stdlib_email_messages(),
                         ids=lambda p: p.name)
def test_corpus_parses_or_fails_cleanly(path) -> None:
    try:
        m = parse(path.read_bytes())
    except ParseError:
        return
    for value in (m.text, m.subject or "", *[v for _, v in m.headers]):
        value.encode("utf-8")
        assert "\x00" not in value


@pytest.mark.parametrize("path", corpus_files("replies") + stdlib_email_messages(),
                         ids=lambda p: p.name)
def test_fast_body_path_agrees_with_mail_parser(path) -> None:
    """For well-formed mail, the direct decode gives the bodies mail-parser gives."""
    import email
    import email.policy

    from cocmail.parse.message import _Bodies, _decode_bodies
    from cocmail.parse.parts import Looks as _Looks

    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    if any(part.defects for part in msg.walk()):
        return  # such mail always goes through mail-parser
    fast = _decode_bodies(msg, _Looks())
    if fast is None:
        return  # undecodable with its declared charset: mail-parser's recovery is used
    reference = _Bodies(msg)
    assert fast == (list(reference.text_plain), list(reference.text_html))


# Header blocks that end in odd ways, bodies that are not what they seem.
_ODD = [
    b"Subject: lf only\nFrom: a@b.example\n\nbody\nmore\n",
    b"Subject: mixed\r\nFrom: a@b.example\r\n\nbody\r\n",
    b"Subject: crlf after lf\nX: y\n\r\nbody",
    b"Subject: no final newline\r\n\r\nlast line",
    b"Subject: a\rb\r\nFrom: a@b.example\r\n\r\nbody\r\n",
    b"Subject: cr ends it\r\rFrom: late@b.example\r\n\r\nbody\r\n",
    b"\r\nbody after an empty header block\r\n\r\nmore\r\n",
    b"Subject: form\x0cfeed\r\n\r\nbody\r\n",
    b"Subject: not a header next\r\nthis is no header\r\n\r\nbody\r\n",
    b"From someone@example.org Wed Nov 25 10:00:00 2026\nSubject: mbox\n\nbody\n",
    b"Subject: eight bit \xe9\r\n\r\nbody \xff\xfe caf\xc3\xa9\r\n",
    b"Subject: folded\r\n\tstill the subject\r\n\r\n\r\nbody after a blank line\r\n",
    b"Content-Type: multipart\r\n\r\n--x\r\nnot parts\r\n",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\none\r\n--x--\r\n",
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
    b"\r\n\r\nY2Fmw6k=\r\n",
    b"Subject: only headers\r\n\r\n",
    b"Subject: only headers, no blank line\r\n",
]


def _shape(msg):
    """Everything the parser decided about a message, part by part."""
    return [(part.get_unixfrom(), list(part.raw_items()), part.is_multipart(),
             None if part.is_multipart() else part.get_payload(),
             [type(d).__name__ for d in part.defects], part.preamble, part.epilogue)
            for part in msg.walk()]


@pytest.mark.parametrize("raw", [*_ODD, *(p.read_bytes() for p in corpus_files("replies")),
                                 *(p.read_bytes() for p in stdlib_email_messages())])
def test_plain_bodies_taken_whole_parse_as_the_parser_does(raw: bytes) -> None:
    """The short cut for bodies that are not MIME parts gives the message the
    standard parser gives, wherever the header block ends and however oddly."""
    import email
    import email.policy

    from cocmail.parse.message import _parse_bytes

    expected = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert _shape(_parse_bytes(raw)) == _shape(expected)


def test_a_plain_report_takes_the_short_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    import cocmail.parse.message

    def whole(raw: bytes) -> None:
        raise AssertionError("parsed line by line")

    monkeypatch.setattr(cocmail.parse.message, "_parse_whole", whole)
    parsed = parse(b"Subject: hi\r\nFrom: a@b.example\r\n\r\nline one\r\nline two\r\n")
    assert parsed.text == "line one\nline two\n" and parsed.subject == "hi"
