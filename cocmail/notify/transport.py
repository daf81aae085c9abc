"""Where outgoing mail goes: an SMTP relay, or a local maildir (the default).

A transport either delivers a mail or raises ``DeliveryError``, which says
whether trying again can help. Only the relay's 5xx answer to a recipient or to
the message itself is permanent; a 5xx to our own login or sender address is a
setting to fix, and is retried like a relay that is down.

SMTP goes through aiosmtplib: it runs on the daemon's event loop beside the
listeners (no thread held per slow relay, stops cleanly on shutdown), speaks
implicit TLS, STARTTLS and AUTH, and reports each reply code.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
from pathlib import Path
from typing import Protocol

import aiosmtplib

from cocmail.config import Delivery
from cocmail.config.secrets import read_secret
from cocmail.errors import describe

_STATUS = re.compile(r"\s*(\d\.\d{1,3}\.\d{1,3})\b")


class DeliveryError(Exception):
    """Why a mail did not go. ``str()`` is all of it, the relay's own words
    included (kept, sealed, with the outbox row); ``for_log`` has the relay's
    words cut down to their status code, since a relay's answer may quote the
    address, or the name, it refused."""

    def __init__(self, message: str, *, permanent: bool, relay_said: str | None = None) -> None:
        super().__init__(message if relay_said is None else f"{message} {relay_said}")
        self.permanent = permanent
        status = _STATUS.match(relay_said or "")
        self.for_log = message if relay_said is None else (
            f"{message} {status.group(1)}" if status else message)


class Transport(Protocol):
    async def send(self, name: str, sender: str, recipient: str, data: bytes) -> None:
        """Deliver ``data``; ``name`` is unique to the outbox row (for idempotence)."""
        ...

    async def close(self) -> None: ...


def for_config(config: Delivery) -> Transport:
    if config.method == "maildir":
        assert config.maildir is not None
        return MaildirTransport(config.maildir)
    return SmtpTransport(config)


class MaildirTransport:
    """Writes each mail as a file in ``new/`` the maildir way (tmp/, then rename).

    The file's name comes from the outbox row, so a retry after a crash between
    the write and the store's "sent" finds the file and does not write it twice.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    async def send(self, name: str, sender: str, recipient: str, data: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, self._write, name, sender, recipient, data)

    def _write(self, name: str, sender: str, recipient: str, data: bytes) -> None:
        filename = f"{name}.{self.host}"
        # Written before a crash? Then it is already delivered (a reader may have
        # moved it to cur/, adding its ":2,<flags>" suffix).
        if any(os.path.exists(self.root / sub / (filename + suffix)) for sub, suffix in (
                ("new", ""), ("cur", ""), ("cur", ":2,"), ("cur", ":2,S"))):
            return
        tmp = self.root / "tmp" / filename
        envelope = f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
        content = (envelope + data).replace(b"\r\n", b"\n")
        try:
            with open(tmp, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, self.root / "new" / filename)
            directory = os.open(self.root / "new", os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise DeliveryError(f"maildir {self.root}: {exc.strerror}", permanent=False) \
                from None

    async def close(self) -> None:
        return None


class SmtpTransport:
    """Sends through the relay, keeping idle connections for the next mails."""

    def __init__(self, config: Delivery) -> None:
        assert config.relay_host is not None
        self.config = config
        self.password = _password(config)
        self.context = ssl.create_default_context(
            cafile=str(config.tls_ca_file) if config.tls_ca_file else None)
        self._idle: list[aiosmtplib.SMTP] = []

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.relay_host, port=config.relay_port,
            use_tls=config.security == "tls", start_tls=config.security == "starttls",
            tls_context=self.context if config.security != "none" else None,
            timeout=config.timeout.total_seconds(),
            local_hostname=config.helo_name,
        )
        try:
            await client.connect()
            if config.username is not None:
                await client.login(config.username, self.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise DeliveryError(f"relay refused our login: {exc.code}", relay_said=exc.message,
                                permanent=False) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise DeliveryError(f"cannot reach relay {config.relay_host}:{config.relay_port}: "
                                f"{describe(exc)}", permanent=False) from None
        return client

    async def send(self, name: str, sender: str, recipient: str, data: bytes) -> None:
        client = self._idle.pop() if self._idle else await self._connect()
        if not client.is_connected:
            client = await self._connect()
        # An address with a non-ASCII local part travels only with SMTPUTF8.
        options = ["SMTPUTF8"] if not (recipient.isascii() and sender.isascii()) else []
        try:
            await client.sendmail(sender, [recipient], data, mail_options=options)
        except aiosmtplib.SMTPNotSupported as exc:
            await _reset(client, self._idle)
            raise DeliveryError(f"the relay does not offer SMTPUTF8, which the address "
                                f"needs ({exc})", permanent=True) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            await _reset(client, self._idle)
            raise DeliveryError(f"relay refused the recipient: {refused.code}",
                                relay_said=refused.message,
                                permanent=refused.code >= 500) from None
        except aiosmtplib.SMTPDataError as exc:
            await _reset(client, self._idle)
            raise DeliveryError(f"relay refused the message: {exc.code}", relay_said=exc.message,
                                permanent=exc.code >= 500) from None
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise DeliveryError(f"relay answered {exc.code}", relay_said=exc.message,
                                permanent=False) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise DeliveryError(f"relay connection failed: {describe(exc)}",
                                permanent=False) from None
        self._idle.append(client)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


async def _reset(client: aiosmtplib.SMTP, idle: list[aiosmtplib.SMTP]) -> None:
    """After a refused transaction the connection can carry the next mail."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
        return
    idle.append(client)


def _password(config: Delivery) -> str | None:
    return read_secret("delivery", config.password_file, config.password_env)
