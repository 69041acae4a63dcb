"""A simulated product portfolio: the CloudEvents a company's tools would send over months.

Used by ``lifecycle demo`` (:mod:`engine.demo.run`) and by tests that need a realistic stream.
:func:`build_portfolio` is pure: a seeded :class:`random.Random`, a start time and a length
in simulated days give the same time-ordered list of events every time. The stream covers
what a real portfolio does: features arriving over time across several products, skipped
stages, UAT failures and rework, risks raised and mitigated (critical ones holding a launch
back until mitigated), blocked and stalled features, cancellations, target dates that slip,
duplicates re-sent by retrying webhooks, feedback and KPIs after launch, and iterations.
Each of them befalls a fixed share of the features whenever they arrive (the portfolio is
stationary), so the first months of a portfolio are like its last ones.

Event ``time`` is business time on a compressed clock: :mod:`engine.demo.run` lays the portfolio
out so that its last simulated day ends *now* and replays it at ``speed`` simulated seconds
per real second, so stage durations and lead times read as days and weeks, and features left
waiting in a stage really breach its SLA against the wall clock.

Nothing here sends anything: this module imports no HTTP, Kafka or store code.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from events.builder import cloud_event

DAY = 86_400.0
"""Seconds in a simulated day."""

PRODUCTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "payments": (
        "PAY",
        (
            "Apple Pay at checkout",
            "One-click refunds",
            "Multi-currency invoices",
            "3-D Secure 2 challenge flow",
            "Saved cards for guests",
            "Payout scheduling",
            "Dispute evidence upload",
            "Split payments",
            "Subscription proration",
            "SEPA direct debit",
            "Fraud score on orders",
            "Instant bank transfers",
        ),
        ("amara.okafor", "lucas.meyer", "priya.nair"),
    ),
    "search": (
        "SRCH",
        (
            "Typo-tolerant search",
            "Search suggestions",
            "Faceted filters",
            "Synonym management",
            "Search analytics dashboard",
            "Semantic ranking",
            "Recent searches",
            "Zero-result recovery",
            "Boost rules for merchandisers",
            "Search in PDFs",
            "Voice search",
        ),
        ("jonas.berg", "mei.chen", "sofia.rossi"),
    ),
    "mobile": (
        "MOB",
        (
            "Dark mode",
            "Offline mode",
            "Push notification preferences",
            "Biometric login",
            "Home screen widgets",
            "In-app chat",
            "Deep links from email",
            "Tablet layout",
            "App store rating prompt",
            "Background sync",
            "Accessibility audit fixes",
        ),
        ("diego.alvarez", "hana.sato", "tom.walsh"),
    ),
    "analytics": (
        "ANL",
        (
            "Cohort retention chart",
            "Funnel builder",
            "Scheduled CSV exports",
            "Custom dashboards",
            "Anomaly alerts",
            "Revenue attribution",
            "Data warehouse sync",
            "Event explorer",
            "Shared report links",
            "Row-level permissions",
        ),
        ("fatima.haddad", "noah.kim", "elena.popescu"),
    ),
    "onboarding": (
        "ONB",
        (
            "Guided product tour",
            "Sign up with Google",
            "Team invitations",
            "Sample data workspace",
            "Onboarding checklist",
            "Progressive profiling",
            "Welcome email series",
            "SSO for enterprise trials",
            "Import from spreadsheets",
            "Trial extension requests",
        ),
        ("olivia.brown", "kwame.mensah", "ines.dubois"),
    ),
}
"""Product -> (feature id prefix, title ideas, product managers)."""

VARIANTS = ("", " for enterprise", " v2", " on Android", " in the EU", " for teams", " (beta)")

SOURCES = {
    "idea.submitted": "product/roadmap",
    "discovery.started": "product/discovery",
    "requirement.approved": "product/requirements",
    "feature.prioritized": "product/roadmap",
    "design.started": "design/figma",
    "build.started": "ci/build-service",
    "build.shipped": "ci/build-service",
    "uat.passed": "qa/uat",
    "uat.failed": "qa/uat",
    "feature.launched": "release/launcher",
    "iteration.started": "product/roadmap",
    "feature.cancelled": "product/roadmap",
    "feature.blocked": "eng/issue-tracker",
    "feature.unblocked": "eng/issue-tracker",
    "risk.raised": "pm/risk-register",
    "risk.mitigated": "pm/risk-register",
    "launch.scheduled": "release/calendar",
    "feedback.received": "support/feedback",
    "kpi.reported": "analytics/kpi",
}
"""Which company tool sends each event type."""

UAT_FAILURES = (
    "checkout total wrong with coupons",
    "crashes on iOS 16",
    "acceptance criterion 2 not met",
    "slow under load: p95 over 2 s",
    "copy not localised",
    "accessibility: no focus order",
)
BLOCKERS = (
    "waiting on legal review",
    "API dependency from platform team",
    "vendor contract not signed",
    "security review pending",
    "design system component missing",
)
CANCEL_REASONS = (
    "superseded by a broader initiative",
    "no customer demand in discovery",
    "duplicate of an existing feature",
    "strategy change",
    "cost outweighs the expected value",
)
RISKS = (
    "third-party API rate limits",
    "data migration could lose records",
    "key engineer on leave",
    "performance regression risk",
    "regulatory approval uncertain",
    "depends on an unreleased SDK",
)
CRITICAL_RISKS = (
    "PCI compliance gap found in review",
    "data privacy issue found by security",
    "launch would break the public API",
)
KPIS = ("adoption_rate", "conversion_uplift", "weekly_active_users", "nps")

# Shares of the features dealt each turn by _plans (cancel, stall, UAT failures, critical risk,
# iteration), and chances per feature (the others) or per event (duplicates).
P_CANCEL = 0.08
P_STALL = 0.07
P_SKIP_TO_PRIORITIZED = 0.12
P_SKIP_TO_BUILD = 0.08
P_DISCOVERY = 0.55
P_DESIGN = 0.6
P_UAT_FAIL = 0.27
P_UAT_FAIL_AGAIN = 0.4
P_RESHIP_IN_UAT = 0.1
P_BLOCKED = 0.15
P_RISK = 0.35
P_CRITICAL = 0.08
P_EARLY_LAUNCH = 0.6
"""Of the features with a critical risk, how many try to launch before it is mitigated."""
P_SLIP = 0.3
P_ITERATION = 0.12
P_DUPLICATE = 0.04
"""Per event: a retrying webhook sends it again a little later."""


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One event of the portfolio and when it happens.

    Attributes:
        offset: simulated seconds since the portfolio's start (the event's ``time``).
        event: the CloudEvent in structured JSON form, ready to send.
        duplicate: this is a repeat of an earlier event (same ``source`` and ``id``).
    """

    offset: float
    event: dict[str, Any]
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class _Plan:
    """The turns a feature's life will take, dealt out so every portfolio has each of them."""

    cancel_at: str | None = None
    stall_at: str | None = None
    uat_failures: int = 0
    critical: bool = False
    iteration: bool = False


