"""``POST /hooks/{connector}`` on the embedded engine: verified, mapped, applied, logged.

Drives one feature from Jira issue creation to a GitHub production deployment through the
shipped connectors alone, with the tools' own payloads, and checks its stage and history.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.auth import signature
from engine.config.settings import Settings
from engine.embedded.root import build_embedded
from engine.http.hooks import HOOKS
from events.envelope import utc_now
from events.errors import Unavailable
from tests.unit.connectors.payloads import payload

GITHUB_SECRET = "gh-secret"
JIRA_SECRET = "jira-secret"
FEATURE = "JRA-20002"


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        db=tmp_path / "lifecycle.db",
        github_secret=GITHUB_SECRET,
        jira_secret=JIRA_SECRET,
        gitlab_token=None,
    )


Scenario = Callable[[TestClient[Any, Any]], Awaitable[None]]


def _serve(tmp_path: Path, scenario: Scenario, clock: Callable[[], datetime] = utc_now) -> None:
    """Run ``scenario`` against an embedded engine on ``tmp_path``'s file, judging time by
    ``clock``."""

    async def main() -> None:
        wiring = build_embedded(_settings(tmp_path), clock=clock)
        try:
            async with TestClient(TestServer(wiring.app)) as client:
                await scenario(client)
        finally:
            wiring.store.close()

    asyncio.run(main())


def _github(event: str, body: dict[str, Any], delivery: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + signature(GITHUB_SECRET, raw),
    }


def _jira(body: dict[str, Any], delivery: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {
        "Content-Type": "application/json",
        "X-Atlassian-Webhook-Identifier": delivery,
        "X-Hub-Signature": "sha256=" + signature(JIRA_SECRET, raw),
    }


async def _post(
    client: TestClient[Any, Any], connector: str, sent: tuple[bytes, dict[str, str]]
) -> dict[str, Any]:
    resp = await client.post(f"/hooks/{connector}", data=sent[0], headers=sent[1])
    assert resp.status == 202, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


def test_a_feature_goes_from_jira_idea_to_github_production_launch(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        created = await _post(client, "jira", _jira(payload("jira", "issue_created"), "j-1"))
        assert [e["outcome"] for e in created["events"]] == ["applied", "updated"]

        started = payload("jira", "issue_updated")
        started["changelog"]["items"] = [
            {"field": "status", "fromString": "To Do", "toString": "In Progress"}
        ]
        answer = await _post(client, "jira", _jira(started, "j-2"))
        assert answer["events"][0]["stage"] == "development"

        release = payload("github", "release.published")
        deploy = payload("github", "deployment_status.created")
        release["release"]["body"] = f"Feature: {FEATURE}"
        release["release"]["tag_name"] = deploy["deployment"]["ref"]
        shipped = await _post(client, "github", _github("release", release, "g-1"))
        assert shipped["events"][0]["stage"] == "uat"

        label = payload("github", "issues.labeled")
        label["label"]["name"] = "uat:passed"
        label["issue"]["title"] = f"[{FEATURE}] UAT"
        passed = await _post(client, "github", _github("issues", label, "g-2"))
        assert passed["events"][0]["stage"] == "launch_ready"

        launched = await _post(client, "github", _github("deployment_status", deploy, "g-3"))
        assert [(e["type"], e["stage"]) for e in launched["events"]] == [
            ("feature.launched", "launched")
        ]

        feature = await (await client.get(f"/features/{FEATURE}")).json()
        assert feature["stage"] == "launched"
        assert feature["title"] == "I feel the need for speed"
        history = await (await client.get(f"/features/{FEATURE}/history")).json()
        lines = [
            (e["source"], e["event_id"], e["type"])
            for e in history["entries"]
            if e["source"] != "lifecycle/engine"  # the engine's own risk signals
        ]
        assert lines == [
            ("jira/JRA", "j-1#1", "idea.submitted"),
            ("jira/JRA", "j-1#2", "launch.scheduled"),
            ("jira/unknown", "j-2", "build.started"),
            ("github/Codertocat/Hello-World", "g-1", "build.shipped"),
            ("github/Codertocat/Hello-World", "g-2", "uat.passed"),
            ("github/Codertocat/Hello-World", "g-3", "feature.launched"),
        ]

        again = await _post(client, "github", _github("deployment_status", deploy, "g-3"))
        assert [e["outcome"] for e in again["events"]] == ["duplicate"]

    _serve(tmp_path, scenario)


def test_a_deployment_after_a_restart_launches_what_the_release_shipped(tmp_path: Path) -> None:
    """The release ledger is in the SQLite file: an engine restarted between the release and
    its production deployment still knows which features the release shipped."""
    release = payload("github", "release.published")
    deploy = payload("github", "deployment_status.created")
    release["release"]["body"] = "Feature: PAY-1\nFeature: PAY-2"  # overlay: the features
    release["release"]["tag_name"] = deploy["deployment"]["ref"]

    async def before(client: TestClient[Any, Any]) -> None:
        for fid in ("PAY-1", "PAY-2"):
            label = payload("github", "issues.labeled")
            label["label"]["name"] = "uat:passed"
            label["issue"]["title"] = f"[{fid}] UAT"
            await _post(client, "github", _github("issues", label, f"uat-{fid}"))
        shipped = await _post(client, "github", _github("release", release, "g-1"))
        assert [e["subject"] for e in shipped["events"]] == ["PAY-1", "PAY-2"]

    async def after(client: TestClient[Any, Any]) -> None:
        launched = await _post(client, "github", _github("deployment_status", deploy, "g-2"))
        assert [(e["subject"], e["type"], e["outcome"]) for e in launched["events"]] == [
            ("PAY-1", "feature.launched", "applied"),
            ("PAY-2", "feature.launched", "applied"),
        ]
        for fid in ("PAY-1", "PAY-2"):
            assert (await (await client.get(f"/features/{fid}")).json())["stage"] == "launched"

    _serve(tmp_path, before)
    _serve(tmp_path, after)  # a new engine on the same file


def test_a_bad_signature_is_401_and_nothing_is_applied(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        body, headers = _jira(payload("jira", "issue_created"), "j-1")
        headers["X-Hub-Signature"] = "sha256=" + signature("wrong", body)
        resp = await client.post("/hooks/jira", data=body, headers=headers)
        assert resp.status == 401
        text = await resp.text()
        assert JIRA_SECRET not in text
        assert (await client.get(f"/features/{FEATURE}")).status == 404
        log = await (await client.get("/hooks/jira/deliveries")).json()
        assert [d["outcome"] for d in log["deliveries"]] == ["unauthorized"]

    _serve(tmp_path, scenario)


def test_a_connector_without_a_secret_refuses_every_delivery(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        raw = json.dumps(payload("gitlab", "merge_request.open")).encode()
        headers = {"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": ""}
        resp = await client.post("/hooks/gitlab", data=raw, headers=headers)
        assert resp.status == 401
        assert "LIFECYCLE_GITLAB_TOKEN" in await resp.text()

    _serve(tmp_path, scenario)


def test_unmapped_is_202_ignored_with_a_reason_and_not_json_is_400(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        answer = await _post(
            client,
            "github",
            _github("pull_request", payload("github", "pull_request.opened"), "g-9"),
        )
        assert answer["outcome"] == "ignored" and answer["events"] == []
        assert "no feature id found" in answer["reason"]
        raw = b"{not json"
        headers = {
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": "sha256=" + signature(GITHUB_SECRET, raw),
        }
        assert (await client.post("/hooks/github", data=raw, headers=headers)).status == 400
        assert (await client.get("/hooks/bitbucket/deliveries")).status == 404
        log = await (await client.get("/hooks/github/deliveries")).json()
        assert [d["outcome"] for d in log["deliveries"]] == ["malformed", "ignored"]
        metrics = await (await client.get("/metrics")).text()
        assert 'lifecycle_webhook_deliveries_total{connector="github",outcome="ignored"} 1.0' in (
            metrics
        )

    _serve(tmp_path, scenario)


def test_start_up_says_once_which_connectors_have_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from engine.embedded.root import start_embedded

    async def main() -> None:
        settings = _settings(tmp_path).model_copy(update={"http_port": 0})
        handle = await start_embedded(settings)
        await handle.close()

    with caplog.at_level(logging.WARNING, logger="engine.http.hooks"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "engine.http.hooks"]
    assert len(lines) == 1 and "LIFECYCLE_GITLAB_TOKEN is not set" in lines[0]
    assert GITHUB_SECRET not in caplog.text and JIRA_SECRET not in caplog.text


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_github_like = st.fixed_dictionaries(
    {"action": st.sampled_from(["published", "labeled", "opened", "closed"])},
    optional={
        "release": st.dictionaries(
            st.sampled_from(["body", "tag_name", "published_at"]), _json_values
        ),
        "label": _json_values,
        "issue": _json_values,
        "pull_request": _json_values,
        "deployment_status": _json_values,
        "deployment": _json_values,
        "repository": _json_values,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=_github_like | _json_values,
    event=st.sampled_from(["release", "issues", "pull_request", "deployment_status", "push"]),
)
def test_any_signed_json_is_answered_202_never_5xx(tmp_path: Path, body: Any, event: str) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        raw, headers = _github(event, body, "fuzz")
        resp = await client.post("/hooks/github", data=raw, headers=headers)
        assert resp.status == 202, await resp.text()

    _serve(tmp_path / f"f{abs(hash((event, repr(body)))) % 10**9}", scenario)


def test_the_connectors_are_listed_with_a_pattern_their_sources_match(tmp_path: Path) -> None:
    """``GET /hooks``: what the board reads to tell a tool's history lines from others."""

    async def scenario(client: TestClient[Any, Any]) -> None:
        listing = await (await client.get("/hooks")).json()
        by_name = {c["name"]: c for c in listing["connectors"]}
        assert sorted(by_name) == ["github", "gitlab", "jira"]
        assert by_name["github"]["source"] == "github/{repository.full_name}"
        assert by_name["github"]["deliveries"] == "/hooks/github/deliveries"
        answer = await _post(client, "jira", _jira(payload("jira", "issue_created"), "j-1"))
        source = answer["source"]
        assert source == "jira/JRA"
        matching = [n for n, c in by_name.items() if re.search(c["source_pattern"], source)]
        assert matching == ["jira"]
        assert not re.search(by_name["jira"]["source_pattern"], "ci/jira/JRA")
        assert "secret" not in json.dumps(listing).lower()

    _serve(tmp_path, scenario)


