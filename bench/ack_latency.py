"""How long a reporter waits for the acknowledgement (part of bench/ingest.py).

cocmail on SQLite sends through a real SMTP sink (aiosmtpd, in this process);
client processes offer reports at a fixed rate, each from its own address (so
the per-address limit on acknowledgements does not apply), and the time from
the end of a report's DATA to the sink accepting its acknowledgement is
measured for every report. Both ends read the system-wide monotonic clock.
"""

from __future__ import annotations

import email
import threading
import time
from multiprocessing import Pool
from pathlib import Path

from aiosmtpd.controller import Controller
from common import CONDUCT, free_port, percentile, report, start_cocmail

CLIENTS = 4


class _AckSink:
    """Notes when each acknowledgement arrives, by the report it answers."""

    def __init__(self) -> None:
        self.acked: dict[str, float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        now = time.monotonic()
        content = envelope.content  # type: ignore[attr-defined]
        head = email.message_from_bytes(content.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        if head["X-Cocmail-Kind"] == "ack" and head["In-Reply-To"]:
            with self.lock:
                self.acked[head["In-Reply-To"].strip("<> ")] = now
        return "250 OK"


def _offer(args: tuple[int, int, int, float, float]) -> dict[str, float]:
    """Client ``index``: send reports number index, index+CLIENTS, … at ``start + n/rate``.
    Returns when each one's DATA was done, by Message-ID."""
    import smtplib

    port, index, total, rate, start = args
    done: dict[str, float] = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("bench")
        for n in range(index, total, CLIENTS):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            message_id = f"latency-{n}@bench"
            sender = f"reporter{n}@reporter.example"
            raw = report(4096, str(n), message_id=message_id, sender=sender)
            smtp.mail(sender)
            smtp.rcpt(CONDUCT)
            code, _ = smtp.data(raw)
            # The 250 arrived: DATA ended (a little earlier) and the report is stored.
            done[message_id] = time.monotonic()
            if code != 250:
                raise RuntimeError(f"report {n} refused: {code}")
    return done


def ack_latency(directory: Path, rate: float, seconds: float,
                extra: str = "") -> tuple[list[float], int]:
    """Latencies (s) of the acknowledgements that arrived, and how many never did."""
    sink = _AckSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    delivery = (f'[delivery]\nmethod = "smtp"\nrelay_host = "127.0.0.1"\n'
                f'relay_port = {port}\nsecurity = "none"\n')
    server = start_cocmail(directory, delivery=delivery, secrets=extra)
    try:
        total = int(rate * seconds)
        start = time.monotonic() + 1.0
        with Pool(CLIENTS) as pool:
            parts = pool.map(_offer, [(server.port, i, total, rate, start)
                                      for i in range(CLIENTS)])
        done = {k: v for part in parts for k, v in part.items()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sink.lock:
                if len(sink.acked) >= len(done):
                    break
            time.sleep(0.2)
        with sink.lock:
            latencies = [sink.acked[k] - t for k, t in done.items() if k in sink.acked]
        return latencies, len(done) - len(latencies)
    finally:
        server.stop()
        controller.stop()


def summary(latencies: list[float]) -> str:
    return (f"p50 {percentile(latencies, 50) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms")
