"""What a change of the forecaster costs in forecasts: this tree's against another's, same run.

A simulated portfolio (:mod:`engine.demo.simulator`, as ``bench/forecast_calibration.py``
builds it) is applied by the pure processor, and two forecasters are fed every outcome side
by side: this tree's and the one of ``--baseline TREE`` (its ``engine/risk/forecast.py``,
loaded beside this one). Each is consulted as the risk monitor consults it, at every event of
a feature with a target date to slip, at the event's time, so each rebuilds its models on its
own schedule. At several cut-offs every feature in flight is forecast by both; the rest of
the portfolio is applied and each forecast with a date is scored against the feature's first
launch (met: launched on or before the date; a date passed without a launch: missed; still in
flight with the date past the end: not scored; cancelled features left out).

Prints, per seed and over all seeds: the p50 and p85 met rates of both; how many model
builds each made; and the distribution of the differences between their p50 and p85 dates
(this tree's minus the baseline's, in days) over the forecasts both gave a date, with the
share of forecasts without a date that differ in their days from moving on.

Run: ``python bench/forecast_drift.py --baseline TREE [--seeds 7 8 9] [--features N]``
(``git archive main | tar -x -C /tmp/base`` makes a baseline tree).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import random
import statistics
import sys
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.core.processor import process
from engine.core.state import FeatureState
from engine.demo.simulator import build_portfolio
from engine.risk import forecast as this_forecast
from events.envelope import validate_event
from workflows.loader import Workflows, load_folder

START = datetime(2024, 1, 1, tzinfo=UTC)  # as bench/forecast_calibration.py starts
NAMES = ("this tree", "baseline")


def load_baseline(tree: str) -> ModuleType:
    """The ``engine/risk/forecast.py`` of ``tree``, as a module of its own."""
    path = os.path.join(tree, "engine", "risk", "forecast.py")
    spec = importlib.util.spec_from_file_location("baseline_forecast", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_forecast"] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


class Side:
    """One forecaster, counted and consulted as the monitor consults it."""

    def __init__(self, module: ModuleType) -> None:
        side = self

        class Counted(module.Forecaster):  # type: ignore[misc,name-defined]
            """Counts its model builds (a subclass: compiled, its methods are read-only)."""

            def _build(self, workflow: Any) -> Any:
                side.builds += 1
                return super()._build(workflow)

        self.forecaster: Any = Counted()
        self.builds = 0
        self.takes_now = "now" in inspect.signature(self.forecaster.current).parameters

    def consult(self, workflow: Any, at: Any) -> None:
        if self.takes_now:
            self.forecaster.current(workflow, at)
        else:
            self.forecaster.current(workflow)


def run(baseline: ModuleType, seed: int, features: int, days: float, cuts: int) -> dict[str, Any]:
    """One seed: per side, met flags of p50 and p85, builds; and the date differences."""
    workflows = Workflows(load_folder(None))
    portfolio = build_portfolio(random.Random(seed), features=features, days=days, start=START)
    end = START + timedelta(days=days)
    cut_days = [days * (0.3 + 0.4 * i / max(1, cuts - 1)) for i in range(cuts)]
    sides = {NAMES[0]: Side(this_forecast), NAMES[1]: Side(baseline)}
    states: dict[str, FeatureState] = {}
    made: list[tuple[str, list[Any]]] = []  # feature, each side's forecast
    next_cut = 0
    for item in [*portfolio, None]:
        at = START + timedelta(seconds=item.offset) if item is not None else end
        while next_cut < len(cut_days) and at > START + timedelta(days=cut_days[next_cut]):
            now = START + timedelta(days=cut_days[next_cut])
            for fid, state in states.items():
                workflow = workflows.by_name[state.workflow]
                if state.stage not in workflow.terminal:
                    found = [s.forecaster.forecast(state, workflow, now) for s in sides.values()]
                    if all(f is not None for f in found):
                        made.append((fid, found))
            next_cut += 1
        if item is None:
            break
        event = validate_event(item.event, workflows.event_types, at)
        if event is None:
            continue
        outcome = process(workflows, states.get(event.feature), event, at)
        new = outcome.state
        for side in sides.values():
            side.forecaster.durations.take(outcome)
        if new is None:
            continue
        states[event.feature] = new
        if outcome.changed and new.target_launch is not None and new.launched_at is None:
            for side in sides.values():
                side.consult(workflows.by_name[new.workflow], at)
    met: dict[str, tuple[list[bool], list[bool]]] = {name: ([], []) for name in sides}
    p50_diffs: list[float] = []
    p85_diffs: list[float] = []
    waits = waits_moved = 0
    for fid, found in made:
        state = states[fid]
        terminal = workflows.by_name[state.workflow].terminal
        if state.launched_at is None and state.stage in terminal:
            continue  # cancelled: no launch to score
        launched = state.launched_at
        for name, forecast in zip(sides, found, strict=True):
            if forecast.waiting is not None:
                continue
            for flags, date in zip(met[name], (forecast.p50, forecast.p85), strict=True):
                if launched is not None:
                    flags.append(launched <= date)
                elif date <= end:
                    flags.append(False)
        ours, theirs = found
        if ours.waiting is None and theirs.waiting is None:
            p50_diffs.append((ours.p50 - theirs.p50).total_seconds() / 86400)
            p85_diffs.append((ours.p85 - theirs.p85).total_seconds() / 86400)
        else:
            waits += 1
            waits_moved += ours.then_days() != theirs.then_days() or ours.waiting != theirs.waiting
    return {
        "met": met,
        "builds": {name: side.builds for name, side in sides.items()},
        "p50": p50_diffs,
        "p85": p85_diffs,
        "waits": (waits, waits_moved),
    }


def _rate(flags: list[bool]) -> str:
    return f"{sum(flags) / len(flags):.1%} of {len(flags)}" if flags else "-"


def _spread(diffs: list[float]) -> str:
    """The distribution of date differences in days."""
    if not diffs:
        return "-"
    gaps = sorted(abs(d) for d in diffs)
    same = sum(1 for d in gaps if d == 0.0) / len(gaps)
    deciles = statistics.quantiles(diffs, n=10) if len(diffs) > 1 else diffs * 9
    return (
        f"identical {same:.0%}, |diff| median {statistics.median(gaps):.2f} "
        f"p90 {gaps[int(0.9 * (len(gaps) - 1))]:.2f} max {gaps[-1]:.2f}; "
        f"diff p10 {deciles[0]:+.2f} median {statistics.median(diffs):+.2f} "
        f"p90 {deciles[-1]:+.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="a source tree to compare with")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--features", type=int, default=1500)
    parser.add_argument("--days", type=float, default=400.0)
    parser.add_argument("--cuts", type=int, default=6)
    args = parser.parse_args()
    baseline = load_baseline(os.path.abspath(args.baseline))
    print(
        f"forecast drift: this tree against {args.baseline}, {args.features} features over "
        f"{args.days:g} simulated days, {args.cuts} cut-offs over 30-70% of the span, "
        "each forecaster consulted at every event of a feature with a target"
    )
    total: dict[str, Any] = {"met": {n: ([], []) for n in NAMES}, "p50": [], "p85": []}
    for seed in args.seeds:
        found = run(baseline, seed, args.features, args.days, args.cuts)
        print(f"seed {seed}:")
        for name in NAMES:
            p50s, p85s = found["met"][name]
            total["met"][name][0].extend(p50s)
            total["met"][name][1].extend(p85s)
            print(
                f"  {name:9s}: p50 met {_rate(p50s)}, p85 met {_rate(p85s)}; "
                f"{found['builds'][name]} model builds"
            )
        total["p50"] += found["p50"]
        total["p85"] += found["p85"]
        waits, moved = found["waits"]
        print(f"  p50 dates (days): {_spread(found['p50'])}")
        print(f"  p85 dates (days): {_spread(found['p85'])}")
        print(f"  without a date on either side: {waits}, of which differ: {moved}")
    print(f"all seeds ({', '.join(map(str, args.seeds))}):")
    for name in NAMES:
        p50s, p85s = total["met"][name]
        print(f"  {name:9s}: p50 met {_rate(p50s)}, p85 met {_rate(p85s)}")
    print(f"  p50 dates (days): {_spread(total['p50'])}")
    print(f"  p85 dates (days): {_spread(total['p85'])}")


if __name__ == "__main__":
    main()
