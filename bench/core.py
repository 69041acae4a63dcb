"""Benchmark of the core: JSON bytes in, through parse, validate, apply and metrics.

100,000 events over 10,000 features against the in-memory store, beside a baseline measured
in the same run (only decoding the same JSON bytes with ``json.loads``). Prints the median of
several rounds and the ratio, then how much memory 1,000,000 features take. Times are this
process's CPU time (``time.process_time``), so the other jobs of a shared machine do not count
as the engine's; the ratio to the baseline is the figure to compare across machines.

``--baseline TREE`` measures the engine of another source tree (an export of an earlier
commit, e.g. ``git archive main | tar -x -C /tmp/base``) by turns with this one: each round
runs the rates with and without risk of both trees, each in a fresh process on the same
events, alternating which goes first, and prints this tree's figures beside the baseline's.

The memory figure is measured in a fresh process per tree, by RSS growth and by tracemalloc
(on a tenth of the features), beside a baseline store that holds the states and histories as
the processor hands them over, and beside ``--baseline``'s engine when one is given.

Run: ``make bench`` (or ``python bench/core.py [--rounds N] [--features N] [--memory N]
[--baseline TREE]``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

# The tree whose engine is measured: this one, or another (``--baseline`` sets it in the
# process it starts).
sys.path.insert(
    0,
    os.environ.get("LIFECYCLE_BENCH_TREE") or os.path.dirname(os.path.dirname(__file__)),
)

from prometheus_client import CollectorRegistry

from engine.config.tuning import tune_gc
from engine.core.processor import Outcome
from engine.core.state import FeatureState, HistoryEntry
from engine.observe import Recorder
from engine.risk.forecast import Forecaster
from engine.risk.monitor import RiskMonitor
from engine.service import Engine
from engine.stores.memory import MemoryStore
from events.builder import cloud_event
from events.envelope import decode_event
from metrics.bundle import LifecycleMetrics
from workflows.loader import Workflows, load_folder

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LIFECYCLE = [
    (
        "idea.submitted",
        "product/roadmap",
        lambda i: {"title": f"Feature {i}", "product": f"p{i % 5}", "owner": "pm"},
    ),
    ("discovery.started", "product/discovery", lambda i: {}),
    ("requirement.approved", "product/requirements", lambda i: {"acceptance_criteria": ["works"]}),
    (
        "feature.prioritized",
        "product/roadmap",
        lambda i: {"priority": i % 10, "target_launch": "2027-06-01"},
    ),
    ("design.started", "design/studio", lambda i: {}),
    ("build.started", "ci/build-service", lambda i: {}),
    ("build.shipped", "ci/build-service", lambda i: {"build": f"b{i}"}),
    ("uat.passed", "qa/uat", lambda i: {}),
    ("feature.launched", "release/launcher", lambda i: {}),
    ("kpi.reported", "analytics/kpi", lambda i: {"name": "adoption", "value": 0.5}),
]


def make_events(features: int, per_feature: int = 10, seed: int = 7) -> list[bytes]:
    """Each feature's events in lifecycle order, features interleaved at random."""
    rng = random.Random(seed)
    # Business times as in production, where events arrive as they happen: each lifecycle
    # spread over the last day and a half (a stage every three hours, well within every SLA),
    # so no feature is at risk merely because a backlog of old events is replayed.
    start = datetime.now(UTC) - timedelta(hours=per_feature * 3 + 1)
    queues = [list(range(per_feature)) for _ in range(features)]
    live = list(range(features))
    out: list[bytes] = []
    while live:
        k = rng.randrange(len(live))
        f = live[k]
        step = queues[f].pop(0)
        t = start + timedelta(hours=step * 3, seconds=f % 86_400)  # within a day ahead
        out.append(_event(f, step, t))
        if not queues[f]:
            live[k] = live[-1]
            live.pop()
    return out


