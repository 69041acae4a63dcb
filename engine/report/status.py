"""Status reports for product managers: what happened in a window, and what needs attention.

:func:`build_report` is pure: features, their histories, the workflows, ``now`` and a window
give a :class:`Report` (every number comes with the feature ids behind it). The renderers
turn one into Markdown (readable in a terminal, pasteable into chat) or a self-contained HTML
page (pasteable into email). ``GET /report`` (:mod:`engine.http.board`) and
``lifecycle report`` (:mod:`engine.cli.main`) are the edges that call them.

A feature counts as *newly at risk* when it is at risk at ``now`` and every reason it has
began inside the window; it has *new reasons* when some, not all, did. When a reason began is
read from the state and history: the SLA breach from the stage entry plus the SLA, a risk from
its ``raised_at``, blocking from the last ``feature.blocked``, a slip from the day after the
target date, rework from the second ``uat.failed``. A reason whose start cannot be told (e.g.
a slip judged from a forecast) counts as old, so a report never cries wolf twice.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from engine.core.outcomes import OutcomeKind
from engine.core.state import FeatureState, HistoryEntry, iso
from engine.core.timemath import day_after, seconds_after, utc_date
from engine.risk.forecast import EXIT, HIGH, LOW, UNBLOCK
from engine.risk.forecast import Forecast as LaunchForecast
from engine.risk.reasons import (
    BLOCKED,
    CRITICAL_RISK,
    HIGH_RISK,
    REWORK,
    REWORK_FAILURES,
    SLA_BREACHED,
    TARGET_SLIP,
    risk_reasons,
)
from events.errors import LifecycleError
from workflows.model import Workflow

UAT_FAILED = "uat.failed"
STUCK_TOP = 10
"""How many features the "stuck longest" section lists by default."""
LIST_CAP = 15
"""Rendered id lists longer than this end in "and N more" (the model keeps every id)."""

REASON_LABELS = {
    SLA_BREACHED: "SLA breached",
    CRITICAL_RISK: "critical risk",
    HIGH_RISK: "high risk",
    BLOCKED: "blocked",
    TARGET_SLIP: "target slip",
    REWORK: "rework",
}

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


EARLIEST_SINCE = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest start of a report window: no event time lies before it (DESIGN.md rule 10)."""


class ReportError(LifecycleError):
    """A report parameter a user gave is not understood (the message says what to write)."""


def parse_since(text: str, now: datetime) -> datetime:
    """The start of the window ``text`` names: ``7d``, ``36h``, ``2w``, ``90m`` or a date/time.

    Raises:
        ReportError: ``text`` is none of these, lies after ``now`` or before 1970 (a window
            too long for the calendar, like ``99999999999d``, reaches before 1970 too).
    """
    match = _WINDOW.match(text)
    if match:
        start = seconds_after(now, -float(match.group(1)) * _UNITS[match.group(2)])
    else:
        try:
            start = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError as err:
            raise ReportError(
                f"since={text!r}: write a window like 7d, 36h, 2w, 90m or a date like 2024-05-01"
            ) from err
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    if start < EARLIEST_SINCE:
        raise ReportError(f"since={text!r} reaches before {EARLIEST_SINCE:%Y-%m-%d}")
    if start > now:
        raise ReportError(f"since={text!r} is in the future")
    return start.astimezone(UTC)


@dataclass(frozen=True)
class Forecast:
    """A launch forecast as the API's ``forecast_launch`` gives it (p50/p85 dates).

    A forecast that is ``waiting`` (``unblock`` or ``exit``, see
    :attr:`engine.risk.forecast.Forecast.waiting`) has no dates: ``then_days`` says how many
    days after the feature moves on it launches (p50, p85), and ``if_now`` the dates by which
    it would if it moved on today (what its target is judged against).
    """

    p50: date | None
    p85: date | None
    observations: int | None
    confidence: str | None = None
    blocked: bool = False
    waiting: str | None = None
    then_days: tuple[float, float] | None = None
    if_now: tuple[date, date] | None = None


def forecast_of(forecast: LaunchForecast | None, now: datetime) -> Forecast | None:
    """The report's dates of a launch forecast as of ``now`` (the dates the API shows)."""
    if forecast is None:
        return None
    p50, p85 = forecast.at(now)
    if forecast.waiting is not None:
        then = forecast.then_days()
        return Forecast(
            None,
            None,
            forecast.observations,
            forecast.confidence,
            forecast.blocked,
            forecast.waiting,
            (round(then[0], 1), round(then[1], 1)),
            (utc_date(p50), utc_date(p85)),
        )
    return Forecast(
        utc_date(p50),
        utc_date(p85),
        forecast.observations,
        forecast.confidence,
        forecast.blocked,
    )


