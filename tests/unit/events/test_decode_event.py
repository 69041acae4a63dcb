"""decode_event (the one-pass hot path) answers exactly as the full validator does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from events.catalogue import CATALOGUE
from events.envelope import decode_event, decode_json, validate_decoded, validate_event
from events.errors import MalformedEvent

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
BASE = {"specversion": "1.0", "id": "1", "source": "s", "subject": "F-1"}

BODIES: list[dict[str, Any]] = [
    {**BASE, "type": "idea.submitted", "data": {"title": "t", "product": "p"}},
    {**BASE, "type": "build.started"},
    {**BASE, "type": "build.started", "data": None},
    {**BASE, "type": "risk.raised", "data": {"risk_id": "r", "severity": "high"}},
    {**BASE, "type": "risk.raised"},
    {**BASE, "type": "risk.raised", "data": {"risk_id": "r", "severity": "huge"}},
    {**BASE, "type": "launch.scheduled", "data": {"target_launch": "2027-01-01"}},
    {**BASE, "type": "launch.scheduled", "data": {"target_launch": "soon"}},
    {**BASE, "type": "feature.prioritized", "time": "2026-03-01T10:00:00+02:00"},
    {**BASE, "type": "build.started", "subject": "-bad"},
    {**BASE, "type": "build.started", "subject": None},
    {**BASE, "type": "build.started", "specversion": "0.3"},
    {**BASE, "type": "build.started", "time": "2026-03-01T10:00:00"},
    {**BASE, "type": "build.started", "data": [1, 2]},
    {**BASE, "type": "somebody.elses", "subject": None},
    {**BASE, "type": "kpi.reported", "data": {"name": "nps", "value": 42}, "workflow": "w"},
    {**BASE, "type": "build.started", "workflow": 5, "traceparent": "00-abc-01"},
    {**BASE, "type": "build.started", "datacontenttype": None, "dataschema": None},
    {**BASE, "type": "build.started", "datacontenttype": 7},
    {**BASE, "type": "build.started", "id": ""},
    {**BASE, "type": "build.started", "id": 12},
    {**BASE, "type": "build.started", "source": ""},
    {**BASE, "type": "risk.raised", "data": None},
    {**BASE, "type": "build.started", "data": {"unknown": 1}},
]
TIMES = [
    "2026-03-01T10:00:00Z",
    "2026-03-01T10:00:00.5Z",
    "2026-03-01T10:00:00.123456Z",
    "2026-03-01T10:00:00.123456789Z",
    "2026-03-01T10:00:00-00:00",
    "2026-03-01T10:00:00+23:59",
    "2026-03-01t10:00:00z",
    "2026-03-01 10:00:00Z",
    "2026-02-30T10:00:00Z",
    "2026-03-01T23:59:60Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01T10:00:00+24:00",
    "2026-03-01",
    "yesterday",
    "",
]
BODIES += [{**BASE, "type": "build.started", "time": t} for t in TIMES]


def _answer(fn: Any, body: bytes) -> Any:
    try:
        return ("event", fn(body))
    except MalformedEvent as err:
        return ("malformed", sorted((p.field, p.reason) for p in err.problems))


@pytest.mark.parametrize("doc", BODIES, ids=lambda d: f"{d['type']}-{d.get('time')}")
def test_decode_event_and_validate_decoded_match_the_full_validator(doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    fast = _answer(lambda b: decode_event(b, CATALOGUE, NOW), body)
    full = _answer(lambda b: validate_event(decode_json(b), CATALOGUE, NOW), body)
    assert fast == full
    decoded = _answer(lambda b: validate_decoded(decode_json(b), CATALOGUE, NOW), body)
    assert decoded == full  # POST /events' one pass on the decoded value
    if fast[0] == "event" and fast[1] is not None:
        assert fast[1].time.tzinfo is full[1].time.tzinfo is UTC


def test_a_valid_event_is_typed_in_utc() -> None:
    doc = {
        **BASE,
        "type": "feature.prioritized",
        "time": "2026-03-01T10:00:00+02:00",
        "data": {"priority": 2, "target_launch": "2026-06-01"},
    }
    event = decode_event(json.dumps(doc).encode(), CATALOGUE, NOW)
    assert event is not None
    assert event.time == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert event.data.target_launch.isoformat() == "2026-06-01"  # type: ignore[attr-defined]


def test_not_json_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="not valid JSON"):
        decode_event(b"{nope", CATALOGUE, NOW)
