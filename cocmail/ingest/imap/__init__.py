"""IMAP intake, by job: ``poller`` (the thread, its connection and health),
``drain`` (one pass over the folder: fetch, store, move), ``groups`` (how
messages are asked for, and the ones the server fails to hand over),
``envelope`` (where a message was addressed), ``position`` (the last UID taken),
``session`` (logging in, moving, hanging up) and ``check`` (``cocmail imap
check``)."""
