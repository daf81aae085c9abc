"""Shared pieces of the benchmarks: starting servers, sending mail from client
processes, reading a process's memory. Everything talks to 127.0.0.1 only."""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CONDUCT = "conduct@conduct.example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.005)  # the IMAP benchmark times cocmail from this moment
    raise TimeoutError(f"nothing listening on {port}")


def report(size: int = 4096, tag: str = "", message_id: str | None = None,
           sender: str = "rita@reporter.example") -> bytes:
    """A unique report of about ``size`` bytes."""
    message_id = message_id or f"{uuid.uuid4().hex}@bench"
    head = (f"From: Rita <{sender}>\r\nTo: {CONDUCT}\r\n"
            f"Subject: bench report {tag}\r\nMessage-ID: <{message_id}>\r\n"
            "Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n")
    line = "Someone said something unkind in the project chat again today.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


def send_batch(args: tuple[int, int, int]) -> list[float]:
    """Send ``count`` reports over one connection; return the send duration of each."""
    port, count, size = args
    durations = []
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
        smtp.ehlo("bench")
        for i in range(count):
            raw = report(size, str(i))
            start = time.perf_counter()
            smtp.sendmail("rita@reporter.example", [CONDUCT], raw)
            durations.append(time.perf_counter() - start)
    return durations


def write_cocmail_config(directory: Path, smtp_port: int, http_port: int,
                         max_size: str = "30MB", extra: str = "", delivery: str = "",
                         secrets: str = "") -> Path:
    path = directory / "config.toml"
    path.write_text(f"""
[committee]
name = "Bench"
short_name = "conduct"
address = "{CONDUCT}"

[[committee.members]]
handle = "alice"
name = "Alice"
email = "alice@members.example"

[[committee.members]]
handle = "bob"
name = "Bob"
email = "bob@members.example"

[database]
url = "sqlite:///{directory / 'bench.db'}"

[smtp]
listen = ["127.0.0.1:{smtp_port}"]
max_message_size = "{max_size}"

{delivery or f'''[delivery]
method = "maildir"
maildir = "{directory / 'outbox'}"'''}

[secrets]
token_key_file = "{directory / 'token.key'}"
{secrets}

[http]
listen = "127.0.0.1:{http_port}"

[logging]
level = "warning"
{extra}
""")
    return path


class Process:
    def __init__(self, args: list[str], port: int) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.port = port
        try:
            wait_for_port(port)
        except TimeoutError:
            self.log.seek(0)
            print(self.log.read().decode(errors="replace"), file=sys.stderr)
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_cocmail(directory: Path, **kwargs: str) -> Process:
    smtp_port, http_port = free_port(), free_port()
    config = write_cocmail_config(directory, smtp_port, http_port, **kwargs)
    return Process([PYTHON, "-m", "cocmail", "serve", "--config", str(config)], smtp_port)


def start_bare() -> Process:
    port = free_port()
    return Process([PYTHON, str(ROOT / "bench" / "bare_smtp.py"), str(port)], port)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants (the daemon runs its intake writer as a child)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += family(int(child))
    return found


def reset_peak_rss(pid: int) -> None:
    """Linux: writing 5 to clear_refs resets VmHWM (the peak) to the current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


os.environ.setdefault("COCMAIL_TOKEN_KEY", "bench-token-key-0123456789abcdef")