STAGES = ("idea", "defined", "prioritized", "development", "uat", "launch_ready")
"""Stages where a feature's story may end early (cancelled or left waiting)."""


def _plans(rng: random.Random, n: int) -> list[_Plan]:
    """Deal each variety to a fixed share of the ``n`` features, whenever they arrive.

    Every kind of trouble can befall a feature arriving at any time, at the same rates: the
    portfolio is stationary, so what the engine learns from early features (how long stages
    take, how often UAT fails) holds for later ones, and a forecast can be checked against
    any stretch of it (``bench/forecast_calibration.py``). A late feature's turn may lie past
    the end of the period: it has not happened yet, as in a real portfolio.
    """

    def deal(share: float, eligible: Collection[int]) -> set[int]:
        return set(rng.sample(sorted(eligible), min(len(eligible), round(share * n))))

    everyone = range(n)
    cancelled = deal(P_CANCEL, everyone)
    stalled = deal(P_STALL, set(everyone) - cancelled)
    failing = deal(P_UAT_FAIL, everyone)
    twice = deal(P_UAT_FAIL * P_UAT_FAIL_AGAIN, failing)
    critical = deal(P_CRITICAL, everyone)
    iterating = deal(P_ITERATION, set(everyone) - cancelled - stalled)
    return [
        _Plan(
            cancel_at=rng.choice(STAGES) if i in cancelled else None,
            stall_at=rng.choice(STAGES) if i in stalled else None,
            uat_failures=(i in failing) + (i in twice),
            critical=i in critical,
            iteration=i in iterating,
        )
        for i in range(n)
    ]


