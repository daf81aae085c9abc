"""The config as the rest of cocmail sees it: typed, frozen dataclasses, one per
TOML table. ``cocmail.config.load`` makes them from the file and checks every key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from cocmail.config.units import Endpoint

NOTIFY_TARGETS = ("on-duty", "committee", "chair")
# What a member's ``roles`` may hold: the chair is whom the last escalation step pages.
ROLES = ("chair",)
MEDIATOR = "mediator"  # the mediator's handle in the cases they are given


@dataclass(frozen=True)
class Member:
    handle: str
    name: str
    email: str
    employer: str
    timezone: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Committee:
    name: str
    short_name: str
    address: str
    plus_separator: str
    mediator: str | None
    list_id: str | None
    members: tuple[Member, ...]
    # Authentication-Results written by these servers (our MTA) are believed: a
    # DKIM or SPF failure for a member's domain stops their reply's commands.
    authserv_ids: tuple[str, ...] = ()
    # A relay to a party in one of these roles waits for a second member's "approve".
    relay_approval: tuple[str, ...] = ("reporter",)
    # An emergency measure must be confirmed or reversed within this, or it escalates.
    emergency_within: dt.timedelta = dt.timedelta(hours=24)

    @property
    def local_part(self) -> str:
        return self.address.rsplit("@", 1)[0].lower()

    def member(self, handle: str) -> Member | None:
        """The roster's member of ``handle``."""
        return member_of(self.members, handle)

    def name_of(self, handle: str) -> str:
        """How mail names the member of ``handle``: their name, else the handle."""
        if handle == MEDIATOR:
            return "the mediator"
        member = self.member(handle)
        return member.name if member is not None else handle

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1].lower()


class _Handled(Protocol):
    @property
    def handle(self) -> str: ...


M = TypeVar("M", bound=_Handled)


def member_of(members: Iterable[M], handle: str) -> M | None:
    """The member of ``handle`` among ``members`` (the config's or the store's
    roster): the one look-up by handle."""
    return next((m for m in members if m.handle == handle), None)


@dataclass(frozen=True)
class Rotation:
    timezone: str
    handoff_weekday: int  # Monday is 0
    handoff_time: dt.time
    order: tuple[str, ...]
    handoff_mail: bool = True  # mail the outgoing and incoming pair at each hand-off


@dataclass(frozen=True)
class EscalationStep:
    after: dt.timedelta
    notify: str


@dataclass(frozen=True)
class Sla:
    first_response: dt.timedelta
    escalation: tuple[EscalationStep, ...]


@dataclass(frozen=True)
class Database:
    url: str
    busy_timeout: dt.timedelta
    pool_size: int = 8  # PostgreSQL: connections each process keeps (half again at a peak)


@dataclass(frozen=True)
class Smtp:
    listen: tuple[Endpoint, ...]
    lmtp_listen: tuple[Endpoint, ...]
    max_message_size: int
    hostname: str
    tls_cert: Path | None
    tls_key: Path | None
    timeout: dt.timedelta


@dataclass(frozen=True)
class Delivery:
    method: str
    maildir: Path | None
    relay_host: str | None
    relay_port: int
    security: str
    username: str | None
    password_file: Path | None
    password_env: str | None
    tls_ca_file: Path | None  # trust this CA for the relay (a private CA), besides the system's
    helo_name: str | None  # the name given in EHLO; the machine's own name when None
    timeout: dt.timedelta
    retry_first: dt.timedelta  # the wait after the first temporary failure; it doubles
    retry_max: dt.timedelta  # the longest wait between two attempts
    max_attempts: int  # then the mail is given up as failed
    lease: dt.timedelta  # how long a worker holds a claimed mail before another may take it
    answers_per_day: int  # automatic answers (acknowledgements) to one address per 24 h


@dataclass(frozen=True)
class Imap:
    """A hosted mailbox to drain, when the conduct address is one (``[imap]``)."""

    host: str
    port: int
    security: str  # tls (implicit) | starttls | none (plain text: loopback tests only)
    username: str
    auth: str  # password | xoauth2
    password_file: Path | None
    password_env: str | None
    oauth2_token_file: Path | None
    oauth2_token_command: str | None
    tls_ca_file: Path | None
    folder: str  # where new mail arrives
    after: str  # move | flag: what happens to a message once it is stored
    processed_folder: str  # where stored messages are moved
    quarantine_folder: str  # where quarantined (and oversized) messages are moved
    flag: str  # the keyword set on stored messages when ``after`` is flag
    idle: bool  # use IDLE where the server has it
    idle_renew: dt.timedelta  # IDLE is re-issued this often (servers drop it at ~30 min)
    poll_interval: dt.timedelta  # how often to look without IDLE
    timeout: dt.timedelta  # of each network operation
    batch: int  # messages fetched and stored together


@dataclass(frozen=True)
class Digest:
    enabled: bool
    at: dt.time  # local time of day, in ``timezone``
    timezone: str


@dataclass(frozen=True)
class Templates:
    directory: Path | None  # the operator's overrides, looked up before the shipped ones


@dataclass(frozen=True)
class Secrets:
    token_key_file: Path | None
    token_key_env: str
    # The master keys (keys/master.py): the variable, else the command, else the file.
    master_key_file: Path | None = None
    master_key_env: str = "COCMAIL_MASTER_KEY"
    master_key_command: str | None = None
    # Case content sealed under per-case keys (store/content.py). Off only to
    # measure what it costs: what is written then is in the clear.
    encrypt_content: bool = True


@dataclass(frozen=True)
class Http:
    listen: Endpoint | None


@dataclass(frozen=True)
class Scheduler:
    tick: dt.timedelta


@dataclass(frozen=True)
class Retention:
    """How long content is kept (None: until a member purges it)."""

    closed_after: dt.timedelta | None = None  # a case's, counted from its closing
    quarantine_after: dt.timedelta | None = None  # a quarantined message's, from arrival


@dataclass(frozen=True)
class Logging:
    level: str
    format: str = "text"  # or "json", one object a line


@dataclass(frozen=True)
class Config:
    path: Path
    committee: Committee
    rotation: Rotation
    sla: Sla
    database: Database
    smtp: Smtp
    delivery: Delivery
    secrets: Secrets
    http: Http
    scheduler: Scheduler
    logging: Logging = field(default_factory=lambda: Logging("info"))
    templates: Templates = field(default_factory=lambda: Templates(None))
    digest: Digest = field(default_factory=lambda: Digest(True, dt.time(8, 0), "UTC"))
    imap: Imap | None = None
    retention: Retention = field(default_factory=Retention)
