"""A workflow compiled for fast use: stage order, transitions, gates, guards, SLAs.

Built by :mod:`workflows.loader` from YAML; the processor asks :meth:`Workflow.resolve` what
an event does to a feature in a stage and moves the feature itself, from that precomputed
table. The ``transitions`` library is not on that path: every move the table allows is also
compiled onto one shared ``transitions.Machine`` per workflow (no per-feature models), which
checks at load time that the moves form a valid machine over the declared stages, and lets
tests fire each move through the library to check the table against it
(:meth:`Workflow.move`). Firing it per event would cost a third of the event budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transitions import Machine

from workflows.guards import Guard


@dataclass(frozen=True, slots=True)
class Transition:
    """A listed transition: ``event`` moves a feature from any of ``sources`` to ``dest``."""

    event: str
    sources: frozenset[str]
    dest: str
    guards: tuple[tuple[str, Guard], ...] = ()
    repeat_updates: bool = False
    rework: bool = False


@dataclass(frozen=True, slots=True)
class Move:
    """What an event does in a stage: move to ``dest`` passing over ``skipped``."""

    dest: str
    skipped: tuple[str, ...]
    transition: Transition


@dataclass(frozen=True, slots=True)
class Update:
    """The event changes the feature but keeps its stage (e.g. a re-ship in UAT)."""

    transition: Transition


@dataclass(frozen=True, slots=True)
class Reject:
    """The event cannot apply in this stage; ``reason`` is the contract's reason code."""

    reason: str


Resolution = Move | Update | Reject


class _Cursor:
    """The model the shared machine moves: a stage, nothing else."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


@dataclass(eq=False)
class Workflow:
    """One compiled workflow definition.

    Attributes:
        stages: every stage, ordered ones first in their order.
        order: position of each *ordered* stage; stages out of the order are only reached
            through listed transitions.
        moving: event type -> its listed transition.
        updates: event types taken without moving the feature.
        done: stages whose first arrival ends the lead time (``launched``).
        slas: stage -> seconds a feature may stay before it breaches the SLA.
        version, fingerprint, migrate: see :mod:`workflows.versions`; ``definition`` is the
            parsed YAML it was compiled from (recorded with the version it ran under).
    """

    name: str
    description: str
    initial: str
    create_event: str
    stages: tuple[str, ...]
    order: dict[str, int]
    terminal: frozenset[str]
    done: frozenset[str]
    gates: frozenset[str]
    slas: dict[str, float]
    moving: dict[str, tuple[Transition, ...]]
    updates: frozenset[str]
    source: str = ""
    version: int = 1
    fingerprint: str = ""
    migrate: dict[str, str] = field(default_factory=dict)
    definition: dict[str, Any] = field(default_factory=dict, repr=False)
    _table: dict[tuple[str, str], Resolution] = field(default_factory=dict, repr=False)
    machine: Any = field(default=None, repr=False)
    _event_types: frozenset[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        self._event_types = frozenset(self.moving) | self.updates | {self.create_event}
        self._table = {
            (stage, event): self._resolve(stage, ts)
            for stage in self.stages
            for event, ts in self.moving.items()
        }
        moves = [
            {"trigger": event, "source": stage, "dest": r.dest}
            for (stage, event), r in self._table.items()
            if isinstance(r, Move)
        ]
        self.machine = Machine(
            model=None,
            states=list(self.stages),
            transitions=moves,
            initial=self.initial,
            auto_transitions=False,
            send_event=False,
        )

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type this workflow takes; others are ``ignored``."""
        return self._event_types

    def resolve(self, stage: str, event_type: str) -> Resolution | None:
        """What ``event_type`` does to a feature in ``stage``; ``None`` if it does not move."""
        return self._table.get((stage, event_type))

    def move(self, stage: str, event_type: str) -> str:
        """Fire ``event_type`` on the shared machine from ``stage``; returns the new stage.

        Raises:
            transitions.MachineError: the machine has no such move (a bug: resolve first).
        """
        cursor = _Cursor(stage)
        self.machine.events[event_type].trigger(cursor)
        return cursor.state

    def reachable(self) -> set[str]:
        """Stages a new feature can ever reach, following every move the table allows."""
        seen, todo = {self.initial}, [self.initial]
        while todo:
            stage = todo.pop()
            for event in self.moving:
                r = self._table[(stage, event)]
                if isinstance(r, Move) and r.dest not in seen:
                    seen.add(r.dest)
                    todo.append(r.dest)
        return seen

    def _resolve(self, stage: str, ts: tuple[Transition, ...]) -> Resolution:
        if stage in self.terminal:
            return Reject("terminal")
        for t in ts:
            if stage in t.sources:
                if stage == t.dest and t.repeat_updates:
                    return Update(t)
                return Move(t.dest, (), t)
        for t in ts:
            if stage == t.dest and t.repeat_updates:
                return Update(t)
        rejection = Reject("invalid_transition")
        here = self.order.get(stage)
        for t in ts:
            there = self.order.get(t.dest)
            if here is None or there is None or there <= here:
                continue
            passed = self.stages[here + 1 : there]
            # Rule 5: only a transition that leaves a gate may carry a feature past it.
            gate = next(
                (g for g in (stage, *passed) if g in self.gates and g not in t.sources), None
            )
            if gate is not None:
                rejection = Reject(f"gate:{gate}")
                continue
            return Move(t.dest, passed, t)
        return rejection
