"""Event streams for the streaming tests: lifecycles with repeats, rejections and noise."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 1, 1, tzinfo=UTC)

STEPS: list[tuple[str, dict[str, Any]]] = [
    ("idea.submitted", {"title": "t", "product": "p1", "owner": "pm"}),
    ("discovery.started", {}),
    ("requirement.approved", {"acceptance_criteria": ["works"]}),
    ("feature.prioritized", {"priority": 2, "target_launch": "2027-01-01"}),
    ("design.started", {}),
    ("build.started", {}),
    ("build.shipped", {"build": "b1"}),
    ("uat.failed", {"reason": "bug"}),
    ("build.shipped", {"build": "b2"}),
    ("uat.passed", {}),
    ("risk.raised", {"risk_id": "r1", "severity": "critical"}),
    ("feature.launched", {}),
    ("risk.mitigated", {"risk_id": "r1"}),
    ("feature.launched", {}),
    ("kpi.reported", {"name": "adoption", "value": 0.4}),
]


def cloud_event(
    feature: str, n: int, etype: str, data: dict[str, Any], source: str = "test/stream"
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{feature}-{n}",
        "source": source,
        "type": etype,
        "subject": feature,
        "time": (T0 + timedelta(hours=n)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


def lifecycles(features: int, seed: int = 1, prefix: str = "F") -> list[dict[str, Any]]:
    """Every feature's lifecycle (with a repeat of an earlier event now and then, and a
    skipped step), features interleaved at random; per feature the order is kept."""
    rng = random.Random(seed)
    queues: list[list[dict[str, Any]]] = []
    for f in range(features):
        fid = f"{prefix}{f}"
        events = []
        for n, (etype, data) in enumerate(STEPS):
            if rng.random() < 0.1:
                continue  # a step nobody reported: later events skip ahead or are rejected
            events.append(cloud_event(fid, n, etype, data))
            if rng.random() < 0.1:
                events.append(dict(events[rng.randrange(len(events))]))  # a duplicate
        queues.append(events)
    out: list[dict[str, Any]] = []
    live = [q for q in queues if q]
    while live:
        k = rng.randrange(len(live))
        out.append(live[k].pop(0))
        if not live[k]:
            live[k] = live[-1]
            live.pop()
    return out
