"""A private Dovecot (Debian's dovecot-imapd) for the IMAP tests: a generated
minimal config (passwd-file user, Maildir in a temporary folder, plain text
login, loopback only), started in the foreground and stopped by the test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

DOVECOT = "/usr/sbin/dovecot"
USER = "conduct"
PASSWORD = "secret-imap-password"


class Dovecot:
    def __init__(self, port: int) -> None:
        self.port = port
        # Short: Dovecot's unix sockets live under it, and their paths are limited.
        self.root = Path(tempfile.mkdtemp(prefix="dc", dir="/tmp"))
        self.root.chmod(0o755)
        mail = self.root / "mail"
        mail.mkdir()
        mail.chmod(0o1777)
        (self.root / "users").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:65534:65534::{mail / USER}::\n")
        r = self.root
        (self.root / "dovecot.conf").write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {r}/run
state_dir = {r}/state
instance_name = cocmail-test-{port}
log_path = {r}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{mail}/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users
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
    port = 0
  }}
}}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Its own process group: stop() ends the master and every session process.
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"dovecot is not listening on {self.port}: {self.log()}")

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
