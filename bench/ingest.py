"""Intake benchmark: cocmail against a bare aiosmtpd listener, in the same run.

    python bench/ingest.py [--messages N]

Sends N 4 KB reports over 4 concurrent SMTP connections (4 client processes)
to (a) a bare aiosmtpd listener whose handler does nothing and (b) cocmail on
SQLite, in turn for a few rounds, and prints messages/s for each, the ratio of
each round and the median ratio (target: cocmail at least 0.5 x the bare
listener). Then it sends one 20 MB message to a fresh cocmail and
prints the peak RSS growth of the daemon and its intake writer process, summed,
while accepting it (a short text with a large
base64 attachment, which is what a report of that size is) (target: at most 4 x the
message size). Last, at a fixed offered load of 20 reports/s for 30 s, the time
from the end of a report's DATA to its acknowledgement being accepted by an
SMTP sink standing in for the relay (p50, p99; target p99 under 1 s; see
ack_latency.py). Intake and acknowledgement latency are measured with encryption
at rest on (the default) and off (``secrets.encrypt_content = false``) in the
same run, in turn, each first every other round: what encryption costs, as the
median over the rounds (target: at most 10 % of either).
All traffic is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

from ack_latency import ack_latency, summary
from common import (
    CONDUCT,
    Process,
    family,
    percentile,
    reset_peak_rss,
    send_batch,
    start_bare,
    start_cocmail,
    status_kib,
)

CONNECTIONS = 4
CLEAR = "encrypt_content = false"  # [secrets]: encryption at rest off


def throughput(server: Process, messages: int) -> float:
    per_connection = messages // CONNECTIONS
    # Warm up (imports, first connections, SQLite pages) outside the measurement.
    with Pool(CONNECTIONS) as pool:
        pool.map(send_batch, [(server.port, 5, 4096)] * CONNECTIONS)
        start = time.perf_counter()
        pool.map(send_batch, [(server.port, per_connection, 4096)] * CONNECTIONS)
        elapsed = time.perf_counter() - start
    return per_connection * CONNECTIONS / elapsed


def big_message(size: int) -> bytes:
    """A report of about ``size`` bytes as they come: a short text and a large attached
    video or set of photos (random bytes, base64)."""
    import base64
    import os

    head = (f"From: rita@reporter.example\r\nTo: {CONDUCT}\r\nSubject: big\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BOUNDARY\r\n\r\n"
            "--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "The recording is attached.\r\n--BOUNDARY\r\n"
            "Content-Type: video/mp4\r\nContent-Disposition: attachment; filename=clip.mp4\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode()
    tail = b"--BOUNDARY--\r\n"
    payload = os.urandom((size - len(head) - len(tail)) * 3 // 4 * 76 // 78)
    return head + base64.encodebytes(payload).replace(b"\n", b"\r\n") + tail


def big_message_rss(directory: Path, size: int) -> tuple[float, float]:
    """Peak RSS growth (MiB) of a fresh daemon while it accepts one message of ``size``."""
    server = start_cocmail(directory)
    try:
        send_batch((server.port, 3, 4096))  # warm: imports and first writes done
        raw = big_message(size)
        # The daemon and its children (the intake writer process): growth summed.
        pids = family(server.pid)
        before = {pid: status_kib(pid, "VmRSS") for pid in pids}
        for pid in pids:
            reset_peak_rss(pid)
        with smtplib.SMTP("127.0.0.1", server.port, timeout=300) as smtp:
            smtp.sendmail("rita@reporter.example", [CONDUCT], raw)
        growth = sum(status_kib(pid, "VmHWM") - before[pid] for pid in pids)
        return growth / 1024, len(raw) / 1024 / 1024
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0,
                        help="reports per second offered in the latency run")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="how long the latency run offers reports")
    parser.add_argument("--latency-rounds", type=int, default=3,
                        help="latency measured with encryption on and off in turn this "
                             "many times")
    parser.add_argument("--rounds", type=int, default=3,
                        help="bare and cocmail measured in turn this many times (the "
                             "machine is noisy: the median ratio is the figure)")
    args = parser.parse_args()

    print(f"intake: {args.messages} reports of 4 KB over {CONNECTIONS} SMTP connections, "
          f"{args.rounds} rounds")
    ratios, costs = [], []
    with tempfile.TemporaryDirectory(prefix="cocmail-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="cocmail-bench-") as clear_tmp:
        bare, server = start_bare(), start_cocmail(Path(tmp))
        clear = start_cocmail(Path(clear_tmp), secrets=CLEAR)
        try:
            for round_ in range(1, args.rounds + 1):
                bare_rate = throughput(bare, args.messages)
                # On and off in turn, each first every other round: neither gains
                # from going second (a warmer machine, a quieter neighbour).
                if round_ % 2:
                    cocmail_rate = throughput(server, args.messages)
                    clear_rate = throughput(clear, args.messages)
                else:
                    clear_rate = throughput(clear, args.messages)
                    cocmail_rate = throughput(server, args.messages)
                ratios.append(cocmail_rate / bare_rate)
                costs.append(1 - cocmail_rate / clear_rate)
                print(f"  round {round_}: bare aiosmtpd listener {bare_rate:6.0f} msg/s, "
                      f"cocmail (SQLite) {cocmail_rate:6.0f} msg/s, ratio {ratios[-1]:.2f}; "
                      f"encryption off {clear_rate:6.0f} msg/s")
        finally:
            bare.stop()
            server.stop()
            clear.stop()
    print(f"  median ratio: {statistics.median(ratios):.2f}  (target >= 0.50)")
    print(f"  encryption at rest costs {statistics.median(costs):+.1%} of the intake rate "
          "(median; target <= 10%)")

    with tempfile.TemporaryDirectory(prefix="cocmail-bench-") as tmp:
        growth, size = big_message_rss(Path(tmp), 20 * 1024 * 1024)
    print(f"one {size:.1f} MiB message: peak RSS growth {growth:.1f} MiB = "
          f"{growth / size:.2f} x the message  (target <= 4.00)")

    # Latency in rounds too, on and off in turn, each first every other round.
    p50s: dict[str, list[float]] = {"on": [], "off": []}
    p99s: dict[str, list[float]] = {"on": [], "off": []}
    for round_ in range(1, args.latency_rounds + 1):
        order = (("on", ""), ("off", CLEAR)) if round_ % 2 else (("off", CLEAR), ("on", ""))
        for label, extra in order:
            with tempfile.TemporaryDirectory(prefix="cocmail-bench-") as tmp:
                latencies, missing = ack_latency(Path(tmp), args.rate, args.seconds, extra)
            p50s[label].append(percentile(latencies, 50))
            p99s[label].append(percentile(latencies, 99))
            print(f"acknowledgement latency, round {round_}, encryption {label}, at "
                  f"{args.rate:g} reports/s for {args.seconds:g} s ({len(latencies)} reports): "
                  f"{summary(latencies)}  (target p99 < 1000 ms)"
                  + (f"; {missing} never acknowledged" if missing else ""))
    for name, figures in (("p50", p50s), ("p99", p99s)):
        on, off = statistics.median(figures["on"]), statistics.median(figures["off"])
        print(f"  acknowledgement {name} (median of rounds): encryption on {on * 1000:.0f} ms, "
              f"off {off * 1000:.0f} ms: encryption costs {on / off - 1:+.1%} "
              "(target <= 10%)")

if __name__ == "__main__":
    main()
