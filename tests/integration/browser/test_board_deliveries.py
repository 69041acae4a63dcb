"""Tool deliveries on the board, in a real headless Chromium (Debian's ``/usr/bin/chromium``
driven by Playwright, as ``test_board.py``): a feature's dialog lists the webhook deliveries
that moved it (connector, delivery id, source, time), and each connector's recent deliveries,
with what became of them, are one click away. Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.auth import signature
from tests.embedded_server import EmbeddedServer
from tests.integration.browser.test_board import span
from tests.services import missing_service
from tests.unit.connectors.payloads import payload

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
GITHUB_SECRET = "board-gh-secret"
JIRA_SECRET = "board-jira-secret"
FEATURE = "JRA-20002"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("the playwright Python package is not installed (pip install -e '.[dev]')")
    if shutil.which(CHROMIUM) is None:
        missing_service(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _deliver(
    engine: EmbeddedServer, connector: str, body: Any, headers: dict[str, str], secret: str
) -> int:
    raw = json.dumps(body).encode()
    name = "X-Hub-Signature-256" if connector == "github" else "X-Hub-Signature"
    sent = {"Content-Type": "application/json", name: "sha256=" + signature(secret, raw), **headers}
    return engine.request("POST", f"/hooks/{connector}", raw, sent).status


def test_a_feature_shows_the_deliveries_that_moved_it_and_each_connector_its_last(
    browser: Any, tmp_path: Path
) -> None:
    with EmbeddedServer(
        tmp_path / "board.db", github_secret=GITHUB_SECRET, jira_secret=JIRA_SECRET
    ) as engine:
        jira = {"X-Atlassian-Webhook-Identifier": "jira-d-1"}
        assert _deliver(engine, "jira", payload("jira", "issue_created"), jira, JIRA_SECRET) == 202
        pr = payload("github", "pull_request.opened")
        pr["pull_request"]["head"]["ref"] = f"feature/{FEATURE}-speed"  # overlay: the feature
        gh = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "gh-d-1"}
        assert _deliver(engine, "github", pr, gh, GITHUB_SECRET) == 202
        plain = payload("github", "pull_request.opened")  # names no feature: ignored
        gh2 = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "gh-d-2"}
        assert _deliver(engine, "github", plain, gh2, GITHUB_SECRET) == 202
        gh3 = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "gh-d-3"}
        assert _deliver(engine, "github", plain, gh3, "not the secret") == 401
        assert engine.get(f"/features/{FEATURE}").json["stage"] == "development"

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(f"{engine.url}/#{FEATURE}")  # opens the feature's dialog
        section = page.locator("dialog#detail .deliveries-section")
        section.wait_for(state="visible", timeout=15_000)
        rows = section.locator("li")
        assert rows.count() == 3  # jira-d-1 made two events (idea, due date), gh-d-1 one
        lines = [rows.nth(i).inner_text() for i in range(3)]
        newest = lines[0]  # newest first: the pull request
        assert "build.started" in newest and "applied" in newest
        assert "github delivery gh-d-1" in newest and "github/Codertocat/Hello-World" in newest
        assert all("jira delivery jira-d-1" in line and "jira/JRA" in line for line in lines[1:])
        assert section.locator("li time").first.get_attribute("datetime")  # when it happened
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "feature-deliveries.png"))

        # The delivery id opens the connector's recent deliveries, that one marked.
        section.locator('li[data-delivery="gh-d-1"] a.dl-open').click()
        dialog = page.locator("dialog#deliveries")
        dialog.wait_for(state="visible")
        page.wait_for_selector("dialog#deliveries tr.hit")
        assert page.locator("#deliveries-connector").input_value() == "github"
        table = dialog.locator("tbody tr")
        assert [table.nth(i).get_attribute("data-delivery") for i in range(3)] == [
            "gh-d-3",
            "gh-d-2",
            "gh-d-1",
        ]
        assert dialog.locator("tr.hit").get_attribute("data-delivery") == "gh-d-1"
        outcomes = [table.nth(i).get_attribute("data-outcome") for i in range(3)]
        assert outcomes == ["unauthorized", "ignored", "mapped"]
        assert "no feature id found" in table.nth(1).inner_text()  # why it did not move
        assert f"build.started {FEATURE}" in table.nth(2).inner_text()
        page.screenshot(path=str(ARTIFACTS / "deliveries.png"))

        # Another connector from the picker; Escape goes back to the feature.
        page.select_option("#deliveries-connector", "jira")
        page.wait_for_selector('dialog#deliveries tr[data-delivery="jira-d-1"]')
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        assert page.locator("dialog#detail").is_visible()
        page.keyboard.press("Escape")

        # From the header, without a feature.
        page.locator("#deliveries-link").click()
        dialog.wait_for(state="visible")
        page.wait_for_selector('dialog#deliveries tr[data-delivery="gh-d-1"]')
        gh4 = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "gh-d-4"}
        assert _deliver(engine, "github", plain, gh4, GITHUB_SECRET) == 202
        page.get_by_role("button", name="Refresh").click()  # a delivery since it opened
        page.wait_for_selector('dialog#deliveries tbody tr:first-child[data-delivery="gh-d-4"]')
        assert errors == [], f"JavaScript errors on the board: {errors}"
        page.close()


def test_the_deliveries_show_ages_on_the_engines_clock(browser: Any, tmp_path: Path) -> None:
    """Issue 13, one clock per engine in every view: the deliveries had a copy of the board's
    helpers that read the browser's clock, not the engine's ``Lifecycle-Now``. On an engine
    135 days behind this browser (as during the demo's replay), a delivery received just now
    is "0m ago", not "19w 2d ago"; and an event is as old as the engine's clock says."""
    engine_now = datetime.now(UTC).replace(microsecond=0) - timedelta(days=135)
    with EmbeddedServer(
        tmp_path / "clock.db",
        clock=lambda: engine_now,
        github_secret=GITHUB_SECRET,
        jira_secret=JIRA_SECRET,
    ) as engine:
        jira = {"X-Atlassian-Webhook-Identifier": "jira-clock-1"}
        assert _deliver(engine, "jira", payload("jira", "issue_created"), jira, JIRA_SECRET) == 202
        pr = payload("github", "pull_request.opened")
        pr["pull_request"]["head"]["ref"] = f"feature/{FEATURE}-speed"
        gh = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "gh-clock-1"}
        assert _deliver(engine, "github", pr, gh, GITHUB_SECRET) == 202
        entries = engine.get(f"/features/{FEATURE}/history").json["entries"]
        moved = next(e for e in entries if e["event_id"].startswith("gh-clock-1"))
        happened = datetime.fromisoformat(moved["time"].replace("Z", "+00:00"))

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(f"{engine.url}/#{FEATURE}")
        section = page.locator("dialog#detail .deliveries-section")
        section.wait_for(state="visible", timeout=15_000)
        age = section.locator('li[data-delivery="gh-clock-1"] .dl-age')
        assert age.count() == 1  # each delivery says how long ago it happened
        assert age.inner_text() == f"{span((engine_now - happened).total_seconds())} ago"

        section.locator('li[data-delivery="gh-clock-1"] a.dl-open').click()
        row = page.locator('dialog#deliveries tr[data-delivery="gh-clock-1"]')
        row.wait_for(state="visible")
        assert row.locator(".dl-age").count() == 1
        assert row.locator(".dl-age").inner_text() == "0m ago"  # received just now
        assert errors == []
        page.close()
