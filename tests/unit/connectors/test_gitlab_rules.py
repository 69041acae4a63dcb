"""The shipped GitLab rules on the payload examples of GitLab's "Webhook events" page.

Where they come from: GitLab publishes no package of its payloads, so they are vendored in
``tests/fixtures/webhooks/gitlab``, copied from that documentation page (its README names the
page and the commit it was read at).
"""

from __future__ import annotations

from connectors.ledger import Ledger
from tests.unit.connectors.conftest import Run, summary
from tests.unit.connectors.payloads import payload


def test_merge_request_opened_on_a_feature_branch_starts_the_build(run: Run) -> None:
    p = payload("gitlab", "merge_request.open")
    p["object_attributes"]["source_branch"] = "feature/PAY-5-viewport"  # overlay
    out = run("gitlab", "Merge Request Hook", p)
    assert summary(out) == [("d-1", "build.started", "PAY-5")]
    assert out.events[0]["source"] == "gitlab/gitlabhq/gitlab-test"
    assert out.events[0]["time"] == "2013-12-03T17:23:34Z"


def test_the_documented_merge_request_names_no_feature(run: Run) -> None:
    out = run("gitlab", "Merge Request Hook", payload("gitlab", "merge_request.open"))
    assert out.events == [] and "no feature id" in out.reason


def test_a_release_ships_its_features_and_its_deployment_launches_them(run: Run) -> None:
    release = payload("gitlab", "release.create")
    release["description"] = "v1.1 has been released\n\nFeature: PAY-5\nFeature: PAY-6"  # overlay
    ledger = Ledger()
    shipped = run("gitlab", "Release Hook", release, ledger)
    assert summary(shipped) == [
        ("d-1#1", "build.shipped", "PAY-5"),
        ("d-1#2", "build.shipped", "PAY-6"),
    ]
    assert shipped.events[0]["data"] == {"build": "v1.1"}
    assert shipped.events[0]["time"] == "2020-11-02T12:55:12Z"
    for key, features in shipped.remember:
        ledger.remember(key, features)
    deploy = payload("gitlab", "deployment.success")
    assert run("gitlab", "Deployment Hook", deploy, ledger).events == []  # staging
    deploy["environment"] = deploy["environment_tier"] = "production"  # overlay
    deploy["project"] = release["project"]  # the same project as the release
    sha = release["commit"]["id"]
    deploy["commit_url"] = f"https://example.com/gitlab-org/release-webhook-example/-/commit/{sha}"
    launched = run("gitlab", "Deployment Hook", deploy, ledger)
    assert summary(launched) == [
        ("d-1#1", "feature.launched", "PAY-5"),
        ("d-1#2", "feature.launched", "PAY-6"),
    ]
    assert launched.events[0]["time"] == "2021-04-28T19:50:00Z"  # "+0200" read as such


def _issue_with_label(title: str) -> dict[str, object]:
    p = payload("gitlab", "issue.update")
    p["object_attributes"]["title"] = "[PAY-5] " + p["object_attributes"]["title"]
    p["changes"]["labels"]["current"][0]["title"] = title  # overlay: the label now set
    return p


def test_uat_and_risk_labels_on_an_issue(run: Run) -> None:
    assert summary(run("gitlab", "Issue Hook", _issue_with_label("uat:passed"))) == [
        ("d-1", "uat.passed", "PAY-5")
    ]
    assert summary(run("gitlab", "Issue Hook", _issue_with_label("uat:failed"))) == [
        ("d-1", "uat.failed", "PAY-5")
    ]
    risk = run("gitlab", "Issue Hook", _issue_with_label("risk:critical"))
    assert summary(risk) == [("d-1", "risk.raised", "PAY-5")]
    assert risk.events[0]["data"]["severity"] == "critical"
    assert risk.events[0]["data"]["risk_id"] == "http://example.com/diaspora/issues/23"


def test_the_documented_issue_update_maps_to_nothing(run: Run) -> None:
    p = payload("gitlab", "issue.update")
    p["object_attributes"]["title"] = "[PAY-5] x"
    assert run("gitlab", "Issue Hook", p).events == []
