"""IMAP intake against a real Dovecot: `cocmail serve` drains the mailbox into the
store, in order, moves what it stored, and survives the server going away."""


from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cocmail import config as config_module
from cocmail.daemon.serve import Daemon
from cocmail.errors import ConfigError
from cocmail.store.db import Store
from cocmail.store.models import Message
from tests.conftest import (
    Server,
    cli_json,
    imap_from,
    refusing_port,
    relay_to,
    run_cli,
    write_config,
    writer_pid,
)
from tests.dovecot import Dovecot
from tests.mail import message, reports, send
from tests.sink import Sink

PROCESSED = "cocmail-processed"


QUARANTINE = "cocmail-quarantine"


def _wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.3)




def _first_message_ids(server: Server) -> list[str]:
    """For each case in order, the Message-ID of the message that opened it (read
    from the store: one CLI call per case would take a second each)."""
    store = Store(config_module.load(server.config).database.url)
    try:
        with store.unit_of_work() as session:
            first = (select(func.min(Message.id)).where(Message.case_id.is_not(None))
                     .group_by(Message.case_id))
            return [m or "" for m in session.scalars(
                select(Message.message_id).where(Message.id.in_(first))
                .order_by(Message.case_id))]
    finally:
        store.dispose()


def test_messages_before_and_during_idle_are_stored_in_order_and_moved(
        serve, dovecot: Dovecot, db_url: str, tmp_path: Path) -> None:
    dovecot.append("INBOX", reports("early", 3))
    server: Server = serve(db_url, imap=imap_from(dovecot, tmp_path))
    _wait("the first three are moved", lambda: len(dovecot.uids(PROCESSED)) == 3)
    assert dovecot.uids("INBOX") == []
    # Now the poller waits in IDLE: two more arrive.
    dovecot.append("INBOX", reports("idle", 2, start=3))
    _wait("all five are moved", lambda: len(dovecot.uids(PROCESSED)) == 5)
    assert _first_message_ids(server) == (
        [f"early-{n}@reporter.example" for n in range(3)]
        + [f"idle-{n}@reporter.example" for n in range(3, 5)])
    assert dovecot.message_ids(PROCESSED) == [f"<{m}>" for m in _first_message_ids(server)]
    # Fetched with BODY.PEEK[]: nothing was marked read.
    assert all(b"\\Seen" not in flags for flags in dovecot.flags(PROCESSED).values())
    case = server.look("case", "show", "1")
    assert case["messages"][0]["channel"] == "imap"
    assert case["participants"][0]["role"] == "reporter"
    assert "cocmail_imap_connected 1" in _metrics(server)
    assert "imap: connected" in _health(server)


def test_groups_are_stored_in_uid_order_with_large_messages_among_them(
        serve, dovecot: Dovecot, db_url: str, tmp_path: Path) -> None:
    """The poller keeps a group queued behind the one being stored; a large message
    (stored apart from the small ones on SQLite, by another thread on PostgreSQL)
    does not let the group behind it overtake."""
    raws = reports("order", 40)
    large = "Paragraph after paragraph of what happened.\n" * 9000  # about 400 KB
    for n in (3, 17, 18):
        raws[n] = message(sender=f"reporter{n}@reporter.example", subject=f"report {n}",
                             message_id=f"order-{n}@reporter.example", body=large)
    dovecot.append("INBOX", raws)
    server: Server = serve(db_url, imap=imap_from(dovecot, tmp_path, batch=5))
    _wait("all are moved", lambda: len(dovecot.uids(PROCESSED)) == 40)
    assert _first_message_ids(server) == [f"order-{n}@reporter.example" for n in range(40)]
    assert dovecot.uids("INBOX") == []


