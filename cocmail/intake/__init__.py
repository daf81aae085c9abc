"""The unit of work for inbound mail: what comes in (``inbound``), one
transaction for each batch (``service``), writing what routing decided
(``record``), and the writers that gather batches (``batch``: group commit)."""