def _event(f: int, step: int, t: datetime) -> bytes:
    """The ``step``-th event of feature ``f``, happened at ``t``, as JSON bytes."""
    etype, source, data = LIFECYCLE[step % len(LIFECYCLE)]
    event = cloud_event(etype, f"FEAT-{f}", id=f"e-{f}-{step}", source=source, time=t, data=data(f))
    return json.dumps(event).encode()


def make_live_events(
    features: int, per_feature: int = 10, seed: int = 7
) -> tuple[list[bytes], list[datetime]]:
    """Events as a live engine receives them, each two seconds after it happened, in the
    order they happen: features start over the period, each stage lasts 1-5 hours.

    Returns the events and their receive times. :func:`make_events` gives every event one
    receive time (after the whole backlog happened), so each feature is judged long after
    its stage began, past every observed stay: the forecast of an outstayed feature, which
    widens with its time in the stage, is computed afresh per event. Here, as in a live
    engine, a feature is judged as it enters a stage.
    """
    rng = random.Random(seed)
    span = timedelta(hours=per_feature * 5)
    start = datetime.now(UTC) - 2 * span
    timed: list[tuple[datetime, int, int]] = []
    for f in range(features):
        t = start + span * rng.random()
        for step in range(per_feature):
            timed.append((t, f, step))
            t += timedelta(hours=rng.uniform(1, 5))
    timed.sort()
    out: list[bytes] = []
    for t, f, step in timed:
        out.append(_event(f, step, t))
    return out, [t + timedelta(seconds=2) for t, _, _ in timed]


def run_baseline(raw: list[bytes]) -> float:
    t0 = time.process_time()
    for body in raw:
        json.loads(body)
    return time.process_time() - t0


def run_engine(
    raw: list[bytes],
    workflows: Workflows,
    *,
    risk: bool = False,
    received: list[datetime] | None = None,
    plain: bool = False,
) -> tuple[float, Engine]:
    """Apply ``raw`` in order; ``received``: each event's receive time (default: one for all,
    now); ``plain``: on a :class:`PlainStore`. Returns the process CPU time it took and the
    engine."""
    metrics = LifecycleMetrics(CollectorRegistry())
    store = PlainStore() if plain else MemoryStore()
    engine = Engine(workflows, store, Recorder(metrics, workflows.event_types))
    if risk:  # What a running engine adds per event: risk reasons and launch forecasts.
        engine.on_outcome = RiskMonitor(workflows, Forecaster(), metrics=metrics).observe
    known = workflows.event_types
    if received is not None:
        t0 = time.process_time()
        for body, at in zip(raw, received, strict=True):
            event = decode_event(body, known, at)
            if event is not None:
                engine.apply(event, at)
        return time.process_time() - t0, engine
    now = datetime.now(UTC)
    t0 = time.process_time()
    for body in raw:
        event = decode_event(body, known, now)
        if event is not None:
            engine.apply(event, now)
    return time.process_time() - t0, engine


