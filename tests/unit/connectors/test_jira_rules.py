"""The shipped Jira rules on Atlassian's documented webhook payloads.

Where they come from: Atlassian publishes no package of its payloads, so they are vendored in
``tests/fixtures/webhooks/jira``: ``issue_updated`` as Atlassian's Jira Cloud webhooks page
shows it, ``issue_created`` rebuilt from the documented shape (its README says how).
"""

from __future__ import annotations

from typing import Any

from tests.unit.connectors.conftest import Run, summary
from tests.unit.connectors.payloads import payload


def test_issue_created_submits_the_idea_and_schedules_its_due_date(run: Run) -> None:
    out = run("jira", "jira:issue_created", payload("jira", "issue_created"))
    assert summary(out) == [
        ("d-1#1", "idea.submitted", "JRA-20002"),
        ("d-1#2", "launch.scheduled", "JRA-20002"),
    ]
    idea, scheduled = out.events
    assert idea["source"] == "jira/JRA"
    assert idea["data"] == {
        "title": "I feel the need for speed",
        "product": "Jira Server (including Jira Core)",
        "owner": "Bryan Rollins [Atlassian]",
    }
    assert idea["time"] == "2018-05-07T13:03:57.764000Z"  # the delivery's timestamp (ms)
    assert scheduled["data"] == {"target_launch": "2018-06-29"}


def test_the_documented_update_changes_summary_and_type_only(run: Run) -> None:
    out = run("jira", "jira:issue_updated", payload("jira", "issue_updated"))
    assert out.events == []


def _status_change(to: str) -> Any:
    p = payload("jira", "issue_updated")
    p["changelog"]["items"].append(  # overlay: a status change, as Jira records one
        {"field": "status", "fieldtype": "jira", "from": "1", "fromString": "To Do",
         "to": "3", "toString": to}
    )  # fmt: skip
    return p


def test_status_changes_move_the_feature_through_the_status_map(run: Run) -> None:
    expected = {
        "In Discovery": "discovery.started",
        "Approved": "requirement.approved",
        "Selected for Development": "feature.prioritized",
        "In Design": "design.started",
        "In Progress": "build.started",
        "QA": "build.shipped",
        "UAT Passed": "uat.passed",
        "Done": "feature.launched",
        "won't do": "feature.cancelled",  # matched without regard to case
    }
    for status, event_type in expected.items():
        out = run("jira", "jira:issue_updated", _status_change(status))
        assert summary(out) == [("d-1", event_type, "JRA-20002")], status


def test_a_status_outside_the_map_is_ignored_with_the_reason(run: Run) -> None:
    out = run("jira", "jira:issue_updated", _status_change("Backlog"))
    assert out.events == [] and "'Backlog' is not in its map" in out.reason


def test_a_blocking_link_blocks_the_feature(run: Run) -> None:
    p = payload("jira", "issue_updated")
    p["changelog"]["items"] = [
        {"field": "Link", "fieldtype": "jira", "from": None, "fromString": None,
         "to": "JRA-1", "toString": "This issue is blocked by JRA-1"}
    ]  # fmt: skip
    out = run("jira", "jira:issue_updated", p)
    assert summary(out) == [("d-1", "feature.blocked", "JRA-20002")]
    assert out.events[0]["data"]["reason"] == "This issue is blocked by JRA-1"
