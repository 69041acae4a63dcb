"""Are launch forecasts calibrated? The p50 date should be met about half the time, p85 ~85 %.

A simulated portfolio (:mod:`engine.demo.simulator`) is applied by the pure processor up to a
cut-off day, with the forecaster fed from every stage a feature left, as the engine feeds it.
At the cut-off every feature in flight gets its forecast; the rest of the portfolio is then
applied and each forecast is scored against the feature's real first launch: met when it
launched on or before the forecast date. A forecast without a date (the feature blocked, or
past every stay seen to end in its stage: it waits) is scored the same way against the day
the feature moved on (unblocked, left the stage) plus the days the forecast gave; one still
waiting at the end is counted apart ("waiting"): no forecast of a launch can come true for
it, and the product shows it no date. Features cancelled later are left out (a forecast is
of a launch), and so is one still in flight at the end whose forecast date lies past the end
(it cannot be scored yet).

Cut-offs are spread over most of the history: ``--windows`` windows side by side between 15 %
and 75 % of the span (``--window``), ``--cuts`` in each. The simulator is stationary (each of
its varieties, UAT failures, stalls, critical risks, cancellations, befalls the same share of
the features whenever they arrive), so a calibrated forecaster reads the same in every
window; the rates are printed per window beside those of all windows together. Before 15 %
few features have launched yet; after 75 % the features in flight could not all launch by
the end (features stop arriving at 90 %).

Prints the p50 and p85 hit rates of the forecasts with a date, split by what the feature was
doing at the cut-off (in its stage on a first pass or back in it for rework), by the
forecast's stated confidence and, with ``--by-stage``, by stage; and those of the forecasts
without a date. Three estimators side by side in one run: the engine's, the one before it
(first passes and rework pooled) and the one before that (only the stays that ended). The
README quotes the numbers of the default run.

Run: ``python bench/forecast_calibration.py [--features N] [--days D] [--seed S]``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.core.processor import process
from engine.core.state import FeatureState
from engine.demo.simulator import build_portfolio
from engine.risk.forecast import EXIT, UNBLOCK, Forecaster, StageDurations
from events.envelope import validate_event
from workflows.loader import Workflows, load_folder
from workflows.model import Workflow

START = datetime(2024, 1, 1, tzinfo=UTC)


def _kind(state: FeatureState, durations: StageDurations, now: datetime) -> str:
    if state.blocked:
        return "blocked"
    seen = durations.samples(state.workflow, state.stage)
    elapsed = (now - state.entered_stage_at).total_seconds()
    return "outstayed" if seen and elapsed >= max(seen) else "in stage"


def _pass(state: FeatureState, workflow: Workflow) -> str:
    """``rework`` for a feature back in its stage from a later one, else ``first pass``."""
    order = workflow.order
    furthest = max((order[s] for s in state.visited if s in order), default=-1)
    return "rework" if furthest > order.get(state.stage, furthest) else "first pass"


ESTIMATORS = ("by pass", "pooled", "completed")
"""``by pass``: the engine's forecaster (stays under way count as censored, a first pass
through a stage and rework in it drawn from their own stays); ``pooled``: the same with the
passes pooled (the estimator before); ``completed``: the one before that, fed only the
durations of stays that ended."""

Hits = dict[str, dict[str, tuple[list[bool], list[bool], list[bool], list[bool]]]]
WAITING = {UNBLOCK: "blocked", EXIT: "outstayed"}


def run(
    features: int,
    days: float,
    seed: int,
    cuts: int,
    by_stage: bool = False,
    window: tuple[float, float] = (0.15, 0.75),
    windows: int = 4,
) -> Hits:
    """Per estimator, per group (``all``, a kind and, for those in stage, their pass,
    ``confidence:<c>``, ``stage:<s>`` with ``by_stage``, ``launched``: those
    that launched before the end, ``window:<i>``: those with a date made in the ``i``-th of
    ``windows`` windows, each with ``cuts`` cut-offs): was the p50 met, was the p85 met, for
    each forecast that can be scored; and, for each forecast, whether its p85 could not be
    scored (the feature still in flight at the end, the date past it)."""
    workflows = Workflows(load_folder(None))
    portfolio = build_portfolio(random.Random(seed), features=features, days=days, start=START)
    end = START + timedelta(days=days)
    first, last = window
    width = (last - first) / windows
    # (day, window) of every cut-off, in order: ``cuts`` evenly inside each window.
    cut_days = [
        (days * (first + width * (w + (c + 0.5) / cuts)), w)
        for w in range(windows)
        for c in range(cuts)
    ]
    forecasters = {name: Forecaster() for name in ESTIMATORS}
    states: dict[str, FeatureState] = {}
    # estimator, id, group, p50, p85 (dates shown)
    pending: list[tuple[str, str, str, datetime, datetime]] = []
    # estimator, id, group, made at, stage, waiting for, p50 and p85 from moving on
    waits: list[tuple[str, str, str, datetime, str, str, timedelta, timedelta]] = []
    track: dict[str, list[tuple[datetime, str, bool]]] = defaultdict(list)
    known = workflows.event_types
    next_cut = 0
    for item in [*portfolio, None]:
        at = START + timedelta(seconds=item.offset) if item is not None else end
        while next_cut < len(cut_days) and at > START + timedelta(days=cut_days[next_cut][0]):
            now = START + timedelta(days=cut_days[next_cut][0])
            in_window = f"window:{cut_days[next_cut][1]}"
            for fid, state in states.items():
                workflow = workflows.by_name[state.workflow]
                if state.stage in workflow.terminal:
                    continue
                for name, forecaster in forecasters.items():
                    forecast = forecaster.forecast(state, workflow, now)
                    if forecast is None:
                        continue
                    p50, p85 = forecast.at(now)
                    if forecast.waiting is not None:
                        group = f"no date: {WAITING[forecast.waiting]}"
                        waits.append(
                            (name, fid, group, now, state.stage, forecast.waiting, p50 - now,
                             p85 - now)
                        )  # fmt: skip
                        continue
                    kind = _kind(state, forecaster.durations, now)
                    groups = ["all", kind, f"confidence:{forecast.confidence}", in_window]
                    if kind == "in stage":
                        groups.append(f"in stage, {_pass(state, workflow)}")
                        if _pass(state, workflow) == "rework":
                            # The simulator fails a feature's UAT again after one failure
                            # 40 % of the time, never after two (README, "Launch forecasts").
                            times = {1: "once", 2: "twice"}.get(state.uat_failures, "more")
                            groups.append(f"rework, UAT failed {times}")
                        groups.append(f"{in_window}, {_pass(state, workflow)}")
                    if by_stage:
                        groups.append(f"stage:{state.stage}")
                    for group in groups:
                        pending.append((name, fid, group, p50, p85))
            next_cut += 1
        if item is None:
            break
        event = validate_event(item.event, known, at)
        if event is None:
            continue
        outcome = process(workflows, states.get(event.feature), event, at)
        new = outcome.state
        entered = new.entered_stage_at if new is not None else None
        forecasters["by pass"].durations.take(outcome)
        forecasters["pooled"].durations.observe_outcome(
            outcome.workflow,
            outcome.from_stage,
            outcome.to_stage,
            outcome.stage_duration,
            outcome.feature,
            entered,
        )
        forecasters["completed"].durations.observe_outcome(
            outcome.workflow, outcome.from_stage, outcome.to_stage, outcome.stage_duration
        )
        if new is not None:
            states[event.feature] = new
            track[event.feature].append((at, new.stage, new.blocked))
    hits: Hits = {name: defaultdict(lambda: ([], [], [], [])) for name in forecasters}

    def score(
        name: str, group: str, launched: datetime | None, p50: datetime, p85: datetime
    ) -> None:
        p50s, p85s, unscored, _ = hits[name][group]
        unscored.append(launched is None and p85 > end)
        for found, date in zip((p50s, p85s), (p50, p85), strict=True):
            if launched is not None:
                found.append(launched <= date)
            elif date <= end:
                found.append(False)  # the date passed and the feature did not launch
            # else: in flight at the end, the date not reached yet: cannot be scored

    def cancelled(state: FeatureState) -> bool:
        terminal = workflows.by_name[state.workflow].terminal
        return state.launched_at is None and state.stage in terminal

    for name, fid, group, p50, p85 in pending:
        state = states[fid]
        if cancelled(state):
            continue  # there is no launch to score
        launched = state.launched_at
        for g in [group] if launched is None or group != "all" else [group, "launched"]:
            score(name, g, launched, p50, p85)
    for name, fid, group, made, stage, waiting, then50, then85 in waits:
        state = states[fid]
        if cancelled(state):
            continue
        moved = next(
            (
                t
                for t, now_in, blocked in track[fid]
                if t > made and (not blocked if waiting == UNBLOCK else now_in != stage)
            ),
            None,
        )
        if moved is None:  # still waiting at the end: nothing to score the days against
            hits[name][group][3].append(True)
            continue
        hits[name][group][3].append(False)
        score(name, group, state.launched_at, moved + then50, moved + then85)
    return hits


def _rate(found: list[bool]) -> str:
    return f"{sum(found) / len(found):.0%}" if found else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1500)
    parser.add_argument("--days", type=float, default=400.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cuts", type=int, default=3, help="cut-offs in each window")
    parser.add_argument("--windows", type=int, default=4, help="windows side by side")
    parser.add_argument("--by-stage", action="store_true", help="rates per stage too")
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=(0.15, 0.75),
        metavar=("FROM", "TO"),
        help="where the first window starts and the last ends, as shares of the span",
    )
    args = parser.parse_args()
    window = tuple(args.window)
    hits = run(args.features, args.days, args.seed, args.cuts, args.by_stage, window, args.windows)
    print(
        f"forecast calibration: {args.features} features over {args.days:g} simulated days, "
        f"seed {args.seed}, {args.windows} windows from {window[0]:.0%} to {window[1]:.0%} "
        f"of the span, {args.cuts} cut-offs in each; want p50 met ~50%, p85 met ~85%"
    )
    print(
        "(scored: forecasts whose p85 date could be scored; unscored: in flight at the end "
        "with the p85 date past it; for those without a date, scored against the day the "
        "feature moved on (unblocked, left the stage), and 'waiting': never moved on)"
    )
    titles = ("by pass (engine)", "passes pooled (before)", "completed stays only")
    print(f"{'':<26} " + "".join(f"{t:>42}  " for t in titles).rstrip())
    head = f"{'scored':>7} {'unscored':>9} {'waiting':>8} {'p50 met':>8} {'p85 met':>8}  "
    print(f"{'group':<26} " + head * 3)
    width = (window[1] - window[0]) / args.windows

    def label(group: str) -> str:
        if group == "all":
            return "all with a date"
        if not group.startswith("window:"):
            return group
        index, _, rest = group.removeprefix("window:").partition(", ")
        lo = window[0] + width * int(index)
        name = f"window {lo:.0%}-{lo + width:.0%}"
        return f"{name}, {rest}" if rest else name

    def order(group: str) -> tuple[bool, bool, bool, str]:
        return (group.startswith("window:"), group != "all", group != "launched", group)

    for group in sorted(hits["by pass"], key=order):
        row = f"{label(group):<26} "
        for name in ESTIMATORS:
            p50s, p85s, unscored, never = hits[name].get(group, ([], [], [], []))
            row += (
                f"{len(p85s):>7} {sum(unscored):>9} {sum(never):>8} "
                f"{_rate(p50s):>8} {_rate(p85s):>8}  "
            )
        print(row.rstrip())


if __name__ == "__main__":
    main()
