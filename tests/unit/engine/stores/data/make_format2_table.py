"""Write ``format2_table.json``: a Faust table as the worker of 91d68a3 wrote it (issue 16).

Run with that commit's tree first on the path, so the records are its encoder's bytes::

    git archive 91d68a3 | tar -x -C /tmp/base
    PYTHONPATH=/tmp/base python tests/unit/engine/stores/data/make_format2_table.py

The file holds every table key and value (base64) and, per feature, what that worker read
back: state (``to_dict``), history lines and offset. ``test_table_formats.py`` checks that
the current store reads the same and rewrites the records in its own format.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from engine.core.processor import process
from engine.stores.faust_table import FaustTableStore
from tests.factories import make_event
from tests.unit.engine.stores.contract import RECEIVED, WORKFLOWS
from tests.unit.engine.stores.test_faust_table import FIRST_FORMAT


def _apply(store: FaustTableStore, events: list, first: int) -> None:
    for n, event in enumerate(events, first):
        outcome = process(WORKFLOWS, store.get(event.feature), event, RECEIVED)
        if outcome.outcome != "ignored":
            store.commit_at(outcome, n)
        store.flush()  # one table write per event, as a batch of one


def main() -> None:
    table: dict[str, bytes] = {"first": FIRST_FORMAT.replace(b'"f1"', b'"first"')}
    store = FaustTableStore(table)
    _apply(
        store,
        [
            make_event("idea.submitted", "short", at=0, id="s1", title="short"),
            make_event("discovery.started", "short", at=1, id="s2"),
            make_event("build.started", "short", at=2, id="s3"),
        ],
        10,
    )
    rich = [
        make_event("idea.submitted", "rich", at=0, id="r1", title="T\u00e9", product="web"),
        make_event("requirement.approved", "rich", at=1, id="r2", acceptance_criteria=["a"]),
        make_event("feature.prioritized", "rich", at=2, id="r3", priority=1.5),
        make_event("launch.scheduled", "rich", at=2, id="r4", target_launch="2024-09-01"),
        make_event("risk.raised", "rich", at=3, id="r5", risk_id="k", severity="high"),
        make_event("build.shipped", "rich", at=3, id="r6"),
        make_event("uat.failed", "rich", at=4, id="r7", reason="bug"),
        make_event("feature.blocked", "rich", at=4, id="r8", reason="waiting"),
        make_event("build.shipped", "rich", at=5, id="r9"),
        make_event("feedback.received", "rich", at=5, id="r10", sentiment="positive"),
        make_event("uat.passed", "rich", at=6, id="r11"),
    ]
    _apply(store, rich, 100)
    long = [make_event("idea.submitted", "long", at=0, id="l0", title="long")]
    long += [
        make_event("kpi.reported", "long", at=n, id=f"l{n}", name="adoption", value=n / 4)
        for n in range(1, 40)
    ]
    _apply(store, long, 200)
    parted = FaustTableStore(table, part_size=1024)
    _apply(
        parted,
        [
            make_event("kpi.reported", "parted", at=n, id="p" * 200 + str(n), name="a", value=n)
            for n in range(12)
        ],
        300,
    )
    reader = FaustTableStore(table)
    expected = {}
    for fid in ("first", "short", "rich", "long", "parted"):
        state = reader.get(fid)
        assert state is not None
        expected[fid] = {
            "state": state.to_dict(),
            "history": reader.raw_history(fid),
            "offset": reader.position(fid),
        }
    assert table["parted"].startswith(b'{"parts":') and table["long"].startswith(b'{"v":2,')
    out = {
        "written_by": "91d68a3",
        "table": {k: base64.b64encode(v).decode() for k, v in sorted(table.items())},
        "expected": expected,
    }
    path = Path(__file__).with_name("format2_table.json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
