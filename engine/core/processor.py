"""The processor: a feature's state plus one event gives exactly one outcome.

Pure: no I/O, no clock (the edge passes ``received_at``), no globals. Every adapter (the
embedded HTTP engine, the Faust agent, the benchmarks) calls :func:`process` and then
persists ``Outcome.state`` and ``Outcome.entries`` in one step. The rules are those of
DESIGN.md section 4; the comments name them.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from engine.core.effects import effect_of
from engine.core.outcomes import OutcomeKind
from engine.core.state import FeatureState, HistoryEntry, add_key
from events.envelope import Event
from workflows.errors import UnknownWorkflow
from workflows.loader import Workflows
from workflows.model import Move, Reject, Update, Workflow

APPLIED = OutcomeKind.APPLIED
UPDATED = OutcomeKind.UPDATED
DUPLICATE = OutcomeKind.DUPLICATE
REJECTED = OutcomeKind.REJECTED
IGNORED = OutcomeKind.IGNORED
"""Module-level names of the kinds: the hot path reads a global, not an enum attribute."""


class Outcome(NamedTuple):
    """The result of one event.

    Attributes:
        outcome: what the event did (:class:`~engine.core.outcomes.OutcomeKind`).
        state: the feature after the event (``None`` when ignored for an unknown feature).
        previous: the feature before (``None`` when the event created it).
        entries: history lines to append, in order (an implicit creation, then the event).
        stage_duration: seconds spent in ``from_stage``, observed when the feature left it.
        lead_time: seconds from creation, observed the first time a feature is done.
        reentered: the feature entered ``to_stage`` again (rework).
    """

    outcome: OutcomeKind
    feature: str
    workflow: str
    state: FeatureState | None
    previous: FeatureState | None
    entries: tuple[HistoryEntry, ...] = ()
    reason: str | None = None
    from_stage: str | None = None
    to_stage: str | None = None
    skipped: tuple[str, ...] = ()
    stage_duration: float | None = None
    lead_time: float | None = None
    reentered: bool = False

    @property
    def stage(self) -> str | None:
        return self.state.stage if self.state is not None else None

    @property
    def changed(self) -> bool:
        """The feature's state differs from before, so a store must write it."""
        return self.state is not self.previous


_new = tuple.__new__
"""A named tuple from all its fields, minus the keyword handling: about 1 µs less per event
(4 % of the core benchmark's budget), so the two hottest constructions (a history line, a
move's outcome) use it; every other outcome is built with keywords."""


def _entry(
    event: Event,
    received_at: datetime,
    outcome: OutcomeKind,
    from_stage: str | None,
    to_stage: str | None,
    skipped: tuple[str, ...] = (),
    reason: str | None = None,
) -> HistoryEntry:
    return _new(
        HistoryEntry,
        (
            event.id,
            event.source,
            event.type,
            event.time,
            received_at,
            outcome,
            from_stage,
            to_stage,
            skipped,
            reason,
        ),
    )


def process(
    workflows: Workflows,
    state: FeatureState | None,
    event: Event,
    received_at: datetime,
) -> Outcome:
    """Apply ``event`` to the feature ``state`` (``None``: not known yet).

    Never raises for a valid event: every way an event can fail is an outcome.
    """
    workflow = workflows.by_name.get(state.workflow) if state is not None else None
    if workflow is None:
        try:
            workflow = workflows.get(event.workflow)
        except UnknownWorkflow:
            return Outcome(
                outcome=REJECTED,
                feature=event.feature,
                workflow=str(event.workflow),
                state=state,
                previous=state,
                reason="unknown_workflow",
            )
    if event.type not in workflow.event_types:
        return Outcome(
            outcome=IGNORED,
            feature=event.feature,
            workflow=workflow.name,
            state=state,
            previous=state,
        )

    entries: list[HistoryEntry] = []
    previous = state
    if state is None:
        # Rule 3: the first event of a feature creates it at the initial stage.
        t0 = event.time
        state = FeatureState(
            id=event.feature,
            workflow=workflow.name,
            stage=workflow.initial,
            created_at=t0,
            entered_stage_at=t0,
            visited=_shared((workflow.initial,)),
            workflow_version=workflow.version,
        )
        if event.type == workflow.create_event:
            return _apply_effects(state, None, event, received_at, APPLIED, entries, workflow)
        entries.append(
            _entry(event, received_at, APPLIED, None, workflow.initial, reason="created implicitly")
        )
    elif event.key in state.seen:
        # Rule 2: an event that already changed the feature changes nothing.
        entry = _entry(event, received_at, DUPLICATE, state.stage, state.stage)
        return Outcome(
            outcome=DUPLICATE,
            feature=state.id,
            workflow=workflow.name,
            state=state,
            previous=state,
            entries=(entry,),
        )

    if state.stage in workflow.terminal:
        return _rejected(state, previous, event, received_at, entries, workflow, "terminal")

    resolution = workflow.resolve(state.stage, event.type)
    if resolution is None:  # An event that never moves a feature.
        return _apply_effects(state, previous, event, received_at, UPDATED, entries, workflow)
    if isinstance(resolution, Reject):  # Rules 4 and 5.
        return _rejected(state, previous, event, received_at, entries, workflow, resolution.reason)
    for name, passes in resolution.transition.guards:
        if not passes(state, event):  # Rule 6.
            return _rejected(
                state, previous, event, received_at, entries, workflow, f"guard:{name}"
            )
    if isinstance(resolution, Update):
        return _apply_effects(state, previous, event, received_at, UPDATED, entries, workflow)
    assert isinstance(resolution, Move)
    return _move(state, previous, event, received_at, resolution, entries, workflow)


