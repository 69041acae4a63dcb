"""How far a worker has durably processed each partition, and the offsets Faust commits.

The committed offset of an events-topic partition must follow what the agent has finished
(outputs acknowledged by the broker, table written): never ahead of it (an event would be
lost on a crash), and never stalled behind it (a restart would reprocess everything since).

Faust derives its commits from the list of offsets its streams acknowledged, with gaps
filled from its fetcher. Measured on faust-streaming 0.15 that list can hold an offset twice:
a fetch gap is recorded *including* the offset of the record after it, which is acknowledged
too, and Faust's run finder (``consecutive_numbers``) then breaks at every duplicate, so the
committed offset creeps forward one run per commit interval or stays frozen while the
worker's own lag reads 0 (issue 9, D6). Rather than patch that arithmetic, the
:class:`Checkpoint` is the one source of the events topic's committable offsets: the agent
reports each partition's last processed offset after its batch is durable, and Faust's
``_new_offset`` answers from that for the events topic (Faust keeps committing its other
topics, and keeps *when* to commit: its interval, before a rebalance, on stop).

"Last processed + 1" is the next record to process only if no record was skipped, and
Faust can skip records: after a rebalance it resumes fetching a partition *before* seeking
it to the committed offset, records of that stale fetch are delivered first, and when the
records from the committed offset arrive they are below Faust's read offset and dropped
("DROPPED MESSAGE ROFF"). The worker then applied later events of a feature and never the
dropped ones, and the feature's stored offset made a later redelivery of them a no-op too
(issue 9: lost and doubled history lines in a rolling restart). So the checkpoint also
guards the order: :meth:`Checkpoint.admit` lets a record through only if it is the next one
of its partition (or an earlier one, delivered again: the table's per-feature offset makes
it a no-op). A jump forward is checked against the broker (:class:`GapProbe`): real gaps
(transaction markers, compaction) are let through; otherwise the worker seeks the partition
back to the first missing record and drops what arrives before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

log = logging.getLogger(__name__)

ADMIT = "admit"
"""The record is the next of its partition (or an earlier one again): process it."""
DROP = "drop"
"""The record comes before the one the partition was sought back to: ignore it."""
JUMP = "jump"
"""Records between the expected one and this one were not delivered: check the broker."""


class Checkpoint:
    """The last durably processed offset per partition of one topic.

    Args:
        topic: the events topic the agent reads.

    The agent calls :meth:`done` once a batch's outputs are acknowledged and its table
    records written; the worker calls :meth:`install` once on its consumer and
    :meth:`forget` when partitions are revoked.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._last: dict[int, int] = {}
        self._next: dict[int, int] = {}
        """The offset expected next per partition: after the last admitted record."""
        self._awaiting: dict[int, int] = {}
        """Partitions sought back: the record each must see first."""

    def admit(self, partition: int, offset: int, committed: int | None) -> str:
        """Whether to process the record at ``offset`` of ``partition`` now.

        Args:
            committed: the partition's committed offset (where the group resumed it),
                used for the first record seen since it was assigned; ``None`` (nothing
                committed yet) expects the log's first record. Faust discards the records
                it fetches while its flow is suspended, and with nothing committed it never
                seeks back to them: the first record delivered can be far into the log.

        Returns:
            :data:`ADMIT`, :data:`DROP` or :data:`JUMP` (then :meth:`gap` or :meth:`seek`).
        """
        awaiting = self._awaiting.get(partition)
        if awaiting is not None:
            if offset != awaiting:
                return DROP
            del self._awaiting[partition]
        expected = self._next.get(partition, committed)
        if expected is None:
            # Nothing committed: the group starts at the log's beginning (auto offset reset
            # ``earliest``); the probe says where that is.
            expected = 0
        if offset > expected:
            return JUMP
        if partition not in self._next:
            log.info(
                "partition %s: processing resumes at offset %s (committed: %s)",
                partition,
                offset,
                committed,
            )
        if offset + 1 > expected:
            self._next[partition] = offset + 1
        return ADMIT

    def expected(self, partition: int, committed: int | None) -> int:
        """The offset expected next on ``partition`` (after a :data:`JUMP`)."""
        found = self._next.get(partition, committed)
        return 0 if found is None else found

    def gap(self, partition: int, offset: int) -> None:
        """The broker has no records before ``offset`` since the expected one: admit it."""
        self._next[partition] = offset + 1

    def seek(self, partition: int, offset: int) -> None:
        """The partition was sought back to ``offset``: drop everything until it arrives."""
        self._awaiting[partition] = offset
        self._next[partition] = offset

    def done(self, partition: int, offset: int) -> None:
        """Record that every record of ``partition`` up to ``offset`` is durably processed."""
        last = self._last.get(partition)
        if last is None or offset > last:
            self._last[partition] = offset

    def committable(self, partition: int) -> int | None:
        """The offset to commit for ``partition`` (the next record to process), if any."""
        last = self._last.get(partition)
        return None if last is None else last + 1

    def last(self, partition: int) -> int | None:
        """The last offset durably processed on ``partition`` (for the lag gauge)."""
        return self._last.get(partition)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop what is known of ``partitions`` (all: ``None``), e.g. when they are revoked:
        another worker may process them next, and commits for them are no longer ours."""
        if partitions is None:
            self._last.clear()
            self._next.clear()
            self._awaiting.clear()
            return
        for partition in partitions:
            self._last.pop(partition, None)
            self._next.pop(partition, None)
            self._awaiting.pop(partition, None)

    def install(self, consumer: Any) -> None:
        """Make ``consumer`` (Faust's) commit this topic's offsets from this checkpoint.

        Replaces the consumer's ``_new_offset`` for this topic only. Faust's own list of
        acknowledged offsets for the topic is emptied at each commit (it is not used, and
        would otherwise grow); its commit timing and its other topics are left alone.
        """
        if getattr(consumer, "_lifecycle_checkpoint", None) is self:
            return  # the agent restarted: already installed
        original: Callable[[TP], int | None] = consumer._new_offset
        topic = self.topic

        def new_offset(tp: TP) -> int | None:
            if tp.topic != topic:
                return original(tp)
            consumer._acked[tp].clear()
            consumer._acked_index[tp].clear()
            consumer._gap.pop(tp, None)
            return self.committable(tp.partition)

        consumer._new_offset = new_offset
        consumer._drain_messages = _drain_without_drops(consumer, topic)
        consumer._lifecycle_checkpoint = self


def _drain_without_drops(consumer: Any, topic: str) -> Callable[[Any], Any]:
    """Faust's fetch loop (``Consumer._drain_messages``), except that records of ``topic``
    are never dropped for being below Faust's read offset: after the agent seeks a
    partition back (:meth:`Checkpoint.seek`) the records it asked for must arrive, and
    :meth:`Checkpoint.admit` judges every record of the topic itself. Everything else is
    as in faust-streaming 0.15: other topics keep Faust's read-offset check, gaps are
    recorded for them, records fetched while the flow is suspended (a rebalance) are let go.
    """
    from faust.transport.consumer import CONSUMER_FETCHING

    async def drain(fetcher: Any) -> None:
        callback = consumer.callback
        getmany = consumer.getmany
        consumer_should_stop = consumer._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = consumer._read_offset
        acks_enabled_for = consumer.app.topics.acks_enabled_for
        commit_every = consumer._commit_every
        suspended = consumer.suspend_flow
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                consumer.diag.set_flag(CONSUMER_FETCHING)
                batch = getmany(timeout=1.0)
                await consumer.sleep(0)
                if consumer.should_stop:
                    continue
                async for tp, message in batch:
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    if tp.topic != topic:
                        r_offset = read_offset[tp]
                        if r_offset is not None and offset < r_offset:
                            continue  # Faust's own rule for the other topics
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(tp.topic):
                            await consumer._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and consumer._n_acked >= commit_every:
                        consumer._n_acked = 0
                        await consumer.commit()
                    await consumer.wait_first(callback(message), suspended.wait())
                    read_offset[tp] = offset
                consumer.diag.unset_flag(CONSUMER_FETCHING)
        except consumer.consumer_stopped_errors:
            if consumer.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if consumer.transport.app.should_stop:
                return
            raise
        finally:
            consumer.diag.unset_flag(CONSUMER_FETCHING)

    return drain


class GapProbe:
    """Asks the broker where the records of a partition resume at or after an offset.

    A consumer of its own (no group, nothing committed), made on first use: a jump in the
    offsets the agent sees is rare (a transaction marker, compaction, or a record Faust
    dropped), and each costs one fetch.

    Args:
        bootstrap: ``host:port,...`` of the brokers.
        topic: the events topic.
        isolation_level: the main consumer's (``read_committed`` under exactly-once).
        security: aiokafka's TLS and SASL settings (``KafkaSecurity.aiokafka()``).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        isolation_level: str,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.isolation_level = isolation_level
        self.security = dict(security or {})
        self._consumer: AIOKafkaConsumer | None = None

    async def first_at_or_after(self, partition: int, offset: int) -> int | None:
        """The offset of the first record of ``partition`` at or after ``offset`` (``None``:
        none arrived within a few seconds)."""
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                isolation_level=self.isolation_level,
                auto_offset_reset="earliest",  # an offset before the log start: its start
                **self.security,
            )
            await self._consumer.start()
        tp = TopicPartition(self.topic, partition)
        self._consumer.assign([tp])
        self._consumer.seek(tp, offset)
        found = await self._consumer.getmany(tp, timeout_ms=5000, max_records=1)
        records = found.get(tp, [])
        return records[0].offset if records else None

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


__all__ = ["ADMIT", "DROP", "JUMP", "Checkpoint", "GapProbe"]
