"""The emitter against a real Kafka broker: what a consumer of the topic actually receives.

Start the broker with ``bash deploy/kafka/kafka.sh up`` (or point ``KAFKA_BOOTSTRAP`` at one).
Without a broker these tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from events import CATALOGUE, EmitFailed, Emitter, parse_binary, parse_structured
from events.envelope import decode_event
from tests.services import free_port

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture
def topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic of this test alone, deleted afterwards."""
    name = f"test.emitter.{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, bootstrap_timeout_ms=10_000)
    admin.create_topics([NewTopic(name, PARTITIONS, 1)], wait_for_metadata=True)
    yield name
    admin.delete_topics([name], raise_errors=False)
    admin.close()


def consume(servers: str, topic: str, count: int, deadline: float = 20.0) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning (no consumer group needed)."""
    consumer = KafkaConsumer(
        bootstrap_servers=servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=500,
    )
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    records: list[Any] = []
    stop = time.monotonic() + deadline
    try:
        while len(records) < count and time.monotonic() < stop:
            records += list(consumer)
    finally:
        consumer.close()
    assert len(records) == count, f"expected {count} records on {topic}, got {len(records)}"
    return records


def test_structured_events_arrive_keyed_by_feature_as_valid_cloudevents(
    kafka_bootstrap: str, topic: str
) -> None:
    emits = [
        ("build.started", "checkout-v2", None),
        ("build.shipped", "checkout-v2", {"build": "1.4.2"}),
        ("idea.submitted", "search-ai", {"title": "Semantic search"}),
        ("deploy.finished", "search-ai", {"env": "staging"}),  # outside the catalogue
    ]
    with Emitter(kafka_bootstrap, source="ci/build-service", topic=topic) as emitter:
        sent = [emitter.emit(type_, feature, data=data) for type_, feature, data in emits]
        emitter.flush()
    assert all(s.done() for s in sent)

    records = consume(kafka_bootstrap, topic, len(sent))
    by_id = {}
    for record in records:
        assert dict(record.headers) == {"content-type": b"application/cloudevents+json"}
        ce = parse_structured(record.value)
        by_id[ce.id] = (record, ce)
    assert set(by_id) == {s.event.id for s in sent}
    for (type_, feature, _), s in zip(emits, sent, strict=True):
        record, ce = by_id[s.event.id]
        assert record.key == feature.encode()
        assert (ce.type, ce.subject, ce.source) == (type_, feature, "ci/build-service")
        assert ce == s.event
    shipped = decode_event(by_id[sent[1].event.id][0].value, CATALOGUE, datetime.now(UTC))
    assert shipped is not None and shipped.data.build == "1.4.2"  # type: ignore[attr-defined]

    # one feature's events share a partition, in the order they were emitted
    first, second = (by_id[s.event.id][0] for s in sent[:2])
    assert first.partition == second.partition and first.offset < second.offset


def test_binary_mode_sends_ce_headers_and_the_data_as_value(
    kafka_bootstrap: str, topic: str
) -> None:
    with Emitter(kafka_bootstrap, source="qa/uat", topic=topic, binary=True) as emitter:
        sent = emitter.emit(
            "uat.failed", "checkout-v2", data={"reason": "crash on löschen"}, wait=True
        )

    (record,) = consume(kafka_bootstrap, topic, 1)
    headers = dict(record.headers)
    assert record.key == b"checkout-v2"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == sent.event.id.encode()
    assert headers["ce_source"] == b"qa/uat"
    assert headers["ce_type"] == b"uat.failed"
    assert headers["ce_subject"] == b"checkout-v2"
    assert headers["content-type"] == b"application/json"
    assert json.loads(record.value) == {"reason": "crash on löschen"}
    assert parse_binary(headers, record.value, prefix="ce_") == sent.event


def test_wait_returns_where_the_broker_wrote_the_event(kafka_bootstrap: str, topic: str) -> None:
    with Emitter(kafka_bootstrap, source="pm/roadmap", topic=topic) as emitter:
        sent = emitter.emit("feature.prioritized", "checkout-v2", data={"priority": 1}, wait=True)
        assert sent.done()
        delivery = sent.get()

    (record,) = consume(kafka_bootstrap, topic, 1)
    assert (delivery.topic, delivery.partition, delivery.offset) == (
        topic,
        record.partition,
        record.offset,
    )


def test_an_event_the_broker_refuses_is_reported_by_flush_and_by_wait(
    kafka_bootstrap: str,
) -> None:
    name = f"test.emitter.small.{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, bootstrap_timeout_ms=10_000)
    admin.create_topics(
        [NewTopic(name, 1, 1, topic_configs={"max.message.bytes": "1000"})],
        wait_for_metadata=True,
    )
    too_big = {"build": "x" * 5000}
    try:
        with Emitter(kafka_bootstrap, source="ci", topic=name, timeout=10) as emitter:
            refused = emitter.emit("build.shipped", "checkout-v2", data=too_big)
            with pytest.raises(EmitFailed, match=f"1 event.*{refused.event.id}.*TooLarge"):
                emitter.flush()
            emitter.flush()  # reported once, not again

            with pytest.raises(EmitFailed, match=r"was not delivered.*TooLarge"):
                emitter.emit("build.shipped", "checkout-v2", data=too_big, wait=True)
            emitter.flush()

            fits = emitter.emit("build.shipped", "checkout-v2", data={"build": "1"}, wait=True)
        assert fits.get().topic == name
    finally:
        admin.delete_topics([name], raise_errors=False)
        admin.close()


def test_an_unreachable_broker_raises_emit_failed_within_the_timeout() -> None:
    port = free_port()  # free a moment ago: nothing listens there
    emitter = Emitter(f"127.0.0.1:{port}", source="ci", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(EmitFailed, match=f"cannot reach Kafka at 127.0.0.1:{port}"):
        emitter.emit("build.started", "checkout-v2", wait=True)
    assert time.monotonic() - started < 5
    emitter.close()
