"""What the streaming worker's table writes per feature, and what reading a history costs.

Runs ``bench/core.py``'s events (each feature through its lifecycle, features interleaved)
through the engine over the Faust-table store, flushed every ``--batch`` records as the
worker flushes a batch, once with this tree and once with ``--baseline DIR`` (an earlier
source tree, e.g. ``git archive 91d68a3 | tar -x -C DIR``), each in a fresh process, and
prints per feature:

- the changelog: records and bytes (key and value) written to Kafka over the run; the
  worker sends exactly these (``LifecycleApp.queue_changelog``), and RocksDB is written the
  same values;
- the table: bytes of the values it holds at the end (what a compacted changelog keeps), and
  on disk in RocksDB (``rocksdict``, flushed and compacted, as ``bench/embedded.py``);
- the time the store takes to encode those writes (CPU, per event);
- reading a feature's whole history from RocksDB by a store with nothing cached, as the
  worker's ``GET /features/{id}/history`` reads it in each tree (into ``HistoryEntry``s):
  median of ``--reads`` reads, and the same for the feature's state alone
  (``GET /features/{id}``).

Run: ``python bench/table_bytes.py --per-feature 10 --baseline /tmp/base``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_TURN = r"""
import json, random, shutil, statistics, sys, tempfile, time
from datetime import UTC, datetime
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
import core
from rocksdict import Rdict
from engine.core.state import HistoryEntry
from engine.service import Engine
from engine.stores.faust_table import FaustTableStore
from events.envelope import decode_event
from workflows.loader import Workflows, load_folder

features, per, batch, reads = (int(a) for a in sys.argv[2:6])
workflows = Workflows(load_folder())
raw = core.make_events(features, per)
table = {}
store = FaustTableStore(table)
engine = Engine(workflows, store)
now = datetime.now(UTC)
records = sent = 0
encode = 0.0

def write():
    global records, sent, encode
    t = time.process_time()
    writes = store.drain()
    encode += time.process_time() - t
    for _, key, value in writes:
        records += 1
        sent += len(key.encode()) + (len(value) if value is not None else 0)
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

for n, body in enumerate(raw):
    event = decode_event(body, workflows.event_types, now)
    engine.apply(event, now, position=n)
    if n % batch == batch - 1:
        write()
write()
held = sum(len(k.encode()) + len(v) for k, v in table.items())
tmp = Path(tempfile.mkdtemp())
db = Rdict(str(tmp / "rocks"))
for key, value in table.items():
    db[key.encode()] = value
db.flush()
db.compact_range(None, None)
disk = sum(f.stat().st_size for f in (tmp / "rocks").rglob("*") if f.is_file())

def read(key):
    return db.get(key.encode())

ids = random.Random(1).sample([k for k in table if "/" not in k], min(reads, features))
times = {"history": [], "state": []}
for _ in range(2):
    for fid in ids:
        reader = FaustTableStore({}, read=read)
        t = time.perf_counter()
        if hasattr(reader, "lines"):  # the route's read since format 3: no state decoded
            lines = reader.lines(fid)
        else:  # before: the record, the state decoded and encoded again
            state, lines = reader.peek(fid)
            state.to_dict()
        entries = [HistoryEntry.from_dict(e) for e in lines]
        times["history"].append(time.perf_counter() - t)
        assert len(entries) >= per
        reader = FaustTableStore({}, read=read)
        t = time.perf_counter()
        reader.get(fid)
        times["state"].append(time.perf_counter() - t)
db.close()
shutil.rmtree(tmp)
print(json.dumps({
    "records": records / features, "sent": sent / features, "held": held / features,
    "disk": disk / features, "encode_us": encode / len(raw) * 1e6,
    "history_us": statistics.median(times["history"]) * 1e6,
    "state_us": statistics.median(times["state"]) * 1e6,
}))
"""


def turn(tree: Path, features: int, per: int, batch: int, reads: int) -> dict[str, float]:
    """One tree's figures, measured in a fresh process with that tree first on the path."""
    args = [str(tree), str(features), str(per), str(batch), str(reads)]
    out = subprocess.run(
        [sys.executable, "-c", _TURN, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=10_000)
    parser.add_argument("--per-feature", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", type=Path)
    args = parser.parse_args()
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    for _ in range(args.rounds):  # by turns: the machine is noisy
        for name, tree in trees:
            runs[name].append(turn(tree, args.features, args.per_feature, args.batch, args.reads))
    print(
        f"{args.features:,} features, {args.per_feature} events each, a write every "
        f"{args.batch} records; per feature (time: best of {args.rounds} rounds by turns)"
    )
    rows = [
        ("changelog records", "records", "{:,.1f}"),
        ("changelog bytes (keys and values)", "sent", "{:,.0f}"),
        ("table values held at the end", "held", "{:,.0f}"),
        ("RocksDB on disk (compacted)", "disk", "{:,.0f}"),
        ("store's encoding, µs per event", "encode_us", "{:,.2f}"),
        ("read a whole history, µs (median)", "history_us", "{:,.1f}"),
        ("read a state alone, µs (median)", "state_us", "{:,.1f}"),
    ]
    timed = {"encode_us", "history_us", "state_us"}
    for label, key, fmt in rows:
        values = {n: [r[key] for r in runs[n]] for n in runs}
        best = {n: min(v) if key in timed else v[0] for n, v in values.items()}
        line = f"  {label:38} {fmt.format(best['this tree']):>10}"
        if "baseline" in best:
            ratio = best["this tree"] / best["baseline"]
            line += f"   baseline {fmt.format(best['baseline']):>10}   ratio {ratio:.2f}"
            if key in timed:
                line += "   rounds " + ", ".join(
                    f"{a:.1f}/{b:.1f}"
                    for a, b in zip(values["this tree"], values["baseline"], strict=True)
                )
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
