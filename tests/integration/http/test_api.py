"""The HTTP API of DESIGN.md section 5 against a real embedded engine on a loopback port.

Marked ``integration`` because a real server, socket and SQLite file are involved; nothing
external is needed, so these tests never skip (except the promtool check outside CI).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.embedded_server import Answer, EmbeddedServer, cloud_event
from tests.integration.prometheus_fixture import find_tool

pytestmark = pytest.mark.integration

FEATURE_FIELDS = {
    "id", "workflow", "stage", "title", "product", "created_at", "entered_stage_at",
    "blocked", "open_risks", "uat_failures", "target_launch", "at_risk", "risk_reasons",
    "version",
}  # fmt: skip
HISTORY_FIELDS = {
    "event_id", "source", "type", "time", "received_at", "outcome", "from_stage", "to_stage",
    "skipped", "reason",
}  # fmt: skip
CONTRACT_METRICS = (
    "lifecycle_features",
    "lifecycle_transitions_total",
    "lifecycle_stage_duration_seconds",
    "lifecycle_lead_time_seconds",
    "lifecycle_events_total",
    "lifecycle_rework_total",
    "lifecycle_features_at_risk",
    "lifecycle_stage_oldest_entry_timestamp_seconds",
)
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
STRUCTURED = {"Content-Type": "application/cloudevents+json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(tmp_path_factory.mktemp("api") / "lifecycle.db") as running:
        yield running


def assert_error(answer: Answer, status: int, *fields: str) -> list[dict[str, str]]:
    """The answer is ``status`` in the error shape, with a detail for each of ``fields``."""
    assert answer.status == status, answer.body
    assert answer.content_type.startswith("application/json")
    body = answer.json
    assert set(body) == {"error", "details"}
    assert isinstance(body["error"], str) and body["error"]
    details = body["details"]
    assert all(set(d) == {"field", "reason"} and d["reason"] for d in details)
    named = [d["field"] for d in details]
    for field in fields:
        assert field in named, f"no detail for {field!r} in {details}"
    return list(details)


def history(server: EmbeddedServer, feature: str) -> list[dict[str, Any]]:
    """The history lines of the events the feature received (not the engine's risk signals)."""
    answer = server.get(f"/features/{feature}/history")
    assert answer.status == 200
    return [e for e in answer.json["entries"] if e["source"] != "lifecycle/engine"]


# --- the three ways in -------------------------------------------------------------------


def test_structured_event_creates_a_feature_readable_with_every_contract_field(
    server: EmbeddedServer,
) -> None:
    data = {"title": "Checkout v2", "product": "shop", "owner": "ana"}
    answer = server.post_event(cloud_event("idea.submitted", "s-1", "s-1-a", data=data))
    assert answer.status == 202
    assert answer.json == {"outcome": "applied", "feature": "s-1", "stage": "idea", "reason": None}

    feature = server.get("/features/s-1").json
    assert set(feature) >= FEATURE_FIELDS
    assert feature["stage"] == "idea"
    assert (feature["title"], feature["product"], feature["owner"]) == (
        "Checkout v2",
        "shop",
        "ana",
    )
    assert RFC3339_Z.match(feature["created_at"]) and RFC3339_Z.match(feature["entered_stage_at"])
    assert feature["at_risk"] is False and feature["risk_reasons"] == []


def test_event_time_is_kept_and_missing_time_is_the_receive_time(server: EmbeddedServer) -> None:
    server.post_event(
        cloud_event("idea.submitted", "t-1", "t-1-a", time="2024-03-01T10:00:00+02:00")
    )
    server.post_event(cloud_event("discovery.started", "t-1", "t-1-b"))
    first, second = history(server, "t-1")
    assert first["time"] == "2024-03-01T08:00:00Z"
    assert second["time"] == second["received_at"]
    assert all(RFC3339_Z.match(e[k]) for e in (first, second) for k in ("time", "received_at"))


def test_batch_answers_one_receipt_per_event_in_order(server: EmbeddedServer) -> None:
    answer = server.post_batch(
        [
            cloud_event("idea.submitted", "b-1", "b-1-a", data={"product": "shop"}),
            cloud_event("build.started", "b-1", "b-1-b"),
            cloud_event("feature.launched", "b-1", "b-1-c"),
            cloud_event("build.started", "b-1", "b-1-b"),
        ]
    )
    assert answer.status == 202
    assert answer.json == [
        {"outcome": "applied", "feature": "b-1", "stage": "idea", "reason": None},
        {"outcome": "applied", "feature": "b-1", "stage": "development", "reason": None},
        {"outcome": "rejected", "feature": "b-1", "stage": "development", "reason": "gate:uat"},
        {"outcome": "duplicate", "feature": "b-1", "stage": "development", "reason": None},
    ]
    # One request, one receive time for all of its events.
    assert len({e["received_at"] for e in history(server, "b-1")}) == 1


def test_binary_mode_takes_attributes_from_headers_and_data_from_the_body(
    server: EmbeddedServer,
) -> None:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "ce-specversion": "1.0",
        "ce-id": "bin-1-a",
        "ce-source": "ci/planner",
        "ce-type": "feature.prioritized",
        "ce-subject": "bin-1",
        "ce-time": "2024-05-01T00:00:00Z",
    }
    body = json.dumps({"priority": 2, "target_launch": "2024-09-30"})
    answer = server.request("POST", "/events", body, headers)
    assert answer.status == 202
    assert answer.json["outcome"] == "applied" and answer.json["stage"] == "prioritized"
    feature = server.get("/features/bin-1").json
    assert feature["target_launch"] == "2024-09-30" and feature["priority"] == 2
    assert history(server, "bin-1")[-1]["source"] == "ci/planner"


