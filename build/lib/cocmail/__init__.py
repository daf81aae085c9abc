"""cocmail: the mail service a Code of Conduct committee runs to receive and work reports."""

__version__ = "0.1.0"
