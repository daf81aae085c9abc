"""The protocol edges: SMTP and LMTP listeners, and the MTA pipe command."""
