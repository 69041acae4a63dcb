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

Needs valgrind (Debian: ``valgrind``) and the compiled risk package (``make native``); about
a minute per tree and mode. Run: ``python bench/risk_instructions.py [--baseline TREE]``.
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
from datetime import UTC, datetime

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="another source tree (with its own native build)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    trees = {"this tree": HERE}
    if args.baseline:
        trees["baseline"] = os.path.abspath(args.baseline)
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
