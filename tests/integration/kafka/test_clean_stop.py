"""A clean stop (SIGTERM) of a worker commits what it applied, in both processing guarantees.

The worker is stopped the moment it has applied the last record, long before its next
commit: the stop itself must make the open work durable (table changelog, stage changes,
offsets) with no error in its log, and quickly. A worker taking over with an empty data dir
then restores every feature from the changelog and has nothing left to apply.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from engine.streaming.worker import default_app_id
from tests.integration.kafka.conftest import (
    Topics,
    consume_all,
    expected_outcome,
    produce,
    structured,
    wait_for,
)
from tests.integration.kafka.faults import (
    assert_each_stage_change_once,
    committed_offsets,
    group_id,
    settle,
)
from tests.integration.kafka.test_changing_workflows import (
    migrations,
    to_design,
    v1_folder,
    version_2,
)
from tests.integration.kafka.test_faults import targets
from tests.integration.kafka.workload import lifecycles
from workflows.loader import Workflows

pytestmark = pytest.mark.integration

STOP_SECONDS = 10.0
"""A clean stop takes about a second; this leaves room for a loaded machine."""


def stop_log(worker: Any) -> list[str]:
    """The worker's log lines from the signal on, without Faust's tables."""
    lines = worker.log_path.read_text(errors="replace").splitlines()
    start = next((i for i, ln in enumerate(lines) if "Signal received" in ln), 0)
    return [ln for ln in lines[start:] if not ln.startswith(("|", "+", "\u3003"))]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_clean_stop_right_after_the_last_record_commits_everything_it_applied(
    make_worker: Any,
    topics: Topics,
    kafka_bootstrap: str,
    workflows: Workflows,
    guarantee: str,
) -> None:
    events = lifecycles(150, seed=71)
    expected = expected_outcome(workflows, events)
    produce(kafka_bootstrap, topics.events, (structured(e) for e in events))
    env = {"LIFECYCLE_PROCESSING_GUARANTEE": guarantee}
    worker = make_worker("first", **env)
    worker.wait_ready()
    deadline = time.monotonic() + 90
    while worker.processed() < len(events):  # polled closely: stop at the last record
        worker.check_alive()
        assert time.monotonic() < deadline, f"not all applied in 90 s\n{worker.tail()}"
        time.sleep(0.02)
    began = time.monotonic()
    worker.stop(timeout=60)
    took = time.monotonic() - began
    assert worker.proc is not None

    lines = stop_log(worker)
    errors = [ln for ln in lines if "[ERROR]" in ln or "[CRITICAL]" in ln or "Traceback" in ln]
    assert not errors, "the stop logged errors:\n" + "\n".join(lines[:60])
    assert worker.proc.returncode == 0, "\n".join(lines[-30:])
    assert took < STOP_SECONDS, f"the stop took {took:.1f} s"

    # Everything applied was committed by the stop: offsets, stage changes, the changelog.
    want = targets(kafka_bootstrap, topics.events)
    got = committed_offsets(kafka_bootstrap, group_id(topics.events), topics.events)
    assert got == want, f"committed {got}, applied {want}"
    assert_each_stage_change_once(kafka_bootstrap, topics.transitions, expected)

    # A worker with an empty data dir restores every feature and applies nothing again.
    successor = make_worker("next", **env)
    successor.wait_ready()
    verdict = settle([successor], expected, timeout=60)
    assert verdict.clean, str(verdict)
    assert successor.processed() == 0, "records applied again after a clean stop"


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_clean_stop_commits_the_writes_no_record_caused(
    make_worker: Any, topics: Topics, kafka_bootstrap: str, tmp_path: Path, guarantee: str
) -> None:
    """A worker started with a new workflow version migrates its restored features with no
    record arriving: no input offset moves, so under exactly-once Faust's last commit left
    their transactions open, and the stop aborted the migration."""
    folder = v1_folder(tmp_path)
    env = {"LIFECYCLE_WORKFLOWS": str(folder), "LIFECYCLE_PROCESSING_GUARANTEE": guarantee}
    names = [f"M-{i}" for i in range(8)]
    records = [e for fid in names for e in to_design(fid)]
    produce(kafka_bootstrap, topics.events, (structured(e) for e in records))
    worker = make_worker("w", **env)
    worker.wait_ready()
    wait_for(lambda: worker.processed() >= len(records), 90, "v1 applied", worker)
    worker.stop()
    assert committed_offsets(kafka_bootstrap, group_id(topics.events), topics.events) == targets(
        kafka_bootstrap, topics.events
    )

    shutil.copy(version_2(tmp_path / "staged"), folder / "feature.yaml")
    worker = make_worker("w", port=worker.port, **env)
    worker.wait_ready()
    wait_for(lambda: all(len(migrations(worker, f)) == 1 for f in names), 60, "migrated", worker)
    worker.stop()
    lines = stop_log(worker)
    errors = [ln for ln in lines if "[ERROR]" in ln or "[CRITICAL]" in ln or "Traceback" in ln]
    assert not errors, "the stop logged errors:\n" + "\n".join(lines[:60])

    changelog = f"{default_app_id(topics.events)}-features-changelog"
    last = {}
    for record in consume_all(kafka_bootstrap, changelog, 3, committed=True):
        last[json.loads(record.key)] = json.loads(record.value)
    assert sorted(last) == sorted(names)
    versions = {fid: r["state"]["workflow_version"] for fid, r in last.items()}
    assert versions == dict.fromkeys(names, 2), "the migration was not committed"
