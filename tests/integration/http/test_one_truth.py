"""Every view of risk tells the same story on a populated engine (issue 13, "one truth").

A simulated portfolio is replayed into a real embedded engine; then the API
(``GET /features?at_risk=true``), the CLI (``lifecycle list --at-risk --json``), the status
report (``GET /report?format=json``) and ``/metrics`` (``lifecycle_features_at_risk``) must
count the same features at risk, reason by reason, and the report's launch outlook must
call late or at risk exactly the features whose target slips. The board draws its counts
from the API's ``risk_reasons`` (checked in the browser tests).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import main
from engine.demo.run import simulate
from tests.embedded_server import EmbeddedServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    db: Path = tmp_path_factory.mktemp("truth") / "truth.db"
    with EmbeddedServer(db) as server:
        server.run(simulate(server.url, features=150, days=150, seed=11))
        yield server


def _api_features(server: EmbeddedServer) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    path = "/features?at_risk=true&limit=500"
    while True:
        page = server.get(path).json
        found += page["features"]
        if not page["next"]:
            return found
        path = f"/features?at_risk=true&limit=500&cursor={page['next']}"


def _by_reason(features: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r for f in features for r in f["risk_reasons"])


def _metrics_by_reason(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("lifecycle_features_at_risk{"):
            labels, value = line.rsplit(" ", 1)
            reason = labels.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] += int(float(value))
    return +counts


def test_api_cli_report_and_metrics_count_the_same_features_at_risk(
    server: EmbeddedServer,
) -> None:
    api = _api_features(server)
    assert len(api) >= 10, "the portfolio should put a fair number of features at risk"
    api_reasons = _by_reason(api)
    assert api_reasons["target_slip"] > 0

    out = io.StringIO()
    assert main(["list", "--at-risk", "--json", "--url", server.url], out) == 0
    cli = json.loads(out.getvalue())
    assert sorted(f["id"] for f in cli) == sorted(f["id"] for f in api)
    assert _by_reason(cli) == api_reasons

    report = server.get("/report?since=7d&format=json").json
    report_ids = {fid for ids in report["at_risk_now"].values() for fid in ids}
    assert report_ids == {f["id"] for f in api}
    assert Counter({r: len(ids) for r, ids in report["at_risk_now"].items()}) == api_reasons
    # The launch outlook reads a target as slipping exactly where the API says target_slip
    # (a feature without a date while it waits included: judged as if it moved on today).
    late = ("overdue", "likely_late", "at_risk")
    outlook = {o["id"] for o in report["outlook"] if o["status"] in late}
    assert outlook == {f["id"] for f in api if "target_slip" in f["risk_reasons"]}

    assert _metrics_by_reason(server.get("/metrics").body.decode()) == api_reasons
