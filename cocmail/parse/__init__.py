"""Reading a message: MIME and headers, its HTML as text, the new text of a reply,
the dedupe key, whether it is automatic, and our own server's verdicts on it."""
