"""Instructions the risk monitor executes per event, counted by valgrind (deterministic).

On a shared machine the wall-clock figures of ``bench/core.py`` move by a third from one
round to the next, more than most changes to risk's code. Counted instructions do not move:
this runs the same 100,000 outcomes (``bench/core.py``'s events over 10,000 features, all at
once and live) through a fresh :class:`~engine.risk.monitor.RiskMonitor` under
``valgrind --tool=callgrind``, counting only inside ``RiskMonitor.observe``, and prints the
instructions per event, beside ``--baseline TREE``'s when one is given (an export of an
earlier commit with its own ``make native`` build). Instructions are not time: risk's run at
about half the engine's rate per instruction (it touches one feature's records among many,
and frees objects made long before), so confirm a change with ``bench/core.py --baseline``.

``--cache`` shows where the rest of the time goes: the engine's whole run of the same
events (``bench/core.py``'s ``run_engine``), without and with risk, under valgrind's cache
simulation with this machine's first-level caches and its second-level cache as the last
level (``getconf LEVEL2_CACHE_*``), less a run that only loads the events. It prints per
event the instructions, the first-level misses (instructions and data) and the second-level
misses (data that had to come from the shared third level or memory), and what risk adds
to each. Misses are what instructions do not count: live, risk's instructions miss the
first level as often as the engine's, the second 2.7 times as often (each event reaches one
feature's records among 10,000, last touched thousands of events before).

Needs valgrind (Debian: ``valgrind``) and the compiled risk package (``make native``); about
a minute per tree and mode (``--cache``: about five, two processes at a time).
Run: ``python bench/risk_instructions.py [--baseline TREE] [--cache]``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_FEED = """
import pickle, sys
sys.path.insert(0, sys.argv[1])
from engine.config.tuning import tune_gc
from engine.risk.forecast import Forecaster
from engine.risk.monitor import RiskMonitor
from workflows.loader import Workflows, load_folder
workflows = Workflows(load_folder())
with open(sys.argv[2], "rb") as f:
    outcomes = pickle.load(f)
tune_gc()
observe = RiskMonitor(workflows, Forecaster()).observe
for outcome, now in outcomes:
    observe(outcome, now)
"""
"""Feeds a fresh monitor of the tree in ``argv[1]`` the pickled (outcome, now) pairs."""


def outcomes(path: str, live: bool) -> int:
    """Pickle to ``path`` the outcomes of ``bench/core.py``'s events (this tree's engine,
    without risk) with the instant each was judged at; returns how many."""
    sys.path[:0] = [HERE, os.path.join(HERE, "bench")]
    import core
    from prometheus_client import CollectorRegistry

    from engine.observe import Recorder
    from engine.service import Engine
    from engine.stores.memory import MemoryStore
    from events.envelope import decode_event
    from metrics.bundle import LifecycleMetrics
    from workflows.loader import Workflows, load_folder

    workflows = Workflows(load_folder())
    if live:
        raw, received = core.make_live_events(10_000)
    else:
        raw = core.make_events(10_000)
        received = [datetime.now(UTC)] * len(raw)
    taken: list[tuple[object, datetime]] = []
    metrics = LifecycleMetrics(CollectorRegistry())
    engine = Engine(workflows, MemoryStore(), Recorder(metrics, workflows.event_types))
    engine.on_outcome = lambda outcome, now: taken.append((outcome, now))
    for body, at in zip(raw, received, strict=True):
        event = decode_event(body, workflows.event_types, at)
        if event is not None:
            engine.apply(event, at)
    with open(path, "wb") as f:
        pickle.dump(taken, f)
    return len(taken)


def counted(tree: str, path: str) -> int:
    """Instructions executed inside ``RiskMonitor.observe`` of ``tree`` fed ``path``."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--toggle-collect=CPyPy_monitor___RiskMonitor___observe",
            sys.executable,
            "-c",
            _FEED,
            tree,
            path,
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise SystemExit(f"no count from valgrind:\n{out[-2000:]}")
    return int(found.group(1))