class _DownLedger:
    """A release ledger whose storage does not answer (a broker outage, in streaming)."""

    def __call__(self, key: str) -> tuple[str, ...]:
        return ()

    async def record(self, releases: Any) -> None:
        raise Unavailable("the release ledger took no write")

    async def refresh(self) -> None:
        raise Unavailable("the release ledger could not be read")


def test_a_ledger_that_does_not_answer_is_503_counted_and_logged(tmp_path: Path) -> None:
    """The tool retries a 503; meanwhile the deliveries list says what happened, and no
    event of the release was applied without its ledger entry."""

    async def main() -> None:
        wiring = build_embedded(_settings(tmp_path))
        wiring.app[HOOKS].ledger = _DownLedger()
        try:
            async with TestClient(TestServer(wiring.app)) as client:
                release = payload("github", "release.published")
                release["release"]["body"] = "Feature: PAY-1"
                raw, headers = _github("release", release, "g-1")
                resp = await client.post("/hooks/github", data=raw, headers=headers)
                assert resp.status == 503 and resp.headers["Retry-After"]
                deploy = payload("github", "deployment_status.created")
                raw, headers = _github("deployment_status", deploy, "g-2")
                assert (await client.post("/hooks/github", data=raw, headers=headers)).status == 503
                assert (await client.get("/features/PAY-1")).status == 404  # nothing applied
                log = await (await client.get("/hooks/github/deliveries")).json()
                assert [(d["delivery"], d["outcome"]) for d in log["deliveries"]] == [
                    ("g-2", "unavailable"),
                    ("g-1", "unavailable"),
                ]
                assert "could not be read" in log["deliveries"][0]["reason"]
                metrics = await (await client.get("/metrics")).text()
                line = (
                    'lifecycle_webhook_deliveries_total{connector="github",outcome="unavailable"}'
                )
                assert f"{line} 2.0" in metrics
        finally:
            wiring.store.close()

    asyncio.run(main())


