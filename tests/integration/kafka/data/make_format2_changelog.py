"""Write ``format2_changelog.json``: the events and the table changelog of a worker of
91d68a3 (table format 2), for ``test_table_upgrade.py`` (issue 16).

Needs a broker (``KAFKA_BOOTSTRAP``) and that commit's tree::

    git archive 91d68a3 | tar -x -C /tmp/base
    cd /tmp/base && KAFKA_BOOTSTRAP=127.0.0.1:9092 PYTHONPATH=$OLDPWD \
        python $OLDPWD/tests/integration/kafka/data/make_format2_changelog.py /tmp/base

(from that tree's folder: the worker, ``python -m``, imports from its working directory).

Runs the earlier worker over :func:`upgrade_events` on fresh topics, stops it cleanly once
it has committed every record, and keeps each changelog key's last record (what compaction
keeps) with its partition.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic

from tests.integration.kafka.conftest import (
    PARTITIONS,
    Topics,
    Worker,
    consume_all,
    produce,
    structured,
    wait_for,
)
from tests.integration.kafka.faults import committed_offsets, group_id
from tests.integration.kafka.workload import cloud_event, lifecycles

HERE = Path(__file__).parent


def upgrade_events() -> list[dict[str, Any]]:
    """Ten lifecycles and a feature with 40 KPI reports (a long history)."""
    events = lifecycles(10, seed=5, prefix="U")
    events.append(cloud_event("ULONG", 0, "idea.submitted", {"title": "long"}))
    events += [
        cloud_event("ULONG", n, "kpi.reported", {"name": "adoption", "value": n / 8})
        for n in range(1, 41)
    ]
    return events


def main(base: str) -> None:
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]
    name = f"test.upgrade.{uuid.uuid4().hex[:8]}"
    topics = Topics(f"{name}.events", f"{name}.transitions", f"{name}.dlq")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        [NewTopic(t, PARTITIONS, 1) for t in (topics.events, topics.transitions, topics.dlq)]
    )
    events = upgrade_events()
    produce(bootstrap, topics.events, (structured(e) for e in events))
    data = Path(tempfile.mkdtemp(prefix="format2-"))
    worker = Worker(bootstrap, topics, data / "old", extra_env={"PYTHONPATH": base}).start()
    try:
        worker.wait_ready()
        wait_for(lambda: worker.processed() >= len(events), 120, "every event applied", worker)
        group = group_id(topics.events)
        wait_for(
            lambda: sum(committed_offsets(bootstrap, group, topics.events).values()) >= len(events),
            60,
            "every offset committed",
            worker,
        )
    finally:
        worker.stop()
    changelog = f"{group}-features-changelog"
    last: dict[str, tuple[int, str | None]] = {}
    for record in consume_all(bootstrap, changelog, timeout=3.0):
        value = None if record.value is None else record.value.decode()
        last[record.key.decode()] = (record.partition, value)  # the key as JSON, as Faust's
    assert all(v is None or v.startswith('{"v":2,') for _, v in last.values())
    out = {
        "written_by": "91d68a3",
        "events": events,
        "changelog": [
            {"partition": p, "key": k, "value": v}
            for k, (p, v) in sorted(last.items())
            if v is not None
        ],
    }
    (HERE / "format2_changelog.json").write_text(json.dumps(out, indent=0) + "\n")
    admin.delete_topics([t for t in admin.list_topics() if name in t])
    admin.close()


if __name__ == "__main__":
    main(sys.argv[1])