def test_a_reply_by_imap_joins_its_case_and_a_copy_by_smtp_is_stored_once(
        serve, dovecot: Dovecot, sink: Sink, db_url: str, tmp_path: Path) -> None:
    server: Server = serve(db_url, imap=imap_from(dovecot, tmp_path), delivery=relay_to(sink))
    report = message(message_id="both-ways@reporter.example")
    assert send(server.smtp_port, report)[0] == 250
    # The provider forwarded it and kept a copy in the mailbox: same bytes.
    dovecot.append("INBOX", [report])
    _wait("the copy is moved", lambda: len(dovecot.uids(PROCESSED)) == 1)
    assert len(server.look("cases", "list")) == 1
    assert server.look("case", "show", "1")["message_count"] == 1
    # The reporter answers to their reply address; it reaches the mailbox. Its
    # To is the copy's (a client that put the published address back): where
    # the server delivered it decides, though the copy's To was read before.
    reply_to = next(p["reply_address"] for p in server.look("case", "show", "1")["participants"]
                    if p["role"] == "reporter")
    dovecot.append("INBOX", [message(subject="Re: more", message_id="reply@reporter.example",
                                     headers={"Delivered-To": reply_to})])
    _wait("the reply is moved", lambda: len(dovecot.uids(PROCESSED)) == 2)
    case = server.look("case", "show", "1")
    assert [m["message_id"] for m in case["messages"]] == [
        "both-ways@reporter.example", "reply@reporter.example"]
    assert case["messages"][1]["verified"] is True


def test_the_outbox_is_told_when_a_drain_ends_not_at_its_next_tick(
        serve, dovecot: Dovecot, sink: Sink, db_url: str, tmp_path: Path) -> None:
    """The poller tells the outbox once a drain is done: with the outbox's own look
    an hour away, the acknowledgement and the pages still go out at once."""
    server: Server = serve(db_url, imap=imap_from(dovecot, tmp_path, batch=5),
                           delivery=relay_to(sink), scheduler={"tick": "1h"})
    _wait("the poller is connected", lambda: "cocmail_imap_connected 1" in _metrics(server))
    dovecot.append("INBOX", reports("told", 12))  # three groups, one drain
    _wait("all are moved", lambda: len(dovecot.uids(PROCESSED)) == 12)
    acks = sink.wait_for(12, timeout=20, where=lambda m: m.kind == "ack")
    assert sorted(m.recipient for m in acks) == sorted(
        f"reporter{n}@reporter.example" for n in range(12))


def test_a_connection_killed_mid_batch_loses_and_duplicates_nothing(
        serve, dovecot: Dovecot, db_url: str, tmp_path: Path) -> None:
    total = 600  # enough that the stop comes while they are being taken
    dovecot.append("INBOX", reports("kill", total))
    server: Server = serve(db_url, imap=imap_from(dovecot, tmp_path, batch=5))
    _wait("some are moved", lambda: len(dovecot.uids(PROCESSED)) >= 10, timeout=60)
    dovecot.stop()  # every connection drops, mid-batch
    assert len(_first_message_ids(server)) < total, "all were taken before the stop"
    time.sleep(1.5)
    dovecot.start()
    _wait("all are moved", lambda: len(dovecot.uids(PROCESSED)) == total, timeout=120)
    assert dovecot.uids("INBOX") == []
    opened = _first_message_ids(server)
    assert sorted(opened) == sorted(f"kill-{n}@reporter.example" for n in range(total))
    assert opened == [f"kill-{n}@reporter.example" for n in range(total)]  # in order
    assert "imap: connection to" in server.log() or "imap: cannot connect" in server.log()
    # Each message once in the processed folder, too.
    moved = dovecot.message_ids(PROCESSED)
    assert len(moved) == len(set(moved)) == total


def test_the_writer_process_killed_mid_drain_loses_and_duplicates_nothing(
        serve, dovecot: Dovecot, tmp_path: Path) -> None:
    """The batch being stored and the one queued behind it fail with the writer;
    they stay in the folder, are taken again once a new writer runs, and the
    ones already committed are recognised: each stored once, in order."""
    import os
    import signal

    total = 1000  # with batches of 5, seconds of work: the kill comes mid-drain
    dovecot.append("INBOX", reports("writer", total))
    server: Server = serve(_sqlite(tmp_path), imap=imap_from(dovecot, tmp_path, batch=5))
    writer = writer_pid(server)
    _wait("some are moved", lambda: len(dovecot.uids(PROCESSED)) >= 20)
    os.kill(writer, signal.SIGKILL)
    assert len(dovecot.uids(PROCESSED)) < total, "all were taken before the kill"
    _wait("all are moved", lambda: len(dovecot.uids(PROCESSED)) == total, timeout=120)
    assert f"intake writer process {writer}: " in server.log()
    assert _first_message_ids(server) == [f"writer-{n}@reporter.example" for n in range(total)]
    moved = dovecot.message_ids(PROCESSED)
    assert len(moved) == len(set(moved)) == total


