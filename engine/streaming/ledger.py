"""The release ledger of the streaming mode: a compacted topic that every worker reads whole.

Any worker may receive a release and any other the deployment that launches it, after any
restart, on an empty data dir. So the ledger lives in Kafka, not in a worker: the topic
``<app id>-releases`` (one partition, ``cleanup.policy=compact``, created at start-up like
the tables' changelogs), one record per (release, feature) so compaction keeps every pair and
recording again is a no-op.

Ordering, as the checkpoint orders outputs (:mod:`engine.streaming.checkpoint`): a release's
pairs are acknowledged by the brokers (``acks=all``, idempotent producer) before its events
are published and before the delivery is answered 202. A delivery that reads the ledger first
reads the topic up to its end as it is at that moment (:meth:`KafkaLedger.refresh`), so it
sees every release acknowledged before it arrived, whichever worker recorded it. A broker
that does not answer in time makes the delivery 503 (the tool retries), never a launch of
the wrong features.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from connectors.ledger import Release
from engine.config.kafka_security import PLAINTEXT, KafkaSecurity
from events.errors import Unavailable

log = logging.getLogger(__name__)

TIMEOUT = 10.0
"""Seconds a read to the end or a write may take before the delivery is answered 503."""
STARTS = 3
"""Reads to the end tried at start-up before the worker gives up."""


def ledger_topic(app_id: str) -> str:
    """The ledger's topic of the worker group ``app_id`` (beside its changelog topics)."""
    return f"{app_id}-releases"


class KafkaLedger:
    """A :class:`~connectors.ledger.ReleaseLedger` in a compacted Kafka topic (see module
    docstring); the worker starts it before it serves and stops it after.

    Args:
        bootstrap: ``host:port,...`` of the brokers.
        topic: the ledger topic (:func:`ledger_topic`).
        security: TLS and SASL of the worker's Kafka clients.
        replication: the topic's replication factor when this worker creates it (the
            worker's ``topic_replication_factor``, as for its changelogs).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        security: KafkaSecurity = PLAINTEXT,
        replication: int = 1,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security
        self.replication = replication
        self._tp = TopicPartition(topic, 0)
        self._shipped: dict[str, dict[str, None]] = {}
        self._lock = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Create the topic if missing, connect, and read every release recorded so far."""
        await self._create_topic()
        settings = self.security.aiokafka()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, **settings
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,  # every worker reads the whole topic; nothing is committed
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **settings,
        )
        await self._consumer.start()
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_beginning(self._tp)
        for attempt in range(1, STARTS + 1):  # a topic just created may not be served yet
            try:
                await self.refresh()
                break
            except Unavailable:
                if attempt == STARTS:
                    raise
                log.info("release ledger %s: not readable yet, retrying", self.topic)
                await asyncio.sleep(1.0)
        log.info("release ledger %s: %d releases", self.topic, len(self._shipped))

    async def stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None

    async def _create_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.security.aiokafka())
        await admin.start()
        try:
            topic = NewTopic(
                self.topic,
                num_partitions=1,
                replication_factor=self.replication,
                topic_configs={"cleanup.policy": "compact"},
            )
            await admin.create_topics([topic])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()

    def __call__(self, key: str) -> tuple[str, ...]:
        return tuple(self._shipped.get(key, ()))

    def __len__(self) -> int:
        """Releases known."""
        return len(self._shipped)

    def _add(self, release: str, feature: str) -> None:
        self._shipped.setdefault(release, {})[feature] = None

    async def record(self, releases: Sequence[Release]) -> None:
        """Write each (release, feature) pair and wait until the brokers acknowledged all.

        Raises:
            Unavailable: not acknowledged within :data:`TIMEOUT` (the delivery is answered
                503 and retried by the tool; a pair written twice is harmless).
        """
        if self._producer is None:
            raise Unavailable("the release ledger is not started")
        pairs = [(key, feature) for key, features in releases for feature in features]
        try:
            async with asyncio.timeout(TIMEOUT):
                pending = []
                for key, feature in pairs:
                    value = json.dumps({"release": key, "feature": feature}).encode()
                    record_key = json.dumps([key, feature]).encode()
                    pending.append(
                        await self._producer.send(self.topic, value, key=record_key, partition=0)
                    )
                for future in pending:
                    await future
        except (KafkaError, TimeoutError) as err:
            raise Unavailable(f"the release ledger {self.topic} took no write: {err!r}") from err
        for key, feature in pairs:  # read your own writes before the consumer sees them
            self._add(key, feature)

    async def refresh(self) -> None:
        """Read the topic up to its end offset as of now.

        Raises:
            Unavailable: the end was not reached within :data:`TIMEOUT`.
        """
        consumer = self._consumer
        if consumer is None:
            raise Unavailable("the release ledger is not started")
        async with self._lock:
            try:
                async with asyncio.timeout(TIMEOUT):
                    end = (await consumer.end_offsets([self._tp]))[self._tp]
                    while await consumer.position(self._tp) < end:
                        batch = await consumer.getmany(self._tp, timeout_ms=500)
                        for record in batch.get(self._tp, []):
                            self._read(record)
            except (KafkaError, TimeoutError) as err:
                raise Unavailable(
                    f"the release ledger {self.topic} could not be read: {err!r}"
                ) from err

    def _read(self, record: Any) -> None:
        try:
            value = json.loads(record.value)
            release, feature = value["release"], value["feature"]
        except (TypeError, ValueError, KeyError):
            log.warning(
                "release ledger %s: offset %s is not a ledger record", self.topic, record.offset
            )
            return
        if isinstance(release, str) and isinstance(feature, str):
            self._add(release, feature)
