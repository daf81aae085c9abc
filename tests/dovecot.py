"""A private Dovecot (Debian's dovecot-imapd) for the IMAP tests: a generated
minimal config (passwd-file user, Maildir in a temporary folder, plain text
login, loopback only), started in the foreground and stopped by the test.
It offers STARTTLS on its port and implicit TLS on ``tls_port``, with a
self-signed certificate (``cert``) for 127.0.0.1, and XOAUTH2: Dovecot asks
an introspection endpoint served here whether a token is good (``TOKEN``,
while ``tokens_accepted`` is set). With ``capabilities`` it announces those
after login instead of its own (a server without MOVE, say)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

from imapclient import IMAPClient

from tests.certs import self_signed

DOVECOT = "/usr/sbin/dovecot"
USER = "conduct"
PASSWORD = "secret-imap-password"
TOKEN = "ya29.test-access-token"


class _Introspection(http.server.BaseHTTPRequestHandler):
    """RFC 7662 token introspection, as Dovecot's oauth2 passdb asks it (POST token=)."""

    accepted: threading.Event

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        good = self.accepted.is_set() and form.get("token") == [TOKEN]
        body = json.dumps({"active": True, "username": USER} if good
                          else {"active": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def greets(port: int, marker: str) -> bool:
    """Whether what listens on ``port`` is the server whose greeting holds ``marker``
    (and not another test's that took the port first)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return marker.encode() in sock.recv(1024)
    except OSError:
        return False


class Dovecot:
    """With ports 0 it chooses free ones as it starts, and chooses again if another
    test bound them first; ``stop()`` and ``start()`` keep the ports it has."""

    def __init__(self, port: int = 0, tls_port: int = 0,
                 capabilities: str | None = None) -> None:
        self.port, self.tls_port = port, tls_port
        self._choose = not port
        self._capabilities = capabilities
        self.greeting = f"cocmail-test-{uuid.uuid4().hex[:12]} ready."
        # Short: Dovecot's unix sockets live under it, and their paths are limited.
        self.root = Path(tempfile.mkdtemp(prefix="dc", dir="/tmp"))
        self.root.chmod(0o755)
        mail = self.root / "mail"
        mail.mkdir()
        mail.chmod(0o1777)
        (self.root / "users").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:65534:65534::{mail / USER}::\n")
        self.cert, self.key = self_signed(self.root, "dovecot")
        self.tokens_accepted = threading.Event()
        self.tokens_accepted.set()
        handler = type("Introspection", (_Introspection,), {"accepted": self.tokens_accepted})
        self._introspection = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._introspection.serve_forever, daemon=True).start()
        (self.root / "oauth2.conf").write_text(
            "introspection_mode = post\n"
            f"introspection_url = http://127.0.0.1:{self._introspection.server_port}/introspect\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def _configure(self) -> None:
        r, port, capabilities = self.root, self.port, self._capabilities
        mail = self.root / "mail"
        (self.root / "dovecot.conf").write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {r}/run
state_dir = {r}/state
instance_name = cocmail-test-{port}
log_path = {r}/dovecot.log
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
login_greeting = {self.greeting}
{f"imap_capability = {capabilities}" if capabilities else ""}
mail_location = maildir:{mail}/%u/Maildir
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {r}/users
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {r}/oauth2.conf
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {r}/users
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
    ssl = yes
  }}
}}
""")

    def start(self) -> None:
        for _ in range(5):
            if self._choose and not self.port:
                self.port, self.tls_port = _free_port(), _free_port()
            self.tls_port = self.tls_port or _free_port()
            self._configure()
            if self._started():
                return
            if self.proc is not None and self.proc.poll() is None:
                self.stop()
                raise TimeoutError(f"dovecot is not listening on {self.port}: {self.log()}")
            if not (self._choose and "Address already in use" in self.log()):
                raise RuntimeError(f"dovecot exited: {self.log()}")
            self.port = 0  # taken between choice and bind: choose again
        raise RuntimeError(f"dovecot found no free port: {self.log()}")

    def _started(self) -> bool:
        """Start the master; True once its own greeting answers on ``port``."""
        # Its own process group: stop() ends the master and every session process.
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if greets(self.port, self.greeting):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop it at once (its children too): every connection drops."""
        if self.proc is None or self.proc.poll() is not None:
            return
        group = os.getpgid(self.proc.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # Session processes (imap, imap-login) that outlive the master: gone too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        # The master's children (imap, imap-login) go with it; wait for the port.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(0.1)
            except OSError:
                return

    def remove(self) -> None:
        self.stop()
        self._introspection.shutdown()
        self._introspection.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=30)
        client.login(USER, PASSWORD)
        return client

    def append(self, folder: str, messages: list[bytes]) -> None:
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in messages:
                client.append(folder, raw)

    def append_unreadable(self, raw: bytes, sizeless: bool = False) -> None:
        """Append ``raw`` to the INBOX with its file unreadable to Dovecot's mail
        process: a message the server cannot hand over (Dovecot answers the FETCH
        of its body with an internal error and ends the session). ``sizeless``:
        its file name loses the size Dovecot wrote there, so it cannot give even
        that (and, renamed, the message takes the next UID)."""
        maildir = self.root / "mail" / USER / "Maildir"

        def files() -> set[Path]:
            return {path for sub in ("new", "cur") for path in (maildir / sub).glob("*")}

        before = files()
        self.append("INBOX", [raw])
        [added] = files() - before
        added.chmod(0)
        if sizeless:
            added.rename(added.with_name(added.name.split(",")[0]))
            self.uids("INBOX")  # Dovecot finds it renamed, and gives it its UID now

    def uids(self, folder: str) -> list[int]:
        with self.client() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return sorted(client.search("ALL"))

    def flags(self, folder: str) -> dict[int, tuple[bytes, ...]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            return {uid: tuple(data[b"FLAGS"])
                    for uid, data in client.fetch(uids, ["FLAGS"]).items()} if uids else {}

    def message_ids(self, folder: str) -> list[str]:
        """The Message-IDs in ``folder``, by UID."""
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            if not uids:
                return []
            fetched = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            out = []
            for uid in uids:
                header = next(v for k, v in fetched[uid].items() if k.startswith(b"BODY["))
                out.append(header.decode().split(":", 1)[1].strip() if b":" in header else "")
            return out


def available() -> bool:
    return os.path.exists(DOVECOT) and os.geteuid() == 0
