"""The CloudEvents envelope: the three wire forms, and every problem reported at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from events.catalogue import CATALOGUE, BuildShipped, RiskChanged
from events.envelope import (
    BATCH,
    STRUCTURED,
    Received,
    binary_attributes,
    decode_http,
    parse_binary,
    parse_structured,
    validate_event,
)
from events.errors import MalformedEvent

RECEIVED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def raw(**overrides: Any) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "ci/build-service",
        "type": "build.shipped",
        "subject": "checkout-v2",
        "time": "2024-05-01T10:00:00Z",
        "data": {"build": "1.4.2"},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def fields(err: pytest.ExceptionInfo[MalformedEvent]) -> set[str]:
    return {p.field for p in err.value.problems}


# --- structured ------------------------------------------------------------------------------


def test_structured_event_becomes_a_typed_event() -> None:
    (received,) = decode_http(json.dumps(raw()).encode(), STRUCTURED, {}, CATALOGUE, RECEIVED)
    event = received.event
    assert event is not None
    assert (event.id, event.source, event.type, event.feature) == (
        "evt-1",
        "ci/build-service",
        "build.shipped",
        "checkout-v2",
    )
    assert event.time == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert event.data == BuildShipped(build="1.4.2")


def test_structured_keeps_extension_attributes() -> None:
    ce = parse_structured(json.dumps(raw(traceparent="00-abc", workflow="feature")))
    assert ce.model_extra == {"traceparent": "00-abc", "workflow": "feature"}
    event = validate_event(raw(traceparent="00-abc", workflow="feature"), CATALOGUE, RECEIVED)
    assert event is not None and event.workflow == "feature"


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '"text"'])
def test_structured_refuses_what_is_not_an_event_object(body: str) -> None:
    with pytest.raises(MalformedEvent):
        parse_structured(body)


# --- batch -----------------------------------------------------------------------------------


def batch(items: object) -> list[Received]:
    return decode_http(json.dumps(items).encode(), BATCH, {}, CATALOGUE, RECEIVED)


def test_batch_lists_problems_of_every_bad_member_by_index() -> None:
    with pytest.raises(MalformedEvent) as err:
        batch([raw(), raw(source=None), raw(), raw(specversion="0.3")])
    assert fields(err) == {"[1].source", "[3].specversion"}


def test_batch_must_be_an_array() -> None:
    with pytest.raises(MalformedEvent, match="JSON array"):
        batch(raw())


def test_batch_types_each_member_and_ignores_foreign_types() -> None:
    items = [raw(id="a"), raw(id="b", type="vendor.thing", subject=None)]
    events = [r.event for r in batch(items)]
    assert events[0] is not None and events[0].id == "a"
    assert events[1] is None
    assert [r.raw for r in batch(items)] == items


def test_batch_reports_envelope_and_subject_problems_by_index() -> None:
    with pytest.raises(MalformedEvent) as err:
        batch([raw(), raw(source=None, subject="-bad")])
    assert fields(err) == {"[1].source", "[1].subject"}


# --- binary ----------------------------------------------------------------------------------


def test_http_binary_mode() -> None:
    headers = {
        "CE-SpecVersion": "1.0",
        "ce-id": "evt-9",
        "ce-source": "qa/uat",
        "ce-type": "uat.failed",
        "ce-subject": "checkout-v2",
        "ce-time": "2024-05-01T12:30:00+02:00",
        "Content-Type": "application/json",
    }
    ce = parse_binary(headers, b'{"reason": "payment flow broken"}')
    assert ce.datacontenttype == "application/json"
    (received,) = decode_http(
        b'{"reason": "payment flow broken"}', None, headers, CATALOGUE, RECEIVED
    )
    event = received.event
    assert event is not None
    assert event.type == "uat.failed" and event.feature == "checkout-v2"
    assert event.time == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    assert getattr(event.data, "reason", None) == "payment flow broken"


def test_kafka_binary_mode_with_bytes_headers() -> None:
    headers: dict[str, str | bytes] = {
        "ce_specversion": b"1.0",
        "ce_id": b"evt-10",
        "ce_source": b"risk/register",
        "ce_type": b"risk.raised",
        "ce_subject": b"checkout-v2",
    }
    attributes = binary_attributes(
        headers, b'{"risk_id": "sec-1", "severity": "critical"}', prefix="ce_"
    )
    event = validate_event(attributes, CATALOGUE, RECEIVED)
    assert event is not None
    assert event.data == RiskChanged(risk_id="sec-1", severity="critical")
    assert event.time == RECEIVED  # no ce_time: the receive time


def test_binary_mode_http_prefix_does_not_read_kafka_headers() -> None:
    headers = {"ce_specversion": "1.0", "ce_id": "x", "ce_source": "s", "ce_type": "t"}
    with pytest.raises(MalformedEvent) as err:
        parse_binary(headers, None)
    assert {"specversion", "id", "source", "type"} <= fields(err)


def test_binary_mode_non_json_body_is_kept_as_text() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "x.y"}
    ce = parse_binary({**headers, "content-type": "text/plain"}, b"hello")
    assert ce.data == "hello"


def test_binary_mode_bad_json_body_is_malformed() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "x.y"}
    with pytest.raises(MalformedEvent, match="not valid JSON"):
        parse_binary(headers, b"{oops")


def test_binary_attributes_feed_validate_event() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-type": "build.shipped",
        "ce-subject": "bad subject!",
    }
    with pytest.raises(MalformedEvent) as err:
        validate_event(binary_attributes(headers, b"{}"), CATALOGUE, RECEIVED)
    assert fields(err) == {"source", "subject"}


# --- every problem at once -------------------------------------------------------------------


def test_envelope_subject_and_data_problems_are_reported_together() -> None:
    event = raw(source=None, specversion="0.3", subject="-starts-badly", data={"build": [1]})
    with pytest.raises(MalformedEvent) as err:
        validate_event(event, CATALOGUE, RECEIVED)
    assert fields(err) == {"source", "specversion", "subject", "data.build"}
    message = str(err.value)
    assert "source" in message and "subject" in message


def test_missing_subject_and_data_problems_together() -> None:
    event = raw(type="risk.raised", subject=None, data={"severity": "urgent"})
    with pytest.raises(MalformedEvent) as err:
        validate_event(event, CATALOGUE, RECEIVED)
    assert fields(err) == {"subject", "data.risk_id", "data.severity"}


def test_subject_and_data_problems_come_together() -> None:
    with pytest.raises(MalformedEvent) as err:
        validate_event(raw(subject="x" * 129, data=[1]), CATALOGUE, RECEIVED)
    assert fields(err) == {"subject", "data"}


def test_a_non_string_subject_is_reported_once() -> None:
    with pytest.raises(MalformedEvent) as err:
        validate_event(raw(subject=42), CATALOGUE, RECEIVED)
    assert [p.field for p in err.value.problems] == ["subject"]


@pytest.mark.parametrize("subject", ["a", "A.b_c:d-9", "x" * 128, "0abc"])
def test_good_subjects(subject: str) -> None:
    event = validate_event(raw(subject=subject), CATALOGUE, RECEIVED)
    assert event is not None and event.feature == subject


@pytest.mark.parametrize("subject", ["", "_x", "-x", "x" * 129, "a b", "a/b", "é"])
def test_bad_subjects(subject: str) -> None:
    with pytest.raises(MalformedEvent) as err:
        validate_event(raw(subject=subject), CATALOGUE, RECEIVED)
    assert fields(err) == {"subject"}


# --- time ------------------------------------------------------------------------------------


def test_time_zones_are_converted_to_utc() -> None:
    event = validate_event(raw(time="2024-05-01T05:00:00-05:00"), CATALOGUE, RECEIVED)
    assert event is not None
    assert event.time == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert event.time.tzinfo == UTC


def test_missing_time_is_the_receive_time() -> None:
    event = validate_event(raw(time=None), CATALOGUE, RECEIVED)
    assert event is not None and event.time == RECEIVED


def test_naive_time_is_rejected() -> None:
    with pytest.raises(MalformedEvent) as err:
        validate_event(raw(time="2024-05-01T10:00:00"), CATALOGUE, RECEIVED)
    assert fields(err) == {"time"}
    with pytest.raises(MalformedEvent):
        parse_structured(json.dumps(raw(time="2024-05-01T10:00:00")))


def test_garbage_time_is_rejected() -> None:
    with pytest.raises(MalformedEvent) as err:
        validate_event(raw(time="yesterday"), CATALOGUE, RECEIVED)
    assert fields(err) == {"time"}


# --- types outside the catalogue --------------------------------------------------------------


def test_foreign_type_is_ignored_even_without_subject_or_object_data() -> None:
    foreign = raw(type="com.vendor.deploy", subject=None, data="plain text")
    assert validate_event(foreign, CATALOGUE, RECEIVED) is None
    body = json.dumps(foreign).encode()
    assert [r.event for r in decode_http(body, STRUCTURED, {}, CATALOGUE, RECEIVED)] == [None]


def test_foreign_type_with_a_broken_envelope_is_still_malformed() -> None:
    with pytest.raises(MalformedEvent) as err:
        validate_event(raw(type="com.vendor.deploy", id=""), CATALOGUE, RECEIVED)
    assert fields(err) == {"id"}


def test_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="JSON object"):
        validate_event([raw()], CATALOGUE, RECEIVED)


def test_unknown_data_fields_are_tolerated() -> None:
    event = validate_event(raw(data={"build": "2", "commit": "abc"}), CATALOGUE, RECEIVED)
    assert event is not None and event.data == BuildShipped(build="2")


def test_duplicate_identity_is_source_and_id() -> None:
    a = validate_event(raw(id="1", source="a"), CATALOGUE, RECEIVED)
    b = validate_event(raw(id="1", source="b"), CATALOGUE, RECEIVED)
    c = validate_event(raw(id="1", source="a", time=None), CATALOGUE, RECEIVED)
    assert a is not None and b is not None and c is not None
    assert a.key != b.key and a.key == c.key