@dataclass(frozen=True)
class Launch:
    id: str
    title: str | None
    product: str | None
    launched_at: datetime
    lead_time_days: float
    target_launch: date | None

    @property
    def days_late(self) -> int | None:
        """Days after the target it launched (negative: early); ``None`` without a target."""
        if self.target_launch is None:
            return None
        return (self.launched_at.astimezone(UTC).date() - self.target_launch).days


@dataclass(frozen=True)
class Movement:
    """The moves ``from_stage -> to_stage`` in the window.

    Attributes:
        count: how many such moves (a feature may make the same move twice, e.g. rework).
        feature_ids: the features that made them, each once, in order of first move.
        skipped: stages passed over by any of these moves, in stage order.
    """

    from_stage: str
    to_stage: str
    count: int
    feature_ids: tuple[str, ...]
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class AtRisk:
    id: str
    title: str | None
    product: str | None
    stage: str
    reasons: tuple[str, ...]
    new_reasons: tuple[str, ...]


@dataclass(frozen=True)
class Stuck:
    id: str
    title: str | None
    product: str | None
    stage: str
    in_stage_seconds: float
    sla_seconds: float | None

    @property
    def sla_ratio(self) -> float | None:
        """Time in stage over its SLA (above 1: breached); ``None`` without an SLA."""
        return None if not self.sla_seconds else self.in_stage_seconds / self.sla_seconds


@dataclass(frozen=True)
class UatFailures:
    id: str
    title: str | None
    in_window: int
    total: int


@dataclass(frozen=True)
class LaunchOutlook:
    """A feature not yet launched, against its target date.

    ``status`` is ``overdue`` (target passed), ``likely_late`` (p50 after target),
    ``at_risk`` (p85 after target), ``on_track`` (p85 on or before target) or
    ``no_forecast`` (target not passed, no forecast to judge by). A feature whose forecast
    waits (blocked, or outstayed every stay of its stage: no date) is judged by the dates it
    would launch by if it moved on today (``Forecast.if_now``), as ``target_slip`` judges
    it: the outlook is late or at risk exactly when the feature's risk reasons have
    ``target_slip``. A blocked feature is at risk all the same, for being ``blocked``.
    """

    id: str
    title: str | None
    product: str | None
    stage: str
    target_launch: date
    forecast: Forecast | None
    status: str


OUTLOOK_ORDER = ("overdue", "likely_late", "at_risk", "on_track", "no_forecast")


@dataclass(frozen=True)
class Report:
    """Everything a status report says; renderers only format it.

    Attributes:
        features: features in scope (of ``product`` when given), excluding none.
        created: features created in the window.
        launched: first launches in the window, oldest first.
        relaunched: features that reached a done stage again in the window (after an
            iteration); their lead time was counted at their first launch.
        moves: stage changes in the window by (from, to), most frequent first.
        newly_at_risk: at risk now, every reason begun in the window.
        new_reasons: at risk before the window, with reasons added in it.
        at_risk_now: reason -> ids of every feature at risk for it now.
        stuck: the features longest in their stage relative to its SLA, worst first.
        uat_failures: features that failed UAT in the window, most failures first.
        rework: stage -> ids of features that re-entered it in the window.
        outlook: features not launched with a target date, by status then target.
    """

    generated_at: datetime
    since: datetime
    product: str | None
    features: int
    created: tuple[str, ...] = ()
    launched: tuple[Launch, ...] = ()
    relaunched: tuple[str, ...] = ()
    moves: tuple[Movement, ...] = ()
    newly_at_risk: tuple[AtRisk, ...] = ()
    new_reasons: tuple[AtRisk, ...] = ()
    at_risk_now: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stuck: tuple[Stuck, ...] = ()
    uat_failures: tuple[UatFailures, ...] = ()
    rework: dict[str, tuple[str, ...]] = field(default_factory=dict)
    outlook: tuple[LaunchOutlook, ...] = ()

    @property
    def moved(self) -> tuple[str, ...]:
        """Every feature that changed stage in the window, sorted."""
        return tuple(sorted({fid for m in self.moves for fid in m.feature_ids}))

    @property
    def at_risk(self) -> tuple[str, ...]:
        """Every feature at risk now, sorted."""
        return tuple(sorted({fid for ids in self.at_risk_now.values() for fid in ids}))


