"""Status reports (engine.report.status) on a hand-built portfolio, checking each section's numbers.

The history is made by the real processor from hand-written events, so the report reads the
same entries the engine stores. The window is the last 7 of 30 days (days 23 to 30).

| feature | product  | story                                                              |
|---------|----------|--------------------------------------------------------------------|
| A       | payments | launched on day 25, 3 days before its day-28 target                |
| B       | payments | built from idea on day 24 (skips 4 stages), fails UAT twice        |
| C       | payments | in defined since day 5 (SLA 14d breached on day 19), high risk d27 |
| D       | payments | in defined since day 14, SLA breached on day 28; target day 40     |
| E       | payments | idea since day 20, critical risk day 24, target day 26 passed      |
| F       | search   | new on day 25, blocked on day 26                                   |
| G       | payments | cancelled on day 29                                                |
| H       | payments | in development since day 22, target day 60, forecast p50 55 p85 65 |
| I       | payments | in prioritized since day 3, target day 50, forecast p50 40 p85 45  |
| J       | payments | launched on day 10, iterated on day 20, launched again on day 27   |
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from engine.core.processor import process
from engine.core.state import FeatureState, HistoryEntry
from engine.report.status import (
    Forecast,
    Report,
    ReportError,
    build_report,
    forecast_of,
    parse_since,
    render_html,
    render_markdown,
    report_json,
)
from engine.risk.forecast import Forecast as LaunchForecast
from tests.factories import T0, make_event
from workflows.loader import Workflows

NOW = T0 + timedelta(days=30)
SINCE = NOW - timedelta(days=7)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def target(n: int) -> str:
    return (T0.date() + timedelta(days=n)).isoformat()


STORIES: dict[str, list[tuple[float, str, dict[str, Any]]]] = {
    "A": [
        (0, "idea.submitted", {"title": "Apple Pay", "product": "payments", "owner": "ann"}),
        (2, "requirement.approved", {}),
        (3, "feature.prioritized", {"target_launch": target(28)}),
        (5, "build.started", {}),
        (10, "build.shipped", {}),
        (12, "uat.passed", {}),
        (25, "feature.launched", {}),
    ],
    "B": [
        (1, "idea.submitted", {"title": "Refunds", "product": "payments", "owner": "bob"}),
        (24, "build.started", {}),
        (25, "build.shipped", {}),
        (26, "uat.failed", {"reason": "totals wrong"}),
        (27, "build.shipped", {}),
        (28, "uat.failed", {"reason": "still wrong"}),
    ],
    "C": [
        (0, "idea.submitted", {"title": "Invoices", "product": "payments", "owner": "ann"}),
        (5, "requirement.approved", {}),
        (27, "risk.raised", {"risk_id": "r1", "severity": "high", "title": "vendor"}),
    ],
    "D": [
        (0, "idea.submitted", {"title": "Payouts", "product": "payments", "owner": "bob"}),
        (14, "requirement.approved", {}),
        (14.5, "launch.scheduled", {"target_launch": target(40)}),
    ],
    "E": [
        (20, "idea.submitted", {"title": "Disputes", "product": "payments", "owner": "ann"}),
        (21, "launch.scheduled", {"target_launch": target(26)}),
        (24, "risk.raised", {"risk_id": "r2", "severity": "critical", "title": "legal"}),
    ],
    "F": [
        (25, "idea.submitted", {"title": "Synonyms", "product": "search", "owner": "cy"}),
        (26, "feature.blocked", {"reason": "waiting for data"}),
    ],
    "G": [
        (0, "idea.submitted", {"title": "Split pay", "product": "payments", "owner": "bob"}),
        (29, "feature.cancelled", {"reason": "dropped"}),
    ],
    "H": [
        (0, "idea.submitted", {"title": "SEPA", "product": "payments", "owner": "ann"}),
        (1, "requirement.approved", {}),
        (2, "feature.prioritized", {"target_launch": target(60)}),
        (22, "build.started", {}),
    ],
    "I": [
        (1, "idea.submitted", {"title": "Fraud", "product": "payments", "owner": "bob"}),
        (2, "requirement.approved", {}),
        (3, "feature.prioritized", {"target_launch": target(50)}),
    ],
}
STORIES["J"] = [
    (0, "idea.submitted", {"title": "Wallet", "product": "payments", "owner": "ann"}),
    (1, "build.started", {}),
    (2, "build.shipped", {}),
    (3, "uat.passed", {}),
    (10, "feature.launched", {}),
    (20, "iteration.started", {}),
    (25, "build.shipped", {}),
    (26, "uat.passed", {}),
    (27, "feature.launched", {}),
]
FORECASTS = {
    "H": Forecast(T0.date() + timedelta(days=55), T0.date() + timedelta(days=65), 12),
    "I": Forecast(T0.date() + timedelta(days=40), T0.date() + timedelta(days=45), 12),
}


@pytest.fixture(scope="module")
def portfolio(
    workflows: Workflows,
) -> tuple[list[FeatureState], dict[str, list[HistoryEntry]]]:
    states: list[FeatureState] = []
    histories: dict[str, list[HistoryEntry]] = {}
    for fid, story in STORIES.items():
        state: FeatureState | None = None
        history: list[HistoryEntry] = []
        for at, type_, data in story:
            event = make_event(type_, fid, at=day(at), **data)
            out = process(workflows, state, event, day(at))
            assert out.outcome in ("applied", "updated"), (fid, type_, out.reason)
            state = out.state
            history += out.entries
        assert state is not None
        states.append(state)
        histories[fid] = history
    return states, histories


def report_of(
    portfolio: tuple[list[FeatureState], dict[str, list[HistoryEntry]]],
    workflows: Workflows,
    **options: Any,
) -> Report:
    states, histories = portfolio
    return build_report(
        states,
        histories,
        workflows.by_name,
        now=NOW,
        since=SINCE,
        forecasts=FORECASTS,
        **options,
    )


@pytest.fixture(scope="module")
def report(
    portfolio: tuple[list[FeatureState], dict[str, list[HistoryEntry]]], workflows: Workflows
) -> Report:
    return report_of(portfolio, workflows)


def test_scope_and_new_features(report: Report) -> None:
    assert report.features == 10
    assert report.created == ("F",)


def test_what_launched_with_lead_time_against_target(report: Report) -> None:
    assert [x.id for x in report.launched] == ["A"]
    assert report.relaunched == ("J",)  # its lead time counted at its first launch (day 10)
    launch = report.launched[0]
    assert launch.launched_at == day(25)
    assert launch.lead_time_days == pytest.approx(25)
    assert launch.days_late == -3


def test_what_moved_and_where(report: Report) -> None:
    moves = {(m.from_stage, m.to_stage): (m.count, m.feature_ids, m.skipped) for m in report.moves}
    assert moves == {
        ("idea", "development"): (1, ("B",), ("discovery", "defined", "prioritized", "design")),
        ("development", "uat"): (3, ("B", "J"), ()),
        ("uat", "development"): (2, ("B",), ()),
        ("uat", "launch_ready"): (1, ("J",), ()),
        ("launch_ready", "launched"): (2, ("A", "J"), ()),
        ("idea", "cancelled"): (1, ("G",), ()),
    }
    assert report.moved == ("A", "B", "G", "J")
    assert report.moves[0].count == 3  # most frequent first


def test_newly_at_risk_and_why(report: Report) -> None:
    newly = {r.id: r.reasons for r in report.newly_at_risk}
    assert newly == {
        "B": ("rework",),
        "D": ("sla_breached",),
        "E": ("critical_risk", "target_slip"),
        "F": ("blocked",),
    }
    # C breached its SLA before the window; only its high risk is new.
    assert [(r.id, r.reasons, r.new_reasons) for r in report.new_reasons] == [
        ("C", ("sla_breached", "high_risk"), ("high_risk",))
    ]
    assert report.at_risk_now == {
        "sla_breached": ("C", "D"),
        "critical_risk": ("E",),
        "high_risk": ("C",),
        "blocked": ("F",),
        "target_slip": ("E",),
        "rework": ("B",),
    }
    assert report.at_risk == ("B", "C", "D", "E", "F")


def test_stuck_longest_by_time_in_stage_against_sla(
    portfolio: tuple[list[FeatureState], dict[str, list[HistoryEntry]]], workflows: Workflows
) -> None:
    report = report_of(portfolio, workflows, stuck_top=3)
    assert [(s.id, s.stage) for s in report.stuck] == [
        ("C", "defined"),
        ("D", "defined"),
        ("I", "prioritized"),
    ]
    c = report.stuck[0]
    assert c.in_stage_seconds == 25 * 86400
    assert c.sla_ratio == pytest.approx(25 / 14)


def test_uat_failures_and_rework(report: Report) -> None:
    assert [(u.id, u.in_window, u.total) for u in report.uat_failures] == [("B", 2, 2)]
    assert report.rework == {
        "development": ("B",),
        "uat": ("B", "J"),
        "launch_ready": ("J",),
        "launched": ("J",),
    }


def test_launch_forecasts_against_targets(report: Report) -> None:
    outlook = [(o.id, o.status, o.target_launch) for o in report.outlook]
    assert outlook == [
        ("E", "overdue", T0.date() + timedelta(days=26)),
        ("H", "at_risk", T0.date() + timedelta(days=60)),
        ("I", "on_track", T0.date() + timedelta(days=50)),
        ("D", "no_forecast", T0.date() + timedelta(days=40)),
    ]


def test_one_product_only(
    portfolio: tuple[list[FeatureState], dict[str, list[HistoryEntry]]], workflows: Workflows
) -> None:
    report = report_of(portfolio, workflows, product="search")
    assert report.features == 1
    assert report.created == ("F",)
    assert [r.id for r in report.newly_at_risk] == ["F"]
    assert report.moves == () and report.launched == () and report.outlook == ()


def test_markdown_states_each_number_with_its_feature_ids(report: Report) -> None:
    text = render_markdown(report)
    assert text.startswith("# Status report: 2024-01-24 to 2024-01-31 (7d)")
    for heading in (
        "## Launched",
        "## Moved",
        "## Newly at risk",
        "## Stuck longest",
        "## UAT failures and rework",
        "## Launch forecasts against targets",
    ):
        assert heading in text
    assert "1 launched: A; 1 relaunched after an iteration: J." in text
    assert "- A Apple Pay on 2024-01-26, lead time 25d, 3d before target 2024-01-29" in text
    assert "4 features changed stage (10 moves); 1 new: F." in text
    assert "- idea → development: 1 (B), skipping discovery, defined, prioritized, design" in text
    assert "4 newly at risk, 1 with new reasons; 5 at risk now" in text
    assert "- E Disputes in idea: critical risk, target slip" in text
    assert "- C Invoices in defined: now also high risk" in text
    assert "- C Invoices: 25d in defined, 1.8x its 14d SLA" in text
    assert "2 UAT failures on 1 features: B." in text
    assert "- re-entered uat: 2 (B, J)" in text
    assert "overdue 1; at risk 1; on track 1; no forecast 1" in text
    assert "p50 2024-02-25, p85 2024-03-06; based on 12 stays of earlier features" in text


def test_html_is_a_page_with_the_same_sections_escaped(report: Report) -> None:
    page = render_html(report)
    assert page.startswith("<!doctype html>")
    assert page.count("<h2") == 6
    assert "idea → development: 1 (B)" in page
    assert "<script" not in page


def test_json_form_is_plain_values(report: Report) -> None:
    doc = report_json(report)
    assert doc["since"] == "2024-01-24T00:00:00Z"
    assert doc["launched"][0]["id"] == "A"
    assert doc["at_risk_now"]["rework"] == ["B"]


def test_windows_people_write() -> None:
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("36h", NOW) == NOW - timedelta(hours=36)
    assert parse_since("2w", NOW) == NOW - timedelta(days=14)
    assert parse_since("2024-01-15", NOW) == day(14)
    for bad in ("soon", "7x", "2024-03-01"):
        with pytest.raises(ReportError):
            parse_since(bad, NOW)


def test_the_report_shows_a_forecast_with_the_dates_the_api_shows() -> None:
    made = datetime(2024, 1, 20, tzinfo=UTC)
    launch = LaunchForecast(
        datetime(2024, 2, 1, 9, tzinfo=UTC),
        datetime(2024, 2, 10, 23, tzinfo=UTC),
        7,
        "observed",
        made,
    )
    assert forecast_of(launch, made) == Forecast(date(2024, 2, 1), date(2024, 2, 10), 7, "low")
    view = launch.view(made)
    assert (view["p50"], view["p85"]) == ("2024-02-01", "2024-02-10")
    assert forecast_of(None, made) is None


def test_a_blocked_features_forecast_has_no_date_only_the_days_once_unblocked() -> None:
    made = datetime(2024, 1, 20, tzinfo=UTC)
    launch = LaunchForecast(
        made + timedelta(days=12),
        made + timedelta(days=30, hours=12),
        7,
        "observed",
        made,
        confidence="low",
        blocked=True,
        waiting="unblock",
    )
    today = made + timedelta(days=5)  # if it moved on today: 12 / 30.5 days from today
    found = forecast_of(launch, today)
    assert found == Forecast(
        None,
        None,
        7,
        "low",
        True,
        "unblock",
        (12.0, 30.5),
        (date(2024, 2, 6), date(2024, 2, 24)),
    )
    from engine.report.status import _forecast_text

    # Issue 13: "7 observations, low confidence" read as a contradiction; the text says
    # what the confidence rests on.
    assert _forecast_text(found) == (
        "no date (blocked); once unblocked: p50 12 days, p85 30.5 days; low confidence: "
        "nobody can tell when a block ends; the days after it are based on 7 stays of "
        "earlier features"
    )
    assert launch.view(today)["then_days"] == {"p50": 12.0, "p85": 30.5}


@pytest.mark.parametrize(
    ("then_p50", "then_p85", "status"),
    [(10, 20, "on_track"), (10, 40, "at_risk"), (40, 50, "likely_late")],
)
def test_a_waiting_forecast_is_judged_against_its_target_as_its_risk_reasons_judge_it(
    workflows: Workflows, then_p50: int, then_p85: int, status: str
) -> None:
    """A feature blocked in development with its target 30 days off: its outlook reads
    late or at risk exactly when its risk reasons say ``target_slip`` (if it moved on
    today, would it miss the target?), so the report agrees with the board and the API."""
    from engine.risk.reasons import TARGET_SLIP, risk_reasons

    state: FeatureState | None = None
    history: list[HistoryEntry] = []
    story = [
        (0, "idea.submitted", {"title": "Refund API", "product": "payments", "owner": "ann"}),
        (2, "feature.prioritized", {"target_launch": target(60)}),
        (4, "build.started", {}),
        (20, "feature.blocked", {"reason": "waiting on legal review"}),
    ]
    for at, type_, data in story:
        out = process(workflows, state, make_event(type_, "W", at=day(at), **data), day(at))
        state, history = out.state, history + list(out.entries)
    assert state is not None and state.blocked
    made = NOW - timedelta(days=2)  # made earlier: its days count from today all the same
    launch = LaunchForecast(
        made + timedelta(days=then_p50),
        made + timedelta(days=then_p85),
        40,
        "observed",
        made,
        confidence="low",
        blocked=True,
        waiting="unblock",
    )
    workflow = workflows.by_name[state.workflow]
    reasons = risk_reasons(state, workflow, NOW, forecast_launch=launch.p85_date(NOW))
    report = build_report(
        [state],
        {"W": history},
        workflows.by_name,
        now=NOW,
        since=SINCE,
        forecasts={"W": forecast_of(launch, NOW)},
        reasons={"W": reasons},
    )
    assert [o.status for o in report.outlook] == [status]
    late = status in ("overdue", "likely_late", "at_risk")
    assert (TARGET_SLIP in reasons) is late
    assert (state.id in report.at_risk_now.get(TARGET_SLIP, ())) is late
    assert state.id in report.at_risk_now["blocked"]


@pytest.mark.parametrize(
    ("confidence", "waiting", "says"),
    [
        ("high", None, "high confidence: based on 1,024 stays of earlier features in the "
         "stages ahead, 20 or more in each"),
        ("medium", None, "medium confidence: based on 1,024 stays of earlier features, too "
         "few in some stage ahead"),
        ("low", None, "low confidence: too few earlier features to learn from, so the stage "
         "SLAs stand in"),
        ("low", "exit", "low confidence: nobody can tell when it leaves its stage; the days "
         "after are based on 1,024 stays of earlier features"),
    ],
)  # fmt: skip
def test_a_forecasts_confidence_says_what_it_rests_on(
    confidence: str, waiting: str | None, says: str
) -> None:
    """Issue 13: "1024 observations, low confidence" read as a contradiction to a PM."""
    from engine.report.status import _forecast_text

    then = (12.0, 30.5) if waiting else None
    found = Forecast(None, None, 1024, confidence, False, waiting, then)
    assert _forecast_text(found).endswith("; " + says)
