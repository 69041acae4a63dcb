"""What the worker writes fits the broker however long a feature's history and however large
the events it read (issue 10's streaming leftover, issue 16).

A feature's table record holds its whole history and idempotency keys; past the broker's
limit for one record (``max.message.bytes``, 1 MiB by default) its changelog record was
refused, the worker stopped, and every restart stopped at the same batch. The record is now
written in parts (``engine/stores/faust_table.py``), and a worker recovering from the
changelog alone reads them back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

from tests.integration.kafka.conftest import (
    actual_outcome,
    consume_all,
    expected_outcome,
    produce,
    structured,
    wait_for,
)
from tests.integration.kafka.workload import cloud_event
from workflows.loader import Workflows

pytestmark = pytest.mark.integration

BROKER_LIMIT = 1024 * 1024 + 12
"""The broker's default ``max.message.bytes`` (the one of ``deploy/kafka``)."""


def test_a_history_past_the_broker_limit_and_a_huge_event_are_stored_and_recovered(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows
) -> None:
    long_id = "k" * 300
    events = [cloud_event("LONG", 0, "idea.submitted", {"title": "a long history"})]
    # 2,600 KPI reports, each a history line and an idempotency key: about 2 MB of record.
    for n in range(1, 2601):
        kpi = cloud_event("LONG", n, "kpi.reported", {"name": "adoption", "value": n / 10})
        kpi["id"] = f"{long_id}-{n}"
        events.append(kpi)
    huge = cloud_event("HUGE", 1, "discovery.started", {})
    huge["id"] = "h" * 600_000  # one event of 600 KB: its line and key make a 1.2 MB record
    events += [
        cloud_event("HUGE", 0, "idea.submitted", {"title": "huge"}),
        huge,
        cloud_event("HUGE", 2, "requirement.approved", {}),
        cloud_event("AFTER", 0, "idea.submitted", {"title": "after"}),
        cloud_event("AFTER", 1, "discovery.started", {}),
    ]
    expected = expected_outcome(workflows, events)
    produce(kafka_bootstrap, topics.events, (structured(e) for e in events))
    worker = make_worker("first")

    wait_for(_stored(worker, expected), 180, "every event stored", worker)
    assert worker.metrics().get("lifecycle_dead_letters_total", 0) == 0
    status, body = worker.get("/features/HUGE")
    assert status == 200 and body["stage"] == "defined"
    worker.stop()

    # Another worker of the group, from an empty data dir: the changelog alone.
    recovered = make_worker("empty")
    recovered.wait_ready(timeout=120)
    wait_for(
        _stored(recovered, expected), 120, "every feature recovered from the changelog", recovered
    )
    changelog = f"lifecycle-{topics.events}-features-changelog"
    assert changelog in _topics(kafka_bootstrap)
    records = consume_all(kafka_bootstrap, changelog, timeout=3)
    assert max(len(r.value or b"") + len(r.key or b"") for r in records) < BROKER_LIMIT
    transitions = consume_all(kafka_bootstrap, topics.transitions, timeout=3)
    huge_moved = [json.loads(r.value)["data"] for r in transitions if r.key == b"HUGE"]
    assert [d["cause_truncated"]["event_id"] for d in huge_moved if "cause_truncated" in d] == [
        600_000
    ]  # HUGE's stage change, its cause cut to fit


def _stored(worker: Any, expected: dict[str, Any]) -> Any:
    """A predicate: the worker holds every feature as ``expected``."""

    def check() -> bool:
        try:
            return _sorted_keys(actual_outcome(worker, expected)) == _sorted_keys(expected)
        except OSError:
            return False

    return check


def _sorted_keys(outcome: dict[str, Any]) -> dict[str, Any]:
    """``outcome`` with each state's idempotency keys in order (past 16 they are a set)."""
    return {
        fid: ({**state, "seen": sorted(state.get("seen", []))}, history)
        for fid, (state, history) in outcome.items()
    }


def _topics(bootstrap: str) -> set[str]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return set(consumer.topics())
    finally:
        consumer.close()


def test_records_as_large_as_the_broker_takes_are_dead_lettered_and_the_worker_goes_on(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows
) -> None:
    """A dead letter is the refused record plus the reason headers: for a record at the
    broker's limit that did not fit, and the worker stopped at it on every restart."""
    scratch = f"{topics.events}.scratch"
    KafkaAdminClient(bootstrap_servers=kafka_bootstrap).create_topics([NewTopic(scratch, 1, 1)])
    key = b"K" * _largest(kafka_bootstrap, scratch, lambda n: (b"K" * n, b"{not json", []))
    assert len(key) > 1_000_000  # as large as the broker takes
    size = _largest(kafka_bootstrap, scratch, lambda n: (b"H1", b"{not json", [("h", b"x" * n)]))
    headers = [("h", b"x" * size)]
    before = cloud_event("AFTER", 0, "idea.submitted", {"title": "after"})
    after = cloud_event("AFTER", 1, "discovery.started", {})
    produce(kafka_bootstrap, topics.events, [structured(before)])
    _send(kafka_bootstrap, topics.events, [(key, b"{not json", []), (b"H1", b"{not json", headers)])
    produce(kafka_bootstrap, topics.events, [structured(after)])
    worker = make_worker("w")
    expected = expected_outcome(workflows, [before, after])
    wait_for(_stored(worker, expected), 90, "the event after", worker)
    dead = consume_all(kafka_bootstrap, topics.dlq, timeout=3)
    assert len(dead) == 2
    cut = {h: v for r in dead for h, v in r.headers}
    assert cut["lifecycle_dlq_key_truncated"] == str(len(key)).encode()
    assert cut["lifecycle_dlq_headers_dropped"] == b"1"


