"""How a drain asks for the folder's messages: in groups by count and by bytes,
each message the server failed to hand over before alone (``Trouble`` keeps
count, across reconnects), until one that fails alone too often is given up."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

# A message the server failed to hand over this many times, each time fetched on
# its own on a new connection, is moved to the quarantine folder unstored: one
# broken message must not hold up the reports behind it for ever.
UNFETCHABLE_AFTER = 3


class Trouble:
    """The messages of a folder the server failed to hand over, and how often each
    failed when fetched alone; kept across reconnects, forgotten with the folder's
    UIDVALIDITY. A suspect is fetched on its own, so that it fails alone."""

    def __init__(self) -> None:
        self.uidvalidity: int | None = None
        self.failures: dict[int, int] = {}  # suspect UID -> failed fetches alone

    def under(self, uidvalidity: int) -> None:
        if uidvalidity != self.uidvalidity:
            self.uidvalidity = uidvalidity
            self.failures.clear()

    def suspect(self, uid: int) -> bool:
        return uid in self.failures

    def given_up(self, uid: int) -> bool:
        return self.failures.get(uid, 0) >= UNFETCHABLE_AFTER

    def failed(self, uids: list[int], *, alone: bool) -> None:
        """A fetch failed to hand over ``uids``: asked ``alone``, the one message's
        failure counts; asked with others, each is only a suspect."""
        if alone:
            (uid,) = uids
            self.failures[uid] = self.failures.get(uid, 0) + 1
        for uid in uids:
            self.failures.setdefault(uid, 0)

    def fetched(self, uids: list[int]) -> None:
        for uid in uids:
            self.failures.pop(uid, None)

    def keep(self, in_folder: list[int]) -> None:
        """Forget the suspects no longer in the folder."""
        present = set(in_folder)
        self.failures = {u: n for u, n in self.failures.items() if u in present}


def alone(uids: list[int], suspect: Callable[[int], bool]) -> Iterable[list[int]]:
    """``uids`` in order, each suspect in a group of its own.

    >>> list(alone([1, 2, 3, 4, 5], lambda uid: uid in (2, 3)))
    [[1], [2], [3], [4, 5]]
    """
    run: list[int] = []
    for uid in uids:
        if suspect(uid):
            if run:
                yield run
                run = []
            yield [uid]
        else:
            run.append(uid)
    if run:
        yield run


def chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def by_size(uids: list[int], sizes: dict[int, int], limit: int) -> Iterable[list[int]]:
    """``uids`` in order, in groups of at most ``limit`` bytes (one message at least)."""
    group: list[int] = []
    total = 0
    for uid in uids:
        if group and total + sizes[uid] > limit:
            yield group
            group, total = [], 0
        group.append(uid)
        total += sizes[uid]
    if group:
        yield group
