"""Rebuilding state from an event log: every logged event again, in arrival order.

Called by ``lifecycle replay`` (into a fresh SQLite file, :func:`engine.evolve.apply.rebuild`), by
the dry run (the ``replayed`` stage of each feature) and by ``bench/replay.py``. Each line is
decoded and checked as the edge checked it when it arrived (its arrival time is the receive
time again, so an event without ``time`` keeps the time it had), then applied by the same
:class:`~engine.service.Engine` live events go through. Events outside every workflow are
``ignored`` again; one a newer workflow knows is applied this time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import NamedTuple

from engine.core.processor import IGNORED
from engine.core.state import FeatureState, iso
from engine.service import Engine
from engine.stores.base import FeatureStore
from engine.stores.sqlite_log import LoggedEvent
from events.envelope import decode_event
from events.errors import MalformedEvent
from workflows.loader import Workflows

MALFORMED = "malformed"
"""The count of logged lines the current rules refuse (counted, never applied)."""

LogRow = tuple[int, str | None, str, str, str]
"""A line of a new log: its position in the old one, feature, arrival time (RFC 3339),
outcome now, CloudEvent text."""


class Replayed(NamedTuple):
    """What a replay did: events read, outcomes counted, and the new log's lines if kept."""

    events: int
    outcomes: Counter[str]
    log: list[LogRow]


def replay(
    lines: Iterable[LoggedEvent],
    workflows: Workflows,
    store: FeatureStore,
    *,
    keep_log: bool = False,
    progress: Callable[[int], None] | None = None,
    every: int = 10_000,
) -> Replayed:
    """Apply every line of ``lines`` to ``store`` under ``workflows``, in order.

    Args:
        lines: the log, oldest first.
        workflows: the rules to replay under (the current ones, or a new version).
        store: an empty store to rebuild into (the memory store is fastest; see
            :func:`engine.evolve.apply.rebuild` for writing the result to a file).
        keep_log: also return the lines of a log for the rebuilt state (outcomes as now).
        progress: called with the number of lines done, every ``every`` lines and at the end.
    """
    engine = Engine(workflows, store)
    known = workflows.event_types
    outcomes: Counter[str] = Counter()
    rows: list[LogRow] = []
    n = 0
    last_at, last_text = None, ""
    for line in lines:
        n += 1
        try:
            event = decode_event(line.event, known, line.received_at)
        except MalformedEvent:
            outcome = MALFORMED
        else:
            outcome = IGNORED if event is None else engine.apply(event, line.received_at).outcome
        outcomes[outcome] += 1
        if keep_log and outcome != MALFORMED:
            if line.received_at is not last_at:
                last_at, last_text = line.received_at, iso(line.received_at) or ""
            rows.append((line.seq, line.feature_id, last_text, outcome, line.event))
        if progress is not None and n % every == 0:
            progress(n)
    if progress is not None:
        progress(n)
    return Replayed(n, outcomes, rows)


class Difference(NamedTuple):
    """A feature whose rebuilt state differs from the live one: field -> (live, rebuilt)."""

    feature: str
    fields: dict[str, tuple[object, object]]


COMPARED = (
    "workflow", "stage", "title", "product", "owner", "blocked", "open_risks",
    "uat_failures", "target_launch", "priority", "launched_at", "workflow_version",
)  # fmt: skip
"""The fields a user sees; the revision counter and idempotency keys are left out."""


def compare(
    live: Iterable[FeatureState], rebuilt: Iterable[FeatureState]
) -> tuple[int, list[Difference]]:
    """How many features agree, and each that differs (missing on one side included)."""
    theirs = {s.id: s.to_dict(keys=False) for s in rebuilt}
    same = 0
    diffs: list[Difference] = []
    for state in live:
        mine = state.to_dict(keys=False)
        other = theirs.pop(state.id, None)
        if other is None:
            diffs.append(Difference(state.id, {"stage": (state.stage, None)}))
            continue
        fields = {k: (mine[k], other[k]) for k in COMPARED if mine[k] != other[k]}
        if fields:
            diffs.append(Difference(state.id, fields))
        else:
            same += 1
    for fid, other in theirs.items():
        diffs.append(Difference(fid, {"stage": (None, other["stage"])}))
    diffs.sort(key=lambda d: d.feature)
    return same, diffs
