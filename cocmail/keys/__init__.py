"""Keys: the master keys and where they come from (``master``), and the one
cipher and keyed hash cocmail stores (``cipher``). Below the store, which keeps
its own keys wrapped by a master key (``store/keyring.py``)."""