def _reason_started(
    reason: str, state: FeatureState, history: Sequence[HistoryEntry], workflow: Workflow
) -> datetime | None:
    """When ``reason`` began to hold for ``state``; ``None`` when that cannot be told."""
    if reason == SLA_BREACHED:
        sla = workflow.slas.get(state.stage)
        return None if sla is None else seconds_after(state.entered_stage_at, sla)
    if reason in (CRITICAL_RISK, HIGH_RISK):
        severity = "critical" if reason == CRITICAL_RISK else "high"
        times = [r.raised_at for r in state.risks.values() if r.severity == severity]
        return min(times) if times else None
    if reason == BLOCKED:
        started = None
        for entry in history:
            if entry.outcome != OutcomeKind.APPLIED and entry.outcome != OutcomeKind.UPDATED:
                continue
            if entry.type == "feature.blocked" and started is None:
                started = entry.time
            elif entry.type == "feature.unblocked":
                started = None
        return started
    if reason == TARGET_SLIP:
        target = state.target_launch
        if target is None:
            return None
        return day_after(target)
    if reason == REWORK:
        failures = [
            e.time for e in history if e.type == UAT_FAILED and e.outcome == OutcomeKind.APPLIED
        ]
        return failures[REWORK_FAILURES - 1] if len(failures) >= REWORK_FAILURES else None
    return None


def _outlook(state: FeatureState, forecast: Forecast | None, today: date) -> LaunchOutlook | None:
    target = state.target_launch
    if target is None:
        return None
    if target < today:
        status = "overdue"
    elif forecast is not None and forecast.if_now is not None:
        # No date while it waits: judged by when it would launch if it moved on today.
        p50, p85 = forecast.if_now
        status = "likely_late" if p50 > target else "at_risk" if p85 > target else "on_track"
    elif forecast is not None and forecast.p50 is not None and forecast.p50 > target:
        status = "likely_late"
    elif forecast is not None and forecast.p85 is not None and forecast.p85 > target:
        status = "at_risk"
    elif forecast is not None:
        status = "on_track"
    else:
        status = "no_forecast"
    return LaunchOutlook(
        state.id, state.title, state.product, state.stage, target, forecast, status
    )


