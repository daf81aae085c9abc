"""Which case a message belongs to: recipient addresses, signed tokens, the routing
order, and filings made on a reporter's behalf."""
