"""The Faust internals the checkpoint relies on are there, in the shape it was written for.

This test fails loudly after a faust-streaming upgrade that changes them: read
``engine/streaming/checkpoint.py`` again against the new Faust before trusting a worker.
"""

from __future__ import annotations

from pathlib import Path

from engine.streaming.app import StreamingConfig, create_app
from engine.streaming.checkpoint import CONSUMER_ATTRIBUTES, Checkpoint, check_faust
from workflows.loader import Workflows


def test_the_installed_faust_has_what_the_checkpoint_relies_on() -> None:
    assert check_faust() == []


def test_a_live_consumer_has_the_attributes_and_takes_the_checkpoint(
    workflows: Workflows, tmp_path: Path
) -> None:
    lapp = create_app(StreamingConfig(store="memory://", data_dir=tmp_path), workflows)
    consumer = lapp.app.consumer
    assert [name for name in CONSUMER_ATTRIBUTES if not hasattr(consumer, name)] == []
    checkpoint = Checkpoint("lifecycle.events")
    checkpoint.install(consumer)
    checkpoint.done(3, 41)
    from faust.types import TP

    assert consumer._new_offset(TP("lifecycle.events", 3)) == 42
    assert consumer._new_offset(TP("lifecycle.events", 4)) is None


def test_resuming_the_flow_keeps_the_changelog_records_queued_and_a_revocation_drops_them(
    workflows: Workflows, tmp_path: Path
) -> None:
    """Faust's recovery resumes the flow after its standby partitions began fetching; a
    resume that cleared the changelog queue dropped standby records the consumer had moved
    past, and the standby then took later records: its RocksDB missed the dropped ones for
    good (the lost chunks of table format 3 in ``test_faults.py``'s rolling restart)."""
    lapp = create_app(StreamingConfig(store="memory://", data_dir=tmp_path), workflows)
    app = lapp.app
    changelog = app.tables.changelog_queue
    other = app.FlowControlQueue(
        maxsize=10, clear_on_resume=True
    )  # a stream's queue: still cleared
    changelog.put_nowait("standby record at offset 37")
    other.put_nowait("event")
    app.flow_control.suspend()
    app.flow_control.resume()
    assert changelog.qsize() == 1
    assert other.qsize() == 0
    assert app.flow_control.is_active()
    app.flow_control.clear()  # a revocation, whose recovery then seeks the partitions again
    assert changelog.qsize() == 0