def test_a_new_uidvalidity_loses_and_duplicates_nothing(
        serve, dovecot: Dovecot, db_url: str, tmp_path: Path) -> None:
    folder = "conduct-in"
    first = reports("uv", 3)
    dovecot.append(folder, first)
    # IDLE renewed every 2 s: the renewal is when a recreated folder is noticed.
    server: Server = serve(db_url, imap=imap_from(dovecot, tmp_path, folder=folder,
                                                  after="flag", idle_renew="2s"))
    _wait("three cases", lambda: len(server.look("cases", "list")) == 3)
    _wait("three flagged", lambda: all(b"$CocmailStored" in f
                                       for f in dovecot.flags(folder).values()))
    # The folder is recreated (a restore, a migration): UIDs start over.
    with dovecot.client() as client:
        client.delete_folder(folder)
    dovecot.append(folder, [*first, *reports("uv", 2, start=3)])
    _wait("five cases", lambda: len(server.look("cases", "list")) == 5, timeout=90)
    # A message is flagged only after its commit: once all five are, whatever the
    # new UIDVALIDITY made the poller store again would be in the store by now.
    _wait("all five flagged", lambda: all(b"$CocmailStored" in f
                                          for f in dovecot.flags(folder).values()))
    assert _first_message_ids(server) == [f"uv-{n}@reporter.example" for n in range(5)]
    assert "new UIDVALIDITY" in server.log()
    assert len(dovecot.uids(folder)) == 5  # "flag" leaves them where they are


def test_a_malformed_message_is_quarantined_and_the_next_one_still_taken(
        serve, dovecot: Dovecot, db_url: str, tmp_path: Path) -> None:
    dovecot.append("INBOX", [b"this is not a mail message\r\nat all\r\n",
                             *reports("after", 1)])
    server: Server = serve(db_url, imap=imap_from(dovecot, tmp_path))
    _wait("one quarantined, one moved", lambda: len(dovecot.uids(QUARANTINE)) == 1
          and len(dovecot.uids(PROCESSED)) == 1)
    assert dovecot.uids("INBOX") == []
    [entry] = server.look("quarantine", "list")
    assert entry["reason"] == "unparseable"
    assert _first_message_ids(server) == ["after-0@reporter.example"]


@pytest.mark.parametrize("after, sizeless", [("move", False), ("flag", False),
                                             ("move", True)],
                         ids=["move", "flag", "not-even-its-size"])
def test_a_message_the_server_cannot_hand_over_is_set_aside_and_the_rest_taken(
        serve, dovecot: Dovecot, tmp_path: Path, after: str, sizeless: bool) -> None:
    dovecot.append("INBOX", reports("around", 2))
    dovecot.append_unreadable(message(message_id="broken@reporter.example"), sizeless)
    dovecot.append("INBOX", reports("around", 2, start=2))
    server: Server = serve(_sqlite(tmp_path), imap=imap_from(dovecot, tmp_path, after=after))
    # Its batch fails, then it alone, three times, each on a new connection; then
    # it is moved unstored, and the four around it are taken, in order.
    _wait("the broken one is set aside", lambda: len(dovecot.uids(QUARANTINE)) == 1,
          timeout=90)
    if after == "move":
        _wait("the others are moved", lambda: len(dovecot.uids(PROCESSED)) == 4)
        assert dovecot.uids("INBOX") == []
    else:
        _wait("the others are flagged", lambda: sum(
            b"$CocmailStored" in flags for flags in dovecot.flags("INBOX").values()) == 4)
        assert len(dovecot.uids("INBOX")) == 4
    assert _first_message_ids(server) == [f"around-{n}@reporter.example" for n in range(4)]
    log = server.log()
    assert "FETCH failed" in log  # each failure: one line, and a reconnect
    assert ("could not be fetched (3 tries, alone, each on a new connection): moved to "
            f"{QUARANTINE} without storing it; move it back to INBOX to try again") in log
    assert 'cocmail_imap_messages_total{outcome="unfetchable"} 1' in _metrics(server)


