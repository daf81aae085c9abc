"""When the database fails for real, SMTP answers 451 and nothing is half-written.

The failures are real ones, not patched handlers: on SQLite another process
holds the write lock past the busy timeout; on PostgreSQL the database stops
taking connections and the daemon's are terminated.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import Postgres, Server
from tests.mail import message, send


def _counts(server: Server) -> tuple[int, int]:
    cases = server.look("cases", "list")
    return len(cases), sum(c["message_count"] for c in cases)


class TestStoreFailure:
    def test_sqlite_locked_database_answers_451_and_keeps_nothing(
            self, serve, tmp_path: Path) -> None:
        db = tmp_path / "locked.db"
        server: Server = serve(f"sqlite:///{db}", database={"busy_timeout": "1s"})
        assert send(server.smtp_port, message())[0] == 250

        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            code, text = send(server.smtp_port, message(subject="while locked"))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert code == 451
        assert text.startswith(b"4.3.0")
        assert b"locked" not in text  # no internals leak to the client
        assert _counts(server) == (1, 1)
        # The database is back: the same message (a client's retry) is taken.
        assert send(server.smtp_port, message(subject="after the lock"))[0] == 250
        assert _counts(server) == (2, 2)

    def test_postgres_unreachable_answers_451_and_keeps_nothing(
            self, serve, postgres: Postgres) -> None:
        url = postgres.new_database()
        name = url.rsplit("/", 1)[1]
        server: Server = serve(url)
        assert send(server.smtp_port, message())[0] == 250

        postgres.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        postgres.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        try:
            code, text = send(server.smtp_port, message(subject="while down"))
            health = _http(server.http_port, "/healthz")
        finally:
            postgres.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert (code, text[:5]) == (451, b"4.3.0")
        assert health.startswith("HTTP/1.1 503")
        assert _counts(server) == (1, 1)
        assert send(server.smtp_port, message(subject="after"))[0] == 250
        assert _counts(server) == (2, 2)
        assert _http(server.http_port, "/healthz").startswith("HTTP/1.1 200")


def _http(port: int, path: str) -> str:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data.decode()
