"""Every shipped GitHub rule on GitHub's own example payloads.

Where they come from: the published npm package ``@octokit/webhooks-examples`` (MIT), read from
the tools cache where ``bash deploy/tools.sh webhooks`` installs it (see ``payloads.py``); each
test overlays at most the field that carries a feature id, and says so.
"""

from __future__ import annotations

from connectors.ledger import Ledger
from tests.unit.connectors.conftest import Run, summary
from tests.unit.connectors.payloads import payload


def test_pull_request_opened_on_a_feature_branch_starts_the_build(run: Run) -> None:
    p = payload("github", "pull_request.opened")
    p["pull_request"]["head"]["ref"] = "feature/PAY-123-faster-checkout"  # overlay
    out = run("github", "pull_request", p)
    assert summary(out) == [("d-1", "build.started", "PAY-123")]
    event = out.events[0]
    assert event["source"] == "github/Codertocat/Hello-World"
    assert event["time"] == p["pull_request"]["updated_at"]  # when it happened, not arrival


def test_the_example_pull_request_names_no_feature_and_says_so(run: Run) -> None:
    out = run("github", "pull_request", payload("github", "pull_request.opened"))
    assert out.events == []
    assert "no feature id found" in out.reason and "pull_request.head.ref" in out.reason


def test_ready_for_review_starts_the_build_with_the_id_in_the_title(run: Run) -> None:
    p = payload("github", "pull_request.ready_for_review")
    p["pull_request"]["title"] = "[PAY-7] " + p["pull_request"]["title"]  # overlay
    assert summary(run("github", "pull_request", p)) == [("d-1", "build.started", "PAY-7")]


def test_a_draft_or_closed_pull_request_starts_nothing(run: Run) -> None:
    p = payload("github", "pull_request.opened")
    p["pull_request"]["head"]["ref"] = "feature/PAY-1-x"
    p["pull_request"]["draft"] = True
    assert run("github", "pull_request", p).events == []
    closed = payload("github", "pull_request.closed")
    closed["pull_request"]["head"]["ref"] = "feature/PAY-1-x"
    assert run("github", "pull_request", closed).events == []


def test_release_published_ships_every_feature_it_names(run: Run) -> None:
    p = payload("github", "release.published")
    p["release"]["body"] = "Highlights\n\nFeature: PAY-1\nFeature: PAY-2\n"  # overlay
    ledger = Ledger()
    out = run("github", "release", p, ledger)
    assert summary(out) == [
        ("d-1#1", "build.shipped", "PAY-1"),
        ("d-1#2", "build.shipped", "PAY-2"),
    ]
    assert out.events[0]["data"] == {"build": p["release"]["tag_name"]}
    assert out.events[0]["time"] == p["release"]["published_at"]
    assert [f for _, f in out.remember] == [("PAY-1", "PAY-2")]


def test_a_production_deployment_launches_what_its_release_shipped(run: Run) -> None:
    release = payload("github", "release.published")
    deploy = payload("github", "deployment_status.created")
    release["release"]["body"] = "Feature: PAY-1\nFeature: PAY-2"
    release["release"]["tag_name"] = deploy["deployment"]["ref"]  # deploy of that release
    ledger = Ledger()
    for key, features in run("github", "release", release, ledger).remember:
        ledger.remember(key, features)
    out = run("github", "deployment_status", deploy, ledger)
    assert summary(out) == [
        ("d-1#1", "feature.launched", "PAY-1"),
        ("d-1#2", "feature.launched", "PAY-2"),
    ]
    assert out.events[0]["time"] == deploy["deployment_status"]["updated_at"]


def test_a_deployment_of_an_unknown_release_or_to_staging_launches_nothing(run: Run) -> None:
    deploy = payload("github", "deployment_status.created")
    assert run("github", "deployment_status", deploy).events == []
    ledger = Ledger()
    release = payload("github", "release.published")
    release["release"]["body"] = "Feature: PAY-1"
    release["release"]["tag_name"] = deploy["deployment"]["ref"]
    for key, features in run("github", "release", release, ledger).remember:
        ledger.remember(key, features)
    deploy["deployment_status"]["environment"] = "staging"
    assert run("github", "deployment_status", deploy, ledger).events == []


def _labelled(name: str) -> dict[str, object]:
    p = payload("github", "issues.labeled")
    p["label"]["name"] = name  # overlay: the label this delivery added
    p["issue"]["title"] = "[PAY-9] " + p["issue"]["title"]
    return p


def test_uat_labels_pass_or_fail_the_feature(run: Run) -> None:
    assert summary(run("github", "issues", _labelled("uat:passed"))) == [
        ("d-1", "uat.passed", "PAY-9")
    ]
    failed = run("github", "issues", _labelled("uat:failed"))
    assert summary(failed) == [("d-1", "uat.failed", "PAY-9")]
    assert failed.events[0]["data"]["reason"] == "labelled uat:failed"


def test_the_example_bug_label_maps_to_nothing(run: Run) -> None:
    assert run("github", "issues", payload("github", "issues.labeled")).events == []


def test_a_risk_label_raises_a_risk_and_closing_the_issue_mitigates_it(run: Run) -> None:
    raised = run("github", "issues", _labelled("risk:high"))
    assert summary(raised) == [("d-1", "risk.raised", "PAY-9")]
    data = raised.events[0]["data"]
    assert data["severity"] == "high"
    assert data["risk_id"] == "https://github.com/Codertocat/Hello-World/issues/1"
    closed = payload("github", "issues.opened")
    closed["action"] = "closed"  # overlay: no closed example is published
    closed["issue"]["labels"] = [{"name": "risk:high"}, {"name": "feature:PAY-9"}]
    mitigated = run("github", "issues", closed)
    assert summary(mitigated) == [("d-1", "risk.mitigated", "PAY-9")]
    assert mitigated.events[0]["data"]["severity"] == "high"