def test_a_repeated_event_is_a_duplicate(server: EmbeddedServer) -> None:
    event = cloud_event("idea.submitted", "d-1", "d-1-a")
    assert server.post_event(event).json["outcome"] == "applied"
    assert server.post_event(event).json == {
        "outcome": "duplicate",
        "feature": "d-1",
        "stage": "idea",
        "reason": None,
    }
    assert server.get("/features/d-1").json["version"] == 1


def test_valid_cloudevents_outside_the_catalogue_are_ignored_not_refused(
    server: EmbeddedServer,
) -> None:
    before = _sample(server, 'lifecycle_events_total{outcome="ignored",type="unknown"}')
    other = cloud_event("com.example.invoice.paid", None, "x-1", data=[1, 2], source="billing")
    assert server.post_event(other).status == 202
    assert server.post_event(other).json["outcome"] == "ignored"
    binary = {
        "Content-Type": "text/plain",
        "ce-specversion": "1.0",
        "ce-id": "x-2",
        "ce-source": "chat",
        "ce-type": "com.example.message",
        "ce-channel": "general",
    }
    answer = server.request("POST", "/events", "hello", binary)
    assert answer.status == 202 and answer.json["outcome"] == "ignored"
    after = _sample(server, 'lifecycle_events_total{outcome="ignored",type="unknown"}')
    assert after == before + 3


# --- reading ------------------------------------------------------------------------------


def test_list_filters_by_stage_product_and_risk(server: EmbeddedServer) -> None:
    server.post_batch(
        [
            cloud_event("idea.submitted", "l-1", "l-1-a", data={"product": "maps"}),
            cloud_event("idea.submitted", "l-2", "l-2-a", data={"product": "maps"}),
            cloud_event("requirement.approved", "l-2", "l-2-b"),
            cloud_event("idea.submitted", "l-3", "l-3-a", data={"product": "mail"}),
            cloud_event("risk.raised", "l-3", "l-3-b", data={"risk_id": "r", "severity": "high"}),
        ]
    )

    def ids(query: str) -> list[str]:
        answer = server.get(f"/features?{query}")
        assert answer.status == 200
        return [f["id"] for f in answer.json["features"] if f["id"].startswith("l-")]

    assert ids("") == ["l-1", "l-2", "l-3"]
    assert ids("product=maps") == ["l-1", "l-2"]
    assert ids("stage=defined") == ["l-2"]
    assert ids("stage=idea&product=maps") == ["l-1"]
    assert ids("at_risk=true") == ["l-3"]
    at_risk = server.get("/features?at_risk=true").json["features"]
    assert all(f["at_risk"] for f in at_risk)
    l3 = next(f for f in at_risk if f["id"] == "l-3")
    assert l3["risk_reasons"] == ["high_risk"]
    assert l3["open_risks"] == [
        {
            "risk_id": "r",
            "severity": "high",
            "title": None,
            "raised_at": l3["open_risks"][0]["raised_at"],
        }
    ]
    assert_error(server.get("/features?stage=nowhere"), 400, "stage")
    assert_error(server.get("/features?at_risk=maybe"), 400, "at_risk")
    # What /openapi.json says (schemathesis found the two disagreeing): the listed values,
    # an empty one meaning no filter, and nothing else.
    assert ids("at_risk=") == ["l-1", "l-2", "l-3"]
    assert ids("at_risk=yes") == ["l-3"]
    assert_error(server.get("/features?at_risk=TRUE"), 400, "at_risk")


