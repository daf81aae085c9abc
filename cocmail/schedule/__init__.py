"""Time in the committee's work on a case: the triage rotation (and, with it, the SLA
and escalation)."""
