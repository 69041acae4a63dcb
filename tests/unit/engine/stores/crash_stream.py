"""A long, deterministic stream of events for the SQLite crash test, and its writer process.

Run as ``python -m tests.unit.engine.stores.crash_stream DB N``: applies the whole stream
through :class:`~engine.service.Engine` and a :class:`~engine.stores.sqlite.SqliteStore` at
``DB``, printing ``past N`` once ``N`` events are committed, then ``done``.

Every event of the stream is accepted when the stream is applied once in order (applied,
updated or an exact resend answered duplicate), so applying it again after a crash must end
exactly where a clean run ends.
"""

from __future__ import annotations

import random
import sys
from datetime import datetime, timedelta
from typing import Any

from events.envelope import Event
from tests.factories import T0, make_event

FEATURES = 300
SEED = 20240101


def received_at(index: int) -> datetime:
    """When the writer received the ``index``-th event of the stream."""
    return T0 + timedelta(days=400, milliseconds=index)


def _feature_events(rng: random.Random, fid: str) -> list[Event]:
    hour = 0.0
    out: list[Event] = []

    def add(event_type: str, **data: Any) -> None:
        nonlocal hour
        hour += rng.uniform(-2, 30)  # sometimes dated before the previous event
        out.append(make_event(event_type, fid, id=f"{fid}-{len(out)}", at=hour, **data))
        if rng.random() < 0.08:
            out.append(out[-1])  # an exact resend: a duplicate

    def extras() -> None:
        for _ in range(rng.randint(0, 2)):
            kind = rng.choice(["feedback", "kpi", "block", "risk", "schedule"])
            if kind == "feedback":
                add("feedback.received", sentiment=rng.choice(["positive", "negative"]))
            elif kind == "kpi":
                add("kpi.reported", name=rng.choice(["nps", "adoption"]), value=rng.random())
            elif kind == "block":
                add("feature.blocked", reason="waiting")
                add("feature.unblocked")
            elif kind == "risk":
                rid = f"r{len(out)}"
                add("risk.raised", risk_id=rid, severity=rng.choice(["high", "critical"]))
                add("risk.mitigated", risk_id=rid)
            else:
                add("launch.scheduled", target_launch=f"2024-{rng.randint(1, 12):02d}-15")

    add("idea.submitted", title=f"Feature {fid}", product=rng.choice(["web", "mobile"]))
    if rng.random() < 0.5:
        add("discovery.started")
    add("requirement.approved", acceptance_criteria=["works"])
    extras()
    add("feature.prioritized", priority=rng.randint(1, 5))
    if rng.random() < 0.05:
        add("feature.cancelled", reason="dropped")
        return out
    if rng.random() < 0.5:
        add("design.started")
    add("build.started")
    extras()
    add("build.shipped", build="1")
    for attempt in range(rng.randint(0, 2)):
        if rng.random() < 0.5:
            add("build.shipped", build=f"1.{attempt}")  # a re-ship in UAT: updated
        add("uat.failed", reason="bug")
        add("build.shipped", build=f"2.{attempt}")
    add("uat.passed")
    extras()
    add("feature.launched")
    if rng.random() < 0.3:
        add("iteration.started")
        add("build.shipped", build="3")
        add("uat.passed")
        add("feature.launched")
    extras()
    return out


def stream(features: int = FEATURES, seed: int = SEED) -> list[Event]:
    """Every feature's events, interleaved at random but each feature's kept in order."""
    rng = random.Random(seed)
    queues = [_feature_events(rng, f"feat-{i:04d}") for i in range(features)]
    positions = [0] * features
    live = list(range(features))
    out: list[Event] = []
    while live:
        k = rng.randrange(len(live))
        q = live[k]
        out.append(queues[q][positions[q]])
        positions[q] += 1
        if positions[q] == len(queues[q]):
            live[k] = live[-1]
            live.pop()
    return out


def main(db: str, report_after: int) -> None:
    from engine.service import Engine
    from engine.stores.sqlite import SqliteStore
    from workflows.loader import Workflows, load_folder

    engine = Engine(Workflows(load_folder()), SqliteStore(db))
    for i, event in enumerate(stream()):
        engine.apply(event, received_at(i))
        if i + 1 == report_after:
            print(f"past {report_after}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
