"""What the worker does with one record of the events topic: decode, apply, collect outputs.

No Faust here (STYLE.md 4): the app hands the :class:`Agent` each record's message, and the
agent hands back the feature it touched while its outputs (a stage-change CloudEvent per
move, a dead letter per refused record, risk signals) go to ``publish``, which the app points
at the batch's outbox (at least once) or at Faust's transactional producer (exactly once).
When and in which order all of that becomes durable is the checkpoint's business.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from engine.core.processor import APPLIED, Outcome
from engine.core.state import HistoryEntry
from engine.risk.signals import RiskSignal
from engine.service import Engine
from engine.stores.faust_table import FaustTableStore
from engine.streaming import codec
from events.builder import cloud_event
from events.envelope import Event
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows

log = logging.getLogger(__name__)

STAGE_CHANGED = "lifecycle.stage.changed"
"""CloudEvent type of the records of the transitions topic."""
CLOUDEVENT_HEADERS = [("content-type", b"application/cloudevents+json")]

Publish = Callable[[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]]], Awaitable[None]]
"""Queue one output record: topic, key, value, headers."""


MAX_CAUSE = 32 * 1024
"""Longest ``event_id`` and ``event_source`` a stage change repeats from its cause. A stage
change is its cause's id and source plus a few hundred bytes, so the one of an event at the
broker's size limit would not fit; longer ones are cut, and ``cause_truncated`` gives their
full lengths (the CloudEvent ``id`` still derives from the whole cause)."""


def stage_changed(
    outcome: Outcome, event_id: str, source: str, ce_source: str, *, per_feature: bool = False
) -> dict[str, Any]:
    """The CloudEvent announcing a stage change (``outcome`` applied, from != to).

    Its ``id`` is derived from the cause (``source``, ``event_id``), so if a crash makes the
    worker publish it again, consumers see the same id and can drop the repeat.
    ``per_feature``: the cause is one of the engine's own lines, whose ``event_id`` is the
    same for every feature (a ``workflow.migrated``), so the feature is part of the id too.
    """
    cause = f"{source}\x1f{event_id}" + (f"\x1f{outcome.feature}" if per_feature else "")
    digest = hashlib.sha1(cause.encode()).hexdigest()
    state = outcome.state
    cut = {}
    if len(event_id) > MAX_CAUSE or len(source) > MAX_CAUSE:
        cut = {"cause_truncated": {"event_id": len(event_id), "event_source": len(source)}}
        event_id, source = event_id[:MAX_CAUSE], source[:MAX_CAUSE]
    return cloud_event(
        STAGE_CHANGED,
        outcome.feature,
        id=f"stage-changed-{digest}",
        source=ce_source,
        time=state.entered_stage_at if state is not None else None,
        data={
            "feature": outcome.feature,
            "workflow": outcome.workflow,
            "from_stage": outcome.from_stage,
            "to_stage": outcome.to_stage,
            "skipped": list(outcome.skipped),
            "event_id": event_id,
            "event_source": source,
            "version": state.version if state is not None else None,
            **cut,
        },
    )


def is_stage_change(outcome: Outcome) -> bool:
    """Whether an outcome moved an existing feature to another stage."""
    return (
        outcome.outcome == APPLIED
        and outcome.from_stage is not None
        and outcome.from_stage != outcome.to_stage
    )


class Agent:
    """Decodes, applies and collects the outputs of each record.

    Args:
        workflows: the loaded definitions (event types).
        engine: applies events to ``store`` (a tracking store: the record's offset is the
            position stored with each outcome).
        store: the feature table store.
        publish: where output records go.
        transitions_topic / dlq_topic: the names of the output topics.
        source: ``source`` of the CloudEvents the worker publishes.
        metrics: counts dead letters; ``None`` counts nothing.
    """

    def __init__(
        self,
        *,
        workflows: Workflows,
        engine: Engine,
        store: FaustTableStore,
        publish: Publish,
        transitions_topic: str,
        dlq_topic: str,
        source: str,
        metrics: LifecycleMetrics | None = None,
    ) -> None:
        self.workflows = workflows
        self.engine = engine
        self.store = store
        self.publish = publish
        self.transitions_topic = transitions_topic
        self.dlq_topic = dlq_topic
        self.source = source
        self.metrics = metrics

    async def handle(self, message: Any, received_at: datetime) -> str | None:
        """Process one record's message; returns the feature it touched (``None``: none).

        Never raises for a fault of the record: whatever fails while decoding or applying
        it (a malformed event, or anything unforeseen) dead-letters this record with the
        reason, and the batch goes on. Only a failure to queue an output raises.
        """
        try:
            event = self.decode(message, received_at)
        except codec.Refused as refused:
            await self.dead_letter(message, refused.letter)
            return None
        except Exception as err:
            log.exception(
                "decoding %s/%s/%s failed", message.topic, message.partition, message.offset
            )
            await self.dead_letter(message, _unforeseen(err))
            return None
        if event is None:
            return None
        try:
            return await self.apply(event, message.offset, received_at)
        except Exception as err:
            log.exception("processing %s/%s failed", event.source, event.id)
            await self.dead_letter(message, _unforeseen(err))
            return None

    def decode(self, message: Any, received_at: datetime) -> Event | None:
        """The record's event; ``None`` for a valid CloudEvent outside every workflow
        (counted as ignored). Raises :class:`codec.Refused` with the dead-letter reason."""
        event = codec.decode_record(
            message.key, message.value, message.headers, self.workflows.event_types, received_at
        )
        if event is None:
            self.engine.ignored()
        return event

    async def apply(self, event: Event, offset: int, received_at: datetime) -> str:
        """Apply a valid event unless this record was already applied before a crash."""
        stored = self.store.position(event.feature)
        if stored is not None and offset <= stored:
            await self._resend(event)
            return event.feature
        migration = self.engine.migrate(event.feature, received_at)
        if migration is not None:  # one the start-up sweep missed: before its event
            await self.announce(migration)
        outcome = self.engine.apply(event, received_at, position=offset)
        if is_stage_change(outcome):
            await self._send_transition(outcome, event.id, event.source)
        return event.feature

    async def _resend(self, event: Event) -> None:
        """Publish again the stage change a redelivered record caused (same CloudEvent id).

        Its history line is in the table record, but whether its stage change reached the
        transitions topic before the crash is unknown: at least once, then.
        """
        for entry in self.store.raw_history(event.feature):
            if entry["event_id"] == event.id and entry["source"] == event.source:
                line = HistoryEntry.from_dict(entry)
                state = self.store.get(event.feature)
                if line.outcome == APPLIED and line.from_stage not in (None, line.to_stage):
                    outcome = Outcome(
                        APPLIED,
                        event.feature,
                        state.workflow if state else "",
                        state,
                        state,
                        from_stage=line.from_stage,
                        to_stage=line.to_stage,
                        skipped=line.skipped,
                    )
                    await self._send_transition(outcome, event.id, event.source)

    async def announce(self, migration: Outcome) -> None:
        """Queue the stage change of a migration (``workflow.migrated``), if it moved the
        feature, like any other stage change; its id is derived from the feature and the
        versions, so a migration announced again after a crash carries the same id."""
        if not is_stage_change(migration) or not migration.entries:
            return
        line = migration.entries[-1]
        await self._send_transition(migration, line.event_id, line.source, per_feature=True)

    async def _send_transition(
        self, outcome: Outcome, event_id: str, source: str, *, per_feature: bool = False
    ) -> None:
        change = stage_changed(outcome, event_id, source, self.source, per_feature=per_feature)
        value = codec.encode(change)
        key = outcome.feature.encode("utf-8")
        await self.publish(self.transitions_topic, key, value, CLOUDEVENT_HEADERS)

    async def signal(self, signal: RiskSignal) -> None:
        """Queue a risk CloudEvent (``feature.at_risk`` / ``feature.risk_cleared``)."""
        value = codec.encode(signal.cloud_event)
        key = signal.feature.encode("utf-8")
        await self.publish(self.transitions_topic, key, value, CLOUDEVENT_HEADERS)

    async def dead_letter(self, message: Any, letter: codec.DeadLetter) -> None:
        """Send a record to the dead-letter topic as it came, with the reason in a header
        (through ``publish``, so the batch is acknowledged only once it is written too)."""
        headers = codec.dead_letter_headers(
            message.headers,
            letter,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        value, headers = codec.dead_letter_value(message.value, headers)
        key, cut = codec.dead_letter_key(message.key)
        await self.publish(self.dlq_topic, key, value, [*headers, *cut])
        if self.metrics is not None:
            self.metrics.dead_letters.labels(letter.reason).inc()
        log.warning(
            "dead-lettered %s/%s/%s: %s (%s)",
            message.topic,
            message.partition,
            message.offset,
            letter.reason,
            letter.detail,
        )


def _unforeseen(err: BaseException) -> codec.DeadLetter:
    """The dead letter of a record whose decoding or applying raised unexpectedly."""
    return codec.DeadLetter(codec.PROCESSING_ERROR, f"{type(err).__name__}: {err}")


__all__ = ["STAGE_CHANGED", "Agent", "Publish", "is_stage_change", "stage_changed"]