def test_the_deliveries_list_and_idempotency_survive_a_restart(tmp_path: Path) -> None:
    """``GET /hooks/{c}/deliveries`` answers the same after a restart (the list is in the
    SQLite file), and a tool redelivering after the restart changes nothing: the delivery id
    is the events' id, and the idempotency keys are in the file too, whether the tool names
    its delivery or the body's hash does."""
    created = _jira(payload("jira", "issue_created"), "j-1")
    unnamed = payload("jira", "issue_updated")
    unnamed["changelog"]["items"] = [
        {"field": "status", "fromString": "To Do", "toString": "In Progress"}
    ]
    raw = json.dumps(unnamed).encode()
    anonymous = (
        raw,
        {  # no delivery id: the body's hash names it
            "Content-Type": "application/json",
            "X-Hub-Signature": "sha256=" + signature(JIRA_SECRET, raw),
        },
    )
    before: dict[str, Any] = {}

    async def first(client: TestClient[Any, Any]) -> None:
        await _post(client, "jira", created)
        started = await _post(client, "jira", anonymous)
        assert started["events"][0]["outcome"] == "applied"
        body, headers = _jira(payload("jira", "issue_created"), "j-9")
        headers["X-Hub-Signature"] = "sha256=" + signature("wrong", body)
        assert (await client.post("/hooks/jira", data=body, headers=headers)).status == 401
        resp = await client.get("/hooks/jira/deliveries")
        before["deliveries"] = await resp.read()
        history = await (await client.get(f"/features/{FEATURE}/history")).json()
        before["history"] = history["entries"]
        before["feature"] = await (await client.get(f"/features/{FEATURE}")).json()

    async def after_restart(client: TestClient[Any, Any]) -> None:
        kept = await (await client.get("/hooks/jira/deliveries")).read()
        assert kept == before["deliveries"]  # the same answer, byte for byte
        listed = json.loads(kept)["deliveries"]
        assert [(d["delivery"], d["outcome"]) for d in listed] == [
            ("j-9", "unauthorized"),
            (anonymous_id, "mapped"),
            ("j-1", "mapped"),
        ]
        again = await _post(client, "jira", created)
        assert [e["outcome"] for e in again["events"]] == ["duplicate", "duplicate"]
        again = await _post(client, "jira", anonymous)
        assert again["delivery"] == anonymous_id
        assert [e["outcome"] for e in again["events"]] == ["duplicate"]
        history = await (await client.get(f"/features/{FEATURE}/history")).json()
        assert [e for e in history["entries"] if e["outcome"] != "duplicate"] == before["history"]
        feature = await (await client.get(f"/features/{FEATURE}")).json()
        assert (
            feature["stage"] == "development" and feature["version"] == before["feature"]["version"]
        )
        now = (await (await client.get("/hooks/jira/deliveries")).json())["deliveries"]
        assert [d["delivery"] for d in now] == [anonymous_id, "j-1", "j-9", anonymous_id, "j-1"]

    anonymous_id = "sha256:" + hashlib.sha256(raw).hexdigest()[:32]
    _serve(tmp_path, first)
    _serve(tmp_path, after_restart)  # a new engine on the same file
