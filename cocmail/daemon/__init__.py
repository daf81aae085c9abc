"""``cocmail serve`` and what runs it: the asyncio loop, the child processes (intake
writer, outbox), the HTTP port, and the privacy of the files it writes."""
