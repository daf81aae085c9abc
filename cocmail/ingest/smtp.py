"""SMTP and LMTP listeners (aiosmtpd): bytes in, the intake service, a reply code out.

Three things differ from aiosmtpd's defaults, each on purpose:
- DATA accepts lines longer than 1000 octets and bare-LF line endings, and
  stores them as sent; the end of data is still only CRLF.CRLF, so a bare
  "LF.LF" cannot smuggle a second message in.
- Over the size limit the answer is ``552 5.3.4``, at MAIL (``SIZE=``) and
  after DATA.
- An exception answers ``451 4.3.0`` (try again) without its text, where
  aiosmtpd would say a permanent 500 with the error message.
LMTP answers one line per accepted recipient after DATA (RFC 2033); aiosmtpd's
LMTP class sends one line only, which made Postfix time out and deliver twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable, Collection
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from cocmail.config import Committee
from cocmail.errors import AddressError, StoreUnavailable
from cocmail.intake.batch import Writer
from cocmail.intake.inbound import Inbound
from cocmail.route.addresses import UnknownKeepOut, split_recipient
from cocmail.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

OK = "250 2.0.0"
TEMPFAIL = "451 4.3.0"
TOO_BIG = "552 5.3.4"
NO_MAILBOX = "550 5.1.1"
KEEP_OUT_UNKNOWN = "550 5.1.1"  # after DATA: a keep-out address in it named nobody

_SIZE_PARAM = re.compile(r"SIZE=(\d+)", re.IGNORECASE)


class CocmailSMTP(SMTP):
    """aiosmtpd's SMTP with cocmail's DATA reader and size limit."""

    # The stream reader's buffer limit. Commands are still held to 512 octets
    # by aiosmtpd's command_size_limit; a large buffer lets DATA read long or
    # bare-LF lines in big pieces.
    line_length_limit = 64 * 1024

    def __init__(self, handler: SmtpHandler, *, max_message_size: int, **kwargs: Any) -> None:
        # aiosmtpd's own size handling is off (None); we advertise and enforce it
        # ourselves to answer with the enhanced status code 5.3.4.
        super().__init__(handler, data_size_limit=None, **kwargs)
        self.max_message_size = max_message_size

    async def push_data_reply(self, status: str) -> None:
        await self.push(status)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")

        content = bytearray()
        size = 0
        too_big = False
        at_line_start = True
        while self.transport is not None:
            try:
                chunk = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                chunk = await self._reader.read(exc.consumed)
            except asyncio.CancelledError:
                log.info("connection lost during DATA")
                self._writer.close()
                raise
            if at_line_start:
                if chunk == b".\r\n":
                    break
                if chunk[:1] == b".":
                    chunk = chunk[1:]  # RFC 5321 4.5.2: remove the transparency dot
            at_line_start = chunk.endswith(b"\r\n")
            size += len(chunk)
            if too_big:
                continue
            if size > self.max_message_size:
                too_big = True
                content = bytearray()  # read on to the end, keep nothing
                continue
            content += chunk

        if too_big:
            await self.push_data_reply(
                f"{TOO_BIG} Message too big: the limit here is {self.max_message_size} bytes"
            )
            self._set_post_data_state()
            return
        raw = bytes(content)
        del content
        self.envelope.content = raw
        self.envelope.original_content = raw
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


class CocmailLMTP(CocmailSMTP):
    """LMTP: LHLO instead of HELO/EHLO, and one reply per recipient after DATA."""

    show_smtp_greeting = False

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: str) -> None:
        await super().smtp_EHLO(arg)

    async def smtp_HELO(self, arg: str) -> None:
        await self.push('500 5.5.1 Error: command "HELO" not recognized')

    async def smtp_EHLO(self, arg: str) -> None:
        await self.push('500 5.5.1 Error: command "EHLO" not recognized')

    async def push_data_reply(self, status: str) -> None:
        assert self.envelope is not None
        for _ in range(max(1, len(self.envelope.rcpt_tos))):
            await self.push(status)


class SmtpHandler:
    """The aiosmtpd hooks. aiosmtpd finds hooks by name; tests check each one answers."""

    def __init__(
        self,
        writer: Writer,
        committee: Committee,
        metrics: Metrics,
        *,
        max_message_size: int,
        lmtp: bool = False,
        on_stored: Callable[[], None] | None = None,
        handles: Collection[str] | None = None,
    ) -> None:
        self.writer = writer
        # The handles a keep-out address may name (the members' own and former ones).
        self.handles = handles
        # Called after each newly stored message (the outbox worker looks at once).
        self.on_stored = on_stored
        self.committee = committee
        self.metrics = metrics
        self.max_message_size = max_message_size
        self.lmtp = lmtp
        self.channel = "lmtp" if lmtp else "smtp"

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], f"250-SIZE {self.max_message_size}", responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        for option in mail_options:
            match = _SIZE_PARAM.fullmatch(option)
            if match and int(match.group(1)) > self.max_message_size:
                self.metrics.inc("cocmail_smtp_rejected_total", reason="size")
                return (f"{TOO_BIG} Message too big: the limit here is "
                        f"{self.max_message_size} bytes")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        try:
            recipient = split_recipient(address, self.committee, self.handles)
        except UnknownKeepOut as exc:
            # The sender wants someone kept out and named nobody we know: the whole
            # message is refused after DATA, so no copy reaches anyone.
            envelope.__dict__["cocmail_unknown_keep_out"] = str(exc)
            self.metrics.inc("cocmail_smtp_rejected_total", reason="recipient")
            return f"{NO_MAILBOX} {exc}"
        except AddressError as exc:
            self.metrics.inc("cocmail_smtp_rejected_total", reason="recipient")
            return f"{NO_MAILBOX} {exc}"
        envelope.rcpt_tos.append(address)
        # Kept with the envelope so that DATA does not split the addresses again.
        envelope.__dict__.setdefault("cocmail_recipients", []).append(recipient)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refused = envelope.__dict__.get("cocmail_unknown_keep_out")
        if refused:
            self.metrics.inc("cocmail_smtp_rejected_total", reason="unknown-keep-out")
            status = (f"{KEEP_OUT_UNKNOWN} Not stored: {refused}. Nothing of this message "
                      "was kept, so no copy reaches anyone; send it again to the keep-out "
                      "address of the right member")
        else:
            status = await self._deliver(envelope)
        if self.lmtp:
            return "\r\n".join([status] * len(envelope.rcpt_tos))
        return status

    async def _deliver(self, envelope: Envelope) -> str:
        raw = envelope.content
        assert isinstance(raw, bytes)
        delivery = Inbound(
            raw=raw,
            # aiosmtpd keeps the null sender of a bounce as "<>"; the intake knows it as "".
            envelope_from="" if envelope.mail_from == "<>" else envelope.mail_from,
            recipients=tuple(envelope.__dict__["cocmail_recipients"]),
            channel=self.channel,
        )
        try:
            accepted = await self.writer.store(delivery)
        except StoreUnavailable as exc:
            log.error("store unavailable, answered 451: %s", exc)
            self.metrics.inc("cocmail_intake_total", outcome="store-unavailable")
            return f"{TEMPFAIL} Temporary failure: the message could not be stored; try again later"
        except Exception:
            log.exception("intake failed, answered 451")
            self.metrics.inc("cocmail_intake_total", outcome="error")
            return f"{TEMPFAIL} Temporary failure: the message could not be stored; try again later"
        if accepted.duplicate:
            self.metrics.inc("cocmail_intake_total", outcome="duplicate")
            return f"{OK} Ok: already stored as message {accepted.message_id}"
        outcome = "quarantined" if accepted.quarantine_reason else "stored"
        self.metrics.inc("cocmail_intake_total", outcome=outcome)
        if self.on_stored is not None and accepted.case_id is not None:
            self.on_stored()
        return f"{OK} Ok: stored as message {accepted.message_id}"

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error: %s", type(error).__name__, exc_info=error)
        self.metrics.inc("cocmail_smtp_errors_total")
        return f"{TEMPFAIL} Temporary server error; try again later"


def server_factory(
    handler: SmtpHandler, *, hostname: str, timeout: float,
    tls_context: ssl.SSLContext | None, max_message_size: int,
) -> Any:
    """A protocol factory for ``loop.create_server``."""
    cls = CocmailLMTP if handler.lmtp else CocmailSMTP

    def make() -> CocmailSMTP:
        return cls(
            handler,
            max_message_size=max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname,
            ident="cocmail",
            tls_context=tls_context,
            timeout=timeout,
            # Nobody authenticates to deliver a report: offer no AUTH at all.
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
        )

    return make
