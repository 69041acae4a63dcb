"""Where the records of a partition really resume: a small consumer of the worker's own.

Used by the checkpoint's order guard (:meth:`engine.streaming.checkpoint.Checkpoint.admit`)
when the offsets the agent sees jump: a real gap (a transaction marker, compaction, the log's
start) is let through, anything else makes the worker seek back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


class GapProbe:
    """Asks the broker where the records of a partition resume at or after an offset.

    A consumer of its own, made on first use, assigned partitions by hand: it never joins
    the worker's group nor commits, but it reads the group's committed offsets (``group``).
    A jump in the offsets the agent sees is rare (a transaction marker, compaction, or a
    record Faust dropped), and each costs one fetch.

    Args:
        bootstrap: ``host:port,...`` of the brokers.
        topic: the events topic.
        isolation_level: the main consumer's (``read_committed`` under exactly-once).
        security: aiokafka's TLS and SASL settings (``KafkaSecurity.aiokafka()``).
        group: the worker's consumer group, whose committed offsets :meth:`committed` reads.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        isolation_level: str,
        security: Mapping[str, Any] | None = None,
        group: str | None = None,
    ) -> None:
        self.group = group
        self.bootstrap = bootstrap
        self.topic = topic
        self.isolation_level = isolation_level
        self.security = dict(security or {})
        self._consumer: AIOKafkaConsumer | None = None

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                enable_auto_commit=False,
                isolation_level=self.isolation_level,
                auto_offset_reset="earliest",  # an offset before the log start: its start
                **self.security,
            )
            await self._consumer.start()
        return self._consumer

    async def committed(self, partition: int) -> int | None:
        """The offset the group has committed for ``partition`` (``None``: none)."""
        consumer = await self._started()
        tp = TopicPartition(self.topic, partition)
        consumer.assign([tp])
        found: int | None = await consumer.committed(tp)
        return found

    async def first_at_or_after(self, partition: int, offset: int) -> int | None:
        """The offset of the first record of ``partition`` at or after ``offset`` (``None``:
        none arrived within a few seconds)."""
        consumer = await self._started()
        tp = TopicPartition(self.topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        found = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
        records = found.get(tp, [])
        return records[0].offset if records else None

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


__all__ = ["GapProbe"]