@dataclass(slots=True)
class _Story:
    """The events of one feature as they are written, in simulated days since the start."""

    fid: str
    rng: random.Random
    start: datetime
    t: float
    plan: _Plan
    seq: int = 0
    items: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    no_repeat: set[int] = field(default_factory=set)

    def wait(self, low: float, high: float) -> None:
        """Let between ``low`` and ``high`` simulated days pass."""
        self.t += self.rng.uniform(low, high)

    def emit(
        self, etype: str, data: dict[str, Any] | None = None, *, at: float | None = None
    ) -> dict[str, Any]:
        """Add an event now (or at ``at`` days); returns it so a caller can send it again."""
        self.seq += 1
        when = self.t if at is None else at
        event = cloud_event(
            etype,
            self.fid,
            id=f"{self.fid}.{self.seq:03d}",
            source=SOURCES[etype],
            time=(self.start + timedelta(days=when)).replace(microsecond=0),
            data=data or {},
        )
        self.items.append((when, event))
        return event

    def resend(self, event: dict[str, Any], at: float) -> None:
        """Send ``event`` again at ``at`` days, unchanged: the same (source, id)."""
        self.items.append((at, event))

    def date(self, days: float) -> str:
        return (self.start + timedelta(days=days)).date().isoformat()


def _feature(rng: random.Random, story: _Story, product: str, title: str, owner: str) -> None:
    """Write the life of one feature into ``story``, from its idea to wherever it stops."""
    plan = story.plan

    def stops(stage: str) -> bool:
        """Whether the feature's story ends in ``stage`` (cancelled or left waiting)."""
        if stage == plan.cancel_at:
            story.wait(2, 25)
            story.emit("feature.cancelled", {"reason": rng.choice(CANCEL_REASONS)})
            return True
        if stage == plan.stall_at:
            if rng.random() < 0.5:
                story.wait(1, 5)
                story.emit("feature.blocked", {"reason": rng.choice(BLOCKERS)})
            return True
        return False

    story.emit("idea.submitted", {"title": title, "product": product, "owner": owner})
    if stops("idea"):
        return
    skip = rng.random()
    if skip < P_SKIP_TO_PRIORITIZED:
        # A quick win: prioritized straight from the backlog (discovery, defined skipped).
        story.wait(2, 12)
        _prioritize(rng, story)
    else:
        if rng.random() < P_DISCOVERY:
            story.wait(2, 10)
            story.emit("discovery.started")
            story.wait(3, 14)
        else:
            story.wait(2, 12)
        criteria = [f"criterion {i + 1} of {title.lower()}" for i in range(rng.randint(2, 5))]
        story.emit("requirement.approved", {"acceptance_criteria": criteria})
        if stops("defined"):
            return
        if skip < P_SKIP_TO_PRIORITIZED + P_SKIP_TO_BUILD:
            # An urgent fix goes straight into development (prioritized, design skipped).
            story.wait(1, 5)
            story.emit("build.started")
            return _develop(rng, story, stops)
        story.wait(2, 8)
        _prioritize(rng, story)
    if stops("prioritized"):
        return
    story.wait(3, 20)
    if rng.random() < P_DESIGN:
        story.emit("design.started")
        story.wait(5, 15)
    story.emit("build.started")
    _develop(rng, story, stops)


