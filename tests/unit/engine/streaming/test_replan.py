"""Merging the workers' replays of their partitions for a plan's replay column, and what the
plan says when some partitions were cut short."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.core.state import FeatureState
from engine.evolve.migration import make_plan
from engine.streaming.replan import LogReplay
from workflows.loader import Workflows
from workflows.model import Workflow


def test_the_answers_of_two_workers_merge_into_the_group_replay() -> None:
    here = LogReplay({"A": "idea"}, {0, 1}, {}, 10)
    there = LogReplay({"B": "development"}, {2}, {3: "not read to its end within 60 s"}, 7)
    merged = LogReplay()
    for answer in (here, there):
        merged.merge(LogReplay.from_dict(answer.to_dict()))  # over the wire
    assert merged.stages == {"A": "idea", "B": "development"}
    assert merged.done == {0, 1, 2} and merged.events == 17
    assert merged.note(4) == (
        "replay cut short, its features show no replayed stage: "
        "partition 3: not read to its end within 60 s"
    )
    assert merged.note(6) is not None and "partitions 4, 5: no worker replayed it" in str(
        merged.note(6)
    )


def test_a_partition_one_worker_read_to_its_end_is_not_cut() -> None:
    merged = LogReplay(cut={1: "the worker at http://w2 could not replay it"})
    merged.merge(LogReplay({"A": "idea"}, {0, 1}, {}, 3))
    assert merged.cut == {} and merged.note(2) is None


def test_the_plan_names_what_the_replay_did_not_cover(feature_workflow: Workflow) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    states = [FeatureState(fid, "feature", "idea", now, now) for fid in ("A", "B")]
    note = "replay cut short, its features show no replayed stage: partition 3: slow"
    plan = make_plan(
        feature_workflow,
        Workflows({"feature": feature_workflow}),
        states,
        now,
        {"A": "defined"},
        note,
    )
    doc = plan.to_dict()
    assert doc["replayed"] and doc["replay_incomplete"] == note
    assert [c["feature"] for c in doc["changes"]] == ["A"]  # B: no replayed stage shown
    assert f"  ({note})" in plan.summary()