def build_report(
    features: Iterable[FeatureState],
    histories: Mapping[str, Sequence[HistoryEntry]],
    workflows: Mapping[str, Workflow],
    *,
    now: datetime,
    since: datetime,
    product: str | None = None,
    forecasts: Mapping[str, Forecast] | None = None,
    reasons: Mapping[str, Sequence[str]] | None = None,
    stuck_top: int = STUCK_TOP,
) -> Report:
    """The status report of the window ``[since, now]``.

    Args:
        features: every feature (those of other products are left out when ``product``).
        histories: feature id -> its history, oldest first (missing: an empty history).
        workflows: workflow name -> definition; features of unknown workflows count for
            moves and launches but have no SLA or risk reasons.
        now: the end of the window; risk, time in stage and overdue are judged at it.
        since: the start of the window (an entry at exactly ``since`` is inside).
        product: only this product's features.
        forecasts: feature id -> its launch forecast, when the caller has one.
        reasons: feature id -> its risk reasons as the engine assessed them (the API's
            ``risk_reasons``, from the risk monitor, forecast included), so the report counts
            exactly what the board, the API, the CLI and ``/metrics`` count. A feature
            missing here (or ``reasons`` ``None``) is judged by :func:`risk_reasons` at
            ``now``, without a forecast.
        stuck_top: how many features the stuck section lists.
    """
    forecasts = forecasts or {}
    today = now.astimezone(UTC).date()
    scope = sorted(
        (f for f in features if product is None or f.product == product), key=lambda f: f.id
    )
    created: list[str] = []
    launched: list[Launch] = []
    relaunched: list[str] = []
    moves: dict[tuple[str, str], list[str]] = {}
    skipped: dict[tuple[str, str], set[str]] = {}
    newly: list[AtRisk] = []
    added: list[AtRisk] = []
    at_risk_now: dict[str, list[str]] = {}
    stuck: list[tuple[float, float, str, FeatureState, float | None]] = []
    uat: list[UatFailures] = []
    rework: dict[str, list[str]] = {}
    outlook: list[LaunchOutlook] = []
    for state in scope:
        history = histories.get(state.id, ())
        workflow = workflows.get(state.workflow)
        visited: set[str] = set()
        failures_in_window = 0
        for entry in history:
            if entry.outcome != OutcomeKind.APPLIED or entry.to_stage is None:
                continue
            inside = since <= entry.time <= now
            if entry.from_stage is None:
                if inside:
                    created.append(state.id)
            elif entry.from_stage != entry.to_stage and inside:
                key = (entry.from_stage, entry.to_stage)
                moves.setdefault(key, []).append(state.id)
                skipped.setdefault(key, set()).update(entry.skipped)
                if entry.to_stage in visited:
                    rework.setdefault(entry.to_stage, []).append(state.id)
                if entry.type == UAT_FAILED:
                    failures_in_window += 1
                done = workflow is not None and entry.to_stage in workflow.done
                if done and entry.to_stage in visited and state.id not in relaunched:
                    relaunched.append(state.id)
            visited.add(entry.to_stage)
        if failures_in_window:
            uat.append(UatFailures(state.id, state.title, failures_in_window, state.uat_failures))
        launched_at = state.launched_at
        if launched_at is not None and since <= launched_at <= now:
            lead = (launched_at - state.created_at).total_seconds() / 86400
            launched.append(
                Launch(state.id, state.title, state.product, launched_at, lead, state.target_launch)
            )
        if workflow is None or state.stage in workflow.terminal:
            continue
        found = reasons.get(state.id) if reasons is not None else None
        judged = list(found) if found is not None else risk_reasons(state, workflow, now)
        for reason in judged:
            at_risk_now.setdefault(reason, []).append(state.id)
        if judged:
            fresh = []
            for reason in judged:
                began = _reason_started(reason, state, history, workflow)
                if began is not None and since <= began <= now:
                    fresh.append(reason)
            if fresh:
                item = AtRisk(
                    state.id, state.title, state.product, state.stage, tuple(judged), tuple(fresh)
                )
                (newly if len(fresh) == len(judged) else added).append(item)
        if state.stage not in workflow.done:
            # Ranked by the key Stuck.sla_ratio gives; only the top few become Stuck.
            in_stage = max(0.0, (now - state.entered_stage_at).total_seconds())
            sla = workflow.slas.get(state.stage)
            ratio = in_stage / sla if sla else 0.0
            stuck.append((-ratio, -in_stage, state.id, state, sla))
            line = _outlook(state, forecasts.get(state.id), today)
            if line is not None and state.launched_at is None:
                outlook.append(line)
    stuck.sort(key=lambda s: s[:3])  # ids differ: states themselves are never compared
    uat.sort(key=lambda u: (-u.in_window, -u.total, u.id))
    outlook.sort(key=lambda o: (OUTLOOK_ORDER.index(o.status), o.target_launch, o.id))
    ordered_moves = sorted(
        (
            Movement(
                a,
                b,
                len(ids),
                tuple(dict.fromkeys(ids)),
                tuple(s for s in _stages(workflows) if s in skipped[(a, b)]),
            )
            for (a, b), ids in moves.items()
        ),
        key=lambda m: (-m.count, _position(workflows, m.from_stage), m.to_stage),
    )
    return Report(
        generated_at=now,
        since=since,
        product=product,
        features=len(scope),
        created=tuple(created),
        launched=tuple(sorted(launched, key=lambda x: (x.launched_at, x.id))),
        relaunched=tuple(relaunched),
        moves=tuple(ordered_moves),
        newly_at_risk=tuple(newly),
        new_reasons=tuple(added),
        at_risk_now={r: tuple(at_risk_now[r]) for r in REASON_LABELS if r in at_risk_now},
        stuck=tuple(
            Stuck(state.id, state.title, state.product, state.stage, -in_stage, sla)
            for _, in_stage, _, state, sla in stuck[:stuck_top]
        ),
        uat_failures=tuple(uat),
        rework={s: tuple(dict.fromkeys(ids)) for s, ids in rework.items()},
        outlook=tuple(outlook),
    )


def _stages(workflows: Mapping[str, Workflow]) -> list[str]:
    seen: list[str] = []
    for workflow in workflows.values():
        seen += [s for s in workflow.stages if s not in seen]
    return seen


