"""A worker of table format 3 takes over the changelog a worker of format 2 wrote (issue 16).

The changelog and the events are those of a real worker of 91d68a3 (format 2: every write
carries the whole history), kept in ``data/format2_changelog.json``
(``data/make_format2_changelog.py`` wrote it): loaded into a fresh changelog topic, with
the events in the events topic and their offsets committed as that worker left them. A worker
of this tree restores from that changelog alone and goes on with new events, writing
format 3 (a head, history chunks); a second one, also from an empty data dir, restores the
changelog of both formats. Both hold every feature as the pure processor makes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

from tests.integration.kafka.conftest import (
    PARTITIONS,
    actual_outcome,
    consume_all,
    expected_outcome,
    produce,
    structured,
    wait_for,
)
from tests.integration.kafka.faults import group_id
from tests.integration.kafka.workload import cloud_event
from workflows.loader import Workflows

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).with_name("data") / "format2_changelog.json"


def _load_changelog(bootstrap: str, changelog: str, records: list[dict[str, Any]]) -> None:
    """Create the group's changelog topic as Faust does (compacted) and write ``records``
    to their partitions, in order."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(changelog, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for r in records:
        producer.send(
            changelog, key=r["key"].encode(), value=r["value"].encode(), partition=r["partition"]
        )
    producer.flush(timeout=60)
    producer.close()


def _commit_all(bootstrap: str, topic: str) -> None:
    """Commit the group's offsets at the end of every partition of ``topic``, as the worker
    that applied its records left them."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id(topic))
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = consumer.end_offsets(tps)
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    finally:
        consumer.close()


def _changelog(bootstrap: str, changelog: str) -> dict[str, bytes | None]:
    """The last record of every key of the changelog (Faust writes a key as JSON)."""
    return {json.loads(r.key): r.value for r in consume_all(bootstrap, changelog, timeout=3.0)}


def test_a_changelog_of_format_2_is_restored_and_taken_over_in_format_3(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows
) -> None:
    fixture = json.loads(FIXTURE.read_text())
    old_events: list[dict[str, Any]] = fixture["events"]
    changelog = f"{group_id(topics.events)}-features-changelog"
    _load_changelog(kafka_bootstrap, changelog, fixture["changelog"])
    produce(kafka_bootstrap, topics.events, (structured(e) for e in old_events))
    _commit_all(kafka_bootstrap, topics.events)
    ids = sorted({e["subject"] for e in old_events})
    new_events = [
        cloud_event("ULONG", n, "kpi.reported", {"name": "adoption", "value": n / 8})
        for n in range(41, 61)
    ]
    new_events += [cloud_event(fid, 40, "feature.cancelled", {}) for fid in ids[:4]]
    new_events.append(cloud_event("UNEW", 0, "idea.submitted", {"title": "after"}))
    again = [e for e in old_events if e["subject"] == ids[6]][:2]  # duplicates now
    new_events += [{**e} for e in again]
    expected = expected_outcome(workflows, [*old_events, *new_events])

    first = make_worker("first")
    first.wait_ready(timeout=120)
    before = expected_outcome(workflows, old_events)
    wait_for(_holds(first, before, ids), 60, "the format 2 table restored", first)
    assert first.processed() == 0  # the old worker's offsets were taken as committed
    produce(kafka_bootstrap, topics.events, (structured(e) for e in new_events))
    wait_for(_holds(first, expected, expected), 90, "the new events applied", first)
    status, body = first.get("/features/ULONG/history")
    assert status == 200
    lines = body["entries"]  # with the engine's own risk signals, if any
    first.stop()

    records = _changelog(kafka_bootstrap, changelog)
    heads = {k: v for k, v in records.items() if "/" not in k and v is not None}
    changed = {e["subject"] for e in new_events}
    assert all(heads[fid].startswith(b'{"v":3,') for fid in changed)
    assert all(heads[fid].startswith(b'{"v":2,') for fid in set(ids) - changed)
    chunks = sorted(k for k, v in records.items() if k.startswith("ULONG/") and v is not None)
    assert chunks == sorted(f"ULONG/h.{n}" for n in range(len(lines) // 8))

    second = make_worker("second")  # an empty data dir: the changelog of both formats
    second.wait_ready(timeout=120)
    wait_for(_holds(second, expected, expected), 90, "both formats restored", second)
    status, body = second.get("/features/ULONG/history")
    assert status == 200 and body["entries"] == lines
    status, body = second.get("/features/ULONG/history?limit=5&before=40")
    assert status == 200 and body["entries"] == lines[34:39]


def _holds(worker: Any, expected: dict[str, Any], ids: Any) -> Any:
    """A predicate: the worker holds the features ``ids`` as ``expected``."""
    wanted = {fid: _sorted_keys(expected[fid]) for fid in ids}

    def check() -> bool:
        try:
            actual = actual_outcome(worker, list(ids))
        except OSError:
            return False
        return {fid: _sorted_keys(v) for fid, v in actual.items()} == wanted

    return check


def _sorted_keys(outcome: tuple[dict[str, Any], list[dict[str, Any]]]) -> Any:
    state, history = outcome
    return {**state, "seen": sorted(state.get("seen", []))}, history
