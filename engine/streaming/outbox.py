"""The records a batch of the agent publishes, sent as a few Kafka batches per partition.

Sending record by record costs the producer a future, a metadata look-up and an event-loop
callback each, which at a thousand records per batch is most of the worker's time. The
outbox collects the batch's records (table changelog, stage changes, risk signals) in
order, groups them by topic partition and hands each group to the producer as whole record
batches (``create_batch`` / ``send_batch``); :meth:`Outbox.flush` returns once the broker
acknowledged every one of them (the producer's ``acks``), so the agent acknowledges its
input offsets only after its outputs are durable. Order is kept within each partition.
:meth:`Outbox.send` hands them over without waiting, so the worker applies its next batch
while the broker acknowledges this one (:class:`~engine.streaming.checkpoint.Committer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

Headers = Sequence[tuple[str, bytes]]


@dataclass(slots=True)
class _Group:
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(
        default_factory=list
    )


class Outbox:
    """Records waiting to be published, and the producer that publishes them.

    Args:
        producer: a started ``aiokafka.AIOKafkaProducer`` (not transactional).
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._groups: dict[tuple[str, int], _Group] = {}
        self._partitions: dict[str, list[int]] = {}
        self._of_key: dict[tuple[str, bytes], int] = {}
        """Partitions already computed (murmur2 is pure Python); cleared when large."""
        self._unkeyed = 0
        """Records without a key go round the partitions."""

    def __len__(self) -> int:
        return sum(len(g.records) for g in self._groups.values())

    async def partition_for(self, topic: str, key: bytes | None) -> int:
        """The partition the producer's default partitioner gives ``key`` (murmur2); a
        record without a key gets the next partition in turn."""
        if key is None:
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = self._partitions[topic] = sorted(
                    await self.producer.partitions_for(topic)
                )
            self._unkeyed += 1
            return partitions[self._unkeyed % len(partitions)]
        found = self._of_key.get((topic, key))
        if found is not None:
            return found
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
        if len(self._of_key) > 100_000:
            self._of_key.clear()
        partition = self._of_key[(topic, key)] = partitions[
            (murmur2(key) & 0x7FFFFFFF) % len(partitions)
        ]
        return partition

    async def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> None:
        """Queue one record; ``partition`` ``None`` is the key's default partition."""
        if partition is None:
            partition = await self.partition_for(topic, key)
        group = self._groups.get((topic, partition))
        if group is None:
            group = self._groups[(topic, partition)] = _Group()
        group.records.append((key, value, list(headers)))

    async def send(self) -> Sent:
        """Hand every queued record to the producer, as whole batches, without waiting for
        the broker: what is queued afterwards belongs to the next :meth:`send`.

        Returns:
            The records' acknowledgements (:meth:`Sent.acknowledged`).

        Raises:
            ValueError: a record is larger than a batch.
        """
        groups, self._groups = self._groups, {}
        pending: list[tuple[tuple[str, int], int, Any]] = []
        for (topic, partition), group in groups.items():
            batch = self.producer.create_batch()
            count = 0
            for key, value, headers in group.records:
                while batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    if count == 0:
                        raise ValueError(f"a record for {topic} is larger than a batch")
                    future = await self.producer.send_batch(batch, topic, partition=partition)
                    pending.append(((topic, partition), count, future))
                    batch, count = self.producer.create_batch(), 0
                count += 1
            if count:
                future = await self.producer.send_batch(batch, topic, partition=partition)
                pending.append(((topic, partition), count, future))
        return Sent(pending)

    async def flush(self) -> dict[tuple[str, int], int]:
        """Send every queued record and wait until all are acknowledged.

        Returns:
            The offset of the last record written, per (topic, partition).

        Raises:
            KafkaError: a batch was not acknowledged; nothing is known of the others, so
                the caller must not acknowledge its input.
        """
        return await (await self.send()).acknowledged()


class Sent:
    """Record batches handed to the producer by one :meth:`Outbox.send`.

    The producer keeps each partition's batches in order, retries included (aiokafka sends
    one request per partition at a time and puts a batch it retries back at the head of
    its partition's queue), so the records of a later send land after these.
    """

    def __init__(self, pending: list[tuple[tuple[str, int], int, Any]]) -> None:
        self._pending = pending

    async def acknowledged(self) -> dict[tuple[str, int], int]:
        """Wait until the broker acknowledged every batch.

        Returns:
            The offset of the last record written, per (topic, partition).

        Raises:
            KafkaError: a batch was not acknowledged; nothing is known of the others.
        """
        pending = self._pending
        last: dict[tuple[str, int], int] = {}
        results = await asyncio.gather(*(future for _, _, future in pending))
        for (tp, count, _), meta in zip(pending, results, strict=True):
            last[tp] = max(last.get(tp, -1), meta.offset + count - 1)
        return last
