"""What cocmail tells its operator: /metrics counters, log set-up, and masking
addresses in whatever it shows."""