def test_the_stage_change_of_an_event_as_large_as_the_broker_takes_fits(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows
) -> None:
    """A stage change repeats its cause's id and source: for an event at the broker's limit
    it did not fit, and the worker stopped at it on every restart."""
    scratch = f"{topics.events}.scratch"
    KafkaAdminClient(bootstrap_servers=kafka_bootstrap).create_topics([NewTopic(scratch, 1, 1)])

    def moving(n: int) -> dict[str, Any]:
        event = cloud_event("BIG", 1, "discovery.started", {})
        event["id"] = "i" * n
        return event

    n = _largest(kafka_bootstrap, scratch, lambda n: structured(moving(n)))
    assert n > 1_000_000  # as large as the broker takes
    events = [
        cloud_event("BIG", 0, "idea.submitted", {"title": "big"}),
        moving(n),
        cloud_event("BIG", 2, "requirement.approved", {}),
    ]
    produce(kafka_bootstrap, topics.events, [structured(events[0])])
    _send(kafka_bootstrap, topics.events, [structured(events[1])])
    produce(kafka_bootstrap, topics.events, [structured(events[2])])
    worker = make_worker("w")
    expected = expected_outcome(workflows, events)
    wait_for(_stored(worker, expected), 120, "every event stored", worker)
    changes = [json.loads(r.value) for r in consume_all(kafka_bootstrap, topics.transitions, 3)]
    moved = [c for c in changes if c["data"].get("to_stage") == "discovery"]
    assert len(moved) == 1
    assert moved[0]["data"]["cause_truncated"] == {"event_id": n, "event_source": 11}
    assert moved[0]["data"]["event_id"] == "i" * (32 * 1024)


def _largest(bootstrap: str, topic: str, record: Any) -> int:
    """The largest ``n`` for which the broker takes ``record(n)`` (key, value, headers)."""
    low, high = 1024, 2 * 1024 * 1024  # taken, refused
    while high - low > 1:
        middle = (low + high) // 2
        try:
            _send(bootstrap, topic, [record(middle)])
            low = middle
        except KafkaError:
            high = middle
    return low


def _send(bootstrap: str, topic: str, records: list[Any]) -> None:
    """Write records past the client's default request size, each acknowledged (a
    producer refused one is not used again: kafka-python aborts it)."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024
    )
    try:
        for key, value, headers in records:
            producer.send(topic, key=key, value=value, headers=headers).get(timeout=30)
    finally:
        producer.close()


def test_parts_an_interrupted_write_left_in_the_changelog_are_deleted_at_start_up(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows
) -> None:
    """A crash between a large record's header and the deletion of its previous parts (or
    between its parts and its header) leaves parts no header names in the changelog, kept
    forever by compaction: a worker assigned the partition deletes them (tombstones), and
    the features read as before."""
    events = [
        cloud_event("GHOST", 0, "idea.submitted", {"title": "ghost"}),
        cloud_event("GHOST", 1, "discovery.started", {}),
    ]
    expected = expected_outcome(workflows, events)
    produce(kafka_bootstrap, topics.events, (structured(e) for e in events))
    first = make_worker("first")
    wait_for(_stored(first, expected), 120, "the feature stored", first)
    first.stop()

    changelog = f"lifecycle-{topics.events}-features-changelog"
    ghost = next(r for r in consume_all(kafka_bootstrap, changelog, timeout=3) if b"GHOST" in r.key)
    stray = [ghost.key.replace(b"GHOST", name) for name in (b"GHOST/1.0", b"GHOST/1.1")]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for key in stray:
        producer.send(changelog, key=key, value=b"left over", partition=ghost.partition)
    producer.flush(timeout=30)
    producer.close()

    recovered = make_worker("empty")
    recovered.wait_ready(timeout=120)

    def deleted() -> bool:
        last = {r.key: r.value for r in consume_all(kafka_bootstrap, changelog, timeout=2)}
        return all(key in last and last[key] is None for key in stray)

    wait_for(deleted, 60, "the stray parts deleted", recovered)
    wait_for(_stored(recovered, expected), 60, "the feature as before", recovered)