def test_risk_reasons_follow_the_state_and_the_clock(server: EmbeddedServer) -> None:
    server.post_batch(
        [
            cloud_event("idea.submitted", "r-1", "r-1-a", time="2020-01-01T00:00:00Z"),
            cloud_event("feature.blocked", "r-1", "r-1-b", data={"reason": "legal"}),
            cloud_event("launch.scheduled", "r-1", "r-1-c", data={"target_launch": "2020-06-01"}),
        ]
    )
    feature = server.get("/features/r-1").json
    # In idea since 2020 (SLA 30 days), blocked, and its target date has passed.
    assert feature["risk_reasons"] == ["sla_breached", "blocked", "target_slip"]
    assert feature["at_risk"] is True


def test_history_lists_every_outcome_with_the_rule_9_fields(server: EmbeddedServer) -> None:
    server.post_batch(
        [
            cloud_event("build.shipped", "h-1", "h-1-a"),
            cloud_event("uat.failed", "h-1", "h-1-b", data={"reason": "checkout breaks"}),
            cloud_event("feature.launched", "h-1", "h-1-c"),
            cloud_event("uat.passed", "h-1", "h-1-d"),
        ]
    )
    entries = history(server, "h-1")
    assert all(set(e) == HISTORY_FIELDS for e in entries)
    assert [(e["outcome"], e["from_stage"], e["to_stage"]) for e in entries] == [
        ("applied", None, "idea"),
        ("applied", "idea", "uat"),
        ("applied", "uat", "development"),
        ("rejected", "development", "development"),
        ("applied", "development", "launch_ready"),
    ]
    assert entries[0]["reason"] == "created implicitly"
    assert entries[1]["skipped"] == ["discovery", "defined", "prioritized", "design", "development"]
    assert entries[3]["reason"] == "gate:uat"
    assert entries[4]["skipped"] == ["uat"]  # rule 5: the event that leaves the gate
    assert server.get("/features/h-1").json["uat_failures"] == 1


def test_unknown_feature_is_404_in_the_error_shape(server: EmbeddedServer) -> None:
    assert_error(server.get("/features/never-seen"), 404, "id")
    assert_error(server.get("/features/never-seen/history"), 404, "id")


def test_workflows_with_stages_transitions_gates_slas_and_diagram(server: EmbeddedServer) -> None:
    listing = server.get("/workflows").json
    assert [w["name"] for w in listing["workflows"]] == ["feature"]
    assert listing["default"] == "feature"
    wf = server.get("/workflows/feature").json
    assert [s["name"] for s in wf["stages"]][:3] == ["idea", "discovery", "defined"]
    assert wf["gates"] == ["uat"]
    assert wf["terminal"] == ["cancelled"]
    assert wf["slas"]["uat"] == 7 * 86400
    launch = next(t for t in wf["transitions"] if t["event"] == "feature.launched")
    assert launch == {
        "event": "feature.launched",
        "from": ["launch_ready"],
        "to": "launched",
        "guards": ["critical_risk"],
        "rework": False,
        "repeat_updates": False,
    }
    assert wf["mermaid"].startswith("stateDiagram-v2\n")
    assert "uat --> development : uat.failed" in wf["mermaid"]
    assert_error(server.get("/workflows/nope"), 404, "name")


def test_unknown_routes_and_methods_answer_in_the_error_shape(server: EmbeddedServer) -> None:
    assert_error(server.get("/nowhere"), 404, "path")
    details = assert_error(server.request("DELETE", "/features"), 405, "method")
    assert "GET" in details[0]["reason"]
    assert_error(server.get("/events"), 405, "method")


def test_healthz(server: EmbeddedServer) -> None:
    assert server.get("/healthz").status == 200


