"""Loading and validating the one TOML file an operator writes.

Every key is checked once, here; the rest of cocmail receives typed, frozen
dataclasses and never looks at raw TOML. A bad value raises ``ConfigError``
naming the dotted key and the reason, which the CLI prints on one line before
exiting with status 2. Unknown keys are errors too: a misspelt key that is
silently ignored is a setting the operator believes in and does not have.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Any

from cocmail.config import reader
from cocmail.config.model import (
    MEDIATOR,
    NOTIFY_TARGETS,
    ROLES,
    Committee,
    Config,
    Database,
    Delivery,
    Digest,
    EscalationStep,
    Http,
    Imap,
    Logging,
    Member,
    Retention,
    Rotation,
    Scheduler,
    Secrets,
    Sla,
    Smtp,
    Templates,
)
from cocmail.config.reader import Table
from cocmail.config.units import parse_duration, parse_endpoint, parse_size
from cocmail.errors import ConfigError
from cocmail.syntax import HANDLE


def _retention(t: Table) -> Retention:
    """How long content is kept; unset, until a member purges it. Less than a day
    is a mistake (a case would lose its content as it closes)."""
    kept = {}
    for name in ("closed_after", "quarantine_after"):
        value = t.convert(name, parse_duration, None)
        if value is not None and value < dt.timedelta(days=1):
            raise ConfigError(f"retention.{name}", "must be at least 1d")
        kept[name] = value
    t.done()
    return Retention(**kept)


def _committee(t: Table) -> Committee:
    address = t.convert("address", reader.email)
    separator = t.get("plus_separator", str, "+")
    if len(separator) != 1 or separator.isalnum() or separator in "@.\"\\ ":
        raise ConfigError("committee.plus_separator", "must be one punctuation character")
    if separator in address.split("@")[0]:
        raise ConfigError("committee.address", f"local part must not contain {separator!r}")
    short_name = t.get("short_name", str)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", short_name):
        raise ConfigError("committee.short_name", "must be 1-32 letters, digits, '.', '_' or '-'")
    members = []
    for mt in t.tables("members"):
        handle = mt.get("handle", str)
        if not HANDLE.fullmatch(handle):
            raise ConfigError(f"{mt.key}.handle", "must be lower-case letters, digits, _ or -")
        if handle == MEDIATOR:
            raise ConfigError(f"{mt.key}.handle", f"{MEDIATOR!r} is kept for the mediator")
        members.append(
            Member(
                handle=handle,
                name=mt.get("name", str),
                email=mt.convert("email", reader.email),
                employer=mt.get("employer", str, ""),
                timezone=mt.convert("timezone", reader.timezone, "UTC"),
                roles=_roles(mt.key, mt.get("roles", list, [])),
            )
        )
        mt.done()
    handles = [m.handle for m in members]
    for handle in handles:
        if handles.count(handle) > 1:
            raise ConfigError("committee.members", f"handle {handle!r} appears twice")
    local, domain = address.lower().rsplit("@", 1)
    ours = [(f"committee.members[{i}].email", m.email) for i, m in enumerate(members)]
    ours.append(("committee.mediator", t.data.get("mediator") or ""))
    for key, email in ours:
        mail_local, _, mail_domain = email.lower().rpartition("@")
        if mail_domain == domain and (mail_local == local
                                      or mail_local.startswith(local + separator)):
            # Mail to it would come back in as a report: a loop, and the case's
            # content in the quarantine.
            raise ConfigError(key, f"{email} is the conduct address itself (or one of its "
                                   "reply addresses); it must be the person's own")
    committee = Committee(
        name=t.get("name", str),
        short_name=short_name,
        address=address,
        plus_separator=separator,
        mediator=t.convert("mediator", reader.email, None),
        list_id=t.get("list_id", str, None),
        members=tuple(members),
        authserv_ids=tuple(str(v) for v in t.get("authserv_ids", list, [])),
        relay_approval=_relay_approval(t.get("relay_approval", list, ["reporter"])),
        emergency_within=t.convert("emergency_within", parse_duration, dt.timedelta(hours=24)),
    )
    t.done()
    return committee


def _roles(key: str, roles: list[Any]) -> tuple[str, ...]:
    for role in roles:
        if role not in ROLES:
            raise ConfigError(f"{key}.roles", f"{role!r} is not a role (roles: {', '.join(ROLES)})")
    return tuple(roles)


def _relay_approval(roles: list[Any]) -> tuple[str, ...]:
    allowed = ("respondent", "witness", "reporter", "observer")
    for role in roles:
        if role not in allowed:
            raise ConfigError("committee.relay_approval",
                              f"{role!r} is not one of {', '.join(allowed)}")
    return tuple(roles)


def _rotation(t: Table, committee: Committee) -> Rotation:
    weekday, time = t.convert("handoff", reader.handoff, (0, dt.time(9, 0)))
    order = tuple(t.get("order", list, [m.handle for m in committee.members]))
    known = {m.handle for m in committee.members}
    for handle in order:
        if handle not in known:
            raise ConfigError("rotation.order", f"{handle!r} is not a committee member")
    if "order" in t.data and len(set(order)) < 2:
        raise ConfigError("rotation.order", "needs at least two members: two are on duty at "
                                            "a time")
    rotation = Rotation(
        timezone=t.convert("timezone", reader.timezone, "UTC"),
        handoff_weekday=weekday,
        handoff_time=time,
        order=order,
        handoff_mail=t.get("handoff_mail", bool, True),
    )
    t.done()
    return rotation


def _sla(t: Table) -> Sla:
    steps = []
    for st in t.tables("escalation"):
        notify = st.get("notify", str)
        if notify not in NOTIFY_TARGETS:
            raise ConfigError(f"{st.key}.notify", f"must be one of {', '.join(NOTIFY_TARGETS)}")
        after = st.convert("after", parse_duration)
        if after <= dt.timedelta(0):
            raise ConfigError(f"{st.key}.after", "must be longer than 0s")
        steps.append(EscalationStep(after=after, notify=notify))
        st.done()
    first_response = t.convert("first_response", parse_duration, dt.timedelta(days=3))
    if first_response <= dt.timedelta(0):
        raise ConfigError("sla.first_response", "must be longer than 0s")
    sla = Sla(
        first_response=first_response,
        escalation=tuple(sorted(steps, key=lambda s: s.after)),
    )
    t.done()
    return sla


def _smtp(t: Table, base: Path) -> Smtp:
    smtp = Smtp(
        listen=t.convert("listen", reader.listen_list, ()),
        lmtp_listen=t.convert("lmtp_listen", reader.listen_list, ()),
        max_message_size=t.convert("max_message_size", parse_size, 25 * 1024**2),
        hostname=t.get("hostname", str, "localhost"),
        tls_cert=t.convert("tls_cert", reader.path_under(base), None),
        tls_key=t.convert("tls_key", reader.path_under(base), None),
        timeout=t.convert("timeout", parse_duration, dt.timedelta(minutes=5)),
    )
    if (smtp.tls_cert is None) != (smtp.tls_key is None):
        raise ConfigError("smtp.tls_key", "tls_cert and tls_key go together")
    t.done()
    return smtp


def _delivery(t: Table, base: Path) -> Delivery:
    method = t.get("method", str, "maildir")
    if method not in ("maildir", "smtp"):
        raise ConfigError("delivery.method", 'must be "maildir" or "smtp"')
    security = t.get("security", str, "starttls")
    if security not in ("tls", "starttls", "none"):
        raise ConfigError("delivery.security", 'must be "tls", "starttls" or "none"')
    delivery = Delivery(
        method=method,
        maildir=t.convert("maildir", reader.path_under(base), base / "var" / "outbox"),
        relay_host=t.get("relay_host", str, None),
        relay_port=t.get("relay_port", int, 587),
        security=security,
        username=t.get("username", str, None),
        password_file=t.convert("password_file", reader.path_under(base), None),
        password_env=t.get("password_env", str, None),
        tls_ca_file=t.convert("tls_ca_file", reader.path_under(base), None),
        helo_name=t.get("helo_name", str, None),
        timeout=t.convert("timeout", parse_duration, dt.timedelta(seconds=60)),
        retry_first=t.convert("retry_first", parse_duration, dt.timedelta(minutes=1)),
        retry_max=t.convert("retry_max", parse_duration, dt.timedelta(hours=1)),
        max_attempts=t.get("max_attempts", int, 30),
        lease=t.convert("lease", parse_duration, dt.timedelta(minutes=5)),
        answers_per_day=t.get("answers_per_day", int, 10),
    )
    if method == "smtp" and not delivery.relay_host:
        raise ConfigError("delivery.relay_host", 'needed when method is "smtp"')
    if not 1 <= delivery.relay_port <= 65535:
        raise ConfigError("delivery.relay_port", "must be a port number (1-65535)")
    if delivery.max_attempts < 1:
        raise ConfigError("delivery.max_attempts", "must be at least 1")
    if delivery.answers_per_day < 1:
        raise ConfigError("delivery.answers_per_day", "must be at least 1")
    if delivery.password_file is not None and delivery.password_env is not None:
        raise ConfigError("delivery.password_env", "give password_file or password_env, not both")
    if delivery.username is not None and (delivery.password_file is None
                                          and delivery.password_env is None):
        raise ConfigError("delivery.username", "needs password_file or password_env")
    if delivery.lease <= delivery.timeout:
        raise ConfigError("delivery.lease", "must be longer than delivery.timeout")
    t.done()
    return delivery


def _imap(t: Table, base: Path) -> Imap:
    security = t.get("security", str, "tls")
    if security not in ("tls", "starttls", "none"):
        raise ConfigError("imap.security", 'must be "tls", "starttls" or "none"')
    auth = t.get("auth", str, "password")
    if auth not in ("password", "xoauth2"):
        raise ConfigError("imap.auth", 'must be "password" or "xoauth2"')
    after = t.get("after", str, "move")
    if after not in ("move", "flag"):
        raise ConfigError("imap.after", 'must be "move" or "flag"')
    imap = Imap(
        host=t.get("host", str),
        port=t.get("port", int, 993 if security == "tls" else 143),
        security=security,
        username=t.get("username", str),
        auth=auth,
        password_file=t.convert("password_file", reader.path_under(base), None),
        password_env=t.get("password_env", str, None),
        oauth2_token_file=t.convert("oauth2_token_file", reader.path_under(base), None),
        oauth2_token_command=t.get("oauth2_token_command", str, None),
        tls_ca_file=t.convert("tls_ca_file", reader.path_under(base), None),
        folder=t.get("folder", str, "INBOX"),
        after=after,
        processed_folder=t.get("processed_folder", str, "cocmail-processed"),
        quarantine_folder=t.get("quarantine_folder", str, "cocmail-quarantine"),
        flag=t.get("flag", str, "$CocmailStored"),
        idle=t.get("idle", bool, True),
        idle_renew=t.convert("idle_renew", parse_duration, dt.timedelta(minutes=25)),
        poll_interval=t.convert("poll_interval", parse_duration, dt.timedelta(seconds=60)),
        timeout=t.convert("timeout", parse_duration, dt.timedelta(seconds=60)),
        batch=t.get("batch", int, 50),
    )
    if not 1 <= imap.port <= 65535:
        raise ConfigError("imap.port", "must be a port number (1-65535)")
    if auth == "password":
        if (imap.password_file is None) == (imap.password_env is None):
            raise ConfigError("imap.password_file", "give password_file or password_env "
                              "(exactly one)")
    elif (imap.oauth2_token_file is None) == (imap.oauth2_token_command is None):
        raise ConfigError("imap.oauth2_token_file", "give oauth2_token_file or "
                          "oauth2_token_command (exactly one)")
    if not 1 <= imap.batch <= 1000:
        raise ConfigError("imap.batch", "must be between 1 and 1000")
    if imap.idle_renew <= dt.timedelta(0) or imap.idle_renew > dt.timedelta(minutes=29):
        raise ConfigError("imap.idle_renew", "must be between 1s and 29m (RFC 2177)")
    if imap.poll_interval <= dt.timedelta(0) or imap.timeout <= dt.timedelta(0):
        raise ConfigError("imap.poll_interval", "durations must be longer than 0s")
    for key in ("folder", "processed_folder", "quarantine_folder"):
        if not getattr(imap, key).strip():
            raise ConfigError(f"imap.{key}", "must not be empty")
    t.done()
    return imap


def load(path: Path) -> Config:
    """Read and validate the config file at ``path``."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(str(path), exc.strerror or "cannot be read") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML ({exc})") from None
    return from_dict(raw, path.resolve())


