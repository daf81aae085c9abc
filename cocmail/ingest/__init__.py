"""The protocol edges: SMTP and LMTP listeners (``smtp``), the MTA pipe command
(``pipe``) and the hosted mailbox (``imap/``). Each hands raw bytes to the
intake and turns its answer into the protocol's reply."""
