"""The mail templates (installed as ``cocmail.templates``; see README.md here)."""
