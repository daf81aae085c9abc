"""A case's rules: who may see it and act in it (``access``), and the members
as identities kept in step with the roster (``members``)."""
