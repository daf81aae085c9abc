"""``cocmail deliver``: the MTA pipe transport and its sysexits codes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import CONDUCT, DOMAIN, run_cli, write_config
from tests.mail import message

EX_OK, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL = 0, 65, 67, 75


def _deliver(config: Path, raw: bytes, recipient: str = CONDUCT,
             sender: str | None = "rita@reporter.example") -> tuple[int, str]:
    args = ["deliver", "--recipient", recipient]
    if sender is not None:
        args += ["--sender", sender]
    result = run_cli(config, *args, stdin=raw)
    return result.returncode, result.stderr.decode()


class TestPipe:
    def test_stored_then_duplicate(self, db_url: str, tmp_path: Path) -> None:
        config = write_config(tmp_path, db_url)
        assert run_cli(config, "db", "upgrade").returncode == 0
        raw = message()
        assert _deliver(config, raw) == (EX_OK, "")
        assert _deliver(config, raw) == (EX_OK, "")
        cases = run_cli(config, "cases", "list", "--json")
        assert cases.stdout.count(b'"id"') == 1

    def test_unknown_recipient_is_67(self, tmp_path: Path) -> None:
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
        run_cli(config, "db", "upgrade")
        code, err = _deliver(config, message(), recipient="someone@" + DOMAIN)
        assert code == EX_NOUSER
        assert err.count("\n") == 1 and "no mailbox" in err

    def test_empty_input_is_65(self, tmp_path: Path) -> None:
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
        run_cli(config, "db", "upgrade")
        code, err = _deliver(config, b"")
        assert code == EX_DATAERR and "no message" in err

    def test_too_big_is_65(self, tmp_path: Path) -> None:
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}",
                              {"smtp": {"max_message_size": "10KB"}})
        run_cli(config, "db", "upgrade")
        code, err = _deliver(config, message(body="x" * 20000))
        assert code == EX_DATAERR and "too big" in err

    def test_locked_store_is_75_and_nothing_written(self, tmp_path: Path) -> None:
        db = tmp_path / "db.sqlite"
        config = write_config(tmp_path, f"sqlite:///{db}", {"database": {"busy_timeout": "1s"}})
        run_cli(config, "db", "upgrade")
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            code, err = _deliver(config, message())
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert code == EX_TEMPFAIL and "try again later" in err
        assert run_cli(config, "cases", "list", "--json").stdout.strip() == b"[]"

    def test_unmigrated_database_is_75(self, tmp_path: Path) -> None:
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
        code, err = _deliver(config, message())
        assert code == EX_TEMPFAIL and "db upgrade" in err

    def test_bad_config_is_75_so_the_mta_keeps_the_message(self, tmp_path: Path) -> None:
        config = tmp_path / "bad.toml"
        config.write_text('[committee]\nname = "x"\nshort_name = "c"\naddress = "nope"\n')
        code, err = _deliver(config, message())
        assert code == EX_TEMPFAIL
        assert "committee.address: not an email address" in err

    def test_null_sender_bounce_is_quarantined(self, tmp_path: Path) -> None:
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
        run_cli(config, "db", "upgrade")
        bounce = message(sender="mailer-daemon@mx.example", subject="Undelivered Mail")
        assert _deliver(config, bounce, sender="")[0] == EX_OK
        out = run_cli(config, "quarantine", "list", "--json").stdout
        assert b'"automatic"' in out
        assert run_cli(config, "cases", "list", "--json").stdout.strip() == b"[]"