def _prioritize(rng: random.Random, story: _Story) -> None:
    data: dict[str, Any] = {"priority": rng.randint(1, 5)}
    if rng.random() < 0.7:
        data["target_launch"] = story.date(story.t + rng.uniform(35, 80))
    story.emit("feature.prioritized", data)
    if "target_launch" in data and rng.random() < P_SLIP:
        # The date slips once the team knows more.
        slipped = story.t + rng.uniform(50, 110)
        story.emit(
            "launch.scheduled",
            {"target_launch": story.date(slipped)},
            at=story.t + rng.uniform(10, 30),
        )


def _develop(rng: random.Random, story: _Story, stops: Callable[[str], bool]) -> None:
    """From ``development`` on: build, UAT with failures and rework, launch, afterlife."""
    built = 0
    failures_left = story.plan.uat_failures
    if rng.random() < P_RISK:
        severity = rng.choices(("low", "medium", "high"), (3, 4, 3))[0]
        risk = f"R-{story.fid}-1"
        raised = story.t + rng.uniform(1, 10)
        data = {"risk_id": risk, "severity": severity, "title": rng.choice(RISKS)}
        story.emit("risk.raised", data, at=raised)
        if rng.random() < 0.8:
            story.emit("risk.mitigated", data, at=raised + rng.uniform(3, 25))
    if stops("development"):
        return
    if rng.random() < P_BLOCKED:
        story.wait(2, 8)
        story.emit("feature.blocked", {"reason": rng.choice(BLOCKERS)})
        story.wait(3, 15)
        story.emit("feature.unblocked", {"reason": "resolved"})
    story.wait(8, 28)
    while True:
        built += 1
        story.emit("build.shipped", {"build": f"{story.fid.lower()}-1.{built}.0"})
        if built == 1 and stops("uat"):
            return
        if rng.random() < P_RESHIP_IN_UAT:
            story.wait(0.5, 2)
            built += 1
            story.emit("build.shipped", {"build": f"{story.fid.lower()}-1.{built}.0"})
        story.wait(2, 7)
        if failures_left == 0:
            break
        failures_left -= 1
        story.emit("uat.failed", {"reason": rng.choice(UAT_FAILURES)})
        story.wait(3, 12)
    story.emit("uat.passed")
    if stops("launch_ready"):
        return
    story.wait(1, 5)
    if story.plan.critical:
        # A critical risk holds the launch back: a launch attempt is refused until mitigated.
        data = {
            "risk_id": f"R-{story.fid}-C",
            "severity": "critical",
            "title": rng.choice(CRITICAL_RISKS),
        }
        story.emit("risk.raised", data)
        early = rng.random() < P_EARLY_LAUNCH
        if early:
            story.wait(0.5, 2)
            attempt = story.emit("feature.launched")
            story.no_repeat.add(len(story.items) - 1)
        story.wait(3, 10)
        story.emit("risk.mitigated", data)
        story.wait(0.5, 2)
        if early:
            story.resend(attempt, story.t)  # The launcher retries the same event.
        else:
            story.emit("feature.launched")
    else:
        story.emit("feature.launched")
    launched = story.t
    for _ in range(rng.randint(1, 6)):
        sentiment = rng.choices(("positive", "neutral", "negative"), (5, 3, 2))[0]
        story.emit("feedback.received", {"sentiment": sentiment}, at=launched + rng.uniform(1, 30))
    for name in rng.sample(KPIS, rng.randint(1, 3)):
        value = round(rng.uniform(0.02, 0.6), 3) if name != "nps" else rng.randint(-10, 70)
        story.emit("kpi.reported", {"name": name, "value": value}, at=launched + rng.uniform(7, 28))
    if story.plan.iteration:
        story.wait(15, 40)
        story.emit("iteration.started")
        story.wait(6, 20)
        built += 1
        story.emit("build.shipped", {"build": f"{story.fid.lower()}-2.{built}.0"})
        story.wait(2, 6)
        story.emit("uat.passed")
        story.wait(1, 4)
        story.emit("feature.launched")


