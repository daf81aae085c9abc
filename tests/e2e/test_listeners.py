"""Listener options: several addresses (IPv4 and IPv6), STARTTLS from a cert/key in the
config, a bad certificate at start-up, and the HTTP port."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.certs import self_signed
from tests.conftest import COCMAIL, CONDUCT, Server, run_cli, write_config
from tests.mail import message


def test_listens_on_several_addresses(serve, tmp_path: Path) -> None:
    server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}",
                           smtp={"listen": ["127.0.0.1:0", "[::1]:0"]})
    v4 = server.smtp_port
    [v6] = [int(port) for port in re.findall(r"listening for SMTP on \[::1\]:(\d+)",
                                             server.log())]
    with smtplib.SMTP("127.0.0.1", v4, timeout=10) as smtp:
        assert smtp.sendmail("rita@reporter.example", [CONDUCT], message()) == {}
    with smtplib.SMTP("::1", v6, timeout=10) as smtp:
        assert smtp.sendmail("sam@reporter.example", [CONDUCT],
                             message(sender="sam@reporter.example")) == {}
    assert len(server.look("cases", "list")) == 2


def test_starttls(serve, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}",
                           smtp={"tls_cert": str(cert), "tls_key": str(key)})
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        code, text = smtp.ehlo()
        assert b"STARTTLS" in text
        smtp.starttls(context=context)
        code, text = smtp.ehlo()
        assert code == 250 and b"STARTTLS" not in text
        assert smtp.sendmail("rita@reporter.example", [CONDUCT], message()) == {}
    assert len(server.look("cases", "list")) == 1


def test_unreadable_certificate_is_a_config_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {
        "smtp": {"listen": ["127.0.0.1:0"], "tls_cert": str(bogus),
                 "tls_key": str(bogus)}})
    result = subprocess.run([*COCMAIL, "serve", "--config", str(config)], capture_output=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(
        b"cocmail: config: smtp.tls_cert: cannot load certificate and key")
    assert result.stderr.count(b"\n") == 1, result.stderr  # that line, nothing before it


def test_a_missing_certificate_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {
        "smtp": {"listen": ["127.0.0.1:0"], "tls_cert": str(tmp_path / "gone.pem"),
                 "tls_key": str(tmp_path / "gone.key")}})
    result = subprocess.run([*COCMAIL, "serve", "--config", str(config)], capture_output=True,
                            timeout=60)
    assert (result.returncode, result.stderr) == (
        2, b"cocmail: config: smtp.tls_cert: cannot load certificate and key: "
           b"[Errno 2] No such file or directory\n")


@pytest.mark.parametrize("key", ["listen", "lmtp_listen", "http"])
def test_a_port_in_use_is_one_line_naming_the_key_and_exit_2(tmp_path: Path, key: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sections = ({"http": {"listen": f"127.0.0.1:{port}"}} if key == "http"
                    else {"smtp": {key: [f"127.0.0.1:{port}"]}})
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", sections)
        result = subprocess.run([*COCMAIL, "serve", "--config", str(config)],
                                capture_output=True, timeout=60)
    name = "http.listen" if key == "http" else f"smtp.{key}"
    assert (result.returncode, result.stderr.decode()) == (
        2, f"cocmail: config: {name}: cannot listen on 127.0.0.1:{port}: "
           "address already in use\n")


def test_metrics_count_outcomes(serve, tmp_path: Path) -> None:
    server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("rita@reporter.example", [CONDUCT], message())
        smtp.sendmail("rita@reporter.example", [CONDUCT],
                      message(headers={"Auto-Submitted": "auto-replied"}))
        smtp.ehlo()
        smtp.mail("x@y.example")
        assert smtp.rcpt("nobody@conduct.example.org")[0] == 550
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics",
                                  timeout=10).read().decode()
    assert 'cocmail_intake_total{outcome="stored"} 1' in body
    assert 'cocmail_intake_total{outcome="quarantined"} 1' in body
    assert 'cocmail_smtp_rejected_total{reason="recipient"} 1' in body
    # The outbox: the acknowledgement, two pages and two conflict checks go to the
    # maildir.
    import time

    deadline = time.monotonic() + 20
    while 'cocmail_outbox_queued 0' not in body and time.monotonic() < deadline:
        time.sleep(0.3)
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics",
                                      timeout=10).read().decode()
    assert 'cocmail_outbox_total{kind="ack",outcome="sent"} 1' in body
    assert 'cocmail_outbox_total{kind="page",outcome="sent"} 2' in body
    assert 'cocmail_outbox_total{kind="conflict",outcome="sent"} 2' in body
    assert 'cocmail_outbox_queued 0' in body and 'cocmail_outbox_failed 0' in body
    health = urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/healthz", timeout=10)
    assert health.status == 200
    assert run_cli(server.config, "cases", "list").returncode == 0