# --- refusing bad input, storing none of it -----------------------------------------------

BAD_STRUCTURED: list[tuple[str, str | bytes, int, tuple[str, ...]]] = [
    ("not JSON", "{not json", 400, ("",)),
    ("not an object", "[1]", 400, ("",)),
    (
        "missing required attributes",
        json.dumps({"type": "build.started", "subject": "v-1"}),
        400,
        ("specversion", "id", "source"),
    ),
    (
        "empty required attributes",
        json.dumps(cloud_event("build.started", "v-1", "", source="")),
        400,
        ("id", "source"),
    ),
    (
        "wrong specversion",
        json.dumps({**cloud_event("build.started", "v-1", "bad-1"), "specversion": "0.3"}),
        400,
        ("specversion",),
    ),
    (
        "bad subject",
        json.dumps(cloud_event("build.started", "-v 1", "bad-2")),
        400,
        ("subject",),
    ),
    (
        "missing subject",
        json.dumps(cloud_event("build.started", None, "bad-3")),
        400,
        ("subject",),
    ),
    (
        "bad data, two problems",
        json.dumps(cloud_event("risk.raised", "v-1", "bad-4", data={"severity": "huge"})),
        400,
        ("data.risk_id", "data.severity"),
    ),
    (
        "envelope and content problems together",
        json.dumps({**cloud_event("build.started", "v 1", "bad-5"), "source": ""}),
        400,
        ("source", "subject"),
    ),
    (
        "bad time",
        json.dumps(cloud_event("build.started", "v-1", "bad-6", time="yesterday")),
        400,
        ("time",),
    ),
]


@pytest.fixture(scope="module")
def valid_feature(server: EmbeddedServer) -> str:
    answer = server.post_event(cloud_event("idea.submitted", "v-1", "v-1-a"))
    assert answer.status == 202
    return "v-1"


@pytest.mark.parametrize(
    ("body", "status", "fields"),
    [case[1:] for case in BAD_STRUCTURED],
    ids=[case[0] for case in BAD_STRUCTURED],
)
def test_malformed_event_is_refused_with_every_reason_and_nothing_stored(
    server: EmbeddedServer, valid_feature: str, body: str, status: int, fields: tuple[str, ...]
) -> None:
    before = history(server, valid_feature)
    assert_error(server.request("POST", "/events", body, STRUCTURED), status, *fields)
    assert history(server, valid_feature) == before


def test_a_batch_with_one_bad_event_is_refused_whole(
    server: EmbeddedServer, valid_feature: str
) -> None:
    before = history(server, valid_feature)
    answer = server.post_batch(
        [
            cloud_event("build.started", valid_feature, "batch-ok-1"),
            {**cloud_event("build.shipped", "-bad", "batch-bad"), "source": ""},
            cloud_event("build.shipped", valid_feature, "batch-ok-2"),
            cloud_event("launch.scheduled", valid_feature, "batch-bad-2"),
        ]
    )
    assert_error(answer, 400, "[1].source", "[1].subject", "[3].data.target_launch")
    assert history(server, valid_feature) == before
    assert server.get("/features/-bad").status == 404
    assert_error(
        server.request(
            "POST",
            "/events",
            '{"not": "a list"}',
            {"Content-Type": "application/cloudevents-batch+json"},
        ),
        400,
        "",
    )


def test_binary_mode_problems_are_listed_too(server: EmbeddedServer, valid_feature: str) -> None:
    before = history(server, valid_feature)
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-type": "build.started",
        "ce-subject": valid_feature,
    }
    assert_error(server.request("POST", "/events", "{}", headers), 400, "id", "source")
    headers |= {"ce-id": "bin-bad", "ce-source": "s"}
    assert_error(server.request("POST", "/events", "{oops", headers), 400, "")
    assert history(server, valid_feature) == before


def test_wrong_content_type_is_415(server: EmbeddedServer, valid_feature: str) -> None:
    event = json.dumps(cloud_event("build.started", valid_feature, "ct-1"))
    for content_type in ("application/json", "text/plain", "application/xml"):
        answer = server.request("POST", "/events", event, {"Content-Type": content_type})
        details = assert_error(answer, 415, "Content-Type")
        assert "application/cloudevents+json" in details[0]["reason"]
    assert all(e["event_id"] != "ct-1" for e in history(server, valid_feature))