def _position(workflows: Mapping[str, Workflow], stage: str) -> int:
    stages = _stages(workflows)
    return stages.index(stage) if stage in stages else len(stages)


# --- rendering ----------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``3d 4h``, ``14d``, ``5h 10m`` or ``12m``: a time span as a person reads it."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {rest // 60}m" if rest >= 60 else f"{hours}h"
    return f"{rest // 60}m"


def _ids(ids: Sequence[str], cap: int = LIST_CAP) -> str:
    shown = ", ".join(ids[:cap])
    return shown + (f" and {len(ids) - cap} more" if len(ids) > cap else "")


def _day(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d")


def _named(fid: str, title: str | None) -> str:
    return f"{fid} {title}" if title else fid


def _lateness(launch: Launch) -> str:
    late = launch.days_late
    if late is None:
        return "no target"
    if late > 0:
        return f"{late}d after target {launch.target_launch}"
    if late < 0:
        return f"{-late}d before target {launch.target_launch}"
    return f"on target {launch.target_launch}"


def _forecast_text(f: Forecast | None) -> str:
    if f is None:
        return "no forecast"
    if f.then_days is not None:
        waits = "blocked" if f.waiting == "unblock" else "outstayed every stay seen to end"
        moves = "once unblocked" if f.waiting == "unblock" else "once it moves on"
        parts = [f"no date ({waits}); {moves}: p50 {f.then_days[0]:g} days"]
        parts.append(f"p85 {f.then_days[1]:g} days")
    else:
        parts = [f"p50 {f.p50 or '?'}", f"p85 {f.p85 or '?'}"]
    text = ", ".join(parts)
    if f.confidence is not None:
        text += f"; {_confidence_text(f)}"
    elif f.observations:
        text += f"; based on {_stays(f.observations)}"
    return text


def _stays(n: int) -> str:
    return f"{n:,} stay{'' if n == 1 else 's'} of earlier features"


def _confidence_text(f: Forecast) -> str:
    """What the confidence of ``f`` rests on, in a PM's words (the board's dialog says the
    same)."""
    seen = _stays(f.observations or 0)
    if f.waiting == UNBLOCK:
        return (
            "low confidence: nobody can tell when a block ends; "
            f"the days after it are based on {seen}"
        )
    if f.waiting == EXIT:
        return (
            "low confidence: nobody can tell when it leaves its stage; "
            f"the days after are based on {seen}"
        )
    if f.confidence == LOW:
        return "low confidence: too few earlier features to learn from, so the stage SLAs stand in"
    if f.confidence == HIGH:
        return f"high confidence: based on {seen} in the stages ahead, 20 or more in each"
    return f"{f.confidence} confidence: based on {seen}, too few in some stage ahead"


def _sla_text(s: Stuck) -> str:
    if s.sla_seconds is None or s.sla_ratio is None:
        return "no SLA"
    return f"{s.sla_ratio:.1f}x its {duration(s.sla_seconds)} SLA"


def _sections(report: Report) -> list[tuple[str, str, list[str]]]:
    """(title, summary line, bullet lines) per section, shared by both renderers."""
    sections: list[tuple[str, str, list[str]]] = []
    sections.append(
        (
            "Launched",
            f"{len(report.launched)} launched"
            + (f": {_ids([x.id for x in report.launched])}" if report.launched else "")
            + (
                f"; {len(report.relaunched)} relaunched after an iteration: "
                f"{_ids(report.relaunched)}"
                if report.relaunched
                else ""
            ),
            [
                f"{_named(x.id, x.title)} on {_day(x.launched_at)}, "
                f"lead time {x.lead_time_days:.0f}d, {_lateness(x)}"
                for x in report.launched
            ],
        )
    )
    moved = report.moved
    sections.append(
        (
            "Moved",
            f"{len(moved)} features changed stage ({sum(m.count for m in report.moves)} moves); "
            f"{len(report.created)} new" + (f": {_ids(report.created)}" if report.created else ""),
            [
                f"{m.from_stage} → {m.to_stage}: {m.count} ({_ids(m.feature_ids)})"
                + (f", skipping {', '.join(m.skipped)}" if m.skipped else "")
                for m in report.moves
            ],
        )
    )
    risk_lines = [
        f"{_named(r.id, r.title)} in {r.stage}: "
        + ", ".join(REASON_LABELS.get(x, x) for x in r.reasons)
        for r in report.newly_at_risk
    ] + [
        f"{_named(r.id, r.title)} in {r.stage}: now also "
        + ", ".join(REASON_LABELS.get(x, x) for x in r.new_reasons)
        for r in report.new_reasons
    ]
    per_reason = "; ".join(
        f"{REASON_LABELS.get(r, r)} {len(ids)}" for r, ids in report.at_risk_now.items()
    )
    sections.append(
        (
            "Newly at risk",
            f"{len(report.newly_at_risk)} newly at risk, {len(report.new_reasons)} with new "
            f"reasons; {len(report.at_risk)} at risk now"
            + (f" ({per_reason})" if per_reason else ""),
            risk_lines,
        )
    )
    sections.append(
        (
            "Stuck longest",
            f"top {len(report.stuck)} by time in stage against its SLA",
            [
                f"{_named(s.id, s.title)}: {duration(s.in_stage_seconds)} in {s.stage}, "
                f"{_sla_text(s)}"
                for s in report.stuck
            ],
        )
    )
    failed = sum(u.in_window for u in report.uat_failures)
    rework_lines = [
        f"re-entered {stage}: {len(ids)} ({_ids(ids)})" for stage, ids in report.rework.items()
    ]
    sections.append(
        (
            "UAT failures and rework",
            f"{failed} UAT failures on {len(report.uat_failures)} features"
            + (f": {_ids([u.id for u in report.uat_failures])}" if report.uat_failures else ""),
            [
                f"{_named(u.id, u.title)}: {u.in_window} in window, {u.total} in total"
                for u in report.uat_failures
            ]
            + rework_lines,
        )
    )
    counts = {s: [o.id for o in report.outlook if o.status == s] for s in OUTLOOK_ORDER}
    summary = "; ".join(f"{s.replace('_', ' ')} {len(ids)}" for s, ids in counts.items() if ids)
    sections.append(
        (
            "Launch forecasts against targets",
            f"{len(report.outlook)} features with a target date"
            + (f": {summary}" if summary else ""),
            [
                f"{o.status.replace('_', ' ')}: {_named(o.id, o.title)} in {o.stage}, "
                f"target {o.target_launch}, {_forecast_text(o.forecast)}"
                for o in report.outlook
                if o.status != "on_track"
            ][: LIST_CAP * 2]
            + ([f"on track: {_ids(counts['on_track'])}"] if counts["on_track"] else []),
        )
    )
    return sections


def _heading(report: Report) -> str:
    scope = f" for {report.product}" if report.product else ""
    return (
        f"Status report{scope}: {_day(report.since)} to {_day(report.generated_at)} "
        f"({duration((report.generated_at - report.since).total_seconds())})"
    )


def render_markdown(report: Report) -> str:
    """The report as Markdown: a title, one ``##`` section each, bullets with feature ids."""
    lines = [f"# {_heading(report)}", "", f"{report.features} features in scope.", ""]
    for title, summary, bullets in _sections(report):
        lines += [f"## {title}", "", f"{summary}.", ""]
        if bullets:
            lines += [f"- {b}" for b in bullets] + [""]
    return "\n".join(lines)


def render_html(report: Report) -> str:
    """The report as a self-contained HTML page (inline styles survive pasting into email)."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(_heading(report))}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "</head>",
        '<body style="font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto;'
        ' padding: 0 1rem; color: #1f2933; line-height: 1.5">',
        f'<h1 style="font-size: 1.4rem">{e(_heading(report))}</h1>',
        f"<p>{report.features} features in scope.</p>",
    ]
    for title, summary, bullets in _sections(report):
        parts.append(f'<section><h2 style="font-size: 1.1rem; margin-top: 1.6rem">{e(title)}</h2>')
        parts.append(f"<p>{e(summary)}.</p>")
        if bullets:
            parts.append("<ul>" + "".join(f"<li>{e(b)}</li>" for b in bullets) + "</ul>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def report_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON values (``GET /report?format=json``)."""

    def value(v: Any) -> Any:
        if isinstance(v, datetime):
            return iso(v)
        if isinstance(v, date):
            return v.isoformat()
        if isinstance(v, tuple | list):
            return [value(x) for x in v]
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        if hasattr(v, "__dataclass_fields__"):
            return {k: value(getattr(v, k)) for k in v.__dataclass_fields__}
        return v

    doc = value(report)
    assert isinstance(doc, dict)
    return doc
