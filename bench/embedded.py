"""The embedded engine with a million features: scrape time, write-to-read latency, bytes.

Builds a SQLite database of N features (default 1,000,000; each in one of the first five
stages of its lifecycle with the history and idempotency keys that took it there, every
fifth one with a target launch date, so it carries a forecast), starts ``lifecycle serve``
on it, and measures in the same run:

- ``GET /metrics``, beside ``GET /healthz`` on the same server (the HTTP round trip alone);
- ``POST /events`` to visible in ``GET /features/{id}`` (the time from sending an event to
  the first read that shows its effect), at a steady pace, beside ``GET /features/{id}``
  alone;
- what the engine process holds per feature (RSS after start-up, beside the same engine on
  an empty database), and what a feature costs on disk in SQLite (the file) and in RocksDB
  (the streaming worker's table record, written through ``rocksdict`` as Faust does).

Run: ``python bench/embedded.py [--features N] [--events N] [--rate PER_SECOND]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.reads import serve
from engine.core.processor import process
from engine.core.state import FeatureState, HistoryEntry
from engine.stores.faust_table import encode_record
from engine.stores.sqlite import SqliteStore
from events.envelope import validate_event
from workflows.loader import Workflows, load_folder

ROOT = Path(__file__).resolve().parents[1]
STEPS = [
    ("idea.submitted", {"title": "t", "product": "p", "owner": "pm"}),
    ("discovery.started", {}),
    ("requirement.approved", {"acceptance_criteria": ["works"]}),
    ("feature.prioritized", {"priority": 3, "target_launch": "2027-06-01"}),
    ("design.started", {}),
]
OFFSET = 123_456_789
"""A consumer offset, as every table record carries one."""
NEXT = ("discovery.started", "requirement.approved", "feature.prioritized", "design.started")


def _templates(
    workflows: Workflows, start: datetime
) -> list[tuple[FeatureState, list[HistoryEntry]]]:
    """A feature after 1..5 of its lifecycle's events: its state and history."""
    out = []
    for depth in range(1, len(STEPS) + 1):
        state: FeatureState | None = None
        history: list[HistoryEntry] = []
        for j, (etype, data) in enumerate(STEPS[:depth]):
            at = start + timedelta(hours=6 * j)
            raw = {
                "specversion": "1.0",
                "id": f"e-{j}",
                "source": "bench/embedded",
                "type": etype,
                "subject": "F-0",
                "time": at.isoformat(),
                "data": data,
            }
            event = validate_event(raw, workflows.event_types, at)
            assert event is not None
            outcome = process(workflows, state, event, at)
            state = outcome.state
            history.extend(outcome.entries)
        assert state is not None
        out.append((state, history))
    return out


def features(n: int, workflows: Workflows) -> Iterator[tuple[FeatureState, list[HistoryEntry]]]:
    start = datetime.now(UTC) - timedelta(days=3)
    templates = _templates(workflows, start)
    for i in range(n):
        state, history = templates[i % len(templates)]
        fid = f"F-{i:07d}"
        ids = [f"e-{i}-{j}" for j in range(len(history))]
        yield (
            state._replace(
                id=fid,
                title=f"Feature {i}",
                product=f"p{i % 20}",
                seen=tuple(f"bench/embedded\x1f{k}" for k in ids),
                entered_stage_at=state.entered_stage_at + timedelta(seconds=i % 86400),
            ),
            [e._replace(event_id=k) for e, k in zip(history, ids, strict=True)],
        )


def rocksdb_bytes(n: int, workflows: Workflows, path: Path) -> int:
    """Bytes on disk of ``n`` features' table records in RocksDB (flushed and compacted)."""
    from rocksdict import Rdict

    db = Rdict(str(path))
    for state, history in features(n, workflows):
        db[state.id.encode()] = encode_record(state, [e.to_dict() for e in history], OFFSET)
    db.flush()
    db.compact_range(None, None)
    db.close()
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as resp:
        return bytes(resp.read())


def _timed(url: str, n: int) -> tuple[list[float], int]:
    took, size = [], 0
    for _ in range(n):
        t = time.perf_counter()
        size = len(_get(url))
        took.append((time.perf_counter() - t) * 1000)
    return took, size