def from_dict(raw: dict[str, Any], path: Path) -> Config:
    """Validate an already-parsed TOML document; relative paths are taken from ``path``'s folder."""
    base = path.parent
    top = Table(raw, "")
    committee = _committee(top.table("committee"))
    rotation = _rotation(top.table("rotation", required=False), committee)
    sla = _sla(top.table("sla", required=False))

    dbt = top.table("database", required=False)
    database = Database(
        url=dbt.convert("url", reader.database_url(base),
                        f"sqlite:///{base / 'var' / 'cocmail.db'}"),
        busy_timeout=dbt.convert("busy_timeout", parse_duration, dt.timedelta(seconds=10)),
        pool_size=dbt.get("pool_size", int, 8),
    )
    if not 1 <= database.pool_size <= 100:
        raise ConfigError("database.pool_size", "must be between 1 and 100")
    dbt.done()

    smtp = _smtp(top.table("smtp", required=False), base)
    delivery = _delivery(top.table("delivery", required=False), base)

    st = top.table("secrets", required=False)
    secrets = Secrets(
        token_key_file=st.convert("token_key_file", reader.path_under(base),
                                  base / "var" / "token.key"),
        token_key_env=st.get("token_key_env", str, "COCMAIL_TOKEN_KEY"),
        master_key_file=st.convert("master_key_file", reader.path_under(base),
                                   base / "var" / "master.key"),
        master_key_env=st.get("master_key_env", str, "COCMAIL_MASTER_KEY"),
        master_key_command=st.get("master_key_command", str, None),
        encrypt_content=st.get("encrypt_content", bool, True),
    )
    st.done()

    ht = top.table("http", required=False)
    http = Http(listen=ht.convert("listen", parse_endpoint, None))
    ht.done()

    sct = top.table("scheduler", required=False)
    scheduler = Scheduler(tick=sct.convert("tick", reader.at_least(
        dt.timedelta(seconds=1), parse_duration), dt.timedelta(seconds=5)))
    sct.done()

    lt = top.table("logging", required=False)
    level = lt.get("level", str, "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError("logging.level", "must be debug, info, warning or error")
    log_format = lt.get("format", str, "text").lower()
    if log_format not in ("text", "json"):
        raise ConfigError("logging.format", "must be text or json")
    lt.done()

    dt_ = top.table("digest", required=False)
    digest = Digest(
        enabled=dt_.get("enabled", bool, True),
        at=dt_.convert("at", reader.time_of_day, dt.time(8, 0)),
        timezone=dt_.convert("timezone", reader.timezone, rotation.timezone),
    )
    dt_.done()

    tt = top.table("templates", required=False)
    templates = Templates(directory=tt.convert("directory", reader.directory_under(base), None))
    tt.done()

    imap = _imap(top.table("imap"), base) if "imap" in raw else None
    retention = _retention(top.table("retention", required=False))

    top.done()
    return Config(
        path=path,
        committee=committee,
        rotation=rotation,
        sla=sla,
        database=database,
        smtp=smtp,
        delivery=delivery,
        secrets=secrets,
        http=http,
        scheduler=scheduler,
        logging=Logging(level, log_format),
        templates=templates,
        digest=digest,
        imap=imap,
        retention=retention,
    )
