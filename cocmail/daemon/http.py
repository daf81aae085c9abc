"""The small HTTP port: ``/healthz`` (is the store reachable?) and ``/metrics``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[tuple[bool, str]]]
Render = Callable[[], Awaitable[str]]


class HttpServer:
    def __init__(self, health: Probe, metrics: Render) -> None:
        self.health = health
        self.metrics = metrics

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=10)
            while True:  # skip the request headers
                line = await asyncio.wait_for(reader.readline(), timeout=10)
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            if path == "/healthz":
                ok, text = await self.health()
                status, body = ("200 OK" if ok else "503 Service Unavailable"), text + "\n"
            elif path == "/metrics":
                status, body = "200 OK", await self.metrics()
            else:
                status, body = "404 Not Found", "not found\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("HTTP request failed")
        finally:
            writer.close()
