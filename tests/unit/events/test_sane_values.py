"""DESIGN.md rule 10: only sane values pass the edge, on every path an event comes in by.

Each hostile input is tried through every decoder the transports use (HTTP structured and
batch, HTTP and Kafka binary mode, the Kafka fast path and the Kafka full path): each must
answer :class:`MalformedEvent` with a reason, never another exception, never an event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from engine.streaming import codec
from events.catalogue import CATALOGUE
from events.envelope import (
    BATCH,
    EARLIEST_TIME,
    LATEST_AHEAD,
    STRUCTURED,
    Event,
    binary_attributes,
    decode_event,
    decode_http,
    parse_binary,
    validate_event,
)
from events.errors import MalformedEvent, Problem

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
BASE = {"specversion": "1.0", "id": "1", "source": "s", "subject": "F-1"}


def _body(**fields: Any) -> str:
    return json.dumps({**BASE, "type": "build.started", **fields})


def _data(event_type: str, data: str) -> str:
    """A body whose ``data`` is the JSON text ``data`` as given (NaN and friends included)."""
    head = json.dumps({**BASE, "type": event_type})[:-1]
    return f'{head}, "data": {data}}}'


HOSTILE: dict[str, str] = {
    "year 1 with an offset": _body(time="0001-01-01T00:00:00+01:00"),
    "year 9999 with an offset": _body(time="9999-12-31T23:59:59-01:00"),
    "year 9999 in UTC": _body(time="9999-12-31T23:00:00Z"),
    "before 1970": _body(time="1969-12-31T23:59:59Z"),
    "two days ahead": _body(time="2026-03-03T12:00:01Z"),
    "time as a number": _body(time=12345),
    "time as digits": _body(time="12345"),
    "time as true": _body(time=True),
    "NaN priority": _data("feature.prioritized", '{"priority": NaN}'),
    "Infinity value": _data("kpi.reported", '{"value": Infinity}'),
    "-Infinity value": _data("kpi.reported", '{"value": -Infinity}'),
    "1e999 value": _data("kpi.reported", '{"value": 1e999}'),
    "1e999 in an extra field": _data("kpi.reported", '{"other": [1e999]}'),
    "400-digit float": _data("kpi.reported", '{"value": 1' + "0" * 400 + ".0}"),
    "priority true": _data("feature.prioritized", '{"priority": true}'),
    # Found by schemathesis: a number was read as days since 1970.
    "target_launch 0": _data("launch.scheduled", '{"target_launch": 0}'),
    "target_launch 20240501": _data("feature.prioritized", '{"target_launch": 20240501}'),
    "priority as text": _data("feature.prioritized", '{"priority": "3"}'),
    "lone surrogate in a title": _data("idea.submitted", '{"title": "bad \\ud800 title"}'),
    "lone low surrogate in a product": _data("idea.submitted", '{"product": "\\udfff"}'),
    "lone surrogate in the id": _body(id="\ud800"),
    "deep JSON in data": _data("build.started", "[" * 5000 + "]" * 5000),
    "deep JSON just over the limit": _data("build.started", "[" * 201 + "]" * 201),
    "a date that is not one": _data("launch.scheduled", '{"target_launch": "2026-02-30"}'),
}


def _via_http(body: bytes) -> Any:
    (received,) = decode_http(body, STRUCTURED, {}, CATALOGUE, NOW)
    return received.event


def _via_batch(body: bytes) -> Any:
    (received,) = decode_http(b"[" + body + b"]", BATCH, {}, CATALOGUE, NOW)
    return received.event


def _via_fast(body: bytes) -> Any:
    return decode_event(body, CATALOGUE, NOW)


def _via_kafka(body: bytes) -> Any:
    try:
        return codec.decode_record(b"F-1", body, [], CATALOGUE, NOW)
    except codec.Refused as refused:  # the dead letter's detail is the MalformedEvent's text
        raise MalformedEvent([Problem("", refused.letter.detail)]) from refused


PATHS: dict[str, Callable[[bytes], Any]] = {
    "http structured": _via_http,
    "http batch": _via_batch,
    "kafka fast path": _via_fast,
    "kafka record": _via_kafka,
}


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")  # a lone surrogate kept as such


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_value_is_malformed_on_every_path(case: str, path: str) -> None:
    with pytest.raises(MalformedEvent) as err:
        PATHS[path](_encoded(HOSTILE[case]))
    assert err.value.problems and all(p.reason for p in err.value.problems)


@pytest.mark.parametrize(
    "time",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59-23:59"],
)
@pytest.mark.parametrize("prefix", ["ce-", "ce_"])
def test_an_out_of_range_binary_time_is_malformed(time: str, prefix: str) -> None:
    headers = {
        f"{prefix}specversion": "1.0",
        f"{prefix}id": "1",
        f"{prefix}source": "s",
        f"{prefix}type": "build.started",
        f"{prefix}subject": "F-1",
        f"{prefix}time": time,
    }
    with pytest.raises(MalformedEvent) as err:
        validate_event(binary_attributes(headers, b"{}", prefix=prefix), CATALOGUE, NOW)
    assert {p.field for p in err.value.problems} == {"time"}


def test_a_header_attribute_that_is_not_unicode_is_malformed() -> None:
    # aiohttp keeps header bytes that are not UTF-8 as lone surrogates (surrogateescape).
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "s\udcff",
        "ce-type": "build.started",
        "ce-subject": "F-1",
    }
    with pytest.raises(MalformedEvent) as err:
        parse_binary(headers, None)
    assert [p.field for p in err.value.problems] == ["ce-source"]


def test_the_time_window_reason_names_the_limit() -> None:
    with pytest.raises(MalformedEvent) as err:
        _via_http(_encoded(_body(time="9999-12-31T23:00:00Z")))
    assert "ahead of the engine's clock" in str(err.value)
    with pytest.raises(MalformedEvent) as err:
        _via_http(_encoded(_body(time="0001-01-01T00:00:00+01:00")))
    assert "1970" in str(err.value)


SANE: dict[str, str] = {
    "the first second of 1970": _body(time="1970-01-01T00:00:00Z"),
    "a day ahead, to the second": _body(time="2026-03-02T12:00:00Z"),
    "an offset of -23:59": _body(time="2026-03-01T10:00:00-23:59"),
    "a far target": _data("launch.scheduled", '{"target_launch": "9999-12-31"}'),
    "an early target": _data("launch.scheduled", '{"target_launch": "0001-01-01"}'),
    "an integer priority": _data("feature.prioritized", '{"priority": 3}'),
    "the largest float": _data("kpi.reported", '{"value": 1.7976931348623157e308}'),
    "an escaped surrogate pair": _data("idea.submitted", '{"title": "\\ud83d\\ude80"}'),
    "deep JSON at the limit": _data("build.started", '{"x": ' + "[" * 197 + "]" * 197 + "}"),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", SANE)
def test_a_sane_edge_value_passes_every_path(case: str, path: str) -> None:
    answer = PATHS[path](_encoded(SANE[case]))
    event = answer[0] if isinstance(answer, list) else answer
    assert isinstance(event, Event)
    assert EARLIEST_TIME <= event.time <= NOW + LATEST_AHEAD


def test_a_far_target_is_kept_as_given() -> None:
    event = _via_fast(_encoded(SANE["a far target"]))
    assert event is not None and event.data.target_launch == date(9999, 12, 31)  # type: ignore[attr-defined]


def test_a_sender_a_day_ahead_is_accepted_only_up_to_the_margin() -> None:
    at_limit = (NOW + LATEST_AHEAD).strftime("%Y-%m-%dT%H:%M:%SZ")
    past_limit = (NOW + LATEST_AHEAD + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _via_fast(_encoded(_body(time=at_limit))) is not None
    with pytest.raises(MalformedEvent):
        _via_fast(_encoded(_body(time=past_limit)))


def test_an_ignored_type_is_not_held_to_the_engines_clock() -> None:
    # Another consumer's event on a shared topic: ignored, whatever its (valid) time.
    body = json.dumps({**BASE, "type": "deploy.finished", "time": "2999-01-01T00:00:00Z"})
    for path in PATHS.values():
        answer = path(body.encode())
        assert answer in (None, [None])