def _rejected(
    state: FeatureState,
    previous: FeatureState | None,
    event: Event,
    received_at: datetime,
    entries: list[HistoryEntry],
    workflow: Workflow,
    reason: str,
) -> Outcome:
    entries.append(_entry(event, received_at, REJECTED, state.stage, state.stage, reason=reason))
    return Outcome(
        outcome=REJECTED,
        feature=state.id,
        workflow=workflow.name,
        state=state,
        previous=previous,
        entries=tuple(entries),
        reason=reason,
    )


def _apply_effects(
    state: FeatureState,
    previous: FeatureState | None,
    event: Event,
    received_at: datetime,
    outcome: OutcomeKind,
    entries: list[HistoryEntry],
    workflow: Workflow,
) -> Outcome:
    changes = effect_of(state, event)
    if isinstance(changes, str):
        return _rejected(state, previous, event, received_at, entries, workflow, changes)
    lines = entries
    created = previous is None and not lines
    new = state.evolve(
        **changes,
        version=state.version + (0 if created else 1),
        seen=add_key(state.seen, event.key),
    )
    from_stage = None if created else state.stage
    lines.append(_entry(event, received_at, outcome, from_stage, state.stage))
    return Outcome(
        outcome=outcome,
        feature=state.id,
        workflow=workflow.name,
        state=new,
        previous=previous,
        entries=tuple(lines),
        from_stage=from_stage,
        to_stage=state.stage,
    )


def _move(
    state: FeatureState,
    previous: FeatureState | None,
    event: Event,
    received_at: datetime,
    move: Move,
    entries: list[HistoryEntry],
    workflow: Workflow,
) -> Outcome:
    changes = effect_of(state, event)
    if isinstance(changes, str):
        return _rejected(state, previous, event, received_at, entries, workflow, changes)
    # The move is one the workflow's shared transitions Machine holds (Workflow.__post_init__
    # compiles every allowed move onto it); its destination is read from the compiled table
    # rather than fired through the Machine, which costs a third of the event budget.
    dest = move.dest
    # Rule 8: a move dated before the current stage's entry happens at that entry.
    at = max(event.time, state.entered_stage_at)
    duration = (at - state.entered_stage_at).total_seconds()
    lead_time = None
    launched_at = state.launched_at
    if dest in workflow.done and launched_at is None:
        launched_at = at
        lead_time = max(0.0, (at - state.created_at).total_seconds())
    # Re-entering a stage reached (or passed over) before is rework.
    reentered = dest in state.visited
    new = state.evolve(changes) if changes else state
    new = new.moved(
        dest,
        at,
        new.uat_failures + (1 if move.transition.rework else 0),
        launched_at,
        _visit(state.visited, move.skipped, dest),
        add_key(state.seen, event.key),
    )
    entry = _entry(event, received_at, APPLIED, state.stage, dest, move.skipped)
    return _new(Outcome, (
        APPLIED, state.id, workflow.name, new, previous, (*entries, entry), None,
        state.stage, dest, move.skipped, duration, lead_time, reentered,
    ))  # fmt: skip


def _visit(visited: tuple[str, ...], skipped: tuple[str, ...], dest: str) -> tuple[str, ...]:
    if skipped:
        visited = (*visited, *[s for s in skipped if s not in visited])
    return visited if dest in visited else _shared((*visited, dest))


_VISITED: dict[tuple[str, ...], tuple[str, ...]] = {}
SHARED_VISITED = 4096
"""At most this many distinct ``visited`` tuples are shared between features."""


def _shared(visited: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple for every feature that visited the same stages in the same order.

    Features follow few paths through a workflow, so a million features hold a handful of
    distinct ``visited`` values: sharing them saves a tuple (48 bytes and up) per feature.
    Bounded, so a workflow with very many paths shares its first :data:`SHARED_VISITED`.
    """
    found = _VISITED.get(visited)
    if found is not None:
        return found
    if len(_VISITED) < SHARED_VISITED:
        _VISITED[visited] = visited
    return visited