_RUN = """
import pickle, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
import core
from engine.config.tuning import tune_gc
from workflows.loader import Workflows, load_folder
workflows = Workflows(load_folder())
with open(sys.argv[2], "rb") as f:
    raw, received = pickle.load(f)
tune_gc()
if sys.argv[3] != "load":
    core.run_engine(raw, workflows, risk=sys.argv[3] == "risk", received=received)
"""
"""Runs the tree in ``argv[1]``'s engine on the pickled events, with risk (``risk``), without
(``plain``), or only loads them (``load``: what the other two runs have in common)."""

_SUMMARY = {
    "instructions": r"I\s+refs:\s+([\d,]+)",
    "first-level instruction misses": r"I1\s+misses:\s+([\d,]+)",
    "first-level data misses": r"D1\s+misses:\s+([\d,]+)",
    "second-level misses": r"LLd\s+misses:\s+([\d,]+)",
}
"""The figures of cachegrind's summary ``--cache`` prints (the last level simulated is the
second: its instruction misses are a few thousand in a run, left out)."""


def level2() -> str:
    """This machine's second-level cache as valgrind's ``--LL`` takes it (size,
    associativity, line size)."""
    parts = [
        subprocess.run(
            ["getconf", f"LEVEL2_CACHE_{part}"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for part in ("SIZE", "ASSOC", "LINESIZE")
    ]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise SystemExit(f"getconf does not tell this machine's second-level cache: {parts}")
    return ",".join(parts)


def simulated(tree: str, path: str, cache: str, run: str) -> dict[str, int]:
    """Cachegrind's summary of ``_RUN`` (``run``: ``risk``, ``plain`` or ``load``) with
    ``cache`` (:func:`level2`) as the last level."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=yes",
            f"--LL={cache}",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            _RUN,
            tree,
            path,
            run,
        ],
        cwd=tree,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dictionaries in every run
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    figures = {}
    for name, pattern in _SUMMARY.items():
        found = re.search(pattern, out)
        if found is None:
            raise SystemExit(f"no {name} from valgrind:\n{out[-2000:]}")
        figures[name] = int(found.group(1).replace(",", ""))
    return figures


def cache(trees: dict[str, str], scratch: str) -> None:
    """Print ``--cache``'s figures of each tree's engine on the same events, all at once and
    live."""
    sys.path[:0] = [HERE, os.path.join(HERE, "bench")]
    import core

    last = level2()
    for live in (False, True):
        raw, received = core.make_live_events(10_000) if live else (core.make_events(10_000), None)
        path = os.path.join(scratch, "events.pickle")
        with open(path, "wb") as f:
            pickle.dump((raw, received), f)
        n = len(raw)
        for name, tree in trees.items():
            with ThreadPoolExecutor(2) as pool:  # valgrind runs one thread: two at a time
                load, plain, risk = pool.map(
                    partial(simulated, tree, path, last), ("load", "plain", "risk")
                )
            mode = "live" if live else "all at once"
            print(
                f"{name}: the engine under cachegrind, per event ({n:,} events, {mode}): "
                "without risk, with risk, what risk adds"
            )
            for figure in _SUMMARY:
                without = (plain[figure] - load[figure]) / n
                with_risk = (risk[figure] - load[figure]) / n
                print(
                    f"  {figure:31s} {without:>9,.0f} {with_risk:>9,.0f} "
                    f"{with_risk - without:>+9,.0f} ({with_risk / without:.2f}x)"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="another source tree (with its own native build)")
    ap.add_argument(
        "--cache", action="store_true", help="the engine's cache misses without and with risk"
    )
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    trees = {"this tree": HERE}
    if args.baseline:
        trees["baseline"] = os.path.abspath(args.baseline)
    if args.cache:
        with tempfile.TemporaryDirectory() as scratch:
            cache(trees, scratch)
        return
    with tempfile.TemporaryDirectory() as scratch:
        for live in (False, True):
            path = os.path.join(scratch, "outcomes.pickle")
            n = outcomes(path, live)
            figures = {name: counted(tree, path) / n for name, tree in trees.items()}
            line = ", ".join(f"{name} {per:,.0f}" for name, per in figures.items())
            if args.baseline:
                line += f" ({figures['this tree'] / figures['baseline']:.2f} of the baseline)"
            mode = "live" if live else "all at once"
            print(f"risk monitor, instructions per event ({n:,} outcomes, {mode}): {line}")


if __name__ == "__main__":
    main()
