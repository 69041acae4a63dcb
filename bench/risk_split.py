"""Where the cost of risk goes per event: the split behind ``bench/core.py``'s risk ratio.

Runs ``bench/core.py``'s 100,000 events through the engine four ways in one process, by
turns, every event received at once and then live (each received as it happens, as
``bench/core.py`` judges them), and prints the median CPU time per event of each and the
difference each part adds:

- ``none``: the engine without risk (the base ``bench/core.py`` compares with);
- ``bookkeeping``: plus feeding the forecaster's stage durations and cohorts from each move
  (what :meth:`RiskMonitor.observe` does before judging);
- ``rebuilds``: plus asking for the current forecast model of each feature with a target to
  slip, which rebuilds a workflow's model when its observations grew enough;
- ``all``: the whole monitor (judging: reasons, forecasts, deadlines, signals).

The rate with risk can keep 0.80 of the rate without it only if everything risk adds fits in
a quarter of the engine's own time; the ratio printed for ``rebuilds`` is the best the judging
could reach if it cost nothing.

Then that budget against what ``all`` adds, timed from inside the same runs: the forecast
model's rebuilds (each ``Forecaster._build`` timed, in a subclass that only times it), the
cyclic garbage collector's extra time over ``none`` (``gc.callbacks``), and the rest, what
risk costs per event besides. The rest over the budget is what the per-event work alone
would have to give up for 0.80 even if rebuilds and the collector cost nothing.

Run: ``.venv/bin/python bench/risk_split.py [--rounds N] [--features N]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from core import make_events, make_live_events  # bench/core.py, beside this file
from prometheus_client import CollectorRegistry

from engine.config.tuning import tune_gc
from engine.core.processor import Outcome
from engine.observe import Recorder
from engine.risk.forecast import Forecaster
from engine.risk.monitor import RiskMonitor
from engine.service import Engine
from engine.stores.memory import MemoryStore
from events.envelope import decode_event
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows, load_folder
from workflows.model import Workflow

WAYS = ("none", "bookkeeping", "rebuilds", "all")


def hook(way: str, workflows: Workflows, monitor: RiskMonitor) -> Callable[..., object] | None:
    """What the engine calls after each outcome for ``way`` (see the module doc)."""

    def keep(outcome: Outcome, now: datetime) -> None:
        monitor.feed(outcome)

    def rebuild(outcome: Outcome, now: datetime) -> None:
        keep(outcome, now)
        state = outcome.state
        if state is not None and state.target_launch is not None and state.launched_at is None:
            monitor.forecaster.current(workflows.by_name[state.workflow], now)

    return {"none": None, "bookkeeping": keep, "rebuilds": rebuild, "all": monitor.observe}[way]


class _Timed(Forecaster):
    """A :class:`Forecaster` that adds the CPU time of each model rebuild to ``spent``."""

    spent = 0.0
    builds = 0

    def _build(self, workflow: Workflow) -> dict[str, Any]:
        t0 = time.process_time()
        try:
            return super()._build(workflow)
        finally:
            self.spent += time.process_time() - t0
            self.builds += 1


class _Collector:
    """The CPU time the cyclic garbage collector takes while installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.spent += time.process_time() - self._started


class Run(NamedTuple):
    """One run's figures."""

    seconds: float  # process CPU time to apply the events
    collector: float  # of it, in the cyclic garbage collector
    rebuilds: float  # of it, in the forecast model's rebuilds
    builds: int


def run(
    raw: list[bytes], workflows: Workflows, way: str, received: list[datetime] | None = None
) -> Run:
    """Apply ``raw`` with ``way``'s share of risk (``received``: each event's receive time;
    default: one for all, now)."""
    metrics = LifecycleMetrics(CollectorRegistry())
    engine = Engine(workflows, MemoryStore(), Recorder(metrics, workflows.event_types))
    forecaster = _Timed()
    engine.on_outcome = hook(way, workflows, RiskMonitor(workflows, forecaster, metrics=metrics))
    known, now = workflows.event_types, datetime.now(UTC)
    arrivals = received if received is not None else [now] * len(raw)
    collector = _Collector()
    gc.callbacks.append(collector)
    try:
        t0 = time.process_time()
        for body, at in zip(raw, arrivals, strict=True):
            event = decode_event(body, known, at)
            if event is not None:
                engine.apply(event, at)
        seconds = time.process_time() - t0
    finally:
        gc.callbacks.remove(collector)
    return Run(seconds, collector.spent, forecaster.spent, forecaster.builds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    workflows = Workflows(load_folder())
    tune_gc()
    live, arrivals = make_live_events(args.features)
    modes: dict[str, tuple[list[bytes], list[datetime] | None]] = {
        "every event received at once": (make_events(args.features), None),
        "live": (live, arrivals),
    }
    for mode, (raw, received) in modes.items():
        runs: dict[str, list[Run]] = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way in WAYS:
                runs[way].append(run(raw, workflows, way, received))
        report(mode, len(raw), runs)


def report(mode: str, n: int, runs: dict[str, list[Run]]) -> None:
    """Print one mode's split and risk's budget (medians of the rounds, us/event)."""

    def per(way: str, part: Callable[[Run], float]) -> float:
        return statistics.median(part(r) for r in runs[way]) / n * 1e6

    times = {way: per(way, lambda r: r.seconds) for way in WAYS}
    print(f"risk split, {mode}: {n:,} events, median of {len(runs['all'])} rounds by turns")
    before = times["none"]
    for way in WAYS:
        print(
            f"  {way:12s} {times[way]:6.1f} us/event (+{times[way] - before:4.1f}; rate "
            f"{times['none'] / times[way]:.2f} of the engine without risk)"
        )
        before = times[way]
    budget = times["none"] / 4  # 0.80 of the rate: risk within a quarter of the engine's time
    added = times["all"] - times["none"]
    rebuilds = per("all", lambda r: r.rebuilds)
    collector = per("all", lambda r: r.collector) - per("none", lambda r: r.collector)
    rest = added - rebuilds - collector
    builds = statistics.median(r.builds for r in runs["all"])
    print(
        f"  budget for 0.80: {budget:.2f} us/event (a quarter of the engine's own); risk adds "
        f"{added:.2f} ({added / budget:.2f} of it): model rebuilds {rebuilds:.2f} ({builds:.0f} "
        f"builds), the collector {collector:.2f} more than without risk, the rest {rest:.2f} "
        f"({rest / budget:.2f} of the budget alone)"
    )


if __name__ == "__main__":
    main()
