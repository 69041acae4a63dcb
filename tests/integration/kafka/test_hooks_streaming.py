"""Webhook connectors in streaming mode: deliveries are published to the events topic and a
worker moves the feature, from Jira issue creation to a GitHub production deployment."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from connectors.auth import signature
from tests.integration.kafka.conftest import wait_for
from tests.unit.connectors.payloads import payload

pytestmark = pytest.mark.integration

GITHUB_SECRET = "gh-stream-secret"
JIRA_SECRET = "jira-stream-secret"
FEATURE = "JRA-20002"


def _deliver(worker: Any, connector: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    raw = json.dumps(body).encode()
    if connector == "github":
        headers["X-Hub-Signature-256"] = "sha256=" + signature(GITHUB_SECRET, raw)
    else:
        headers["X-Hub-Signature"] = "sha256=" + signature(JIRA_SECRET, raw)
    request = urllib.request.Request(
        f"{worker.url}/hooks/{connector}",
        data=raw,
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return json.loads(response.read())


def _stage(worker: Any) -> str | None:
    try:
        status, body = worker.get(f"/features/{FEATURE}")
    except (OSError, urllib.error.URLError):
        return None
    return body.get("stage") if status == 200 else None


def test_connectors_drive_a_feature_to_launch_through_kafka(make_worker: Any) -> None:
    worker = make_worker(
        "hooks", LIFECYCLE_GITHUB_SECRET=GITHUB_SECRET, LIFECYCLE_JIRA_SECRET=JIRA_SECRET
    )
    worker.wait_ready()

    jira = {"X-Atlassian-Webhook-Identifier": "j-1"}
    created = _deliver(worker, "jira", payload("jira", "issue_created"), jira)
    assert [e["outcome"] for e in created["events"]] == ["accepted", "accepted"], created
    started = payload("jira", "issue_updated")
    started["changelog"]["items"] = [
        {"field": "status", "fromString": "To Do", "toString": "In Progress"}
    ]
    _deliver(worker, "jira", started, {"X-Atlassian-Webhook-Identifier": "j-2"})

    release = payload("github", "release.published")
    deploy = payload("github", "deployment_status.created")
    release["release"]["body"] = f"Feature: {FEATURE}"
    release["release"]["tag_name"] = deploy["deployment"]["ref"]
    _deliver(worker, "github", release, {"X-GitHub-Event": "release", "X-GitHub-Delivery": "g-1"})
    label = payload("github", "issues.labeled")
    label["label"]["name"] = "uat:passed"
    label["issue"]["title"] = f"[{FEATURE}] UAT"
    _deliver(worker, "github", label, {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "g-2"})
    launched = _deliver(
        worker,
        "github",
        deploy,
        {"X-GitHub-Event": "deployment_status", "X-GitHub-Delivery": "g-3"},
    )
    assert [e["type"] for e in launched["events"]] == ["feature.launched"]

    wait_for(lambda: _stage(worker) == "launched", 60, "the feature launched", worker)
    _, history = worker.get(f"/features/{FEATURE}/history")
    lines = [
        (e["event_id"], e["type"], e["outcome"])
        for e in history["entries"]
        if e["source"] != "lifecycle/engine"
    ]
    assert lines == [
        ("j-1#1", "idea.submitted", "applied"),
        ("j-1#2", "launch.scheduled", "updated"),
        ("j-2", "build.started", "applied"),
        ("g-1", "build.shipped", "applied"),
        ("g-2", "uat.passed", "applied"),
        ("g-3", "feature.launched", "applied"),
    ]


def _ship(worker: Any, features: list[str], delivery: str) -> dict[str, Any]:
    """Pass UAT for ``features`` and publish the release that ships them (to ``worker``)."""
    deploy = payload("github", "deployment_status.created")
    for fid in features:
        label = payload("github", "issues.labeled")
        label["label"]["name"] = "uat:passed"
        label["issue"]["title"] = f"[{fid}] UAT"  # overlay: the feature id
        _deliver(
            worker, "github", label, {"X-GitHub-Event": "issues", "X-GitHub-Delivery": f"u-{fid}"}
        )
    release = payload("github", "release.published")
    release["release"]["body"] = "\n".join(f"Feature: {fid}" for fid in features)
    release["release"]["tag_name"] = deploy["deployment"]["ref"]  # the ref deployed below
    headers = {"X-GitHub-Event": "release", "X-GitHub-Delivery": delivery}
    return _deliver(worker, "github", release, headers)


def _deploy(worker: Any, delivery: str) -> dict[str, Any]:
    deploy = payload("github", "deployment_status.created")
    headers = {"X-GitHub-Event": "deployment_status", "X-GitHub-Delivery": delivery}
    return _deliver(worker, "github", deploy, headers)


def test_the_release_ledger_is_shared_by_workers_and_survives_an_empty_data_dir(
    make_worker: Any,
) -> None:
    """A release received by one worker launches its features when another worker receives
    the deployment; and a worker started later on an empty data dir still knows it."""
    features = ["PAY-1", "PAY-2"]
    env = {"LIFECYCLE_GITHUB_SECRET": GITHUB_SECRET}
    a = make_worker("a", **env)
    b = make_worker("b", **env)
    a.wait_ready()
    b.wait_ready()
    shipped = _ship(a, features, "rel-1")
    assert [e["subject"] for e in shipped["events"]] == features

    launched = _deploy(b, "dep-1")  # b read no release when it started: it reads to the end
    assert [(e["subject"], e["type"]) for e in launched["events"]] == [
        (fid, "feature.launched") for fid in features
    ], launched

    def stage(fid: str) -> str | None:
        status, body = b.get(f"/features/{fid}")
        return body.get("stage") if status == 200 else None

    for fid in features:
        wait_for(lambda fid=fid: stage(fid) == "launched", 60, f"{fid} launched", b)

    # Each worker keeps the deliveries it received; any worker shows those of the group.
    status, seen = b.get("/hooks/github/deliveries")
    assert status == 200 and seen["unanswered"] == []
    ids = [d["delivery"] for d in seen["deliveries"]]
    assert ids[:2] == ["dep-1", "rel-1"]  # newest first: b's own, then a's
    assert {"u-PAY-1", "u-PAY-2"} <= set(ids)
    _, local = b.get("/hooks/github/deliveries?scope=local")
    assert [d["delivery"] for d in local["deliveries"]] == ["dep-1"]
    a.kill()
    b.kill()

    c = make_worker("c", **env)  # a new data dir: nothing local survives
    c.wait_ready()
    again = _deploy(c, "dep-2")  # a second production deployment of the same ref
    assert [e["subject"] for e in again["events"]] == features, again


def test_a_workers_deliveries_list_and_idempotency_survive_its_restart(make_worker: Any) -> None:
    """A worker keeps the deliveries it received in its data folder: restarted on it (a pod
    with its volume), it lists them again; a tool redelivering then changes nothing."""
    env = {"LIFECYCLE_GITHUB_SECRET": GITHUB_SECRET}
    worker = make_worker("r", **env)
    worker.wait_ready()
    label = payload("github", "issues.labeled")
    label["label"]["name"] = "uat:passed"
    label["issue"]["title"] = f"[{FEATURE}] UAT"
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "r-1"}
    _deliver(worker, "github", label, dict(headers))
    wait_for(lambda: _stage(worker) == "launch_ready", 60, "the feature moved", worker)
    _, before = worker.get("/hooks/github/deliveries?scope=local")
    assert [d["delivery"] for d in before["deliveries"]] == ["r-1"]
    _, feature = worker.get(f"/features/{FEATURE}")
    worker.kill()

    again = make_worker("r", **env)  # the same data folder
    again.wait_ready()
    _, after = again.get("/hooks/github/deliveries?scope=local")
    assert after["deliveries"] == before["deliveries"]
    _deliver(again, "github", label, dict(headers))

    def redelivered() -> bool:
        status, history = again.get(f"/features/{FEATURE}/history")
        return status == 200 and any(
            e["event_id"] == "r-1" and e["outcome"] == "duplicate" for e in history["entries"]
        )

    wait_for(redelivered, 60, "the redelivery judged a duplicate", again)
    _, now = again.get(f"/features/{FEATURE}")
    assert (now["stage"], now["version"]) == ("launch_ready", feature["version"])
    _, listed = again.get("/hooks/github/deliveries?scope=local")
    assert [d["delivery"] for d in listed["deliveries"]] == ["r-1", "r-1"]
    again.stop()  # a clean stop closes the list's file: SQLite folds its WAL in and removes it
    files = sorted(p.name for p in again.data_dir.glob("*.deliveries.db*"))
    assert len(files) == 1 and files[0].endswith(".deliveries.db"), files
