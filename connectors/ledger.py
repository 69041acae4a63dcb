"""Which features each release shipped, so a later deployment of it can launch them.

A GitHub ``deployment_status`` names a ref, not features; the release published for that ref
named them. The hook route remembers them here (a rule's ``remember``) and a ``shipped_in``
feature place reads them back. Bounded: the oldest releases are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

RELEASES = 10_000
"""Releases remembered per process."""


class Ledger:
    """Release key -> the features it shipped, in memory, bounded to ``size`` releases."""

    def __init__(self, size: int = RELEASES) -> None:
        self.size = size
        self._shipped: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def remember(self, key: str, features: Sequence[str]) -> None:
        """Add ``features`` to what the release ``key`` shipped."""
        known = self._shipped.pop(key, ())
        self._shipped[key] = tuple(dict.fromkeys((*known, *features)))
        while len(self._shipped) > self.size:
            self._shipped.popitem(last=False)

    def __call__(self, key: str) -> tuple[str, ...]:
        """The features the release ``key`` shipped; empty when unknown."""
        return self._shipped.get(key, ())
