"""Fixtures: real servers on loopback, a PostgreSQL database per test run, config files.

Fixtures are factories (aiosmtpd's style): a test asks for a daemon with the
settings it needs and gets a real ``cocmail serve`` process on free ports.
A test that needs a real peer (PostgreSQL, swaks, Postfix) is skipped when the
peer is missing on a developer's machine, and fails in CI (CI=true).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cocmail.clock import MOVED_ENV, SystemClock, move_clock
from cocmail.keys import master
from cocmail.store import migrate
from cocmail.store.db import Store
from cocmail.store.models import Outbox
from cocmail.store.unlock import unlock
from tests.dovecot import PASSWORD as DOVECOT_PASSWORD
from tests.dovecot import USER as DOVECOT_USER
from tests.dovecot import Dovecot
from tests.dovecot import available as dovecot_available
from tests.sink import Received, Sink

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
COCMAIL = [sys.executable, "-m", "cocmail"]
DOMAIN = "conduct.example.org"
CONDUCT = f"conduct@{DOMAIN}"
IN_CI = os.environ.get("CI", "").lower() == "true"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
TOKEN_KEY = "test-token-key-0123456789abcdef"
# The master key of the stores tests open themselves (a daemon makes its own).
MASTER_KEY = "5e" * 32
MASTER_KEYS = master.parse(MASTER_KEY, "the tests' master key")

MEMBERS = [
    ("alice", "Alice A", "alice@members.example", "Acme", ["chair"]),
    ("bob", "Bob B", "bob@members.example", "Globex", []),
    ("carol", "Carol C", "carol@members.example", "Initech", []),
    ("dave", "Dave D", "dave@members.example", "Umbrella", []),
]


def missing(what: str) -> None:
    """A real peer is missing: fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} is missing, and CI must run these tests")
    pytest.skip(f"{what} is missing")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def free_port() -> int:
    """A port free a moment ago. Another test may take it before it is bound: only
    for servers that cannot bind port 0 themselves, and that retry (tests/postfix.py,
    tests/dovecot.py); the daemon and the sink bind port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block, and the environment as it was after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where nothing listens, held so for the block: bound, never
    listening, so a connection to it is refused and no other test can take it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


# --- PostgreSQL -----------------------------------------------------------------

def _pg_admin_url() -> str:
    return os.environ.get("COCMAIL_TEST_POSTGRES_URL", DEFAULT_PG)


def _pg_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                           autocommit=True, connect_timeout=5)


@dataclass
class Postgres:
    admin_url: str
    created: list[str] = field(default_factory=list)

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg.conninfo

        name = f"cocmail_test_{uuid.uuid4().hex[:12]}"
        with _pg_connect(self.admin_url) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        params = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        params["dbname"] = name
        user = params.get("user", "postgres")
        host = params.get("host", "127.0.0.1")
        port = params.get("port", 5432)
        return f"postgresql+psycopg://{user}@{host}:{port}/{name}"

    def execute(self, sql: str) -> None:
        with _pg_connect(self.admin_url) as conn:
            conn.execute(sql)

    def drop_all(self) -> None:
        with _pg_connect(self.admin_url) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    url = _pg_admin_url()
    try:
        with _pg_connect(url) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        missing(f"PostgreSQL at {url} ({type(exc).__name__})")
    pg = Postgres(url)
    yield pg
    pg.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cocmail.db'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.new_database()


def keyed(store: Store) -> Store:
    """``store`` opened with the tests' master key: a test writes events to it."""
    store.use_keys(MASTER_KEYS, utc(2026, 1, 1))
    return store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated, empty store on each backend, its keys open."""
    s = Store(db_url)
    migrate.upgrade(s)
    keyed(s)
    yield s
    s.dispose()


# --- config files -------------------------------------------------------------

def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def write_config(directory: Path, db_url: str, sections: dict[str, dict[str, Any]] | None = None,
                 members: list[tuple[str, str, str, str, list[str]]] | None = None) -> Path:
    """A complete config file for tests; ``sections`` overrides keys per table."""
    base: dict[str, dict[str, Any]] = {
        "committee": {"name": "Test Committee", "short_name": "conduct", "address": CONDUCT,
                      "mediator": "mediator@outside.example"},
        # No hand-off mail unless a test asks: one in the last day would add mail
        # to every count (on Mondays).
        "rotation": {"timezone": "UTC", "handoff": "monday 09:00", "handoff_mail": False},
        "sla": {"first_response": "3d"},
        # Four kept per process: many daemons (xdist workers) stay under PostgreSQL's
        # max_connections (100 here).
        "database": {"url": db_url, "busy_timeout": "2s", "pool_size": 4},
        "smtp": {"listen": [], "lmtp_listen": [], "max_message_size": "1MB"},
        "delivery": {"method": "maildir", "maildir": str(directory / "outbox")},
        "secrets": {"token_key_file": str(directory / "token.key"),
                    "master_key_file": str(directory / "master.key")},
        "http": {},
        "logging": {"level": "info"},
        # Off unless a test asks: it would add mail to every count after 08:00.
        "digest": {"enabled": False},
    }
    for name, values in (sections or {}).items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    for handle, name, email, employer, roles in (members if members is not None else MEMBERS):
        lines += ["[[committee.members]]", f"handle = {toml_value(handle)}",
                  f"name = {toml_value(name)}", f"email = {toml_value(email)}",
                  f"employer = {toml_value(employer)}", f"roles = {toml_value(roles)}", ""]
    path = directory / "config.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def config_for(tmp_path: Path) -> Callable[..., Path]:
    def make(db_url: str, **sections: dict[str, Any]) -> Path:
        return write_config(tmp_path, db_url, sections)

    return make


# --- the CLI and the daemon ---------------------------------------------------

def run_cli(config: Path, *args: str, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*COCMAIL, *args, "--config", str(config)], input=stdin, capture_output=True,
        timeout=60, env={**os.environ, "COCMAIL_TOKEN_KEY": TOKEN_KEY, **(env or {})},
        cwd=ROOT,
    )


def cli_json(config: Path, *args: str) -> Any:
    result = run_cli(config, *args, "--json")
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


@dataclass
class Server:
    config: Path
    proc: subprocess.Popen[bytes]
    smtp_port: int
    lmtp_port: int
    http_port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)  # e.g. a shifted clock
    db_url: str = ""
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # its config's
    members: list[tuple[str, str, str, str, list[str]]] | None = None  # None: MEMBERS
    _store: Store | None = None
    _config: Any = None

    def cli(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return run_cli(self.config, *args, stdin=stdin, env=self.env)

    def json(self, *args: str) -> Any:
        """What ``cocmail ARGS --json`` prints, from a CLI process: for tests of the CLI."""
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout)

    def look(self, *args: str) -> Any:
        """What ``cocmail ARGS --json`` prints, gathered in this process by the same
        code (the command's ``collect``), in the environment the CLI would have: for
        tests that only read state."""
        from cocmail import config as config_module
        from cocmail.cli import build_parser

        parsed = build_parser().parse_args([*args, "--config", str(self.config), "--json"])
        assert parsed.collect is not None, f"cocmail {' '.join(args)} collects nothing"
        with environment({"COCMAIL_TOKEN_KEY": TOKEN_KEY, **self.env}):
            if self._config is None:
                self._config = config_module.load(self.config)
            found = parsed.collect(self._config, self.store(), parsed)
        return json.loads(json.dumps(found))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def store(self) -> Store:
        """The daemon's store, opened in this process (once): to read state without
        a CLI process where the CLI is not what the test is about."""
        if self._store is None:
            from cocmail import config as config_module

            with environment({"COCMAIL_TOKEN_KEY": TOKEN_KEY, **self.env}):
                if self._config is None:
                    self._config = config_module.load(self.config)
                store = Store(self.db_url)
                # The daemon's keys, from its config (a test may write an event).
                unlock(self._config, store, SystemClock().now())
            self._store = store
        return self._store

    def now(self) -> dt.datetime:
        """The daemon's "now": its clock shifted and moved as the test said."""
        with environment(self.env):
            return SystemClock().now()

    def advance(self, seconds: float, timeout: float = 60) -> None:
        """Move the daemon's clock (every process of it, and ``look``'s) on by
        ``seconds``: its timers fire at its next sweep, without a real wait. First it
        waits until no mail is being sent: a jump would end the claims on mail in
        flight, and another worker would send it again."""
        deadline = time.monotonic() + timeout
        while True:
            with self.store().reading() as session:
                in_flight = session.scalar(select(func.count()).select_from(Outbox).where(
                    Outbox.status == "queued", Outbox.claimed_until >= self.now()))
            if not in_flight:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{in_flight} mail(s) still being sent")
            time.sleep(0.05)
        move_clock(self.env[MOVED_ENV], seconds)

    def sweeps(self) -> int:
        """How many sweeps the daemon has finished (its /metrics; the digest is the
        sweep's last task)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics",
                                    timeout=10) as answer:
            text = answer.read().decode()
        return sum(int(n) for n in re.findall(
            r'^cocmail_sweep_total\{outcome="\w+",task="digest"\} (\d+)$', text, re.M))

    def quiet(self, sink: Sink | None = None, timeout: float = 60) -> list[Received]:
        """Wait until the daemon has nothing more to send now: a whole sweep has run
        since the call, and no mail in the outbox is due (so all it sent is in the
        sink: a row is marked sent only once the relay took it); everything the sink
        holds. A wait on state, never on a quiet spell."""
        deadline = time.monotonic() + timeout
        first = self.sweeps()
        while self.sweeps() < first + 2:  # the sweep running now may have begun before
            if time.monotonic() > deadline:
                raise AssertionError("the daemon's scheduler does not sweep")
            time.sleep(0.05)
        while True:
            now = self.now()
            with self.store().reading() as session:
                due = session.scalar(select(func.count()).select_from(Outbox).where(
                    Outbox.status == "queued", Outbox.due_at <= now))
            if not due:
                if sink is None:
                    return []
                with sink.lock:
                    return list(sink.mails)
            if time.monotonic() > deadline:
                raise AssertionError(f"{due} mail(s) due in the outbox are not sent")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Servers:
    """Starts ``cocmail serve`` on free loopback ports: ``serve(db_url, **sections)``;
    ``serve.restart(server)`` starts it again on the same config, ports and store."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Server] = []

    def __call__(self, db_url: str, env: dict[str, str] | None = None,
                 **sections: dict[str, Any]) -> Server:
        directory = self.tmp_path / f"server{len(self.started)}"
        directory.mkdir()
        # Port 0: the daemon takes free ports itself and its log says which, so
        # no other test (or xdist worker) can take a port between choice and bind.
        merged: dict[str, dict[str, Any]] = {
            "smtp": {"listen": ["127.0.0.1:0"], "lmtp_listen": ["127.0.0.1:0"]},
            "http": {"listen": "127.0.0.1:0"},
            "scheduler": {"tick": "1s"},
            # The daemons of one database share its master key, as replicas must.
            "secrets": {"master_key_file": str(self.tmp_path / (
                "master-" + hashlib.sha256(db_url.encode()).hexdigest()[:12] + ".key"))},
        }
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        config = write_config(directory, db_url, merged)
        # Its clock moves on when the test says (Server.advance), in every process.
        env = {MOVED_ENV: str(directory / "clock"), **(env or {})}
        server = self._launch(config, directory / "serve.log", env)
        # A restart binds the ports it had: mail and peers (Postfix) keep them.
        for key, port in (("listen", server.smtp_port), ("lmtp_listen", server.lmtp_port)):
            if merged["smtp"][key] == ["127.0.0.1:0"]:
                merged["smtp"][key] = [f"127.0.0.1:{port}"]
        if merged["http"].get("listen") == "127.0.0.1:0":
            merged["http"]["listen"] = f"127.0.0.1:{server.http_port}"
        write_config(directory, db_url, merged)
        server.db_url, server.sections = db_url, merged
        return server

    def restart(self, server: Server,
                members: list[tuple[str, str, str, str, list[str]]] | None = None,
                **sections: dict[str, Any]) -> Server:
        """``server`` stopped and started again on the same ports; with ``members`` or
        ``sections``, on its config changed so (the committee's roster, say)."""
        server.stop()
        if members is not None or sections:
            merged = {name: dict(values) for name, values in server.sections.items()}
            for name, values in sections.items():
                merged.setdefault(name, {}).update(values)
            server.members = members if members is not None else server.members
            write_config(server.config.parent, server.db_url, merged, members=server.members)
            server.sections = merged
        again = self._launch(server.config, server.log_path, server.env)
        again.db_url, again.sections, again.members = (server.db_url, server.sections,
                                                       server.members)
        return again

    def _launch(self, config: Path, log_path: Path, env: dict[str, str]) -> Server:
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [*COCMAIL, "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "COCMAIL_TOKEN_KEY": TOKEN_KEY, **env}, cwd=ROOT,
            )
        server = Server(config, proc, 0, 0, 0, log_path, env)
        self.started.append(server)
        try:
            started = wait_for_start(log_path, offset, proc)
        except Exception:
            print(server.log())
            raise
        ports = {kind: int(port) for kind, port in
                 re.findall(r"listening for (SMTP|LMTP|HTTP)\b.* on 127\.0\.0\.1:(\d+)", started)
                 [::-1]}  # the first of each kind
        server.smtp_port = ports.get("SMTP", 0)
        server.lmtp_port = ports.get("LMTP", 0)
        server.http_port = ports.get("HTTP", 0)
        return server


def wait_for_start(log_path: Path, offset: int, proc: subprocess.Popen[bytes],
                   timeout: float = 30) -> str:
    """Wait until the daemon logs "cocmail is running" after ``offset`` of its log;
    what it logged since."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        if "cocmail is running" in text:
            return text
        if proc.poll() is not None:
            raise RuntimeError(f"cocmail serve exited with {proc.returncode} before running")
        time.sleep(0.05)
    raise TimeoutError("cocmail serve did not start")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Servers]:
    servers = Servers(tmp_path)
    yield servers
    for server in servers.started:
        server.stop()


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A real SMTP server on loopback playing the relay (see tests/sink.py)."""
    relay = Sink()
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture
def dovecot(request: pytest.FixtureRequest) -> Iterator[Dovecot]:
    """A private Dovecot on a loopback port (see tests/dovecot.py). Parametrized
    indirectly, the parameter is the CAPABILITY list it announces instead of its own."""
    if not dovecot_available():
        missing("Dovecot (Debian package dovecot-imapd; started as root)")
    server = Dovecot(capabilities=getattr(request, "param", None))
    server.start()
    yield server
    server.remove()


def writer_pid(server: Server, after: int | None = None, timeout: float = 20) -> int:
    """The daemon's intake writer process (on SQLite), as its log names it; with
    ``after``, the one started in that one's place."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = re.findall(r"intake writer process (\d+) started", server.log())
        if started and int(started[-1]) != after:
            return int(started[-1])
        time.sleep(0.1)
    raise TimeoutError("no intake writer process in the log")


def imap_from(server: Dovecot, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """The [imap] section that drains ``server``'s INBOX."""
    password = tmp_path / "imap.pass"
    password.write_text(DOVECOT_PASSWORD + "\n")
    return {"host": "127.0.0.1", "port": server.port, "security": "none",
            "username": DOVECOT_USER, "password_file": str(password), "timeout": "10s",
            **overrides}


def relay_to(sink: Sink, **overrides: Any) -> dict[str, Any]:
    """The [delivery] section that sends through ``sink``, retrying within seconds."""
    return {"method": "smtp", "relay_host": "127.0.0.1", "relay_port": sink.port,
            "security": "none", "timeout": "3s", "lease": "5s", "retry_first": "1s",
            "retry_max": "2s", **overrides}


def answer_conflict_checks(server: Server, sink: Sink, case: int = 1) -> list[str]:
    """Every member who got the conflict check of ``case`` answers "no-conflict" by
    mail; waits until each has the case so far. Their addresses."""
    from tests.mail import message, send

    checked = {m.recipient for m in sink.wait_for(
        1, where=lambda m: m.kind in ("conflict", "page"))
        if m.kind == "conflict" and m.header("X-Cocmail-Case") == str(case)}
    for seat in server.look("case", "show", str(case))["participants"]:
        if seat["role"] == "member" and seat["email"] in checked:
            code, _ = send(server.smtp_port, message(
                sender=seat["email"], subject=f"Re: [conduct #{case}] conflict check",
                body="no-conflict\n"), sender=seat["email"], rcpts=[seat["reply_address"]])
            assert code == 250
    sink.wait_for(len(checked), where=lambda m: m.kind == "casefile"
                  and m.header("X-Cocmail-Case") == str(case))
    return sorted(checked)


@pytest.fixture
def swaks() -> str:
    path = shutil.which("swaks")
    if path is None:
        missing("swaks (Debian package swaks)")
    assert path is not None
    return path


def corpus_files(folder: str) -> list[Path]:
    return sorted((CORPUS / folder).iterdir())


def stdlib_email_messages() -> list[Path]:
    import test

    return sorted((Path(test.__file__).parent / "test_email" / "data").glob("msg_*.txt"))