_TURN = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
import core
from engine.config.tuning import tune_gc
from workflows.loader import Workflows, load_folder
workflows = Workflows(load_folder())
tune_gc()
n = int(sys.argv[2])
raw = core.make_events(n)
live, arrivals = core.make_live_events(n)
print(json.dumps([
    core.run_engine(raw, workflows)[0],
    core.run_engine(raw, workflows, risk=True)[0],
    core.run_engine(live, workflows, received=arrivals)[0],
    core.run_engine(live, workflows, risk=True, received=arrivals)[0],
]))
"""
"""One turn of :func:`by_turns` in a fresh process: the tree's own ``bench/core.py`` helpers
(every tree since issue 16 has them) on the same events; prints process CPU seconds of the
runs without and with risk, all at once and live."""


def by_turns(baseline: str, features: int, rounds: int) -> None:
    """Print the risk ratios of ``baseline`` and of this tree, measured by turns."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"baseline": os.path.abspath(baseline), "this tree": here}
    runs: dict[str, list[list[float]]] = {name: [] for name in trees}
    for r in range(rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            out = subprocess.run(
                [sys.executable, "-c", _TURN, trees[name], str(features)],
                check=True,
                capture_output=True,
                text=True,
                cwd=trees[name],
            )
            runs[name].append(json.loads(out.stdout))
    n = features * 10
    print(f"by turns, {rounds} rounds, fresh process per tree and round (medians):")
    for name, results in runs.items():
        once, once_risk, live, live_risk = (
            statistics.median(r[i] for r in results) for i in range(4)
        )
        print(
            f"  {name:9s}: all at once {n / once:,.0f} -> {n / once_risk:,.0f} events/s with "
            f"risk ({once / once_risk:.2f}; risk {(once_risk - once) / n * 1e6:.1f} us/event); "
            f"live {n / live:,.0f} -> {n / live_risk:,.0f} ({live / live_risk:.2f}; "
            f"risk {(live_risk - live) / n * 1e6:.1f} us/event); ratio per round "
            + ", ".join(f"{r[0] / r[1]:.2f}/{r[2] / r[3]:.2f}" for r in results)
        )


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PlainStore:
    """The baseline of the memory figure: states and histories held as the processor hands
    them over, in two dictionaries (what the in-memory store did before issue 16)."""

    def __init__(self) -> None:
        self._states: dict[str, FeatureState] = {}
        self._history: dict[str, list[HistoryEntry]] = {}

    def get(self, feature_id: str) -> FeatureState | None:
        return self._states.get(feature_id)

    def commit(self, outcome: Outcome) -> None:
        if outcome.state is not None and (outcome.entries or outcome.changed):
            self._states[outcome.state.id] = outcome.state
            self._history.setdefault(outcome.state.id, []).extend(outcome.entries)

    def history(self, feature_id: str) -> list[HistoryEntry]:
        return list(self._history.get(feature_id, ()))

    def features(self) -> Iterator[FeatureState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def close(self) -> None:
        pass


def held_per_feature(
    features: int, workflows: Workflows, plain: bool = False
) -> tuple[float, float]:
    """Bytes per one-event feature held by an engine on the in-memory store (state, history
    line, idempotency key, metrics): by RSS growth with ``features`` features, and by
    tracemalloc with a tenth of them. Measured in a process of its own (RSS only grows).

    Args:
        plain: on a :class:`PlainStore` instead.
    """
    run_engine(make_events(10, per_feature=1), workflows)  # shared structures, caches
    gc.collect()
    before = rss_bytes()
    raw = make_events(features, per_feature=1)
    _, engine = run_engine(raw, workflows, plain=plain)
    del raw
    gc.collect()
    by_rss = (rss_bytes() - before) / len(engine.store)
    del engine
    raw = make_events(features // 10, per_feature=1)
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        _, engine = run_engine(raw, workflows, plain=plain)
        del raw
        gc.collect()
        by_trace = (tracemalloc.get_traced_memory()[0] - start) / len(engine.store)
    finally:
        tracemalloc.stop()
    return by_rss, by_trace


def measured_apart(tree: str, features: int, plain: bool = False) -> tuple[float, float]:
    """:func:`held_per_feature` of ``tree``'s engine, in a fresh process."""
    env = {**os.environ, "LIFECYCLE_BENCH_TREE": tree}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--held", str(features)]
        + (["--plain"] if plain else []),
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    by_rss, by_trace = json.loads(out.strip().splitlines()[-1])
    return float(by_rss), float(by_trace)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--memory", type=int, default=1_000_000, help="features for the memory figure (0: skip)"
    )
    ap.add_argument("--baseline", help="another source tree, measured by turns with this one")
    ap.add_argument("--held", type=int, help=argparse.SUPPRESS)  # one memory measurement
    ap.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # ... on PlainStore
    args = ap.parse_args()
    if args.baseline and not args.held:
        if args.rounds:
            by_turns(args.baseline, args.features, args.rounds)
        if args.memory:
            memory(args.memory, args.baseline)
        return

    workflows = Workflows(load_folder())
    tune_gc()  # As the engine's composition roots do at start-up.
    if args.held:
        print(json.dumps(held_per_feature(args.held, workflows, args.plain)))
        return
    if args.rounds:
        rates(args.features, args.rounds, workflows)
    if args.memory:
        memory(args.memory, None)


def rates(features: int, rounds: int, workflows: Workflows) -> None:
    """The event rates, without and with risk, beside ``json.loads`` of the same bytes."""
    raw = make_events(features)
    live, arrivals = make_live_events(features)
    n = len(raw)
    base, eng, risky, live_eng, live_risky = [], [], [], [], []
    for _ in range(rounds):
        base.append(run_baseline(raw))
        seconds, engine = run_engine(raw, workflows)
        eng.append(seconds)
        risky.append(run_engine(raw, workflows, risk=True)[0])
        launched = sum(1 for s in engine.store.features() if s.stage == "launched")
        assert launched == features, f"only {launched} of {features} launched"
        del engine
        live_eng.append(run_engine(live, workflows, received=arrivals)[0])
        live_risky.append(run_engine(live, workflows, risk=True, received=arrivals)[0])
    b, e = statistics.median(base), statistics.median(eng)
    print(f"core: {n:,} events over {features:,} features, median of {rounds} rounds")
    print(f"  baseline json.loads only : {n / b:>12,.0f} events/s")
    print(
        f"  parse+validate+apply+metrics: {n / e:>9,.0f} events/s  (ratio to baseline {b / e:.3f}; "
        f"target 50,000 events/s: {'met' if n / e >= 50_000 else 'NOT met'})"
    )
    r = statistics.median(risky)
    print(f"  the same plus risk and forecasts: {n / r:>7,.0f} events/s  (ratio {b / r:.3f})")
    print(
        f"  risk and forecasts keep {e / r:.2f} of the rate without them "
        f"(target 0.80: {'met' if e / r >= 0.8 else 'NOT met'}; every event received at once)"
    )
    le, lr = statistics.median(live_eng), statistics.median(live_risky)
    print(
        f"  judged live (each event received as it happens): {n / le:,.0f} events/s without "
        f"risk, {n / lr:,.0f} with risk and forecasts: {le / lr:.2f} of the rate "
        f"(target 0.80: {'met' if le / lr >= 0.8 else 'NOT met'})"
    )


def memory(features: int, against: str | None) -> None:
    """Bytes per feature held, in fresh processes: this tree, the baseline (this tree's
    engine on a :class:`PlainStore`), and ``against``'s engine."""
    held = {"this tree": measured_apart(HERE, features)}
    held["baseline, the states and histories as handed over (PlainStore)"] = measured_apart(
        HERE, features, plain=True
    )
    if against:
        held[f"baseline tree {against}"] = measured_apart(against, features)
    for name, (by_rss, by_trace) in held.items():
        print(
            f"memory, {name}: {features:,} one-event features (state, history, idempotency "
            f"key, metrics): {by_rss:,.0f} B/feature by RSS growth "
            f"({by_rss * features / 2**30:.2f} GiB), {by_trace:,.0f} by tracemalloc "
            f"({features // 10:,} features); target 600: {'met' if by_rss <= 600 else 'NOT met'}"
        )
    (mine_rss, mine_trace), *others = held.values()
    for name, (theirs_rss, theirs_trace) in zip(list(held)[1:], others, strict=True):
        print(
            f"memory: this tree holds {mine_rss / theirs_rss:.2f} of the bytes per feature "
            f"of the {name.split(',')[0]} by RSS, {mine_trace / theirs_trace:.2f} by tracemalloc"
        )


if __name__ == "__main__":
    main()
