"""Pure parts of the streaming worker: partitioning, broker URLs, stage-change events."""

from __future__ import annotations

from kafka.partitioner.default import murmur2

from engine.core.processor import process
from engine.streaming.agent import STAGE_CHANGED, is_stage_change, stage_changed
from engine.streaming.routing import key_partition
from engine.streaming.worker import bootstrap_servers, default_app_id
from tests.factories import T0, make_event
from workflows.loader import Workflows


def test_key_partition_is_the_java_clients_partition() -> None:
    """Reads are routed to the worker whose partition a producer put the feature on."""
    for key in ("feat-1", "F0", "checkout:v2", "x" * 128):
        # kafka-python's copy of the Java client's rule (the emitter's producer uses it).
        expected = (murmur2(key.encode()) & 0x7FFFFFFF) % 8
        assert key_partition(key, 8) == expected


def test_bootstrap_servers_from_faust_broker_urls() -> None:
    assert bootstrap_servers("kafka://127.0.0.1:9092") == "127.0.0.1:9092"
    assert bootstrap_servers("kafka://a:1;kafka://b:2") == "a:1,b:2"


def test_app_id_follows_the_events_topic() -> None:
    assert default_app_id("lifecycle.events") == "lifecycle"
    assert default_app_id("team.events") == "lifecycle-team.events"


def test_stage_change_event_names_both_stages_and_the_cause(workflows: Workflows) -> None:
    created = process(workflows, None, make_event("idea.submitted", "f1"), T0)
    assert not is_stage_change(created)  # a creation is not a change of stage
    moved = process(workflows, created.state, make_event("build.started", "f1", id="b1"), T0)
    assert is_stage_change(moved)
    ce = stage_changed(moved, "b1", "ci/build", "lifecycle/engine")
    assert ce["type"] == STAGE_CHANGED and ce["subject"] == "f1"
    assert ce["data"]["from_stage"] == "idea" and ce["data"]["to_stage"] == "development"
    assert "design" in ce["data"]["skipped"]
    # The same cause always gives the same id, so a re-publication can be recognised.
    assert stage_changed(moved, "b1", "ci/build", "x")["id"] == ce["id"]
