"""The emitter's contract without a broker: what it builds, and what it refuses before sending."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from events import CATALOGUE, EmitFailed, Emitter, MalformedEvent, parse_binary, parse_structured
from events.emitter import DEFAULT_TOPIC, build_message
from events.envelope import decode_event

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: a connection attempt would fail


def fields(err: pytest.ExceptionInfo[MalformedEvent]) -> set[str]:
    return {p.field for p in err.value.problems}


def test_importing_the_events_package_does_not_load_kafka() -> None:
    code = "import sys, events, events.emitter; print('kafka' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_a_bad_event_raises_at_the_call_listing_every_problem_before_any_connection() -> None:
    # timeout=30 at an address where nobody listens: had the emitter connected first, the call
    # would end in EmitFailed after 30 s, not in MalformedEvent at once.
    emitter = Emitter(UNREACHABLE, source="", timeout=30)
    with pytest.raises(MalformedEvent) as err:
        emitter.emit(
            "risk.raised",
            "-not a feature id",
            data={"severity": "huge"},
            time=datetime(2025, 3, 1, 12, 0),  # naive
        )
    assert fields(err) == {"source", "subject", "time", "data.risk_id", "data.severity"}
    assert "risk_id" in str(err.value) and "timezone" in str(err.value)
    emitter.close()


def test_an_event_without_any_source_is_refused() -> None:
    emitter = Emitter(UNREACHABLE, timeout=30)
    with pytest.raises(MalformedEvent) as err:
        emitter.emit("build.shipped", "checkout-v2", data={"build": "1.4.2"})
    assert fields(err) == {"source"}
    emitter.close()


def test_the_structured_record_is_what_the_engine_parses() -> None:
    msg = build_message(
        "feature.prioritized",
        "checkout-v2",
        {"priority": 2, "target_launch": date(2025, 6, 30)},
        source="pm/roadmap",
        time=NOW,
    )
    assert msg.key == b"checkout-v2"
    assert dict(msg.headers) == {"content-type": b"application/cloudevents+json"}
    ce = parse_structured(msg.value)
    assert ce == msg.event
    event = decode_event(msg.value, CATALOGUE, datetime.now(UTC))
    assert event is not None
    assert (event.type, event.feature, event.source, event.time) == (
        "feature.prioritized",
        "checkout-v2",
        "pm/roadmap",
        NOW,
    )
    assert event.data.target_launch == date(2025, 6, 30)  # type: ignore[attr-defined]
    assert json.loads(msg.value)["time"] == "2025-03-01T12:00:00Z"


def test_the_binary_record_carries_attributes_in_ce_headers_and_data_as_value() -> None:
    msg = build_message(
        "uat.failed",
        "checkout-v2",
        {"reason": "crash on löschen"},
        source="qa/uat",
        id="run-7",
        time=NOW,
        binary=True,
    )
    headers = dict(msg.headers)
    assert headers["ce_id"] == b"run-7"
    assert headers["ce_type"] == b"uat.failed"
    assert headers["ce_subject"] == b"checkout-v2"
    assert headers["content-type"] == b"application/json"
    assert json.loads(msg.value) == {"reason": "crash on löschen"}
    assert parse_binary(headers, msg.value, prefix="ce_") == msg.event


def test_ids_are_generated_unique_and_time_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    events = [build_message("build.started", "f1", source="ci").event for _ in range(3)]
    assert len({e.id for e in events}) == 3
    for e in events:
        assert e.time is not None and e.time.utcoffset() == timedelta(0)
        assert before <= e.time <= datetime.now(UTC)


def test_a_given_id_and_time_are_kept_with_the_time_in_utc() -> None:
    paris = datetime(2025, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    msg = build_message("build.started", "f1", source="ci", id="build-42", time=paris)
    assert msg.event.id == "build-42"
    assert msg.event.time == NOW
    assert json.loads(msg.value)["time"] == "2025-03-01T12:00:00Z"


def test_a_type_outside_the_catalogue_is_sent_and_the_engine_ignores_it() -> None:
    msg = build_message("deploy.finished", "f1", {"anything": [1, 2]}, source="cd/argo")
    ce = parse_structured(msg.value)
    assert ce.type == "deploy.finished"
    assert decode_event(msg.value, CATALOGUE, datetime.now(UTC)) is None


def test_a_type_outside_the_catalogue_still_needs_a_valid_envelope_and_feature() -> None:
    with pytest.raises(MalformedEvent) as err:
        build_message("deploy.finished", "", source="", id="")
    assert fields(err) == {"id", "source", "subject"}


def test_data_that_is_not_json_is_refused() -> None:
    with pytest.raises(MalformedEvent) as err:
        build_message("kpi.reported", "f1", {"value": object()}, source="bi")
    assert fields(err) == {"data"}


def test_extensions_are_sent_and_the_workflow_extension_reaches_the_engine() -> None:
    msg = build_message("build.started", "f1", source="ci", extensions={"workflow": "hotfix"})
    event = decode_event(msg.value, CATALOGUE, datetime.now(UTC))
    assert event is not None and event.workflow == "hotfix"
    with pytest.raises(MalformedEvent) as err:
        build_message("build.started", "f1", source="ci", extensions={"Bad-Name": "x", "id": "y"})
    assert fields(err) == {"extensions.Bad-Name", "extensions.id"}


def test_the_emitter_fixes_idempotence_and_acks_and_checks_its_topic() -> None:
    assert Emitter(UNREACHABLE).topic == DEFAULT_TOPIC
    with pytest.raises(ValueError, match="acks"):
        Emitter(UNREACHABLE, producer_config={"acks": 1})
    with pytest.raises(ValueError, match="topic"):
        Emitter(UNREACHABLE, topic="not a topic")
    with pytest.raises(ValueError, match="linger"):
        Emitter(UNREACHABLE, producer_config={"linger": 5})  # a typo of linger_ms


def test_a_closed_emitter_refuses_to_send() -> None:
    emitter = Emitter(UNREACHABLE, source="ci")
    emitter.close()
    with pytest.raises(EmitFailed, match="closed"):
        emitter.emit("build.started", "f1")
