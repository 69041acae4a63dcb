"""The Faust app of a streaming worker: topics, the feature table, and the loop that feeds
the agent batch by batch.

Built by :func:`create_app` from plain values (:class:`StreamingConfig`), so tests and the
benchmark build one without environment variables; :mod:`engine.streaming.worker` is the
composition root that reads the settings, adds the HTTP API and runs it.

Per batch of records, handed by Faust's fetch loop to the agent through the
:class:`~engine.streaming.checkpoint.Inbox` (not through Faust's stream):

1. each record is admitted only in order (:meth:`Checkpoint.admit`; a jump is checked with
   the :class:`~engine.streaming.probe.GapProbe` and sought back when records were skipped);
2. the :class:`~engine.streaming.agent.Agent` decodes and applies it; a record that fails in
   any way is dead-lettered and nothing else of the batch is affected;
3. each changed feature's table record is queued for the changelog, with the batch's other
   outputs, in the :class:`~engine.streaming.outbox.Outbox` (whole Kafka batches per
   partition);
4. the :class:`~engine.streaming.checkpoint.Committer` makes it durable in its order:
   outputs acknowledged, local table written, offsets done (Faust then commits them).
   At least once, the next batch is applied while the broker acknowledges this one's
   records (``pipeline_depth``); offsets are done batch after batch, each only once its
   own records and every earlier batch's are acknowledged, and a rebalance or a stop
   waits for the batches in flight before it commits.

Delivery is at least once; the per-feature input offset kept in the table record makes a
redelivered record a no-op. Under ``exactly_once`` the outputs go into the open
transaction of their input partition (the changelog through Faust's producer buffer, stage
changes and dead letters directly,
:func:`~engine.streaming.checkpoint.send_in_transaction`); a batch's offsets are
done only once the buffer has handed its records over, and Faust's commits wait until no
batch is half-way, so a commit of the offsets commits all of the batch's outputs. The local
table is trusted after a clean stop only (:meth:`LifecycleApp.prepare_local_state`).
Concurrency stays 1 (faust-streaming issue 606).

A clean stop (SIGTERM) ends with :meth:`LifecycleApp._last_commit`: everything applied is
committed, with its outputs, before the worker leaves the group, and nothing is written
after it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from engine.config.kafka_security import PLAINTEXT, KafkaSecurity
from engine.observe import Recorder
from engine.risk.forecast import Forecaster
from engine.risk.monitor import REFRESH_SLICE, RiskMonitor
from engine.risk.signals import RiskSignal, SignalHistory
from engine.service import Engine
from engine.stores.faust_table import FaustTableStore
from engine.streaming.agent import STAGE_CHANGED, Agent, is_stage_change, stage_changed
from engine.streaming.checkpoint import (
    ADMIT,
    DROP,
    Checkpoint,
    Committer,
    Inbox,
    aiokafka_producer,
    around_commit,
    around_last_commit,
    committed_offset,
    end_transactions,
    handed_over,
    keep_changelog_on_resume,
    make_current,
    pending_commits,
    read_any_partition,
    seek_consumer,
    send_in_transaction,
    started_consumer,
)
from engine.streaming.codec import key_partition
from engine.streaming.migrate import VersionSweep, WorkflowRefused
from engine.streaming.outbox import Outbox
from engine.streaming.probe import GapProbe
from engine.streaming.versions import version_record, versions_topic
from events.builder import ENGINE_SOURCE
from events.envelope import utc_now
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows

log = logging.getLogger(__name__)

TABLE_NAME = "features"
COMMITTED_MARK = "committed"
"""A file in the table's folder (Faust's ``tabledir``), present while the local RocksDB
holds only writes the broker has committed (see :meth:`LifecycleApp.prepare_local_state`)."""


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
    batch_within: float = 0.01
    """Under a steady load a batch waits this long for more records, which every record of
    it then waits too: 50 ms put the time to visible at p99 208-247 ms under 1,000 events/s,
    10 ms at 98-122 ms (``bench/streaming_latency.py``). A backlog fills batches at once."""
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
    migrate_chunk: int = 500
    """Features migrated to a new workflow version per durable write."""
    pipeline_depth: int = 1
    """At least once: how many batches may wait for the broker's acknowledgements while
    the next one is applied (0: each batch waits for its own). Measured by
    ``bench/streaming.py``: see the README's Performance section."""
    events_retention_ms: int = -1
    """``retention.ms`` of the events topic when the worker creates it: -1 keeps every
    event, for it is the log a replay reads (an existing topic keeps its own setting)."""


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
        # The events topic is the event log: created keeping every event (DESIGN 6c).
        self.events = self._topic(
            config.events_topic, config={"retention.ms": str(config.events_retention_ms)}
        )
        self.transitions = self._topic(config.transitions_topic)
        self.dlq = self._topic(config.dlq_topic)
        self.versions = self.app.topic(
            versions_topic(config.app_id),
            partitions=1,
            internal=True,
            compacting=True,
            deleting=False,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        """The workflow versions the group ran (see :mod:`engine.streaming.versions`)."""
        self.table = self.app.Table(
            TABLE_NAME,
            key_type=str,
            value_type=bytes,  # raw: the store encodes its own JSON record
            partitions=config.partitions,
        )
        self.checkpoint = Checkpoint(config.events_topic)
        """The last input offset durably processed, per partition: what Faust commits."""
        self.inbox = Inbox(self.app, config.batch_size, config.batch_within)
        """The events topic's records, from Faust's fetch loop to the agent's batches."""
        self._outbox: Outbox | None = None
        self.committer = Committer(
            self.app,
            self.table,
            self.checkpoint,
            lambda: self.outbox,
            depth=config.pipeline_depth,
        )
        # Reads see the records of batches still waiting for their acknowledgements.
        self.store = FaustTableStore(
            self.table, read=self.committer.read_through(read_any_partition(self.table))
        )
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
        self._history = SignalHistory(self.store, self.signals.append)
        self.monitor = RiskMonitor(
            workflows,
            Forecaster(),
            publish=self._signal,
            metrics=metrics,
            source=config.source,
            refresh_per_tick=REFRESH_SLICE,  # Housekeeping.risks does the rest slice by slice
        )
        self.engine.on_outcome = self.monitor.observe
        self.direct = config.processing_guarantee != "exactly_once"
        """Send outputs straight through the producer and await them per batch (at least
        once); under exactly-once they go through Faust's transactional buffer instead."""
        self._input: int | None = None
        """The events-topic partition of the record being applied (exactly once: its
        outputs join that partition's transaction); ``None`` between records."""
        self._probe: GapProbe | None = None
        self._placements: dict[int, _Placed] = {}
        self.agent = Agent(
            workflows=workflows,
            engine=self.engine,
            store=self.store,
            publish=self._publish,
            transitions_topic=config.transitions_topic,
            dlq_topic=config.dlq_topic,
            source=config.source,
            metrics=metrics,
        )
        self.assigned = False
        """Whether the group has assigned this worker its partitions at least once."""
        self.closed = False
        """Set by the stop's last commit: nothing is written afterwards."""
        self.turn = asyncio.Lock()
        self._turn_holder: asyncio.Task[Any] | None = None
        """The task of the stop's last commit while it holds :attr:`turn` (its commits are
        Faust's, which must not wait for the turn again)."""
        """Held by the agent for each batch, by the workflow migration sweep and by the
        risk timer: each writes the table through the outbox, and none may interleave."""
        self.sweep = VersionSweep(self, chunk=config.migrate_chunk)
        """Migrates the features of restored partitions to the current workflow versions."""
        keep_changelog_on_resume(self.app)  # or standby copies miss changelog records
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.agent(self.events, name=f"{config.app_id}.apply", concurrency=1)(self._run)

    def _topic(self, name: str, config: dict[str, str] | None = None) -> Any:
        return self.app.topic(
            name,
            partitions=self.config.partitions,
            internal=True,
            config=config,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    async def _on_revoked(self, app: Any, /, *args: Any, **kwargs: Any) -> None:
        """Partitions are moving: cached records may soon be written by another worker, and
        their offsets are no longer ours to commit (Faust has committed them by now)."""
        await self._drain("partitions revoked")
        await self.sweep.stop(timeout=self.config.session_timeout / 2)
        self.sweep.forget()
        self.store.forget()
        revoked = args[0] if args else ()
        topic = self.config.events_topic
        self.checkpoint.forget(tp.partition for tp in revoked if tp.topic == topic)

    async def _on_assigned(self, app: Any, /, *args: Any, **kwargs: Any) -> None:
        """Partitions (maybe the same ones) are ours again: another worker may have written
        them meanwhile, and recovery writes RocksDB directly, so nothing cached holds."""
        self.sweep.forget()
        self.store.forget()
        self.assigned = True

    def assignment(self) -> frozenset[int]:
        """The events-topic partitions assigned to this worker now (they may still be
        recovering: see :func:`engine.streaming.routing.readable`); empty before the group
        first assigned any, while the consumer is not started."""
        consumer = started_consumer(self.app)
        if consumer is None or not self.assigned:
            return frozenset()
        try:
            tps = consumer.assignment()
        except Exception:  # the consumer thread is starting or stopping
            return frozenset()
        return frozenset(tp.partition for tp in tps if tp.topic == self.config.events_topic)

    async def _run(self, stream: Any) -> None:
        """The Faust agent: batches of records in, outcomes stored, outputs sent.

        The records come from the :class:`~engine.streaming.checkpoint.Inbox` the fetch
        loop fills, not from Faust's ``stream`` (left unused): see the inbox for what
        Faust's stream layer did that it keeps. A batch's records count as unacknowledged
        for Faust until the batch is applied (or its agent crashed), so a revocation and
        the stop wait for it."""
        self.checkpoint.install(self.app.consumer, self.inbox)
        around_last_commit(self.app.consumer, self._last_commit)
        if not self.direct:
            around_commit(self.app.consumer, self._between_batches)
        await self.transitions.maybe_declare()
        await self.dlq.maybe_declare()
        inbox = self.inbox
        while True:
            batch = await inbox.take()
            try:
                async with self.turn:
                    await self.apply_batch(batch)
            finally:
                inbox.done(batch)

    async def handle_batch(self, batch: Sequence[Any]) -> None:
        """:meth:`apply_batch`, then wait until the batch and every one before it is
        durable and its offsets are done."""
        await self.apply_batch(batch)
        await self.committer.drain()

    async def apply_batch(self, batch: Sequence[Any]) -> None:
        """Steps 1 to 4 of the module docstring for one batch of Faust events (after the
        workflow migration of partitions not swept yet: their records are here, so they
        are restored). At least once, returns with up to ``pipeline_depth`` batches (this
        one included) still waiting for the broker's acknowledgements."""
        partitions = {record.message.partition for record in batch}
        if self.sweep.pending(partitions) and not await self.migrate(partitions):
            return
        received_at = self.clock()
        last_of: dict[str, Any] = {}
        admitted = []
        for record in batch:
            message = record.message
            if not await self.admit(message):
                continue
            admitted.append(message)
            make_current(record)
            self._input = message.partition
            try:
                # Engine.apply times each event and marks the last one processed.
                fid = await self.agent.handle(message, received_at)
            finally:
                self._input = None
            if fid is not None:
                last_of[fid] = record
        await self._write(last_of, admitted)

    async def _write(self, last_of: dict[str, Any], admitted: Sequence[Any]) -> None:
        """Queue the changed table records and the signals, and make them durable in the
        checkpoint's order (a table write no record caused, a risk signal's history line,
        is placed on the partition that owns its feature).

        Under exactly-once the records go through Faust's producer buffer; the batch's
        offsets are marked done only once the buffer has handed them to their transactional
        producers, so a commit of those offsets commits them too. After the stop's last
        commit (:meth:`_last_commit`) nothing is written: the records are not done, so the
        next worker applies them, and a timer's risk signals are raised again there."""
        if self.closed:
            log.debug("stopping: %s records left to the next worker", len(admitted))
            return
        if self.direct:
            writes = await self.queue_changelog(last_of)
            await self.queue_signals()
            await self.committer.commit(writes, admitted)
        else:
            placed: list[Any] = []  # make_current keeps only a weak reference

            def current(fid: str) -> None:
                placed.append(last_of.get(fid) or self._placed(fid))
                make_current(placed[-1])

            self.store.flush(current)
            pending = self.signals[:]
            self.signals.clear()
            for signal in pending:  # in the transaction of the partition of its history line
                self._input = (
                    last_of.get(signal.feature) or self._placed(signal.feature)
                ).message.partition
                try:
                    await self.agent.signal(signal)
                finally:
                    self._input = None
            await self._in_transaction()
            self.checkpoint.done_all(admitted)

    async def _in_transaction(self) -> None:
        """Wait until Faust's producer buffer has handed what was queued so far to the
        transactional producers (exactly once). If it cannot, the worker stops (as when the
        outbox fails, :meth:`Committer.delivered`), so the batch is delivered again.

        Raises:
            RuntimeError: the producer buffer stopped or crashed.
        """
        try:
            await handed_over(self.app)
        except RuntimeError as err:
            log.error("the batch's records were not sent (%s); stopping the worker", err)
            await self.app.crash(err)
            raise

    async def _last_commit(self, commit: Callable[[], Awaitable[None]]) -> None:
        """The stop's last commit (Faust calls it once every delivered record is
        acknowledged): commits everything this worker applied, with its outputs, and ends
        the worker's writes.

        Faust also calls it before a rebalance revokes partitions, with the worker going
        on: then it is Faust's commit alone, as before.

        Holding :attr:`turn`, so no batch, migration or risk tick is half-way: under
        exactly-once what the producer buffer still holds (a timer's writes) is handed to
        the transactions first; Faust's commit then commits the offsets done and ends their
        transactions; a commit Faust skipped because its periodic one was running is made
        again; and the transactions still open (records written with no new offset, such as
        risk signals and migrations) are committed too, where Faust would let them be
        aborted. Afterwards :meth:`_write` writes nothing.
        """
        if not self.app.should_stop:  # a rebalance: the worker goes on
            await self._drain("rebalancing")
            await commit()
            return
        async with self.turn:
            self._turn_holder = asyncio.current_task()
            try:
                await self._last_commit_holding_turn(commit)
            finally:
                self._turn_holder = None

    @asynccontextmanager
    async def _between_batches(self) -> AsyncIterator[None]:
        """Under exactly-once, where Faust's commits wait (:func:`around_commit`): until
        no batch, migration chunk or risk tick is half-way, so a transaction holds every
        output of a batch or none."""
        if self._turn_holder is not None and self._turn_holder is asyncio.current_task():
            yield  # the stop's last commit, which holds the turn already
            return
        async with self.turn:
            yield

    async def _last_commit_holding_turn(self, commit: Callable[[], Awaitable[None]]) -> None:
        """:meth:`_last_commit` once it holds :attr:`turn`."""
        if self.closed:  # Faust's consumer calls it again as it stops
            await commit()
            return
        handed = True
        await self._drain("stopping")
        if not self.direct:
            try:
                await handed_over(self.app)
            except RuntimeError:
                log.exception("stopping: the producer buffer failed; committing the rest")
                handed = False
        await commit()
        consumer = self.app.consumer
        for _ in range(3):
            if not pending_commits(consumer):
                break
            await commit()
        if not self.direct:
            await end_transactions(self.app)
        self.closed = True
        if not self.direct and handed:
            self._mark_committed()

    async def _drain(self, why: str) -> None:
        """Wait for the batches still waiting for their acknowledgements (at least once), so
        a commit that follows commits every offset they make done. One that failed has
        stopped the worker (:class:`Committer`): its offsets and later ones stay undone."""
        try:
            await self.committer.drain()
        except Exception:
            log.warning("%s: a batch's records were not acknowledged; its offsets stay undone", why)

    def prepare_local_state(self) -> bool:
        """Discard the local table unless it holds only committed writes; called once before
        Faust opens it. Returns whether it was discarded (Faust then restores it from the
        changelog alone).

        At least once, the local table is written only after the broker acknowledged its
        changelog records, so it is never ahead of the changelog. Exactly once, Faust
        writes RocksDB as the record is applied and the changelog record goes into an open
        transaction: a ``kill -9`` aborts that transaction, and a restart on the same data
        dir would hold state the changelog never had and take its input records, delivered
        again, for applied (their changelog records and stage changes lost for good). So,
        as Kafka Streams does under exactly-once, the local table is trusted only with the
        mark of a clean stop (:meth:`_last_commit`); a worker at least once trusts its own
        writes, and marks the table at once."""
        tables = Path(self.app.conf.tabledir)
        mark = tables / COMMITTED_MARK
        discarded = False
        if tables.exists() and not mark.exists():
            log.warning(
                "%s: the last run did not stop cleanly under exactly-once; the local table "
                "may hold writes of aborted transactions: restoring it from the changelog",
                tables,
            )
            shutil.rmtree(tables)
            discarded = True
        if self.direct:
            tables.mkdir(parents=True, exist_ok=True)
            mark.touch()
        else:
            mark.unlink(missing_ok=True)
        return discarded

    def _mark_committed(self) -> None:
        """The stop committed every transaction: the local table holds nothing else."""
        tables = Path(self.app.conf.tabledir)
        if tables.exists():
            (tables / COMMITTED_MARK).touch()

    async def migrate(self, partitions: Iterable[int]) -> bool:
        """Sweep ``partitions`` (restored) to the current workflow versions; the caller holds
        :attr:`turn`. A refusal is logged, one line per reason, and stops the worker
        (non-zero exit): returns ``False`` then, and nothing of the partitions is applied."""
        try:
            await self.sweep.sweep(partitions)
        except WorkflowRefused as err:
            for line in str(err).splitlines():
                log.error("refused: %s", line)
            await self.app.crash(err)
            return False
        return True

    async def write_changes(self) -> None:
        """Make durable what changed outside a batch (risk signals' history lines, workflow
        migrations): queued with their outputs and written in the checkpoint's order."""
        await self._write({}, ())

    async def record_versions(self) -> None:
        """Record the workflow versions this worker runs in the group's versions topic and
        wait until the broker has them (a later start with a changed file under the same
        version, or an older one, is then refused).

        Through the outbox in both guarantees, outside any transaction: a version record
        is the same bytes however often it is written (a compacted topic), and under
        exactly-once Faust's buffer would only hand it to the producer, sent outside a
        transaction or not at all before a ``kill -9``, with no wait for the broker."""
        await self.versions.maybe_declare()
        topic = self.versions.get_topic_name()
        for workflow in self.workflows.by_name.values():
            key, value = version_record(workflow)
            await self.outbox.add(topic, key, value, ())
        await self.committer.delivered()

    def _signal(self, signal: RiskSignal) -> None:
        """A risk signal from the monitor: written into its feature's history only while
        this worker owns the feature's partition (the monitor may still hold features of a
        partition revoked a moment ago; writing them would race their new owner)."""
        partition = key_partition(signal.feature, self.config.partitions)
        if self.app.rebalancing or partition not in self.assignment():
            log.debug(
                "risk signal for %s dropped: partition %s not owned", signal.feature, partition
            )
            return
        self._history(signal)

    def _placed(self, feature_id: str) -> _Placed:
        """A stand-in current event for a table write no record of this batch caused: the
        events-topic partition that owns the feature. One per partition, kept:
        :func:`make_current` holds only a weak reference."""
        partition = key_partition(feature_id, self.config.partitions)
        placed = self._placements.get(partition)
        if placed is None:
            placed = self._placements[partition] = _Placed(self.config.events_topic, partition)
        return placed

    async def admit(self, message: Any) -> bool:
        """Whether to process a record now: it must be the next of its partition, or an
        earlier one delivered again (see :mod:`engine.streaming.checkpoint`). A jump over
        records that exist makes the worker seek the partition back to the first of them."""
        partition, offset = message.partition, message.offset
        # Once the checkpoint knows the partition, its own next offset decides.
        committed = None if self.checkpoint.knows(partition) else await self._committed(partition)
        verdict = self.checkpoint.admit(partition, offset, committed)
        if verdict == ADMIT:
            return True
        if verdict == DROP:
            resume = self.checkpoint.reseek(partition, offset)
            if resume is not None:
                # Records far past the one awaited keep coming: Faust sought the partition
                # elsewhere since (its recovery seeks to the committed offset). Ask again.
                await seek_consumer(self.app, TP(self.config.events_topic, partition), resume)
            return False
        expected = self.checkpoint.expected(partition, committed)
        first = await self.probe.first_at_or_after(partition, expected)
        if first == offset:
            self.checkpoint.gap(partition, offset)
            return True
        resume = expected if first is None else first
        log.warning(
            "partition %s: offset %s arrived, %s expected, and the broker has %s: records "
            "were skipped; seeking back to %s",
            partition,
            offset,
            expected,
            "nothing yet" if first is None else f"offset {first}",
            resume,
        )
        self.checkpoint.seek(partition, resume)
        await seek_consumer(self.app, TP(self.config.events_topic, partition), resume)
        return False

    async def _committed(self, partition: int) -> int | None:
        """The group's committed offset of ``partition``, for a partition the checkpoint
        does not know yet: Faust's copy, else the broker's. Faust may deliver records
        before it has read the committed offsets (it resumes fetching before it seeks),
        and the watch of :meth:`unstick` may look before any record came."""
        committed = committed_offset(self.app, self.config.events_topic, partition)
        if committed is None:
            committed = await self.probe.committed(partition)
        return committed

    async def unstick(self, partition: int, high: int) -> int | None:
        """The worker has admitted nothing for a while (:meth:`Checkpoint.quiet`), and
        ``partition`` has records up to ``high`` (its high watermark): if the record it
        must deliver next exists, it was fetched and lost on the way to :meth:`admit` (or
        a seek back was lost), and with nothing after it to show the gap the partition
        would wait forever. Seek it back to that record; returns the offset sought.

        Asking again costs nothing when nothing was lost: the records from that offset are
        fetched again and the first of them is awaited, as after any seek back."""
        if high <= 0:
            return None
        committed = None if self.checkpoint.knows(partition) else await self._committed(partition)
        resume = self.checkpoint.resume_at(partition, committed)
        if resume >= high:
            return None
        first = await self.probe.first_at_or_after(partition, resume)
        if first is None or first >= high:
            return None  # only transaction markers past it
        log.warning(
            "partition %s: offset %s is awaited, the broker has records up to %s, and no "
            "record arrived for %.0fs: seeking back to %s",
            partition,
            resume,
            high - 1,
            self.checkpoint.quiet(),
            first,
        )
        self.checkpoint.seek(partition, first)
        await seek_consumer(self.app, TP(self.config.events_topic, partition), first)
        return first

    async def queue_changelog(self, last_of: dict[str, Any]) -> list[tuple[Any, str, bytes | None]]:
        """Queue each changed feature's changelog records in the outbox (partition: its last
        event's partition); returns the local writes to make once they are acknowledged.

        Same key and value bytes as Faust's own table write (a deletion is a tombstone), so
        recovery from the changelog restores exactly these records. A long record comes as
        several (:mod:`engine.stores.faust_table`): all go to the feature's partition, in
        order.
        """
        table: Any = self.table  # serializers and store are not on Faust's TableT
        changelog = table.changelog_topic
        topic = changelog.get_topic_name()
        outbox = self.outbox
        writes = []
        for fid, key, value in self.store.drain():
            record = last_of.get(fid) or self._placed(fid)
            key_bytes, _ = changelog.prepare_key(key, table.key_serializer)
            value_bytes = (
                None if value is None else changelog.prepare_value(value, table.value_serializer)[0]
            )
            await outbox.add(topic, key_bytes, value_bytes, partition=record.message.partition)
            writes.append((record, key, value))
        return writes

    async def queue_signals(self) -> None:
        """Queue the risk CloudEvents (``feature.at_risk``/``risk_cleared``) raised so far."""
        pending = self.signals[:]
        self.signals.clear()  # keep the list object: ``publish`` is bound to its append
        for signal in pending:
            await self.agent.signal(signal)

    async def send_signals(self) -> None:
        """The risk timer's step, between batches: the history lines of the signals raised
        so far are written as a batch writes its records (changelog acknowledged, then the
        local store), and their CloudEvents go to the transitions topic, at least once."""
        await self.write_changes()

    async def _publish(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence[Any]
    ) -> None:
        """The agent's outputs: into the outbox (at least once), or (exactly once) into the
        open transaction of the input partition they come from: the record being applied,
        else the partition that owns the feature (the key: a risk signal, a migration)."""
        if self.direct:
            await self.outbox.add(topic, key, value, headers)
            return
        partition = self._input
        if partition is None:
            if key is None:
                raise ValueError(f"a record for {topic} with no input and no key")
            partition = key_partition(key.decode("utf-8"), self.config.partitions)
        tp = TP(self.config.events_topic, partition)
        if not await send_in_transaction(self.app, tp, topic, key, value, headers):
            log.info("%s: partition %s not ours any more; its new owner sends it", topic, partition)

    @property
    def outbox(self) -> Outbox:
        """The records sent directly, on the app's (started, non-transactional) producer."""
        if self._outbox is None:
            self._outbox = Outbox(aiokafka_producer(self.app))
        return self._outbox

    @property
    def probe(self) -> GapProbe:
        if self._probe is None:
            isolation = "read_uncommitted" if self.direct else "read_committed"
            self._probe = GapProbe(
                bootstrap_servers(self.config.broker),
                self.config.events_topic,
                isolation,
                self.config.security.aiokafka(),
                group=self.config.app_id,
            )
        return self._probe

    async def close(self) -> None:
        """Release what the app opened beside Faust (the gap probe's consumer)."""
        if self._probe is not None:
            await self._probe.close()


class _Message:
    """What Faust reads of a current event's message to place a table write."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition


class _Placed:
    """A stand-in current event (see :func:`~engine.streaming.checkpoint.make_current`)."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


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


__all__ = [
    "STAGE_CHANGED",
    "LifecycleApp",
    "StreamingConfig",
    "create_app",
    "is_stage_change",
    "stage_changed",
]
