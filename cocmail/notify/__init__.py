"""Outgoing mail: the kinds (``kinds``) and what each carries (``payloads``),
queued as outbox rows with the change that causes it (``enqueue``); at send
time checked and given its values (``context``, ``sections``,
``template_context``), rendered (``templates``, ``compose``) and sent by a
worker (``worker``) through a transport (``transport``)."""