def test_a_wrong_password_is_retried_with_a_clear_line_and_health_says_so(
        serve, dovecot: Dovecot, db_url: str, tmp_path: Path) -> None:
    section = imap_from(dovecot, tmp_path)
    Path(section["password_file"]).write_text("wrong\n")
    dovecot.append("INBOX", reports("late", 1))
    server: Server = serve(db_url, imap=section)
    _wait("the failure is logged", lambda: "imap: cannot connect to" in server.log())
    assert "LoginError" in server.log() and "trying again in" in server.log()
    assert "cocmail_imap_connected 0" in _metrics(server)
    # Fixed: the next attempt reads the file again and logs in.
    Path(section["password_file"]).write_text(f"{_password()}\n")
    _wait("the report is moved", lambda: len(dovecot.uids(PROCESSED)) == 1, timeout=60)
    assert len(server.look("cases", "list")) == 1
    # Neither the failed login nor the report that came after put anything of
    # the report, or of whoever sent it, in the log.
    log = server.log()
    for secret in ("reporter0@reporter.example", "Rita Reporter", "Someone was rude",
                   "report 0", _password()):
        assert secret not in log, secret


def _password() -> str:
    from tests.dovecot import PASSWORD

    return PASSWORD


def _http(server: Server, path: str) -> str:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{path}",
                                    timeout=10) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def _metrics(server: Server) -> str:
    return _http(server, "/metrics")


def _health(server: Server) -> str:
    return _http(server, "/healthz")


@pytest.mark.parametrize("dovecot, leaves_by", [
    ("IMAP4rev1 IDLE UIDPLUS", "COPY + UID EXPUNGE"), ("IMAP4rev1 IDLE", "COPY + EXPUNGE")],
    ids=["uidplus", "no-uidplus"], indirect=["dovecot"])
def test_without_move_messages_are_copied_flagged_deleted_and_expunged(
        serve, dovecot: Dovecot, tmp_path: Path, config_for, leaves_by: str) -> None:
    with dovecot.client() as client:
        assert b"MOVE" not in client.capabilities()
    section = imap_from(dovecot, tmp_path)
    assert cli_json(config_for(_sqlite(tmp_path), imap=section),
                    "imap", "check")["stored_messages_leave_by"] == leaves_by
    dovecot.append("INBOX", reports("copied", 3))
    server: Server = serve(_sqlite(tmp_path), imap=section)
    _wait("all three are copied", lambda: len(dovecot.uids(PROCESSED)) == 3)
    _wait("and expunged", lambda: dovecot.uids("INBOX") == [])
    expected = [f"<copied-{n}@reporter.example>" for n in range(3)]
    assert dovecot.message_ids(PROCESSED) == expected
    assert _first_message_ids(server) == [e.strip("<>") for e in expected]
    assert not any(b"\\Deleted" in f for f in dovecot.flags(PROCESSED).values())
    # Another arrives during IDLE: taken the same way.
    dovecot.append("INBOX", reports("copied", 1, start=3))
    _wait("the fourth is copied", lambda: len(dovecot.uids(PROCESSED)) == 4)
    _wait("and expunged", lambda: dovecot.uids("INBOX") == [])


def test_without_idle_the_folder_is_polled(
        serve, dovecot: Dovecot, db_url: str, tmp_path: Path) -> None:
    server: Server = serve(db_url, imap=imap_from(dovecot, tmp_path, idle=False,
                                                  poll_interval="1s"))
    _wait("connected", lambda: "imap: connected" in _health(server))
    dovecot.append("INBOX", reports("polled", 2))
    _wait("both are moved", lambda: len(dovecot.uids(PROCESSED)) == 2, timeout=30)
    assert "IDLE is off" in server.log()
    assert _first_message_ids(server) == [f"polled-{n}@reporter.example" for n in range(2)]


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def test_a_start_that_cannot_listen_takes_nothing_from_the_mailbox(
        dovecot: Dovecot, tmp_path: Path) -> None:
    """The poller starts once the listeners are up: a daemon whose SMTP port is
    taken stops before it logs in to the mailbox, and the report stays there."""
    dovecot.append("INBOX", reports("untaken", 1))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = config_module.load(write_config(tmp_path, _sqlite(tmp_path), {
            "smtp": {"listen": [f"127.0.0.1:{port}"]}, "imap": imap_from(dovecot, tmp_path)}))
        daemon = Daemon(config)

        async def start() -> None:
            try:
                with pytest.raises(ConfigError, match="address already in use"):
                    await daemon.start()
                assert daemon.imap is None
            finally:
                await daemon.close()

        asyncio.run(start())
    assert len(dovecot.uids("INBOX")) == 1