def test_body_over_1_mib_is_413_in_the_error_shape(
    server: EmbeddedServer, valid_feature: str
) -> None:
    big = cloud_event("idea.submitted", valid_feature, "big-1", data={"title": "x" * (1024 * 1024)})
    assert_error(server.request("POST", "/events", json.dumps(big), STRUCTURED), 413, "body")
    assert all(e["event_id"] != "big-1" for e in history(server, valid_feature))
    # Just under the limit is fine.
    fits = cloud_event(
        "kpi.reported", valid_feature, "big-2", data={"name": "n" * 1000, "value": 1}
    )
    assert server.request("POST", "/events", json.dumps(fits), STRUCTURED).status == 202


def test_refused_requests_are_counted(server: EmbeddedServer) -> None:
    before = _sample(server, 'lifecycle_dead_letters_total{reason="malformed"}')
    server.request("POST", "/events", "{nope", STRUCTURED)
    assert _sample(server, 'lifecycle_dead_letters_total{reason="malformed"}') == before + 1


# --- the token ----------------------------------------------------------------------------


def test_token_is_required_to_post_but_not_to_read(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path / "token.db", api_token="s3cret") as server:
        event = cloud_event("idea.submitted", "tok-1", "tok-1-a")
        answer = server.post_event(event)
        assert_error(answer, 401, "Authorization")
        assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert_error(server.post_event(event, Authorization="Bearer wrong"), 401)
        assert server.get("/features/tok-1").status == 404
        assert server.post_event(event, Authorization="Bearer s3cret").status == 202
        assert server.get("/features/tok-1").status == 200
        assert server.get("/metrics").status == 200


def test_state_and_duplicates_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    event = cloud_event("build.started", "re-1", "re-1-a")
    with EmbeddedServer(db) as server:
        assert server.post_event(event).json["outcome"] == "applied"
    with EmbeddedServer(db) as server:
        assert server.post_event(event).json["outcome"] == "duplicate"
        assert server.get("/features/re-1").json["stage"] == "development"
        assert 'lifecycle_features{product="none",stage="development",workflow="feature"} 1.0' in (
            server.get("/metrics").body.decode()
        )


# --- metrics ------------------------------------------------------------------------------


def _sample(server: EmbeddedServer, series: str) -> float:
    """The value of one series in a scrape (0 when absent)."""
    for line in server.get("/metrics").body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_exposition_passes_promtool_and_has_the_contract_names(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path / "metrics.db") as server:
        server.post_batch(
            [
                cloud_event("idea.submitted", "m-1", "m-1", time="2024-01-01T00:00:00Z"),
                cloud_event("build.started", "m-1", "m-1b", time="2024-01-02T00:00:00Z"),
                cloud_event("build.shipped", "m-1", "m-2", time="2024-01-05T00:00:00Z"),
                cloud_event("uat.failed", "m-1", "m-3", time="2024-01-06T00:00:00Z"),
                cloud_event("build.shipped", "m-1", "m-4", time="2024-01-07T00:00:00Z"),
                cloud_event("uat.passed", "m-1", "m-5", time="2024-01-08T00:00:00Z"),
                cloud_event("feature.launched", "m-1", "m-6", time="2024-01-09T00:00:00Z"),
                cloud_event("com.example.other", None, "m-7"),
            ]
        )
        answer = server.get("/metrics")
    assert answer.status == 200
    assert answer.content_type.startswith("text/plain")
    text = answer.body.decode()
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    missing = [name for name in CONTRACT_METRICS if name not in declared]
    assert not missing, f"contract metrics missing from /metrics: {missing}"
    uat_to_dev = 'from_stage="uat",to_stage="development",workflow="feature"'
    assert f"lifecycle_transitions_total{{{uat_to_dev}}} 1.0" in text
    assert 'lifecycle_rework_total{stage="development",workflow="feature"} 1.0' in text
    assert 'lifecycle_lead_time_seconds_count{workflow="feature"} 1.0' in text
    assert 'lifecycle_events_total{outcome="ignored",type="unknown"} 1.0' in text
    assert "m-1" not in text  # No feature id in any label.

    promtool = find_tool("promtool")  # skips locally, fails under CI=true when missing
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
