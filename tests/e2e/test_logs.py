"""The daemon's log as a collector reads it: one JSON object a line when asked,
nothing of a report in it, and nothing at INFO while nothing happens."""

from __future__ import annotations

import json
import time

from tests.conftest import Server
from tests.mail import message, send


def test_json_lines_carry_nothing_of_the_report_and_idle_is_silent(serve,
                                                                   db_url: str) -> None:
    server: Server = serve(db_url, logging={"format": "json"})
    sent = message(sender="Rita Reporter <rita.r@reporter.example>",
                   subject="SUBJECT-MARKER at the meetup", body="BODY-MARKER happened.\n")
    assert send(server.smtp_port, sent)[0] == 250
    server.quiet()
    busy = server.log().splitlines()
    lines = [json.loads(line) for line in busy]  # every line is one object
    assert {"time", "level", "logger", "message", "process"} <= set(lines[0])
    assert any("case 1" in line["message"] or "#1" in line["message"] for line in lines)
    text = server.log()
    for secret in ("SUBJECT-MARKER", "BODY-MARKER", "Rita Reporter", "rita.r"):
        assert secret not in text, secret

    first = server.sweeps()
    deadline = time.monotonic() + 30
    while server.sweeps() < first + 3:  # three whole ticks with nothing to do
        assert time.monotonic() < deadline, "the daemon does not sweep"
        time.sleep(0.05)
    idle = [json.loads(line) for line in server.log().splitlines()[len(busy):]]
    assert [line for line in idle if line["level"] in ("DEBUG", "INFO")] == []