def test_implicit_tls_with_the_servers_certificate(
        serve, dovecot: Dovecot, tmp_path: Path) -> None:
    dovecot.append("INBOX", reports("tls", 1))
    server: Server = serve(_sqlite(tmp_path), imap=imap_from(
        dovecot, tmp_path, port=dovecot.tls_port, security="tls",
        tls_ca_file=str(dovecot.cert)))
    _wait("the report is moved", lambda: len(dovecot.uids(PROCESSED)) == 1)
    assert _first_message_ids(server) == ["tls-0@reporter.example"]
    assert "without TLS" not in server.log()


def test_starttls_with_the_servers_certificate(
        serve, dovecot: Dovecot, tmp_path: Path) -> None:
    dovecot.append("INBOX", reports("starttls", 1))
    server: Server = serve(_sqlite(tmp_path), imap=imap_from(
        dovecot, tmp_path, security="starttls", tls_ca_file=str(dovecot.cert)))
    _wait("the report is moved", lambda: len(dovecot.uids(PROCESSED)) == 1)
    assert _first_message_ids(server) == ["starttls-0@reporter.example"]


def test_a_certificate_not_trusted_is_refused(
        serve, dovecot: Dovecot, tmp_path: Path) -> None:
    """No imap.tls_ca_file: the self-signed certificate fails the system's trust
    store; cocmail does not log in, says why, and keeps trying."""
    dovecot.append("INBOX", reports("untrusted", 1))
    server: Server = serve(_sqlite(tmp_path), imap=imap_from(
        dovecot, tmp_path, port=dovecot.tls_port, security="tls"))
    _wait("the failure is logged", lambda: "imap: cannot connect to" in server.log())
    assert "CERTIFICATE_VERIFY_FAILED" in server.log()
    assert "cocmail_imap_connected 0" in _metrics(server)
    assert "imap: not connected" in _health(server)
    assert dovecot.uids("INBOX") != [] and server.look("cases", "list") == []


def test_a_password_from_an_environment_variable(
        serve, dovecot: Dovecot, tmp_path: Path) -> None:
    section = imap_from(dovecot, tmp_path, password_env="COCMAIL_TEST_IMAP_PASSWORD")
    del section["password_file"]
    dovecot.append("INBOX", reports("env", 1))
    serve(_sqlite(tmp_path), env={"COCMAIL_TEST_IMAP_PASSWORD": _password()}, imap=section)
    _wait("the report is moved", lambda: len(dovecot.uids(PROCESSED)) == 1)


def test_xoauth2_with_a_token_from_a_file(serve, dovecot: Dovecot, tmp_path: Path) -> None:
    from tests.dovecot import TOKEN

    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    section = imap_from(dovecot, tmp_path, auth="xoauth2", oauth2_token_file=str(token))
    del section["password_file"]
    dovecot.append("INBOX", reports("oauth-file", 1))
    serve(_sqlite(tmp_path), imap=section)
    _wait("the report is moved", lambda: len(dovecot.uids(PROCESSED)) == 1)


def test_xoauth2_with_a_token_from_a_command_read_again_at_each_login(
        serve, dovecot: Dovecot, tmp_path: Path) -> None:
    """The provider checks the access token (here Dovecot asks an introspection
    endpoint). A token that is refused gives a clear line and no connection; the
    command is run again at the next login, and a good token gets in."""
    from tests.dovecot import TOKEN

    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    dovecot.tokens_accepted.clear()  # the provider refuses it for now
    dovecot.append("INBOX", reports("oauth", 1))
    section = imap_from(dovecot, tmp_path, auth="xoauth2",
                        oauth2_token_command=f"cat {token}")
    del section["password_file"]
    server: Server = serve(_sqlite(tmp_path), imap=section)
    _wait("the refusal is logged", lambda: "imap: cannot connect to" in server.log())
    assert "LoginError" in server.log() and "cocmail_imap_connected 0" in _metrics(server)
    assert dovecot.uids("INBOX") != []
    dovecot.tokens_accepted.set()
    _wait("the report is moved", lambda: len(dovecot.uids(PROCESSED)) == 1, timeout=60)
    assert _first_message_ids(server) == ["oauth-0@reporter.example"]
    assert "imap: connected" in _health(server)


