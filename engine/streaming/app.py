"""The Faust app of a streaming worker: topics, the feature table and the events agent.

Built by :func:`create_app` from plain values (:class:`StreamingConfig`), so tests and the
benchmark build one without environment variables; :mod:`engine.streaming.worker` is the
composition root that reads the settings, adds the HTTP API and runs it.

The agent is thin (STYLE.md 4): per batch of records it decodes each one, applies it with
:meth:`engine.service.Engine.apply` against the table store, sends one CloudEvent per stage
change to the transitions topic and every malformed record to the dead-letter topic, then
writes each changed feature's table record once.

Under ``at_least_once`` (the default) one batch goes through these steps, in this order:

1. each record is decoded and applied (to the store's cache); a record that fails in any
   way, at decoding or applying, is dead-lettered with the reason and nothing else of the
   batch is affected;
2. the changelog records, stage changes, risk signals and dead letters go to the producer
   as whole Kafka batches per partition (:class:`~engine.streaming.outbox.Outbox`), and the
   agent waits until the broker acknowledged every one (``acks=all``);
3. only then are the table records written to the local RocksDB, so local state is never
   ahead of its changelog: after a kill -9 a redelivered record is skipped only if its
   effect is already in the changelog, and a restore from the changelog loses nothing;
4. the batch's last offsets go to the :class:`~engine.streaming.checkpoint.Checkpoint`,
   the one source of the offsets Faust commits for the events topic.

If step 2 fails the worker stops without acknowledging anything, so the batch is delivered
again. Delivery is at least once; the per-feature input offset kept in the table record
makes a redelivered record a no-op. Under ``exactly_once`` the outputs keep Faust's
transactional path (slower, and without the ordering of step 3). Concurrency stays 1
(faust-streaming issue 606).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
import faust.streams as faust_streams
from faust.types import TP

from engine.forecast import Forecaster
from engine.kafka_security import PLAINTEXT, KafkaSecurity
from engine.observe import Recorder
from engine.processor import APPLIED, Outcome
from engine.risk_monitor import RiskMonitor
from engine.risk_signals import RiskSignal, SignalHistory
from engine.service import Engine
from engine.state import HistoryEntry
from engine.stores.faust_table import FaustTableStore
from engine.streaming import codec
from engine.streaming.checkpoint import ADMIT, DROP, Checkpoint, GapProbe
from engine.streaming.codec import key_partition
from engine.streaming.outbox import Outbox
from events.builder import ENGINE_SOURCE, cloud_event
from events.envelope import Event, utc_now
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows

log = logging.getLogger(__name__)

STAGE_CHANGED = "lifecycle.stage.changed"
"""CloudEvent type of the records of the transitions topic."""
TABLE_NAME = "features"


@dataclass(frozen=True)
class StreamingConfig:
    """Plain settings of one worker.

    Attributes:
        app_id: the Faust app id: the consumer group, and the prefix of the changelog topic.
        broker: ``kafka://host:port[;host:port]``.
        data_dir: where the table's RocksDB files live (one folder per app id).
        canonical_url: the base URL of this worker's HTTP API, which other workers use to
            route reads of the features this worker owns.
        store: ``rocksdb://`` (RocksDB via rocksdict) in production, ``memory://`` in unit tests.
        batch_size / batch_within: at most this many records per batch, waiting at most
            this many seconds to fill one.
    """

    app_id: str = "lifecycle"
    broker: str = "kafka://127.0.0.1:9092"
    data_dir: Path = Path("var/worker")
    canonical_url: str = "http://127.0.0.1:8000"
    partitions: int = 8
    events_topic: str = "lifecycle.events"
    transitions_topic: str = "lifecycle.transitions"
    dlq_topic: str = "lifecycle.events.dlq"
    processing_guarantee: str = "at_least_once"
    store: str = "rocksdb://"
    """``rocksdb://`` is RocksDB through ``rocksdict`` (Faust uses it when installed)."""
    batch_size: int = 1000
    batch_within: float = 0.05
    session_timeout: float = 15.0
    """Seconds before the group gives a silent worker's partitions to the others."""
    instance_id: str | None = None
    """Kafka static membership: a restart with the same id keeps its partitions."""
    max_products: int = 100
    """Distinct ``product`` labels of the feature gauges; later products count as ``other``."""
    source: str = ENGINE_SOURCE
    """``source`` of the stage-change CloudEvents this worker publishes."""
    security: KafkaSecurity = PLAINTEXT
    """TLS and SASL of every Kafka client of the worker (Faust's and the gap probe)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """More ``faust.App`` settings (e.g. ``broker_commit_every``)."""


def faust_settings(config: StreamingConfig) -> dict[str, Any]:
    """The ``faust.App`` settings of a worker (``bench/streaming.py`` measures a bare agent
    on the same ones)."""
    return {
        "broker": config.broker,
        "store": config.store,
        "datadir": str(config.data_dir),
        "topic_partitions": config.partitions,
        "processing_guarantee": config.processing_guarantee,
        "web_enabled": False,
        "canonical_url": config.canonical_url,
        "autodiscover": False,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_linger": 0.005,  # lets changelog and transition records share requests
        "producer_max_batch_size": 512 * 1024,  # a batch's records go as whole Kafka batches
        "broker_session_timeout": config.session_timeout,
        "broker_heartbeat_interval": min(3.0, config.session_timeout / 5),
        "consumer_group_instance_id": config.instance_id,
        "broker_credentials": config.security.faust_credentials(),
        **config.extra,
    }


def make_current(record: Any) -> None:
    """Make ``record`` the current event of this task, as Faust does when a stream yields it.

    Faust finds the partition of a table write (its changelog partition and RocksDB
    partition store) and, under exactly-once, the transaction of a send from the current
    event. A batch from ``take_events`` has none of its own, so the agent sets it per record.
    Only the task's context variable is set, never ``Stream.current_event``: ``take_events``
    reads that attribute to collect the events it acknowledges.
    """
    faust_streams._current_event.set(weakref.ref(record))


def stage_changed(outcome: Outcome, event_id: str, source: str, ce_source: str) -> dict[str, Any]:
    """The CloudEvent announcing a stage change (``outcome`` applied, from != to).

    Its ``id`` is derived from the cause (``source``, ``event_id``), so if a crash makes the
    worker publish it again, consumers see the same id and can drop the repeat.
    """
    digest = hashlib.sha1(f"{source}\x1f{event_id}".encode()).hexdigest()
    state = outcome.state
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
        },
    )


def is_stage_change(outcome: Outcome) -> bool:
    """Whether an outcome moved an existing feature to another stage."""
    return (
        outcome.outcome == APPLIED
        and outcome.from_stage is not None
        and outcome.from_stage != outcome.to_stage
    )


class LifecycleApp:
    """One worker's Faust app, its topics and table, and the engine its agent drives.

    Args:
        config: the worker's settings.
        workflows: the loaded workflow definitions.
        metrics: the worker's metrics bundle; ``None`` counts nothing.
        clock: the edge's clock for ``received_at`` (tests pass a fixed one).
    """

    def __init__(
        self,
        config: StreamingConfig,
        workflows: Workflows,
        metrics: LifecycleMetrics | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.workflows = workflows
        self.metrics = metrics
        self.clock = clock
        self.app = faust.App(config.app_id, **faust_settings(config))
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw"}
        self.events = self.app.topic(
            config.events_topic,
            partitions=config.partitions,
            internal=True,
            value_serializer="raw",
            **raw,
        )
        self.transitions = self.app.topic(
            config.transitions_topic,
            partitions=config.partitions,
            internal=True,
            value_serializer="raw",
            **raw,
        )
        self.dlq = self.app.topic(
            config.dlq_topic,
            partitions=config.partitions,
            internal=True,
            value_serializer="raw",
            **raw,
        )
        self.table = self.app.Table(
            TABLE_NAME,
            key_type=str,
            value_type=bytes,  # raw: the store encodes its own JSON record
            partitions=config.partitions,
        )
        self.store = FaustTableStore(self.table)
        self.recorder = (
            Recorder(metrics, workflows.event_types, max_products=config.max_products)
            if metrics is not None
            else None
        )
        # No restore at construction: the table is empty until Faust recovers it; the worker
        # recounts the gauges once its partitions are recovered (worker.Housekeeping).
        self.engine = Engine(workflows, self.store, self.recorder)
        # Risk: reasons kept current as events arrive (and by the worker's timer as time
        # passes). Each signal is a line in its feature's table record (so the changelog
        # carries it, as the embedded history does), and its CloudEvent goes to the
        # transitions topic after each batch.
        self.signals: list[RiskSignal] = []
        self.monitor = RiskMonitor(
            workflows,
            Forecaster(),
            publish=SignalHistory(self.store, self.signals.append),
            metrics=metrics,
            source=config.source,
        )
        self.engine.on_outcome = self.monitor.observe
        self.checkpoint = Checkpoint(config.events_topic)
        """The last input offset durably processed, per partition: what Faust commits."""
        self.direct = config.processing_guarantee != "exactly_once"
        """Send outputs straight through the producer and await them per batch (at least
        once); under exactly-once they go through Faust's transactional buffer instead."""
        self._outbox: Outbox | None = None
        self._probe: GapProbe | None = None
        self._flushing = asyncio.Lock()
        """Held while the outbox is flushed: the agent and the risk timer share it, and
        neither may think its records acknowledged while the other's flush still waits."""
        self._placements: dict[int, _Placed] = {}
        self._persisted: dict[tuple[str, int], int] = {}
        """Changelog offsets acknowledged and not yet recorded in the local store."""
        self.assigned = False
        """Whether the group has assigned this worker its partitions at least once."""
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.agent = self.app.agent(self.events, name=f"{config.app_id}.apply", concurrency=1)(
            self._run
        )

    async def _on_revoked(self, app: Any, /, *args: Any, **kwargs: Any) -> None:
        """Partitions are moving: cached records may soon be written by another worker, and
        their offsets are no longer ours to commit (Faust has committed them by now)."""
        self.store.forget()
        revoked = args[0] if args else ()
        self.checkpoint.forget(tp.partition for tp in revoked if tp.topic == self.events_name)

    async def _on_assigned(self, app: Any, /, *args: Any, **kwargs: Any) -> None:
        """Partitions (maybe the same ones) are ours again: another worker may have written
        them meanwhile, and recovery writes RocksDB directly, so nothing cached holds."""
        self.store.forget()
        self.assigned = True

    def assignment(self) -> frozenset[int]:
        """The events-topic partitions assigned to this worker now (they may still be
        recovering: see :func:`engine.streaming.routing.readable`); empty before the group
        first assigned any, while the consumer is not started."""
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None or not self.assigned:
            return frozenset()
        try:
            tps = consumer.assignment()
        except Exception:  # the consumer thread is starting or stopping
            return frozenset()
        return frozenset(tp.partition for tp in tps if tp.topic == self.config.events_topic)

    @property
    def events_name(self) -> str:
        return self.config.events_topic

    async def _run(self, stream: Any) -> None:
        """The agent: batches of records in, outcomes stored, outputs sent."""
        self.checkpoint.install(self.app.consumer)
        await self.transitions.maybe_declare()
        await self.dlq.maybe_declare()
        async for batch in stream.take_events(self.config.batch_size, self.config.batch_within):
            await self.handle_batch(batch, stream)

    async def handle_batch(self, batch: list[Any], stream: Any) -> None:
        """Apply a batch of Faust events in order, publish and store what they changed, then
        mark them done in the checkpoint (the order is the module docstring's)."""
        received_at = self.clock()
        last_of: dict[str, Any] = {}
        admitted = []
        for record in batch:
            if not await self.admit(record.message):
                continue
            admitted.append(record.message)
            make_current(record)
            # Engine.apply times each event and marks the last one processed.
            fid = await self.handle(record, received_at)
            if fid is not None:
                last_of[fid] = record

        if self.direct:
            writes = await self.queue_changelog(last_of)
            await self._send_signal_events()  # ends by awaiting every record of the batch
            self.write_local(writes)
        else:
            self.store.flush(lambda fid: make_current(last_of.get(fid) or self._placed(fid)))
            await self._send_signal_events()
        for message in admitted:
            self.checkpoint.done(message.partition, message.offset)

    async def admit(self, message: Any) -> bool:
        """Whether to process a record now: it must be the next of its partition, or an
        earlier one delivered again (see :mod:`engine.streaming.checkpoint`). A jump over
        records that exist makes the worker seek the partition back to the first of them."""
        tp = TP(self.config.events_topic, message.partition)
        consumer: Any = self.app.consumer
        committed = consumer._committed_offset.get(tp)
        verdict = self.checkpoint.admit(message.partition, message.offset, committed)
        if verdict == ADMIT:
            return True
        if verdict == DROP:
            return False
        expected = self.checkpoint.expected(message.partition, committed)
        first = await self.probe.first_at_or_after(message.partition, expected)
        if first == message.offset:
            self.checkpoint.gap(message.partition, message.offset)
            return True
        resume = expected if first is None else first
        log.warning(
            "partition %s: offset %s arrived, %s expected, and the broker has %s: records "
            "were skipped; seeking back to %s",
            message.partition,
            message.offset,
            expected,
            "nothing yet" if first is None else f"offset {first}",
            resume,
        )
        self.checkpoint.seek(message.partition, resume)
        await consumer.seek(tp, resume)
        return False

    async def close(self) -> None:
        """Release what the app opened beside Faust (the gap probe's consumer)."""
        if self._probe is not None:
            await self._probe.close()

    @property
    def probe(self) -> GapProbe:
        if self._probe is None:
            isolation = "read_uncommitted" if self.direct else "read_committed"
            self._probe = GapProbe(
                bootstrap_servers(self.config.broker),
                self.config.events_topic,
                isolation,
                self.config.security.aiokafka(),
            )
        return self._probe

    async def queue_changelog(self, last_of: dict[str, Any]) -> list[tuple[Any, str, bytes]]:
        """Queue each changed feature's changelog record in the outbox (partition: its last
        event's partition); returns the local writes to make once they are acknowledged.

        Same key and value bytes as Faust's own table write, so recovery from the changelog
        restores exactly these records.
        """
        table: Any = self.table  # serializers and store are not on Faust's TableT
        changelog = table.changelog_topic
        topic = changelog.get_topic_name()
        outbox = self.outbox
        writes = []
        for fid, value in self.store.drain():
            record = last_of.get(fid) or self._placed(fid)
            key_bytes, _ = changelog.prepare_key(fid, table.key_serializer)
            value_bytes, _ = changelog.prepare_value(value, table.value_serializer)
            await outbox.add(topic, key_bytes, value_bytes, partition=record.message.partition)
            writes.append((record, fid, value))
        return writes

    def write_local(self, writes: list[tuple[Any, str, bytes]]) -> None:
        """Write table records to the local store, after their changelog records are
        acknowledged (never before: local state is never ahead of its changelog)."""
        data: Any = self.table.data
        for record, fid, value in writes:
            make_current(record)  # the RocksDB partition written
            data[fid] = value
        for (topic, partition), offset in self._persisted.items():
            # What Faust's own changelog callback keeps: where recovery resumes reading.
            data.set_persisted_offset(TP(topic, partition), offset)
        self._persisted.clear()

    @property
    def outbox(self) -> Outbox:
        """The records sent directly, on the app's (started, non-transactional) producer."""
        if self._outbox is None:
            producer: Any = self.app.producer
            self._outbox = Outbox(producer._ensure_producer())  # the aiokafka producer
        return self._outbox

    async def delivered(self) -> None:
        """Send the records queued in the outbox and wait until the broker acknowledged
        them all (``acks=all``); raises if one failed, so the batch is never acknowledged."""
        async with self._flushing:
            if self._outbox is None or not len(self._outbox):
                return
            try:
                written = await self._outbox.flush()
            except Exception as err:
                # Faust would restart the agent on the next records and later commit past
                # this batch: stop the worker instead, so its records are delivered again.
                log.exception("publishing the batch's records failed; stopping the worker")
                await self.app.crash(err)
                raise
            changelog = self.table.changelog_topic.get_topic_name()
            for (topic, partition), offset in written.items():
                if topic == changelog:
                    self._persisted[(topic, partition)] = offset

    async def _send(self, topic: Any, key: bytes, value: bytes) -> None:
        headers = [("content-type", b"application/cloudevents+json")]
        if not self.direct:
            # Buffered: Faust flushes its producer buffer before it commits the offsets.
            topic.send_soon(key=key, value=value, headers=headers)
            return
        await self.outbox.add(topic.get_topic_name(), key, value, headers)

    def _placed(self, feature_id: str) -> _Placed:
        """A stand-in current event for a table write no record of this batch caused (a
        risk signal's history line): the events-topic partition that owns the feature.

        One per partition, kept: :func:`make_current` holds only a weak reference.
        """
        partition = key_partition(feature_id, self.config.partitions)
        placed = self._placements.get(partition)
        if placed is None:
            placed = self._placements[partition] = _Placed(self.config.events_topic, partition)
        return placed

    async def send_signals(self) -> None:
        """Publish the risk signals raised outside a batch (by the worker's risk timer).

        Their history lines, already in the features' cached table records, are written the
        way a batch writes its records (changelog acknowledged, then the local store), and
        their CloudEvents go to the transitions topic, at least once.
        """
        if self.direct:
            writes = await self.queue_changelog({})
            await self._send_signal_events()
            self.write_local(writes)
        else:
            self.store.flush(lambda fid: make_current(self._placed(fid)))
            await self._send_signal_events()

    async def _send_signal_events(self) -> None:
        """Send the risk CloudEvents (``feature.at_risk``/``risk_cleared``) raised so far and
        wait for every record queued (at least once, like stage changes)."""
        pending = self.signals[:]
        self.signals.clear()  # keep the list object: ``publish`` is bound to its append
        for signal in pending:
            key = signal.feature.encode("utf-8")
            await self._send(self.transitions, key, codec.encode(signal.cloud_event))
        await self.delivered()

    async def handle(self, record: Any, received_at: datetime) -> str | None:
        """Process one record; returns the feature it touched (``None``: none).

        Never raises for a fault of the record: whatever fails while decoding or applying
        it (a malformed event, or anything unforeseen) dead-letters this record with the
        reason, and the batch goes on. Only a failure to publish raises.
        """
        message = record.message
        try:
            event = self._decode(message, received_at)
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

    def _decode(self, message: Any, received_at: datetime) -> Event | None:
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
        stored = self.store.offset(event.feature)
        if stored is not None and offset <= stored:
            await self._resend(event)
            return event.feature
        self.store.position = offset
        try:
            outcome = self.engine.apply(event, received_at)
        finally:
            self.store.position = None
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

    async def _send_transition(self, outcome: Outcome, event_id: str, source: str) -> None:
        value = codec.encode(stage_changed(outcome, event_id, source, self.config.source))
        await self._send(self.transitions, outcome.feature.encode("utf-8"), value)

    async def dead_letter(self, message: Any, letter: codec.DeadLetter) -> None:
        """Send a record to the dead-letter topic as it came, with the reason in a header.

        Under at-least-once it goes through the outbox with the batch's other outputs, so
        the batch is acknowledged only once its dead letters are written too.
        """
        headers = codec.dead_letter_headers(
            message.headers,
            letter,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        key = message.key
        value, headers = codec.dead_letter_value(message.value, headers)
        if self.direct:
            await self.outbox.add(self.dlq.get_topic_name(), key, value, headers)
        else:
            await self.dlq.send(key=key, value=value, headers=headers)
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


@dataclass(frozen=True)
class _Message:
    topic: str
    partition: int


class _Placed:
    """What Faust reads of a current event to place a table write: ``message.topic`` and
    ``message.partition`` (see :func:`make_current`)."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


def _unforeseen(err: BaseException) -> codec.DeadLetter:
    """The dead letter of a record whose decoding or applying raised unexpectedly."""
    return codec.DeadLetter(codec.PROCESSING_ERROR, f"{type(err).__name__}: {err}")


def bootstrap_servers(broker: str) -> str:
    """``kafka://a:9092;b:9092`` (Faust's form) as ``a:9092,b:9092`` (Kafka clients' form)."""
    hosts = []
    for part in broker.replace(",", ";").split(";"):
        part = part.strip()
        if part:
            hosts.append(part.split("://", 1)[-1])
    return ",".join(hosts)


def create_app(
    config: StreamingConfig,
    workflows: Workflows,
    metrics: LifecycleMetrics | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> LifecycleApp:
    """A worker's Faust app; not started (a :class:`faust.Worker` runs it)."""
    return LifecycleApp(config, workflows, metrics, clock)


__all__ = ["STAGE_CHANGED", "LifecycleApp", "StreamingConfig", "create_app"]
