"""Kafka records -> the typed event, or the reason they are dead-lettered."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.streaming import codec
from events import envelope
from events.catalogue import CATALOGUE, BuildShipped
from events.envelope import Event

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def event(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "specversion": "1.0",
        "id": "e1",
        "source": "ci/build",
        "type": "build.started",
        "subject": "feat-1",
        "time": "2026-01-01T00:00:00Z",
    }
    base.update(changes)
    return base


def decode(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
    """The event, or the dead letter of a refused record."""
    try:
        return codec.decode_record(key, value, headers, CATALOGUE, NOW)
    except codec.Refused as refused:
        return refused.letter


def test_structured_record_decodes() -> None:
    ev = decode(b"feat-1", json.dumps(event()).encode(), [])
    assert isinstance(ev, Event) and ev.feature == "feat-1" and ev.type == "build.started"


def test_binary_mode_takes_attributes_from_ce_headers_and_data_from_the_value() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"e2"),
        ("ce_source", b"ci/build"),
        ("ce_type", b"build.shipped"),
        ("ce_subject", b"feat-1"),
        ("content-type", b"application/json"),
    ]
    ev = decode(b"feat-1", b'{"build": "1.2"}', headers)
    assert isinstance(ev, Event)
    assert ev.id == "e2" and ev.data == BuildShipped(build="1.2")


@pytest.mark.parametrize(
    ("key", "value", "headers", "reason"),
    [
        (b"feat-1", b"{nope", [], codec.NOT_JSON),
        (b"feat-1", None, [], codec.NOT_JSON),
        (b"feat-1", json.dumps({"id": "x"}).encode(), [], codec.INVALID_CLOUDEVENT),
        (b"feat-1", b"[1, 2]", [], codec.INVALID_CLOUDEVENT),
        (None, json.dumps(event()).encode(), [], codec.NO_KEY),
        (b"", json.dumps(event()).encode(), [], codec.NO_KEY),
        (b"other", json.dumps(event()).encode(), [], codec.KEY_MISMATCH),
        (b"feat-1", b"{nope", [("ce_specversion", b"1.0"), ("ce_id", b"x")], codec.NOT_JSON),
        (b"feat-1", b"{}", [("ce_specversion", b"1.0")], codec.INVALID_CLOUDEVENT),
        (b"feat-1", json.dumps(event(subject="-bad")).encode(), [], codec.INVALID_EVENT),
        (b"feat-1", json.dumps(event(type="risk.raised")).encode(), [], codec.INVALID_EVENT),
    ],
)
def test_malformed_records_get_a_reason(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], reason: str
) -> None:
    letter = decode(key, value, headers)
    assert isinstance(letter, codec.DeadLetter)
    assert letter.reason == reason
    assert letter.detail


def test_an_event_without_subject_is_not_a_key_mismatch() -> None:
    """Foreign CloudEvents without a subject pass through (and are then ignored)."""
    assert decode(b"k", json.dumps(event(subject=None, type="x.y")).encode(), []) is None


def test_dead_letter_headers_keep_the_original_and_add_reason_and_origin() -> None:
    letter = codec.DeadLetter(codec.NOT_JSON, "bad")
    headers = dict(
        codec.dead_letter_headers([("trace", b"1")], letter, topic="t", partition=3, offset=7)
    )
    assert headers["trace"] == b"1"
    assert headers[codec.REASON_HEADER] == b"not_json"
    assert headers["lifecycle_dlq_origin"] == b"t/3/7"


def test_a_dead_letter_is_bounded_whatever_record_it_came_from() -> None:
    """Key, value and original headers are cut so the dead letter of any record fits the
    broker (issue 16): a record at the limit plus the reason headers did not."""
    letter = codec.DeadLetter(codec.NOT_JSON, "x" * 5000)
    original = [("small", b"1"), ("big", b"h" * (900 * 1024)), ("after", b"2")]
    headers = codec.dead_letter_headers(original, letter, topic="t", partition=0, offset=1)
    value, headers = codec.dead_letter_value(b"v" * (1024 * 1024), headers)
    key, cut = codec.dead_letter_key(b"k" * (1024 * 1024))
    headers = [*headers, *cut]
    named = dict(headers)
    assert named["small"] == b"1" and named["after"] == b"2" and "big" not in named
    assert named[codec.HEADERS_DROPPED_HEADER] == b"1"
    assert named[codec.KEY_TRUNCATED_HEADER] == str(1024 * 1024).encode()
    assert named[codec.TRUNCATED_HEADER] == str(1024 * 1024).encode()
    assert key is not None and value is not None
    total = len(key) + len(value) + sum(len(k) + len(v) for k, v in headers)
    assert total < 600 * 1024
    assert codec.dead_letter_key(b"F-1") == (b"F-1", [])


def test_encode_writes_the_json_the_standard_library_writes() -> None:
    """orjson encodes what the worker publishes; it reads back as ``json.dumps`` wrote it,
    times included, and what orjson refuses (an integer past 64 bits) still encodes."""
    from datetime import UTC, date, datetime

    event = {
        "id": "e-1",
        "time": datetime(2024, 1, 1, 12, 30, tzinfo=UTC),
        "data": {"title": "caf\u00e9 \U0001f680", "launch": date(2027, 6, 1), "n": 1.5e16},
        "big": 10**30,
    }
    expected = json.loads(json.dumps(event, default=str))
    assert json.loads(codec.encode(event)) == expected
    assert json.loads(codec.encode({k: v for k, v in event.items() if k != "big"})) == {
        k: v for k, v in expected.items() if k != "big"
    }


@pytest.mark.parametrize(
    ("changes", "key", "answer"),
    [
        ({"type": "deploy.finished"}, b"feat-1", None),  # outside the catalogue: ignored
        ({"type": "deploy.finished"}, b"other", codec.KEY_MISMATCH),
        ({"type": "build.started", "subject": "bad subject"}, b"feat-1", codec.INVALID_EVENT),
    ],
)
def test_a_record_off_the_one_pass_path_is_validated_once(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, object], key: bytes, answer: str | None
) -> None:
    """A record the one validation pass does not take (a type outside the catalogue, a
    fault) is decoded and validated once more, not twice (issue 16: each record once)."""
    calls = []
    full = envelope.validate_event

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return full(*args, **kwargs)

    monkeypatch.setattr(envelope, "validate_event", counted)
    monkeypatch.setattr(codec, "validate_event", counted)
    found = decode(key, json.dumps(event(**changes)).encode(), [])
    assert (found if found is None else found.reason) == answer
    assert len(calls) == 1


def test_a_valid_record_of_the_catalogue_takes_the_one_pass_path_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full validation ran for a valid catalogue record")

    monkeypatch.setattr(envelope, "validate_event", refused)
    monkeypatch.setattr(codec, "validate_event", refused)
    found = decode(b"feat-1", json.dumps(event()).encode(), [])
    assert isinstance(found, Event) and found.type == "build.started"
