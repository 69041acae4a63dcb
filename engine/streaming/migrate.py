"""A worker started with a new workflow version migrates the features of its partitions.

Once the group has assigned a worker its partitions and Faust has restored their table
records, :class:`VersionSweep` looks at every feature of each partition once (per
assignment), before the agent applies any record of it:

- it refuses, with one line per problem, a workflow file older than the version features
  already run under, and a new version that leaves features in a stage it neither has nor
  maps in ``migrate`` (each such stage with how many features sit there); nothing of the
  partition is migrated then, and the worker stops (:class:`WorkflowRefused`);
- otherwise it migrates every feature still under an older version
  (:meth:`engine.service.Engine.migrate`: a ``workflow.migrated`` history line, the gauges),
  chunk by chunk, each chunk made durable as follows: the chunk's stage changes are
  acknowledged by the broker on the transitions topic, then its table records go through the
  checkpoint's commit order (changelog acknowledged, then the local table).

Exactly once per feature: a feature's migration and its new version are one table record;
a worker killed before that record's changelog write is acknowledged finds the feature at
the old version again and migrates it then (its stage change is published again with the
same CloudEvent id, never lost); after it, recovery restores the migrated record and the
sweep leaves it alone. A rebalance waits for the chunk in flight (see
:meth:`VersionSweep.stop`), so a partition's new owner restores everything written for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.core.state import FeatureState
from engine.evolve.migration import (
    needs_migration,
    newer_message,
    newer_versions,
    unmapped_message,
    unmapped_stages,
    unseen_message,
)
from engine.stores.faust_table import is_part, part_owner
from engine.streaming.codec import key_partition
from workflows.errors import WorkflowError
from workflows.model import Workflow

if TYPE_CHECKING:  # the app makes its sweep
    from engine.streaming.app import LifecycleApp

log = logging.getLogger(__name__)


class WorkflowRefused(WorkflowError):
    """The worker's workflow files cannot take the features of its partitions (the message
    says why, one line per workflow and stage)."""


@dataclass
class SweepResult:
    """What one sweep did."""

    partitions: frozenset[int]
    looked_at: int
    migrated: int


class VersionSweep:
    """Migrates the features of a worker's restored partitions, once per assignment.

    Args:
        lapp: the worker's app (its store, engine, agent and commit order).
        chunk: features migrated per durable write.

    Callers hold :attr:`LifecycleApp.turn` (the agent's batch loop does, and the worker's
    timer takes it), so a sweep never interleaves with a batch.
    """

    def __init__(self, lapp: LifecycleApp, chunk: int = 500) -> None:
        self.lapp = lapp
        self.chunk = chunk
        self.swept: set[int] = set()
        """Partitions swept since they were last assigned."""
        self._stopping = False
        self.recorded = False
        """Whether this worker recorded its workflow versions (once the first partitions
        it swept passed the checks)."""
        self.dropped: dict[str, tuple[int, tuple[str, ...]]] = {}
        """Workflow name -> (the newest version the group ran, the stages of it that the
        new version drops without a ``migrate`` entry), for the versions this worker brings
        that the group has not run yet (see :meth:`unseen`)."""

    def forget(self) -> None:
        """Partitions moved: sweep what is assigned next again (it may hold features another
        worker of an older version wrote meanwhile)."""
        self.swept.clear()
        self._stopping = False

    def pending(self, partitions: Iterable[int]) -> frozenset[int]:
        """Which of ``partitions`` are not swept yet."""
        return frozenset(partitions) - self.swept

    async def stop(self, timeout: float) -> None:
        """A rebalance is revoking partitions: stop after the chunk in flight, and wait (at
        most ``timeout`` seconds) until it is durable."""
        self._stopping = True
        try:
            await asyncio.wait_for(self.lapp.turn.acquire(), timeout)
        except TimeoutError:
            log.warning("the workflow migration did not finish its chunk in %.0fs", timeout)
            return
        self.lapp.turn.release()

    async def sweep(self, partitions: Iterable[int]) -> SweepResult:
        """Check and migrate every feature of ``partitions`` not swept yet (restored: the
        caller knows). The caller holds :attr:`LifecycleApp.turn`.

        Raises:
            WorkflowRefused: features of these partitions run under a newer version, or
                sit in a stage the new version drops without a ``migrate`` entry; nothing
                was migrated.
        """
        todo = self.pending(partitions)
        if not todo:
            return SweepResult(todo, 0, 0)
        lapp = self.lapp
        if not self.recorded:
            self.unseen(lapp.assignment())
        looked_at, states, parts = self._candidates(todo)
        refusals(lapp.workflows.by_name.values(), states)
        if not self.recorded:
            await lapp.record_versions()
            self.recorded = True
        stale = [
            s.id
            for s in states
            if s.workflow in lapp.workflows.by_name
            and needs_migration(s, lapp.workflows.by_name[s.workflow])
        ]
        migrated = 0
        for start in range(0, len(stale), self.chunk):
            if self._stopping:
                log.info("workflow migration paused by a rebalance after %d features", migrated)
                return SweepResult(frozenset(), looked_at, migrated)
            migrated += await self._migrate(stale[start : start + self.chunk])
        await self._discard_stray(todo, parts)
        self.swept |= todo
        if stale:
            log.info(
                "partitions %s: %d of %d features migrated to the current workflow versions",
                sorted(todo),
                migrated,
                looked_at,
            )
        return SweepResult(todo, looked_at, migrated)

    def unseen(self, owned: frozenset[int]) -> None:
        """Refuse a new version that drops stages without ``migrate`` entries when this
        worker, before it records the version, does not own every partition.

        Counting the features in a dropped stage is sound only over every partition: a
        worker that owns some of them would find none in its own, record the new version
        and migrate, while a worker owning the others refuses; the group would then run the
        new version on half its features, and the fix needs yet another version. A worker
        that owns every partition counts (:func:`refusals`); one that does not refuses
        each such stage, whether or not features sit there. A version the group already
        recorded was judged when it was recorded, and is not judged again.

        Raises:
            WorkflowRefused: such stages, and this worker does not own every partition.
        """
        total = self.lapp.config.partitions
        if len(owned) >= total:
            return
        problems = [
            unseen_message(self.lapp.workflows.by_name[name], older, stages, len(owned), total)
            for name, (older, stages) in sorted(self.dropped.items())
            if stages and name in self.lapp.workflows.by_name
        ]
        if problems:
            raise WorkflowRefused("\n".join(problems))

    def _candidates(self, todo: frozenset[int]) -> tuple[int, list[FeatureState], list[str]]:
        """How many features ``todo`` holds; the state of each that may not run the
        current version of its workflow: every feature changed since the last write, and
        every restored record that does not plainly say so (:func:`runs_current`), so the
        common start-up, nothing to migrate, costs no decoding of whole records; and the
        keys of the parts of large records in ``todo``."""
        lapp = self.lapp
        count = lapp.config.partitions
        current = {wf.name.encode(): wf.version for wf in lapp.workflows.by_name.values()}
        pending = set(lapp.store.pending)
        maybe: list[str] = [f for f in pending if key_partition(f, count) in todo]
        parts: list[str] = []
        looked_at = len(maybe)
        for fid, value in list(lapp.table.items()):
            if is_part(fid):  # read through its feature's header
                if key_partition(part_owner(fid), count) in todo:
                    parts.append(fid)
                continue
            if fid in pending or key_partition(fid, count) not in todo:
                continue
            looked_at += 1
            if not runs_current(value, current):
                maybe.append(fid)
        states = [s for s in map(lapp.store.get, maybe) if s is not None]
        return looked_at, states, parts

    async def _discard_stray(self, todo: frozenset[int], parts: list[str]) -> None:
        """Delete the parts of large records no header names (a crash between a record's
        writes left them; :meth:`FaustTableStore.stray_parts`), through the commit order."""
        lapp = self.lapp
        stray = lapp.store.stray_parts(parts)
        if not stray:
            return
        lapp.store.discard(stray)
        await lapp.write_changes()
        log.info(
            "partitions %s: %d parts of table records an interrupted write left were deleted",
            sorted(todo),
            len(stray),
        )

    async def _migrate(self, features: list[str]) -> int:
        """Migrate ``features`` and make it durable: stage changes acknowledged first, then
        the table records in the checkpoint's commit order."""
        lapp = self.lapp
        now = lapp.clock()
        done = 0
        for fid in features:
            outcome = lapp.engine.migrate(fid, now)
            if outcome is None:
                continue
            done += 1
            await lapp.agent.announce(outcome)
        # A crash between the two steps publishes these stage changes again (same ids)
        # when the features, still at the old version, are migrated again: never lost.
        await lapp.committer.delivered()
        await lapp.write_changes()
        return done


