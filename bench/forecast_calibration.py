"""Are launch forecasts calibrated? The p50 date should be met about half the time, p85 ~85 %.

A simulated portfolio (:mod:`engine.demo.simulator`) is applied by the pure processor up to a
cut-off day, with the forecaster fed from every stage a feature left, as the engine feeds it.
At the cut-off every feature in flight gets its forecast; the rest of the portfolio is then
applied and each forecast is scored against the feature's real first launch: met when it
launched on or before the forecast date. Features cancelled later are left out (a forecast
is of a launch), and so is one still in flight at the end whose forecast date lies past the
end (it cannot be scored yet). Several cut-offs (``--cuts``) over the second half of the
portfolio give enough features to read a rate.

Prints the p50 and p85 hit rates overall and split by what the feature was doing at the
cut-off (moving normally, outstayed every observed duration of its stage, blocked), and by
the forecast's stated confidence. The README quotes the numbers of the default run.

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
from engine.risk.forecast import Forecaster, StageDurations
from events.envelope import validate_event
from workflows.loader import Workflows, load_folder

START = datetime(2024, 1, 1, tzinfo=UTC)


def _kind(state: FeatureState, durations: StageDurations, now: datetime) -> str:
    if state.blocked:
        return "blocked"
    seen = durations.samples(state.workflow, state.stage)
    elapsed = (now - state.entered_stage_at).total_seconds()
    return "outstayed" if seen and elapsed >= max(seen) else "in stage"


def run(
    features: int, days: float, seed: int, cuts: int
) -> dict[str, tuple[list[bool], list[bool]]]:
    """Per group (``all``, a kind, ``confidence:<c>``): was the p50 met, was the p85 met,
    for each forecast that can be scored."""
    workflows = Workflows(load_folder(None))
    portfolio = build_portfolio(random.Random(seed), features=features, days=days, start=START)
    end = START + timedelta(days=days)
    cut_days = [days * (0.45 + 0.3 * i / max(1, cuts - 1)) for i in range(cuts)]
    forecaster = Forecaster()
    states: dict[str, FeatureState] = {}
    pending: list[tuple[int, str, str, datetime, datetime]] = []  # cut, id, group, p50, p85
    known = workflows.event_types
    next_cut = 0
    for item in [*portfolio, None]:
        at = START + timedelta(seconds=item.offset) if item is not None else end
        while next_cut < len(cut_days) and at > START + timedelta(days=cut_days[next_cut]):
            now = START + timedelta(days=cut_days[next_cut])
            for fid, state in states.items():
                workflow = workflows.by_name[state.workflow]
                if state.stage in workflow.terminal:
                    continue
                forecast = forecaster.forecast(state, workflow, now)
                if forecast is None:
                    continue
                p50, p85 = forecast.at(now)
                kind = _kind(state, forecaster.durations, now)
                for group in ("all", kind, f"confidence:{forecast.confidence}"):
                    pending.append((next_cut, fid, group, p50, p85))
            next_cut += 1
        if item is None:
            break
        event = validate_event(item.event, known, at)
        if event is None:
            continue
        outcome = process(workflows, states.get(event.feature), event, at)
        forecaster.durations.observe_outcome(
            outcome.workflow, outcome.from_stage, outcome.to_stage, outcome.stage_duration
        )
        if outcome.state is not None:
            states[event.feature] = outcome.state
    hits: dict[str, tuple[list[bool], list[bool]]] = defaultdict(lambda: ([], []))
    for _, fid, group, p50, p85 in pending:
        state = states[fid]
        launched = state.launched_at
        if launched is None and state.stage in workflows.by_name[state.workflow].terminal:
            continue  # cancelled: there is no launch to score
        for found, date in zip(hits[group], (p50, p85), strict=True):
            if launched is not None:
                found.append(launched <= date)
            elif date <= end:
                found.append(False)  # the date passed and the feature did not launch
            # else: in flight at the end and the date not reached yet: cannot be scored
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1500)
    parser.add_argument("--days", type=float, default=400.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cuts", type=int, default=4)
    args = parser.parse_args()
    hits = run(args.features, args.days, args.seed, args.cuts)
    print(
        f"forecast calibration: {args.features} features over {args.days:g} simulated days, "
        f"seed {args.seed}, {args.cuts} cut-offs"
    )
    print(f"{'group':<22} {'forecasts':>9} {'p50 met':>8} {'p85 met':>8}   (want ~50% / ~85%)")
    for group in sorted(hits, key=lambda g: (g != "all", g)):
        p50s, p85s = hits[group]
        p50 = sum(p50s) / len(p50s) if p50s else float("nan")
        p85 = sum(p85s) / len(p85s) if p85s else float("nan")
        print(f"{group:<22} {len(p85s):>9} {p50:>8.0%} {p85:>8.0%}")


if __name__ == "__main__":
    main()
