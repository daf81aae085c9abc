"""The CLI's --json contract and the quarantine/replay round trip, against a running daemon."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Server, run_cli, write_config
from tests.mail import message, send


def test_case_show_and_quarantine_json_shapes(serve, db_url: str) -> None:
    server: Server = serve(db_url)
    send(server.smtp_port, message())
    send(server.smtp_port, message(headers={"Auto-Submitted": "auto-replied"}))
    case = server.json("case", "show", "1")
    for key in ("id", "state", "severity", "opened_at", "acknowledged_at", "message_count",
                "recused", "decision", "messages", "events", "participants"):
        assert key in case, key
    [m] = case["messages"]
    assert {"message_id", "direction", "sender_role", "verified"} <= set(m)
    assert (m["direction"], m["sender_role"], m["verified"]) == ("in", "reporter", False)
    p = case["participants"][0]
    assert {"role", "email", "reply_address"} <= set(p)
    # The reporter, then every member of the committee has a seat in a new case.
    assert [x["role"] for x in case["participants"]] == ["reporter"] + ["member"] * 4
    assert {"id", "kind", "status", "recipient", "attempts"} <= set(case["mail"][0])
    assert [e["kind"] for e in case["events"]] == ["opened", "paged"]
    # The two paged are cleared to read it; the others still have the conflict check.
    paged = case["events"][1]["data"]["members"]
    cleared = [p["handle"] for p in case["participants"] if p["cleared_at"]]
    assert sorted(cleared) == sorted(paged)
    text = server.cli("case", "show", "1").stdout.decode()
    assert text.count("(conflict check not answered)") == 2

    [q] = server.json("quarantine", "list")
    assert {"id", "reason", "received_at"} <= set(q)
    assert q["reason"] == "automatic"
    # What the operator reads before deciding: why, the headers as they came, the text.
    shown = server.json("quarantine", "show", str(q["id"]))
    assert {k: shown[k] for k in q} == q
    assert ["Auto-Submitted", "auto-replied"] in shown["headers"]
    assert shown["text"] == "Someone was rude to me at the meetup.\n"
    assert shown["attachments"] == []
    text = server.cli("quarantine", "show", str(q["id"])).stdout.decode()
    assert f"quarantine entry {q['id']} (held)" in text and "reason: automatic" in text
    assert "Auto-Submitted: auto-replied" in text and "rude to me" in text
    missing = server.cli("quarantine", "show", "99")
    assert (missing.returncode, missing.stderr) == (1, b"cocmail: no quarantine entry 99\n")

    # The operator decides it was a real report after all.
    result = server.cli("replay", str(q["id"]), "--open-case")
    assert result.returncode == 0, result.stderr
    assert b"opened case #2" in result.stdout
    assert server.json("quarantine", "list") == []
    assert len(server.json("quarantine", "list", "--all")) == 1
    assert len(server.json("cases", "list", "--open")) == 2


def test_what_tests_read_in_process_is_what_the_cli_prints(serve, db_url: str) -> None:
    """``Server.look`` (the tests' in-process read) and ``--json`` agree for every
    command that collects data, so a test that reads in process tests the CLI's data."""
    server: Server = serve(db_url)
    send(server.smtp_port, message())
    send(server.smtp_port, message(headers={"Auto-Submitted": "auto-replied"}))
    server.quiet()  # nothing is being sent while the two look
    for args in (["cases", "list"], ["cases", "list", "--open", "--limit", "1"],
                 ["case", "show", "1"], ["quarantine", "list", "--all"], ["outbox", "list"],
                 ["outbox", "list", "--case", "1"], ["rotation", "show", "--weeks", "2"],
                 ["rotation", "override", "list", "--all"], ["roster", "check"]):
        assert _at_one_moment(server.look(*args)) == _at_one_moment(server.json(*args)), args


def _at_one_moment(found: object) -> object:
    """``found`` without what says "now" (the shifts start now and end weeks from now;
    the SLA's time left), which two looks a moment apart see differently."""
    if isinstance(found, list) and found and isinstance(found[0], dict) and "on_duty" in found[0]:
        return [{**found[0], "start": "now"}, *found[1:-1], {**found[-1], "end": "later"}]
    if isinstance(found, dict) and "sla" in found:
        return {**found, "sla": "now"}
    return found


def test_text_output_carries_no_content(serve, tmp_path: Path) -> None:
    """The operator's listings show metadata, never a subject or a body."""
    server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
    send(server.smtp_port, message(subject="SECRET-SUBJECT", body="SECRET-BODY\n"))
    for args in (["cases", "list"], ["case", "show", "1"], ["case", "show", "1", "--json"],
                 ["quarantine", "list"], ["outbox", "list"], ["outbox", "list", "--json"]):
        out = server.cli(*args).stdout
        assert b"SECRET" not in out
    assert "SECRET" not in server.log()


def test_unknown_case_is_exit_1(serve, tmp_path: Path) -> None:
    server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = server.cli("case", "show", "42")
    assert result.returncode == 1 and b"no case #42" in result.stderr


def test_listing_an_unmigrated_database_says_what_to_do(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = run_cli(config, "cases", "list")
    assert result.returncode == 1 and b"cocmail db upgrade" in result.stderr
    assert run_cli(config, "db", "upgrade").returncode == 0
    assert run_cli(config, "cases", "list").stdout == b"no cases\n"


def test_limit(serve, tmp_path: Path) -> None:
    server: Server = serve(f"sqlite:///{tmp_path / 'db.sqlite'}")
    for i in range(3):
        send(server.smtp_port, message(subject=f"r{i}"))
    assert [c["id"] for c in server.json("cases", "list", "--limit", "2")] == [1, 2]
    assert len(server.json("cases", "list")) == 3


def test_serve_refuses_a_database_at_another_revision(tmp_path: Path) -> None:
    """serve migrates only an empty database; one at another revision is the operator's
    to upgrade (after a backup), and serve says so."""
    import sqlite3
    import subprocess

    from tests.conftest import COCMAIL

    db = tmp_path / "db.sqlite"
    config = write_config(tmp_path, f"sqlite:///{db}")
    assert run_cli(config, "db", "upgrade").returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000'")
    result = subprocess.run([*COCMAIL, "serve", "--config", str(config)], capture_output=True,
                            timeout=60)
    assert result.returncode == 2
    assert b"run `cocmail db upgrade`" in result.stderr


def test_version_is_the_one_packaged() -> None:
    import subprocess
    import tomllib

    from tests.conftest import COCMAIL, ROOT

    packaged = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = subprocess.run([*COCMAIL, "--version"], capture_output=True, cwd=ROOT, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"cocmail {packaged}\n".encode())
