"""One step of the engine around the pure processor: load, process, commit, count.

Used by the embedded HTTP engine and by the Faust agent alike, so both modes apply events
the same way. Not thread-safe: callers apply the events of one feature one at a time.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from engine.core.processor import IGNORED, Outcome, process
from engine.evolve.migration import migrated, needs_migration
from engine.observe import Recorder
from engine.stores.base import FeatureStore, TrackingStore
from events.envelope import Event
from workflows.loader import Workflows

log = logging.getLogger(__name__)


class Engine:
    """Applies events to a store and records metrics.

    Args:
        workflows: the loaded workflow definitions.
        store: where states and histories live.
        recorder: metrics; ``None`` in tests that do not look at metrics.
        on_outcome: called with every outcome and its ``received_at`` after the commit
            (e.g. :meth:`engine.risk.monitor.RiskMonitor.observe`); may be set later.
    """

    def __init__(
        self,
        workflows: Workflows,
        store: FeatureStore,
        recorder: Recorder | None = None,
        on_outcome: Callable[[Outcome, datetime], Any] | None = None,
    ) -> None:
        self.workflows = workflows
        self.store = store
        self.recorder = recorder
        self.on_outcome = on_outcome
        self._versions = {name: wf.version for name, wf in workflows.by_name.items()}

    def migrate(self, feature_id: str, now: datetime) -> Outcome | None:
        """Move a feature met under an older version of its workflow to the current one and
        commit it (exactly once: the new version is stored with it); ``None``: nothing to do
        (unknown, current, or its stage is gone and unmapped, which start-up refuses).

        The embedded mode migrates every feature at start-up (:mod:`engine.evolve.apply`);
        a streaming worker migrates every feature of its partitions once they are restored
        (:mod:`engine.streaming.migrate`), and at a feature's next event (before it) should
        one have been missed. The caller publishes the outcome's stage change, if any.
        """
        state = self.store.get(feature_id)
        if state is None:
            return None
        workflow = self.workflows.by_name.get(state.workflow)
        if workflow is None or not needs_migration(state, workflow):
            return None
        try:
            outcome = migrated(state, workflow, now)
        except ValueError:
            log.warning(
                "%s: stage %r is gone from workflow %r version %d and not in migrate",
                state.id,
                state.stage,
                workflow.name,
                workflow.version,
            )
            return None
        if outcome is None or outcome.state is None:
            return None
        self.store.commit(outcome)
        try:
            if self.recorder is not None:
                self.recorder.changed(outcome)
            if self.on_outcome is not None:
                self.on_outcome(outcome, now)
        except Exception:
            log.exception("after migrating %s", state.id)
        return outcome

    def apply(self, event: Event, received_at: datetime, position: int | None = None) -> Outcome:
        """Apply one valid event and persist its outcome; returns the outcome.

        Args:
            position: where the event was read (a consumer offset), stored with the outcome;
                the store must then be a :class:`~engine.stores.base.TrackingStore`.
        """
        started = time.perf_counter()
        state = self.store.get(event.feature)
        if state is not None and state.workflow_version < self._versions.get(
            state.workflow, state.workflow_version
        ):
            self.migrate(event.feature, received_at)
            state = self.store.get(event.feature)
        outcome = process(self.workflows, state, event, received_at)
        if outcome.outcome != IGNORED:
            if position is None:
                self.store.commit(outcome)
            elif _tracks(type(self.store)):
                cast(TrackingStore, self.store).commit_at(outcome, position)
            else:
                raise TypeError(f"{type(self.store).__name__} does not track positions")
        # Committed: the event is applied whatever happens next. A failure of what follows
        # is logged, never raised, or the caller would refuse (or dead-letter) an event the
        # store already holds, and a redelivery would find it a duplicate.
        recorder = self.recorder
        try:
            if recorder is not None:
                recorder.record(outcome, event.type)
                recorder.latency.observe(time.perf_counter() - started)
                recorder.last_processed.value = time.time()
        except Exception:
            log.exception("metrics after applying %s to %s", event.type, event.feature)
        try:
            if self.on_outcome is not None:
                self.on_outcome(outcome, received_at)
        except Exception:
            log.exception("after applying %s to %s", event.type, event.feature)
        return outcome

    def ignored(self) -> None:
        """Count an event outside every workflow (it never reaches the processor); its type
        is counted as ``unknown`` (DESIGN.md section 6: no unbounded labels)."""
        if self.recorder is not None:
            self.recorder.m.events.labels("unknown", IGNORED).inc()


@functools.cache
def _tracks(store_class: type) -> bool:
    """Whether a store class is a :class:`TrackingStore`, asked once per class:
    ``isinstance`` against a runtime protocol walks its members on every call (about 19 us,
    5% of a streaming worker's time per event)."""
    return issubclass(store_class, TrackingStore)
