"""Benchmark of ``lifecycle replay``: rebuilding a SQLite file from its event log.

Writes a log of 1,000,000 events (100,000 features through their lifecycle, interleaved, as
``bench/core.py`` makes them) into a SQLite file, then measures in the same run:

(a) in-process with risk: ``bench/core.py``'s engine over 100,000 of those events in memory,
    with the risk monitor and forecasts (CPU time; the reference rate);
(b) replay: :func:`engine.evolve.rebuild.rebuild` of the whole log into a fresh file, as
    ``lifecycle replay`` runs it (read the log, decode and check each event, apply it,
    write features, histories and the new log, compare with the live file): wall time and
    CPU time (its shard processes' included), in one process and in one per processor.

Target (issue 15): 1,000,000 events in at most 60 s, at a rate of at least 50% of (a).
The ratio uses replay's CPU time, as (a) does, so other jobs of a shared machine do not
count as the engine's; the wall time is printed beside it.

Run: ``python bench/replay.py [--events N] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core import make_events, run_engine  # bench/core.py, beside this file

from engine.config.tuning import tune_gc
from engine.core.state import iso
from engine.evolve.rebuild import rebuild
from engine.stores.sqlite import SqliteStore
from workflows.loader import Workflows, load_folder

PER_FEATURE = 10


def write_log(path: Path, raw: list[bytes], received: datetime) -> None:
    """A live file whose log holds ``raw`` (as the embedded engine would have logged it)."""
    at = iso(received) or ""
    store = SqliteStore(path)
    try:
        with store.transaction():
            rows = []
            for body in raw:
                rows.append((json.loads(body)["subject"], at, "applied", body.decode()))
                if len(rows) == 50_000:
                    store.log.append_many(rows)
                    rows = []
            store.log.append_many(rows)
    finally:
        store.close()


def cpu_seconds() -> tuple[float, float]:
    """CPU time of this process, and of its children that ended (a rebuild's shards)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--reference", type=int, default=100_000, help="events for (a)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (a), median")
    ap.add_argument("--keep", help="build the files in this folder and keep them")
    ap.add_argument(
        "--shards",
        type=lambda text: [int(x) for x in text.split(",")],
        default=sorted({1, len(os.sched_getaffinity(0))}),
        help="processes to rebuild in, comma-separated, each measured (default: 1 and one "
        "per processor; lifecycle replay picks one per idle processor)",
    )
    args = ap.parse_args()

    workflows = Workflows(load_folder())
    tune_gc()
    ref = make_events(args.reference // PER_FEATURE, PER_FEATURE)
    cpu = statistics.median(run_engine(ref, workflows, risk=True)[0] for _ in range(args.rounds))
    in_process = len(ref) / cpu
    del ref

    folder = Path(args.keep or tempfile.mkdtemp(prefix="lifecycle-replay-"))
    folder.mkdir(parents=True, exist_ok=True)
    live, into = folder / "live.db", folder / "rebuilt.db"
    for p in (live, into):
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(str(p) + suffix).unlink(missing_ok=True)
    raw = make_events(args.events // PER_FEATURE, PER_FEATURE)
    n = len(raw)
    t0 = time.perf_counter()
    write_log(live, raw, datetime.now(UTC))
    del raw
    print(f"log of {n:,} events written in {time.perf_counter() - t0:.1f}s to {live}")

    for shards in args.shards:
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(str(into) + suffix).unlink(missing_ok=True)
        wall0, (mine0, theirs0) = time.perf_counter(), cpu_seconds()
        done = rebuild(live, into, workflows, datetime.now(UTC), shards=shards)
        mine, theirs = cpu_seconds()
        wall = time.perf_counter() - wall0
        cpu_replay = mine - mine0 + theirs - theirs0
        # The shards are even (split by feature id): the busiest process's CPU time is the
        # parent's plus one shard's, the wall time a machine with idle processors would see.
        critical = mine - mine0 + (theirs - theirs0) / shards
        assert done.replayed.events == n, done.replayed
        launched = done.replayed.outcomes.get("applied", 0)
        rate, rate_wall = n / cpu_replay, n / wall
        ratio = rate / in_process
        print(
            f"replay in {shards} process{'es' if shards > 1 else ''}: {n:,} events, "
            f"{done.features:,} features ({launched:,} applied)"
        )
        print(f"  (a) in-process with risk : {in_process:>10,.0f} events/s (CPU)")
        print(
            f"  (b) replay into SQLite   : {rate:>10,.0f} events/s (CPU {cpu_replay:.1f}s), "
            f"{rate_wall:,.0f} events/s wall ({wall:.1f}s)"
        )
        scaled = wall * 1_000_000 / n
        scaled_cpu = cpu_replay * 1_000_000 / n
        print(
            f"  target 1,000,000 events <= 60 s: {'met' if scaled <= 60 else 'NOT met'} "
            f"({scaled:.1f}s per million, wall); "
            f">= 50% of (a): {'met' if ratio >= 0.5 else 'NOT met'} (ratio {ratio:.2f})"
        )
        # On a shared machine the wall time says as much about the other jobs as about
        # replay: the share of a core its processes had, and its CPU time, say which.
        print(
            f"  its processes had {cpu_replay / wall:.0%} of a core ({shards} at most "
            f"{shards:.0%}); its CPU time: {scaled_cpu:.1f}s per million, of which "
            f"{critical * 1_000_000 / n:.1f}s in its busiest process (the wall time with "
            f"{shards} idle processor{'s' if shards > 1 else ''})"
        )
    if not args.keep:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
