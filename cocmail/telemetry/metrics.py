"""Counters for ``/metrics`` in the Prometheus text format. Ids and counts only:
nothing from a message ever becomes a label."""

from __future__ import annotations

import threading
from collections import defaultdict

_HELP = {
    "cocmail_intake_total": "Inbound messages by outcome (stored, duplicate, quarantined, "
                            "store-unavailable, error).",
    "cocmail_smtp_rejected_total": "SMTP/LMTP commands refused, by reason.",
    "cocmail_intake_batches_total": "Transactions the intake writers committed (group commit).",
    "cocmail_intake_batched_messages_total": "Messages those transactions carried.",
    "cocmail_smtp_errors_total": "Unexpected errors in SMTP/LMTP sessions (answered 451).",
    "cocmail_outbox_total": "Outgoing mail attempts by outcome (sent, deferred, failed, "
                            "cancelled) and kind.",
    "cocmail_imap_messages_total": "Messages taken from the IMAP folder by outcome (stored, "
                                   "duplicate, quarantined, too-big).",
    "cocmail_imap_connections_total": "IMAP connection attempts by outcome.",
    "cocmail_sweep_total": "Sweeps of the scheduler by task (escalation, hand-off, digest) "
                           "and outcome (ok, failed).",
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], int]] = defaultdict(dict)

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0) + amount

    def render(self, gauges: dict[str, float] | None = None) -> str:
        lines = []
        with self._lock:
            for name in sorted(set(_HELP) | set(self._counters)):
                lines.append(f"# HELP {name} {_HELP.get(name, name)}")
                lines.append(f"# TYPE {name} counter")
                for key, count in sorted(self._counters.get(name, {}).items()):
                    label = ",".join(f'{k}="{v}"' for k, v in key)
                    lines.append(f"{name}{{{label}}} {count}" if label else f"{name} {count}")
        for name, value in sorted((gauges or {}).items()):
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n"
