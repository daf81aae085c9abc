"""The baseline for bench/ingest.py: a bare aiosmtpd listener whose handler does nothing.

Run as ``python bench/bare_smtp.py PORT``; it answers 250 to every message and
keeps nothing.
"""

from __future__ import annotations

import asyncio
import sys

from aiosmtpd.smtp import SMTP


class NoOp:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(NoOp(), hostname="bench", data_size_limit=None), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
