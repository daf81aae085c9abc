"""The unit of work for inbound mail: storing messages in one transaction each batch
(the service) and the writers that gather batches (group commit)."""