def build_portfolio(
    rng: random.Random,
    *,
    features: int = 180,
    days: float = 180.0,
    start: datetime,
    first: int = 101,
) -> list[Scheduled]:
    """Every event of a portfolio of ``features`` features over ``days`` simulated days.

    Features arrive over the first nine tenths of the period, spread over every product
    in :data:`PRODUCTS`; events later than ``days`` are left out (those features are still in
    flight at the end). Each event of a feature comes after the previous one, so sending the
    list in order keeps every feature's events in order.

    Args:
        rng: the only source of randomness; the same seed gives the same portfolio.
        features: how many features (at least one per product is advisable).
        days: length of the simulated period.
        start: the business time of the period's first moment (timezone-aware).
        first: the number of each product's first feature id (``PAY-101``); a later run
            against the same database starts past the ids it already holds (see
            :func:`next_number`), so its events are new rather than duplicates.

    Returns:
        The events sorted by ``offset`` (ties keep each feature's own order).
    """
    products = list(PRODUCTS)
    counters = dict.fromkeys(products, first - 1)
    merged: list[tuple[float, int, dict[str, Any], bool]] = []
    order = 0
    arrivals = [rng.uniform(0, days * 0.9) for _ in range(features)]
    plans = _plans(rng, features)
    for n in range(features):
        product = products[n % len(products)]
        prefix, titles, owners = PRODUCTS[product]
        counters[product] += 1
        fid = f"{prefix}-{counters[product]}"
        k = n // len(products)
        title = titles[k % len(titles)] + VARIANTS[(k // len(titles)) % len(VARIANTS)]
        story = _Story(fid, rng, start, arrivals[n], plans[n])
        _feature(rng, story, product, title, rng.choice(owners))
        items = sorted(enumerate(story.items), key=lambda item: (item[1][0], item[0]))
        for index, (when, event) in items:
            if when > days:
                break
            merged.append((when, order, event, False))
            order += 1
            if index not in story.no_repeat and rng.random() < P_DUPLICATE:
                again = when + rng.uniform(0.01, 0.5)
                if again <= days:
                    merged.append((again, order, event, True))
                    order += 1
            if event["type"] == "feature.cancelled":
                break  # Side events planned for later (a mitigation, a new date) never happen.
    merged.sort(key=lambda item: (item[0], item[1]))
    return [Scheduled(when * DAY, event, dup) for when, _, event, dup in merged]


def features_of(portfolio: list[Scheduled]) -> dict[str, str]:
    """Feature id -> product, as announced by the portfolio's ``idea.submitted`` events."""
    return {
        s.event["subject"]: s.event["data"]["product"]
        for s in portfolio
        if s.event["type"] == "idea.submitted"
    }


_OWN_ID = re.compile("(" + "|".join(prefix for prefix, _, _ in PRODUCTS.values()) + r")-(\d+)")


def is_simulated(feature_id: str) -> bool:
    """``feature_id`` is one a portfolio of this module names (``PAY-101``, ``SRCH-7``)."""
    return _OWN_ID.fullmatch(feature_id) is not None


def next_number(feature_ids: Iterable[str]) -> int:
    """The ``first`` for :func:`build_portfolio` that reuses none of ``feature_ids``."""
    used = [int(m.group(2)) for fid in feature_ids if (m := _OWN_ID.fullmatch(fid))]
    return max(101, max(used, default=0) + 1)
