"""A case and who is in it: who may see it and act in it (``access``), the kinds
of line its history holds (``events``), its outside parties (``parties``), its
SLA in words (``sla``), and the members as identities kept in step with the
roster (``members``)."""
