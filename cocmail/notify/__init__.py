"""Outgoing mail: queued as outbox rows with the change that causes it
(``enqueue``), rendered from templates (``templates``, ``compose``) and sent by
a worker (``worker``) through a transport (``transport``)."""
