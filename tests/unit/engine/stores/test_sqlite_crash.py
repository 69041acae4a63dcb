"""A writer killed with SIGKILL mid-stream leaves whole events only, and loses none.

The child process applies :mod:`tests.unit.engine.stores.crash_stream` through the Engine and
a SQLite file; once it reports it is past ``REPORT_AFTER`` events it is killed without warning.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from engine.core.processor import process
from engine.core.state import FeatureState, HistoryEntry
from engine.service import Engine
from engine.stores.memory import MemoryStore
from engine.stores.sqlite import SqliteStore
from events.envelope import Event
from tests.unit.engine.stores.contract import visible
from tests.unit.engine.stores.crash_stream import received_at, stream
from workflows.loader import Workflows, load_folder

REPORT_AFTER = 1000
ROOT = Path(__file__).resolve().parents[4]


def kill_mid_stream(db: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.engine.stores.crash_stream", str(db), str(REPORT_AFTER)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip() == f"past {REPORT_AFTER}", child.stderr.read() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read() if child.stdout else ""
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "done" not in rest, "the writer finished before it was killed: make the stream longer"


def replay(
    workflows: Workflows, events: list[tuple[int, Event]]
) -> tuple[FeatureState | None, list[HistoryEntry]]:
    state: FeatureState | None = None
    history: list[HistoryEntry] = []
    for index, event in events:
        outcome = process(workflows, state, event, received_at(index))
        history += outcome.entries
        state = outcome.state
    return state, history


def test_sigkill_leaves_whole_events_and_a_rerun_loses_nothing(tmp_path: Path) -> None:
    workflows = Workflows(load_folder())
    events = stream()
    db = tmp_path / "crash.db"
    kill_mid_stream(db)

    by_feature: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    for index, event in enumerate(events):
        by_feature[event.feature].append((index, event))

    store = SqliteStore(db)
    try:
        # Every stored feature is exactly its first k events: state and history agree.
        cut = 0
        kept: dict[str, int] = {}
        for feature in store.features():
            stored_history = store.history(feature.id)
            mine = by_feature[feature.id]
            history: list[HistoryEntry] = []
            state: FeatureState | None = None
            k = 0
            while len(history) < len(stored_history) and k < len(mine):
                index, event = mine[k]
                outcome = process(workflows, state, event, received_at(index))
                history += outcome.entries
                state = outcome.state
                k += 1
            assert history == stored_history, f"{feature.id}: history is not a prefix"
            assert visible(state) == visible(feature), f"{feature.id}: not its first {k} events"
            kept[feature.id] = k
            cut = max(cut, mine[k - 1][0] + 1)
        applied = sum(kept.values())
        assert REPORT_AFTER <= applied < len(events)
        # The events kept are one prefix of the stream: nothing after a lost event survived.
        assert cut == applied
        for fid, mine in by_feature.items():
            assert kept.get(fid, 0) == sum(1 for index, _ in mine if index < cut)

        # Sending the whole stream again ends where a clean run ends: none lost or doubled.
        engine = Engine(workflows, store)
        for index, event in enumerate(events):
            engine.apply(event, received_at(index))
        clean = MemoryStore()
        clean_engine = Engine(workflows, clean)
        outcomes = [clean_engine.apply(e, received_at(i)).outcome for i, e in enumerate(events)]
        assert "rejected" not in outcomes  # what makes a full resend equal a clean run
        assert len(store) == len(clean) == len(by_feature)
        for final in clean.features():
            assert visible(store.get(final.id)) == visible(final), final.id
    finally:
        store.close()