class TestImapCheck:
    """`cocmail imap check`: logs in as serve would, says what is there, takes nothing."""

    def test_what_is_there_before_and_after_a_drain(
            self, serve, dovecot: Dovecot, tmp_path: Path, config_for) -> None:
        dovecot.append("INBOX", reports("checked", 2))
        section = imap_from(dovecot, tmp_path)
        config = config_for(_sqlite(tmp_path), imap=section)
        assert run_cli(config, "db", "upgrade").returncode == 0

        found = cli_json(config, "imap", "check")
        assert found["ok"] and "error" not in found
        assert found["capabilities"] == {"IDLE": True, "MOVE": True, "UIDPLUS": True}
        assert found["stored_messages_leave_by"] == "MOVE" and found["idle"]
        assert found["folder"]["messages"] == 2 and found["folder"]["uidvalidity"] > 0
        assert found["folders"] == {PROCESSED: False, QUARANTINE: False}
        assert found["position"] is None
        text = run_cli(config, "imap", "check")
        assert text.returncode == 0, text.stderr.decode()
        out = text.stdout.decode()
        assert f"imap: logged in to 127.0.0.1:{dovecot.port} as " in out
        assert "INBOX: 2 message(s)" in out and "taken nothing from it yet" in out
        assert f"{PROCESSED}: missing (made when serve logs in)" in out
        # Nothing taken, read, or made.
        assert len(dovecot.uids("INBOX")) == 2
        assert all(b"\\Seen" not in f for f in dovecot.flags("INBOX").values())
        with dovecot.client() as client:
            assert not client.folder_exists(PROCESSED)

        # The store `db upgrade` made holds keys: the daemon needs the same master key.
        server: Server = serve(_sqlite(tmp_path), imap=section,
                               secrets={"master_key_file": str(tmp_path / "master.key")})
        _wait("both are moved", lambda: len(dovecot.uids(PROCESSED)) == 2)
        server.stop()
        found = cli_json(config, "imap", "check")
        assert found["folder"]["messages"] == 0
        assert found["folders"] == {PROCESSED: True, QUARANTINE: True}
        assert found["position"]["current"]
        assert found["position"]["uidvalidity"] == found["folder"]["uidvalidity"]

    def test_a_wrong_password_exits_1_and_says_why(
            self, dovecot: Dovecot, tmp_path: Path, config_for) -> None:
        section = imap_from(dovecot, tmp_path)
        Path(section["password_file"]).write_text("not-the-password\n")
        config = config_for(_sqlite(tmp_path), imap=section)
        result = run_cli(config, "imap", "check")
        assert result.returncode == 1
        assert "cannot log in: LoginError" in result.stdout.decode()
        result = run_cli(config, "imap", "check", "--json")
        assert result.returncode == 1
        found = json.loads(result.stdout)
        assert not found["ok"] and found["error"].startswith("cannot log in: LoginError")

    def test_a_server_that_is_not_there(self, tmp_path: Path, config_for) -> None:
        with refusing_port() as port:
            section = {"host": "127.0.0.1", "port": port, "security": "none",
                       "username": "conduct", "password_env": "COCMAIL_TEST_NO_SUCH_VARIABLE"}
            config = config_for(_sqlite(tmp_path), imap=section)
            result = run_cli(config, "imap", "check",
                             env={"COCMAIL_TEST_NO_SUCH_VARIABLE": "x"})
        assert result.returncode == 1
        assert "cannot log in: ConnectionRefusedError" in result.stdout.decode()

    def test_without_an_imap_section(self, tmp_path: Path, config_for) -> None:
        result = run_cli(config_for(_sqlite(tmp_path)), "imap", "check")
        assert result.returncode == 2
        assert "has no [imap] section" in result.stderr.decode()