VERSION_FIELD = b'"workflow_version":'
WORKFLOW_FIELD = b'"workflow":"'


def runs_current(value: object, current: dict[bytes, int]) -> bool:
    """Whether a raw table record plainly runs the current version of its workflow
    (``current``: workflow name -> version), read without decoding the record.

    Looks for the state's ``"workflow":"..."`` and its last ``"workflow_version":N``: in
    the JSON of a record no other unescaped occurrence can come after the state's version
    (user-named keys only hold numbers or objects, and history lines have neither field).
    ``False`` whenever in doubt (another record format, a field not found), and the record
    is then decoded in full: a wrong ``False`` costs time, never a migration.
    """
    if not isinstance(value, bytes):
        return False
    at = value.rfind(VERSION_FIELD)
    named = value.find(WORKFLOW_FIELD)
    if at < 0 or named < 0:
        return False
    start = at + len(VERSION_FIELD)
    end = start
    while end < len(value) and 48 <= value[end] <= 57:  # ASCII digits
        end += 1
    if end == start or end - start > 9 or value[end : end + 1] not in (b",", b"}"):
        return False
    name_start = named + len(WORKFLOW_FIELD)
    name_end = value.find(b'"', name_start)
    if name_end < 0:
        return False
    return current.get(value[name_start:name_end]) == int(value[start:end])


def refusals(workflows: Iterable[Workflow], states: list[FeatureState]) -> None:
    """Raise :class:`WorkflowRefused` listing every reason ``states`` cannot run under
    ``workflows`` (a newer version already runs; an occupied stage gone and unmapped)."""
    problems = []
    for wf in workflows:
        newer = newer_versions(wf, states)
        if newer:
            problems.append(newer_message(wf, newer))
        unmapped = unmapped_stages(wf, states)
        if unmapped:
            problems.append(unmapped_message(wf, unmapped))
    if problems:
        raise WorkflowRefused("\n".join(problems))


__all__ = ["SweepResult", "VersionSweep", "WorkflowRefused", "refusals", "runs_current"]
