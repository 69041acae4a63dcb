"""The streaming worker on a real broker: same results as the pure processor, through
poison records, a kill -9 and a second worker.

Workers run as subprocesses (``python -m engine.streaming.worker``) with their own data
dir and port; each test has its own topics and consumer group (see ``conftest.py``).
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from typing import Any

import pytest

from events import Emitter
from tests.integration.kafka.conftest import (
    ENGINE_SOURCE,
    actual_outcome,
    consume_all,
    expected_outcome,
    produce,
    structured,
    wait_for,
)
from tests.integration.kafka.faults import assert_each_stage_change_once, settle
from tests.integration.kafka.workload import cloud_event, lifecycles
from workflows.loader import Workflows

pytestmark = pytest.mark.integration


def settled(worker: Any, expected: dict[str, Any]) -> Any:
    """A predicate: every feature the worker holds is as ``expected``."""

    def check() -> bool:
        try:
            return actual_outcome(worker, expected) == expected
        except OSError:
            return False

    return check


def assert_same(worker: Any, expected: dict[str, Any]) -> None:
    actual = actual_outcome(worker, expected)
    wrong = [fid for fid in expected if actual[fid] != expected[fid]]
    assert not wrong, (
        f"{len(wrong)} features differ, e.g. {wrong[0]}: {actual[wrong[0]]} != {expected[wrong[0]]}"
    )


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_crash_kill_9_mid_stream_loses_nothing_and_applies_nothing_twice(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows, guarantee: str
) -> None:
    """Two workers killed with -9 while records flow, each at a different point: the first
    restarts on its own data dir (local RocksDB), the second and the last start with an
    empty one, so what they hold is what the changelog restored. Every feature's state and
    history must be the processor's; under exactly-once the committed stage changes must be
    there once each (a read_committed reader sees no aborted transaction)."""
    events = lifecycles(300, seed=3)
    assert len(events) > 3000
    expected = expected_outcome(workflows, events)
    produce(kafka_bootstrap, topics.events, (structured(e) for e in events))
    env = {"LIFECYCLE_PROCESSING_GUARANTEE": guarantee}
    worker = make_worker("crashy", **env)
    wait_for(lambda: worker.processed() >= len(events) // 4, 60, "a quarter processed", worker)
    worker.kill()
    assert worker.proc is not None and worker.proc.returncode == -9
    restarted = make_worker("crashy", port=worker.port, **env)  # its own RocksDB
    restarted.wait_ready()
    wait_for(lambda: restarted.processed() >= len(events) // 3, 60, "a third more", restarted)
    restarted.kill()
    assert restarted.proc is not None and restarted.proc.returncode == -9
    successor = make_worker("empty", **env)  # nothing local: the changelog alone
    successor.wait_ready()
    verdict = settle([successor], expected, timeout=60)
    assert verdict.clean, str(verdict)
    assert_same(successor, expected)
    if guarantee == "exactly_once":
        assert_each_stage_change_once(kafka_bootstrap, topics.transitions, expected)


def binary_record(event: dict[str, Any]) -> list[str]:
    """``kcat`` arguments producing ``event`` in Kafka binary mode (``ce_*`` headers)."""
    args = ["-k", event["subject"]]
    for name in ("specversion", "id", "source", "type", "subject", "time"):
        args += ["-H", f"ce_{name}={event[name]}"]
    return [*args, "-H", "content-type=application/json"]


def kcat_produce(bootstrap: str, topic: str, event: dict[str, Any]) -> None:
    # murmur2_random: the Java client's partitioner, which the worker's routing assumes
    # (librdkafka's own default, consistent_random, hashes keys differently).
    subprocess.run(
        [
            "kcat",
            "-P",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-X",
            "partitioner=murmur2_random",
            *binary_record(event),
        ],
        input=json.dumps(event["data"]).encode(),
        check=True,
        timeout=30,
    )


def test_emitter_and_kcat_binary_mode_reach_the_processors_final_states(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows
) -> None:
    events = lifecycles(30, seed=5)
    by_kcat = [e for e in events if e["subject"] in ("F0", "F1")][:12]
    by_emitter = [e for e in events if e not in by_kcat]
    expected = expected_outcome(workflows, by_emitter + by_kcat)
    worker = make_worker("w")
    worker.wait_ready()
    with Emitter(kafka_bootstrap, topic=topics.events) as emitter:
        for e in by_emitter:
            emitter.emit(
                e["type"],
                e["subject"],
                e["data"],
                source=e["source"],
                id=e["id"],
                time=datetime.fromisoformat(e["time"]),
            )
    for e in by_kcat:
        kcat_produce(kafka_bootstrap, topics.events, e)
    wait_for(settled(worker, expected), 60, "every feature final", worker)
    assert_same(worker, expected)
    # One stage-change CloudEvent per applied move, keyed by feature.
    moves = sum(
        1
        for _, history in expected.values()
        for h in history
        if h["outcome"] == "applied" and h["from_stage"] not in (None, h["to_stage"])
    )
    published = consume_all(kafka_bootstrap, topics.transitions, timeout=3)
    changes = [r for r in published if json.loads(r.value)["type"] == "lifecycle.stage.changed"]
    assert len(changes) == moves
    first = json.loads(changes[0].value)
    assert changes[0].key.decode() == first["subject"]
    # Risk changes share the topic: feature.at_risk / feature.risk_cleared, keyed the same.
    others = {json.loads(r.value)["type"] for r in published} - {"lifecycle.stage.changed"}
    assert others <= {"feature.at_risk", "feature.risk_cleared"}
    # The public API shows the same stage.
    fid, (state, _) = next(iter(expected.items()))
    status, body = worker.get(f"/features/{fid}")
    assert status == 200 and body["stage"] == state["stage"]


def test_poison_records_are_dead_lettered_with_a_reason_and_later_events_still_apply(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows
) -> None:
    good_before = cloud_event("P1", 0, "idea.submitted", {"title": "t"})
    no_subject_key = cloud_event("P1", 1, "discovery.started", {})
    bad_data = cloud_event("P2", 0, "risk.raised", {"severity": "apocalyptic"})
    mismatch = cloud_event("P3", 0, "idea.submitted", {})
    good_after = cloud_event("P1", 2, "requirement.approved", {})
    records = [
        structured(good_before),
        (b"P1", b"{not json", []),
        (None, json.dumps(no_subject_key).encode(), []),
        (b"P1", json.dumps({"specversion": "0.3", "id": "x"}).encode(), []),
        (b"P2", json.dumps(bad_data).encode(), []),
        (b"P9", json.dumps(mismatch).encode(), []),
        (b"P1", b"[]", [("ce_specversion", b"1.0"), ("ce_id", b"only-id")]),
        structured(good_after),
    ]
    worker = make_worker("w")
    produce(kafka_bootstrap, topics.events, records)
    expected = expected_outcome(workflows, [good_before, good_after])
    wait_for(settled(worker, expected), 60, "the good events applied", worker)
    dead = consume_all(kafka_bootstrap, topics.dlq, timeout=3)
    reasons = sorted(dict(r.headers)["lifecycle_dlq_reason"].decode() for r in dead)
    assert reasons == sorted(
        [
            "not_json",
            "no_key",
            "invalid_cloudevent",
            "invalid_event",
            "key_mismatch",
            "invalid_cloudevent",
        ]
    )
    assert b"{not json" in [r.value for r in dead]  # the original value, untouched
    wait_for(
        lambda: worker.metrics().get("lifecycle_dead_letters_total") == 6,
        10,
        "dead letters counted",
        worker,
    )
    status, body = worker.get("/features/P1")
    assert status == 200 and body["stage"] == "defined"


def test_two_workers_share_the_partitions_answer_for_every_feature_and_take_over(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows
) -> None:
    events = lifecycles(60, seed=9)
    expected = expected_outcome(workflows, events)
    a = make_worker("a")
    a.wait_ready(partitions=8)
    b = make_worker("b")
    wait_for(lambda: bool(b.partitions()) and bool(a.partitions()), 60, "a rebalance", b)
    wait_for(
        lambda: len((a.partitions() or []) + (b.partitions() or [])) == 8,
        30,
        "8 partitions shared",
        b,
    )
    owned_a, owned_b = set(a.partitions() or ()), set(b.partitions() or ())
    assert owned_a and owned_b and not owned_a & owned_b and owned_a | owned_b == set(range(8))
    produce(kafka_bootstrap, topics.events, (structured(e) for e in events))

    last: list[Any] = []

    def both_final() -> bool:
        for fid, (state, _) in expected.items():
            for w in (a, b):
                status, body = w.get(f"/features/{fid}")
                if status != 200 or body["stage"] != state["stage"]:
                    last[:] = [w.url, fid, status, body, state["stage"]]
                    return False
        return True

    try:
        wait_for(both_final, 90, "both APIs answer every feature", b)
    except AssertionError as err:
        raise AssertionError(f"{err}\nlast miss: {last}") from None
    for w in (a, b):
        status, body = w.get("/features")
        assert status == 200
        assert sorted(f["id"] for f in body["features"]) == sorted(expected)
        fid = next(iter(expected))
        _, body = w.get(f"/features/{fid}/history")
        lines = [strip_time(e) for e in body["entries"] if e["source"] != ENGINE_SOURCE]
        assert lines == [strip_time(e) for e in expected[fid][1]]
    # Each worker's metrics count only its own features; together they count each once.
    total = a.metrics()["lifecycle_features"] + b.metrics()["lifecycle_features"]
    assert total == len(expected)
    b.stop()
    wait_for(lambda: len(a.partitions() or []) == 8, 60, "a takes over", a)
    wait_for(lambda: actual_outcome(a, expected) == expected, 60, "state intact on a", a)
    assert_same(a, expected)


def strip_time(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "received_at"}


def test_exactly_once_guarantee_works_on_the_single_broker(
    make_worker: Any, topics: Any, kafka_bootstrap: str, workflows: Workflows
) -> None:
    events = lifecycles(60, seed=11)
    expected = expected_outcome(workflows, events)
    worker = make_worker("eos", LIFECYCLE_PROCESSING_GUARANTEE="exactly_once")
    produce(kafka_bootstrap, topics.events, (structured(e) for e in events))
    wait_for(settled(worker, expected), 90, "every feature final under exactly-once", worker)
    assert_same(worker, expected)
