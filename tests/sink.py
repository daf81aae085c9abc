"""A real SMTP server on loopback that plays the relay: it keeps every mail it is
given, and can be stopped, started again on the same port, or told to refuse."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import cached_property
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    sender: str
    recipient: str
    data: bytes
    at: float  # time.monotonic() when the DATA was accepted
    _headers: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def message(self) -> EmailMessage:
        # Parsed once: ``Sink.wait_for`` asks every mail again as each one arrives,
        # holding the lock the sink's DATA waits on.
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def header(self, name: str) -> str | None:
        key = name.lower()
        if key not in self._headers:
            value = self.message[name]
            self._headers[key] = None if value is None else str(value)
        return self._headers[key]

    @property
    def kind(self) -> str | None:
        return self.header("X-Cocmail-Kind")

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())


@dataclass
class _Handler:
    sink: Sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        answer = self.sink.refuse(address)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink.lock:
            for rcpt in envelope.rcpt_tos:
                self.sink.mails.append(Received(envelope.mail_from, rcpt, envelope.content,
                                                time.monotonic()))
            self.sink.changed.notify_all()
        return "250 OK: queued"


class _Controller(Controller):
    """aiosmtpd's Controller on port 0: the system picks a free port as it binds, and
    ``port`` says which (so no other test can take it between choice and bind)."""

    def _create_server(self) -> Any:
        async def bind() -> Any:
            server = await self.loop.create_server(self._factory_invoker, host=self.hostname,
                                                   port=self.port, ssl=self.ssl_context)
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()


@dataclass
class Sink:
    port: int = 0  # 0: a free one, chosen as it binds; the same again after stop()
    refuse: Callable[[str], str | None] = lambda address: None
    mails: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None
    auth: tuple[str, str] | None = None  # (user, password) required when set
    tls_context: Any = None  # STARTTLS, required
    implicit_tls: Any = None  # TLS from the first byte (port 465 style)
    smtputf8: bool = True  # offer SMTPUTF8 (RFC 6531), as aiosmtpd's Controller does

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def start(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            user, password = self.auth

            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                              data: Any) -> Any:
                from aiosmtpd.smtp import AuthResult, LoginPassword
                ok = (isinstance(data, LoginPassword) and data.login.decode() == user
                      and data.password.decode() == password)
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticator, auth_required=True,
                          auth_require_tls=self.tls_context is not None)
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=True)
        if self.implicit_tls is not None:
            kwargs.update(ssl_context=self.implicit_tls)
        kwargs.update(enable_SMTPUTF8=self.smtputf8)
        self.controller = _Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                      server_hostname="sink.test", **kwargs)
        self.controller.start()
        self.port = self.controller.port

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait_for(self, count: int, timeout: float = 30,
                 where: Callable[[Received], bool] = lambda m: True) -> list[Received]:
        """Wait until at least ``count`` mails matching ``where`` arrived; return them."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                found = [m for m in self.mails if where(m)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} mails arrived, expected {count}: "
                                         f"{[(m.kind, m.recipient) for m in self.mails]}")
                self.changed.wait(left)

    def forget(self) -> None:
        """Drop what arrived so far (after ``Server.quiet``): a test's set-up is done."""
        with self.lock:
            self.mails.clear()

    def of_kind(self, kind: str) -> list[Received]:
        with self.lock:
            return [m for m in self.mails if m.kind == kind]

