"""The two modes agree: the same events through the embedded engine (HTTP, SQLite) and a
streaming worker (the real broker, a Faust table) give every feature the same view and the
same history, risk signals included (DESIGN.md rule 9: ``source`` ``lifecycle/engine``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.embedded_server import EmbeddedServer
from tests.integration.kafka.conftest import ENGINE_SOURCE, Worker, produce, structured, wait_for

pytestmark = pytest.mark.integration

ENGINE = ENGINE_SOURCE
CLOCK_FIELDS = {"received_at"}
"""Set by each mode's own clock when the event arrives: never equal across two runs."""
SIGNAL_CLOCK_FIELDS = {"received_at", "time", "event_id"}
"""A risk signal is dated by the clock that saw the reason change, and its id hashes that
instant; what it says (type, reason, outcome, stages, order) must agree."""
VIEW_CLOCK_FIELDS = {"forecast_launch"}
"""Forecasts are judged at read time from durations observed so far."""


def scenario(now: datetime) -> list[dict[str, Any]]:
    """Events of features that cover every outcome and every immediate risk reason."""
    seq: dict[str, int] = {}

    def ev(fid: str, etype: str, data: dict[str, Any] | None = None, days_ago: float = 0):
        seq[fid] = seq.get(fid, 0) + 1
        return {
            "specversion": "1.0",
            "id": f"{fid}-{seq[fid]}",
            "source": "qa/modes",
            "type": etype,
            "subject": fid,
            "time": (now - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": data or {},
        }

    critical = {"risk_id": "r1", "severity": "critical", "title": "data loss"}
    raised = ev("crit", "risk.raised", critical, 1)
    return [
        ev("crit", "idea.submitted", {"title": "Critical", "product": "pay"}, 2),
        ev("crit", "build.started", {}, 2),
        raised,
        ev("crit", "feature.launched", {}, 1),  # rejected: gate:uat
        ev("crit", "build.shipped", {"build": "1"}, 1),
        ev("crit", "uat.passed", {}, 1),
        ev("crit", "feature.launched", {}, 1),  # rejected: guard:critical_risk
        ev("crit", "risk.mitigated", {"risk_id": "r1"}, 1),
        ev("crit", "feature.launched", {}, 0),
        raised,  # duplicate
        ev("old", "idea.submitted", {"title": "Stuck"}, 60),  # past idea's 30-day SLA
        ev("old", "discovery.started", {}, 0),
        ev("block", "idea.submitted", {"title": "Blocked"}, 1),
        ev("block", "feature.blocked", {"reason": "waiting on legal"}, 1),
        ev("block", "feature.unblocked", {}, 0),
        ev("slip", "idea.submitted", {"title": "Late"}, 5),
        ev("slip", "requirement.approved", {"acceptance_criteria": ["works"]}, 4),
        ev("slip", "feature.prioritized", {"priority": 1, "target_launch": "2020-01-01"}, 4),
        ev("slip", "feature.cancelled", {"reason": "too late"}, 0),
        ev("rework", "build.shipped", {"build": "1"}, 3),  # created implicitly
        ev("rework", "uat.failed", {"reason": "bug"}, 3),
        ev("rework", "build.shipped", {"build": "2"}, 2),
        ev("rework", "uat.failed", {"reason": "bug"}, 2),
        ev("rework", "build.shipped", {"build": "3"}, 1),
        ev("gate", "build.started", {}, 1),
        ev("gate", "uat.passed", {}, 1),  # rule 5: past the gate, uat skipped
        ev("gate", "com.example.other", {}, 1),  # ignored
        ev("far", "launch.scheduled", {"target_launch": "9999-12-31"}, 0),
        ev("far", "feedback.received", {"sentiment": "positive"}, 0),
    ]


def normalised_history(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        drop = SIGNAL_CLOCK_FIELDS if entry["source"] == ENGINE else CLOCK_FIELDS
        out.append({k: v for k, v in entry.items() if k not in drop})
    return out


def normalised_view(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k not in VIEW_CLOCK_FIELDS}


def test_both_modes_give_every_feature_the_same_view_and_history(
    make_worker: Any, topics: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    events = scenario(datetime.now(UTC).replace(microsecond=0))
    features = sorted({e["subject"] for e in events})

    worker: Worker = make_worker("modes")
    worker.wait_ready()
    produce(kafka_bootstrap, topics.events, [structured(e) for e in events])

    with EmbeddedServer(tmp_path / "embedded.db") as server:
        for event in events:  # one request each, in order, as the records were produced
            assert server.post_event(event).status == 202
        embedded = {
            fid: (
                server.get(f"/features/{fid}").json,
                server.get(f"/features/{fid}/history?limit=500").json["entries"],
            )
            for fid in features
        }

    wait_for(lambda: worker.processed() >= len(events), 90, "every event processed", worker)

    def streaming_side() -> dict[str, Any]:
        found = {}
        for fid in features:
            status, view = worker.get(f"/features/{fid}")
            _, history = worker.get(f"/features/{fid}/history?limit=500")
            found[fid] = (view if status == 200 else {"status": status}, history["entries"])
        return found

    streaming = streaming_side()
    for fid in features:
        e_view, e_history = embedded[fid]
        s_view, s_history = streaming[fid]
        assert normalised_view(s_view) == normalised_view(e_view), fid
        assert normalised_history(s_history) == normalised_history(e_history), (
            fid,
            json.dumps(s_history, indent=1),
        )

    # The scenario does what it is for: signals in the history, both directions, each mode.
    signals = {
        (fid, e["type"], e["reason"])
        for fid, (_, history) in streaming.items()
        for e in history
        if e["source"] == ENGINE
    }
    assert {
        ("crit", "feature.at_risk", "critical_risk"),
        ("crit", "feature.risk_cleared", "critical_risk"),
        ("old", "feature.at_risk", "sla_breached"),
        ("old", "feature.risk_cleared", "sla_breached"),
        ("block", "feature.at_risk", "blocked"),
        ("block", "feature.risk_cleared", "blocked"),
        ("slip", "feature.at_risk", "target_slip"),
        ("slip", "feature.risk_cleared", "target_slip"),
        ("rework", "feature.at_risk", "rework"),
    } <= signals
    assert all(e["outcome"] == "updated" for _, h in streaming.values() for e in h
               if e["source"] == ENGINE)  # fmt: skip