def _alternated(url: str, path: str, baseline: str, n: int) -> tuple[list[float], list[float], int]:
    """``path`` and ``baseline`` read by turns, 20 ms apart, so the shared machine's noise
    falls on both alike."""
    took, base, size = [], [], 0
    for _ in range(n):
        t = time.perf_counter()
        size = len(_get(url + path))
        took.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        _get(url + baseline)
        base.append((time.perf_counter() - t) * 1000)
        time.sleep(0.02)
    return took, base, size


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _post(url: str, event: dict[str, object]) -> None:
    req = urllib.request.Request(
        url + "/events",
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.status in (200, 202), resp.status


def visible(url: str, n: int, rate: float, features_held: int) -> tuple[list[float], list[float]]:
    """POST an event that moves a feature, then read it until the move shows; and a plain
    read of a feature, alternated with them (the baseline)."""
    took, reads = [], []
    gap = 1 / rate
    templates = len(STEPS)
    for k in range(n):
        t0 = time.perf_counter()
        i = (k * 7919) % features_held
        depth = i % templates + 1  # events the feature had
        if depth > len(NEXT):
            i -= 1  # its template is at the last step: take the one before
            depth -= 1
        fid = f"F-{i:07d}"
        etype = NEXT[depth - 1]
        event: dict[str, object] = {
            "specversion": "1.0",
            "id": f"v-{k}",
            "source": "bench/visible",
            "type": etype,
            "subject": fid,
            "time": datetime.now(UTC).isoformat(),
            "data": {"priority": 3, "target_launch": "2027-06-01"}
            if etype == "feature.prioritized"
            else {},
        }
        start = time.perf_counter()
        _post(url, event)
        while True:
            body = json.loads(_get(f"{url}/features/{fid}"))
            if body.get("version", 0) > depth and body.get("stage") != "idea":
                break
        took.append((time.perf_counter() - start) * 1000)
        t = time.perf_counter()
        _get(f"{url}/features/F-{(i + 1) % features_held:07d}")
        reads.append((time.perf_counter() - t) * 1000)
        time.sleep(max(0.0, gap - (time.perf_counter() - t0)))
    return took, reads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=1000, help="events for the latency figure")
    ap.add_argument("--rate", type=float, default=100.0, help="events per second, steady")
    ap.add_argument("--scrapes", type=int, default=1000)
    args = ap.parse_args()
    workflows = Workflows(load_folder())
    n = args.features
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        db = Path(tmp) / "bench.db"
        t = time.perf_counter()
        store = SqliteStore(db)
        store.load(features(n, workflows))
        store.close()
        sqlite = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*"))
        print(f"embedded: {n:,} features written to SQLite in {time.perf_counter() - t:.0f} s")
        rocks = rocksdb_bytes(n, workflows, Path(tmp) / "rocks")
        shutil.rmtree(Path(tmp) / "rocks")
        print(
            f"  on disk per feature (state, {sum(range(1, 6)) / 5:.0f} history lines on "
            f"average, idempotency keys): SQLite {sqlite / n:,.0f} B, "
            f"RocksDB (the worker's table record) {rocks / n:,.0f} B"
        )

        empty, url0 = serve(Path(tmp) / "empty.db")
        time.sleep(1)
        rss0 = _rss(empty.pid)
        base0, _ = _timed(url0 + "/metrics", args.scrapes)
        empty.terminate()
        empty.wait(timeout=30)

        t = time.perf_counter()
        proc, url = serve(db)
        started = time.perf_counter() - t
        try:
            rss = _rss(proc.pid)
            print(
                f"  engine started on them in {started:.0f} s; RSS {rss / 2**20:,.0f} MiB "
                f"beside {rss0 / 2**20:,.0f} MiB on an empty database: "
                f"{(rss - rss0) / n:,.0f} B per feature held in memory (metrics and risk; "
                "states and histories stay in SQLite)"
            )
            scrape, health, size = _alternated(url, "/metrics", "/healthz", args.scrapes)
            print(
                f"  GET /metrics with {n:,} features, {args.scrapes} scrapes: p50 "
                f"{statistics.median(scrape):.1f} ms, p99 {_p(scrape, 0.99):.1f} ms, max "
                f"{max(scrape):.0f} ms ({size / 1024:.0f} KiB; target <= 10 ms: "
                f"{'met' if _p(scrape, 0.99) <= 10 else 'NOT met'}); baseline GET /healthz by "
                f"turns p50 {statistics.median(health):.1f} ms, p99 {_p(health, 0.99):.1f} ms, "
                f"max {max(health):.0f} ms; GET /metrics on an empty database p50 "
                f"{statistics.median(base0):.1f} ms"
            )
            took, reads = visible(url, args.events, args.rate, n)
            print(
                f"  POST /events to visible in GET /features/{{id}}, {args.events} events at "
                f"{args.rate:.0f}/s: p50 {statistics.median(took):.1f} ms, "
                f"p99 {_p(took, 0.99):.1f} ms (target p99 <= 50 ms: "
                f"{'met' if _p(took, 0.99) <= 50 else 'NOT met'}); baseline GET "
                f"/features/{{id}} alone p50 {statistics.median(reads):.1f} ms, "
                f"p99 {_p(reads, 0.99):.1f} ms"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
