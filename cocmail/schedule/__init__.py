"""Time in the committee's process: the triage rotation (and, with it, the SLA
and escalation)."""
