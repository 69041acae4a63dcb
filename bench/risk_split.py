"""Where the cost of risk goes per event: the split behind ``bench/core.py``'s risk ratio.

Runs ``bench/core.py``'s 100,000 events (every event received at once) through the engine
four ways in one process, by turns, and prints the median CPU time per event of each and the
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

Run: ``.venv/bin/python bench/risk_split.py [--rounds N] [--features N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from core import make_events  # bench/core.py, beside this file
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


def run(raw: list[bytes], workflows: Workflows, way: str) -> float:
    """Process CPU seconds to apply ``raw`` with ``way``'s share of risk."""
    metrics = LifecycleMetrics(CollectorRegistry())
    engine = Engine(workflows, MemoryStore(), Recorder(metrics, workflows.event_types))
    engine.on_outcome = hook(way, workflows, RiskMonitor(workflows, Forecaster(), metrics=metrics))
    known, now = workflows.event_types, datetime.now(UTC)
    t0 = time.process_time()
    for body in raw:
        event = decode_event(body, known, now)
        if event is not None:
            engine.apply(event, now)
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    workflows = Workflows(load_folder())
    tune_gc()
    raw = make_events(args.features)
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(args.rounds):
        for way in WAYS:
            times[way].append(run(raw, workflows, way))
    per = {way: statistics.median(t) / len(raw) * 1e6 for way, t in times.items()}
    print(f"risk split: {len(raw):,} events, median of {args.rounds} rounds by turns (us/event)")
    before = per["none"]
    for way in WAYS:
        print(
            f"  {way:12s} {per[way]:6.1f}  (+{per[way] - before:4.1f}; rate "
            f"{per['none'] / per[way]:.2f} of the engine without risk)"
        )
        before = per[way]


if __name__ == "__main__":
    main()
