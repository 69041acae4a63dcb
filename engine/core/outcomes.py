"""The outcome kinds of DESIGN.md section 4: the one vocabulary of what an event did."""

from __future__ import annotations

from enum import StrEnum


class OutcomeKind(StrEnum):
    """What one event did to a feature; exactly one per event.

    A ``str``: it compares equal to, and serialises as, its value (``"applied"``), which is
    what history lines, API answers and metric labels carry.
    """

    APPLIED = "applied"
    """The feature changed stage."""
    UPDATED = "updated"
    """The feature changed, its stage did not."""
    DUPLICATE = "duplicate"
    """The (``source``, ``id``) already changed the feature: nothing changed."""
    REJECTED = "rejected"
    """A valid event the feature cannot take; the ``reason`` says why."""
    IGNORED = "ignored"
    """A type outside the workflow: not processed, not in the history."""
