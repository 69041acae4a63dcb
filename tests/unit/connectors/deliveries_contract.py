"""What every webhook deliveries list must do (:class:`connectors.deliveries.DeliveryLog`),
for each implementation's tests to run on its own list: in memory, in the store's SQLite
file, and in a streaming worker's own file."""

from __future__ import annotations

from typing import Any

from connectors.deliveries import DeliveryLog


def entry(n: int, **more: Any) -> dict[str, Any]:
    """A delivery's entry as the hook route records it."""
    return {
        "received_at": f"2026-11-20T12:{n // 60:02d}:{n % 60:02d}Z",
        "delivery": f"d-{n}",
        "event": "issues",
        "outcome": "mapped",
        "reason": None,
        "notes": [],
        "events": [{"id": f"d-{n}", "type": "uat.passed", "subject": "PAY-1", "rule": "uat"}],
        **more,
    }


def check_deliveries(log: DeliveryLog) -> None:
    """Order, bound, isolation and round trip of entries; ``log`` starts empty."""
    assert log.last("github") == []
    odd = entry(0, reason="caf\u00e9 \u2603 \U0001f600", notes=["a", {"b": [1, 2.5, True]}])
    log.add("github", odd)
    assert log.last("github") == [odd]  # the same values back, whatever the storage
    log.add("jira", entry(1))
    for n in range(2, log.kept + 3):
        log.add("github", entry(n))
    github = log.last("github")
    assert len(github) == log.kept  # bounded: the oldest dropped first
    assert [e["delivery"] for e in github[:2]] == [f"d-{log.kept + 2}", f"d-{log.kept + 1}"]
    assert github[-1]["delivery"] == "d-3"
    assert log.last("jira") == [entry(1)]  # each connector keeps its own
    assert log.last("gitlab") == []
