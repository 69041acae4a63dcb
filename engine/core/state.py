"""A feature's state and its history entries: plain, immutable values.

The processor returns new values instead of changing old ones, so a store can keep the old
state until its transaction commits. ``to_dict``/``from_dict`` give the JSON form the SQLite
and Faust-table stores persist and the HTTP API builds on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from sys import intern
from typing import Any, NamedTuple

from engine.core.outcomes import OutcomeKind
from events.builder import rfc3339


def iso(t: datetime | None) -> str | None:
    """RFC 3339 UTC with a ``Z``, as the API answers."""
    return None if t is None else rfc3339(t)


def parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class Risk(NamedTuple):
    severity: str
    title: str | None
    raised_at: datetime


class ExternalKeys:
    """Idempotency keys a store keeps outside the state, asked one at a time.

    A store whose keys live in their own indexed table (SQLite) hands the processor this
    instead of every key: ``key in keys`` asks the store, and :meth:`plus` records the key
    of the event being applied in :attr:`added`, which the store writes with the state.
    The cost of an event then stays flat however long the feature's history grows.

    Args:
        contains: whether the store already holds a key (called by ``in``).
        added: keys added since the state was read, not yet stored.
    """

    __slots__ = ("added", "contains")

    def __init__(self, contains: Callable[[str], bool], added: tuple[str, ...] = ()) -> None:
        self.contains = contains
        self.added = added

    def __contains__(self, key: object) -> bool:
        return key in self.added or (isinstance(key, str) and self.contains(key))

    def plus(self, key: str) -> ExternalKeys:
        """These keys and ``key``."""
        return ExternalKeys(self.contains, (*self.added, key))

    def __repr__(self) -> str:
        return f"ExternalKeys(added={self.added!r})"


Keys = tuple[str, ...] | frozenset[str] | ExternalKeys
"""Idempotency keys: a tuple while few (a tenth of a set's memory), a frozenset when many,
or a store's :class:`ExternalKeys`."""

SMALL_KEYS = 16


def add_key(keys: Keys, key: str) -> Keys:
    """``keys`` with ``key`` added, switching from tuple to frozenset as they grow."""
    if type(keys) is tuple and len(keys) < SMALL_KEYS:
        return (*keys, key)
    if isinstance(keys, ExternalKeys):
        return keys.plus(key)
    return frozenset(keys) | {key}


class FeatureState(NamedTuple):
    """Everything the engine knows about one feature now (an immutable value).

    A named tuple rather than a dataclass: the processor makes a new state per event, and a
    tuple is built several times faster than a frozen dataclass and takes less memory.

    ``seen`` holds the (source, id) keys of events that changed the feature: a repeat of one
    is a duplicate. ``visited`` holds every stage entered or passed over, so going back to one
    is rework. ``workflow_version`` is the version of its workflow it runs under (a
    migration moves it to a newer one, see :mod:`engine.evolve.migration`).
    """

    id: str
    workflow: str
    stage: str
    created_at: datetime
    entered_stage_at: datetime
    version: int = 1
    title: str | None = None
    product: str | None = None
    owner: str | None = None
    blocked: bool = False
    blocked_reason: str | None = None
    open_risks: dict[str, Risk] | None = None
    uat_failures: int = 0
    target_launch: date | None = None
    priority: float | None = None
    acceptance_criteria: tuple[str, ...] | None = None
    feedback: dict[str, int] | None = None
    kpis: dict[str, float] | None = None
    launched_at: datetime | None = None
    visited: tuple[str, ...] = ()
    seen: Keys = ()
    workflow_version: int = 1

    @property
    def risks(self) -> dict[str, Risk]:
        return self.open_risks or {}

    def evolve(self, changes: dict[str, Any] | None = None, /, **more: Any) -> FeatureState:
        """A copy with ``changes`` applied (``_replace`` without its per-call overhead)."""
        values = list(self)
        for name, value in (changes or {}).items():
            values[_INDEX[name]] = value
        for name, value in more.items():
            values[_INDEX[name]] = value
        return tuple.__new__(FeatureState, values)

    def moved(
        self,
        stage: str,
        entered_stage_at: datetime,
        uat_failures: int,
        launched_at: datetime | None,
        visited: tuple[str, ...],
        seen: Keys,
    ) -> FeatureState:
        """A copy in a new stage, one version later: the processor's most common change."""
        values = list(self)
        values[_STAGE] = stage
        values[_ENTERED] = entered_stage_at
        values[_VERSION] = self.version + 1
        values[_UAT_FAILURES] = uat_failures
        values[_LAUNCHED_AT] = launched_at
        values[_VISITED] = visited
        values[_SEEN] = seen
        return tuple.__new__(FeatureState, values)

    def to_dict(self, *, keys: bool = True) -> dict[str, Any]:
        """The JSON-able form stores persist (round-trips through :meth:`from_dict`).

        Args:
            keys: include the idempotency keys (``seen``); a store that keeps them in a
                table of their own leaves them out.
        """
        d = {
            "id": self.id,
            "workflow": self.workflow,
            "stage": self.stage,
            "created_at": iso(self.created_at),
            "entered_stage_at": iso(self.entered_stage_at),
            "version": self.version,
            "title": self.title,
            "product": self.product,
            "owner": self.owner,
            "blocked": self.blocked,
            "blocked_reason": self.blocked_reason,
            "open_risks": {
                k: {"severity": r.severity, "title": r.title, "raised_at": iso(r.raised_at)}
                for k, r in self.risks.items()
            },
            "uat_failures": self.uat_failures,
            "target_launch": self.target_launch.isoformat() if self.target_launch else None,
            "priority": self.priority,
            "acceptance_criteria": list(self.acceptance_criteria)
            if self.acceptance_criteria is not None
            else None,
            "feedback": dict(self.feedback or {}),
            "kpis": dict(self.kpis or {}),
            "launched_at": iso(self.launched_at),
            "visited": list(self.visited),
            "workflow_version": self.workflow_version,
        }
        if keys:
            seen = self.seen
            d["seen"] = list(seen.added if isinstance(seen, ExternalKeys) else seen)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureState:
        found = d.get("open_risks")
        risks = (
            {
                k: Risk(v["severity"], v.get("title"), datetime.fromisoformat(v["raised_at"]))
                for k, v in found.items()
            }
            if found
            else None
        )
        ac = d.get("acceptance_criteria")
        # Decoded JSON gives every feature its own copy of each string and time; a store
        # that reads a million states at start-up shares the ones that repeat (workflow,
        # stage, product: a few dozen values) and a stage entry that is the creation.
        created = datetime.fromisoformat(d["created_at"])
        entered = d["entered_stage_at"]
        product = d.get("product")
        target = d.get("target_launch")
        # Built as the tuple it is, in field order (``GET /report`` decodes a whole
        # portfolio: the keyword constructor was a third of the time).
        return tuple.__new__(
            cls,
            (
                d["id"],
                intern(d["workflow"]),
                intern(d["stage"]),
                created,
                created if entered == d["created_at"] else datetime.fromisoformat(entered),
                d.get("version", 1),
                d.get("title"),
                None if product is None else intern(product),
                d.get("owner"),
                d.get("blocked", False),
                d.get("blocked_reason"),
                risks or None,
                d.get("uat_failures", 0),
                date.fromisoformat(target) if target else None,
                d.get("priority"),
                tuple(ac) if ac is not None else None,
                d.get("feedback") or None,
                d.get("kpis") or None,
                parse_time(d.get("launched_at")),
                tuple(d.get("visited", ())),
                _keys(d.get("seen", ())),
                d.get("workflow_version", 1),
            ),
        )


_INDEX = {name: i for i, name in enumerate(FeatureState._fields)}
_STAGE, _ENTERED, _VERSION = _INDEX["stage"], _INDEX["entered_stage_at"], _INDEX["version"]
_UAT_FAILURES, _LAUNCHED_AT = _INDEX["uat_failures"], _INDEX["launched_at"]
_VISITED, _SEEN = _INDEX["visited"], _INDEX["seen"]


def _keys(items: list[str] | tuple[str, ...]) -> Keys:
    return tuple(items) if len(items) <= SMALL_KEYS else frozenset(items)


class HistoryEntry(NamedTuple):
    """One line of a feature's history (DESIGN.md rule 9); an immutable value."""

    event_id: str
    source: str
    type: str
    time: datetime
    received_at: datetime
    outcome: OutcomeKind
    from_stage: str | None
    to_stage: str | None
    skipped: tuple[str, ...] = ()
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "source": self.source,
            "type": self.type,
            "time": iso(self.time),
            "received_at": iso(self.received_at),
            "outcome": self.outcome,
            "from_stage": self.from_stage,
            "to_stage": self.to_stage,
            "skipped": list(self.skipped),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HistoryEntry:
        # ``GET /report`` decodes every line of a portfolio (22,000 at 10,000 features):
        # the tuple is built directly, the outcome looked up rather than called for, and
        # a receive time equal to the event time (as when it carried none) parsed once.
        time, received, outcome = d["time"], d["received_at"], d["outcome"]
        at = datetime.fromisoformat(time)
        return tuple.__new__(
            cls,
            (
                d["event_id"],
                d["source"],
                d["type"],
                at,
                at if received == time else datetime.fromisoformat(received),
                _OUTCOMES.get(outcome) or OutcomeKind(outcome),
                d.get("from_stage"),
                d.get("to_stage"),
                tuple(d.get("skipped") or ()),
                d.get("reason"),
            ),
        )


_OUTCOMES = {kind.value: kind for kind in OutcomeKind}
