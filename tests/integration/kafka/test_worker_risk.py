"""Risk in streaming mode: a worker publishes feature.at_risk / feature.risk_cleared to the
transitions topic once per change, and its API and at-risk gauge agree (real broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from events import Emitter
from tests.integration.kafka.conftest import consume_all, wait_for

pytestmark = pytest.mark.integration


def risk_signals(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    values = [json.loads(r.value) for r in consume_all(bootstrap, topic, timeout=3)]
    return [v for v in values if v["type"] in ("feature.at_risk", "feature.risk_cleared")]


def test_a_critical_risk_is_announced_once_and_cleared_once(
    make_worker: Any, topics: Any, kafka_bootstrap: str
) -> None:
    worker = make_worker("risky", LIFECYCLE_RISK_INTERVAL="0.5")
    worker.wait_ready()
    now = datetime.now(UTC)
    with Emitter(kafka_bootstrap, topic=topics.events, source="qa/tests") as emitter:
        emitter.emit("idea.submitted", "R1", {"title": "Risky"}, time=now, wait=True)
        emitter.emit("build.started", "R1", time=now, wait=True)
        emitter.emit(
            "risk.raised", "R1", {"risk_id": "sec-1", "severity": "critical"}, time=now, wait=True
        )

    def at_risk() -> bool:
        status, body = worker.get("/features/R1")
        return status == 200 and "critical_risk" in body["risk_reasons"]

    wait_for(at_risk, 60, "R1 at risk for critical_risk", worker)
    # The gauge counts it, under its stage and reason, and a few ticks publish nothing more.
    assert worker.metrics().get("lifecycle_features_at_risk", 0) >= 1
    wait_for(lambda: len(risk_signals(kafka_bootstrap, topics.transitions)) >= 1, 30,
             "the at_risk CloudEvent", worker)  # fmt: skip
    raised = risk_signals(kafka_bootstrap, topics.transitions)
    assert [(s["type"], s["subject"], s["data"]["reason"]) for s in raised] == [
        ("feature.at_risk", "R1", "critical_risk")
    ]

    with Emitter(kafka_bootstrap, topic=topics.events, source="qa/tests") as emitter:
        emitter.emit("risk.mitigated", "R1", {"risk_id": "sec-1"}, time=now, wait=True)
    wait_for(lambda: not at_risk(), 60, "R1 no longer at risk", worker)
    wait_for(lambda: len(risk_signals(kafka_bootstrap, topics.transitions)) >= 2, 30,
             "the risk_cleared CloudEvent", worker)  # fmt: skip
    signals = risk_signals(kafka_bootstrap, topics.transitions)
    assert [(s["type"], s["data"]["reason"]) for s in signals] == [
        ("feature.at_risk", "critical_risk"),
        ("feature.risk_cleared", "critical_risk"),
    ]
    assert worker.metrics().get("lifecycle_features_at_risk", 0) == 0
