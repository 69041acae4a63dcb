"""The records of a worker group's workflow versions topic, and the refusals they lead to."""

from __future__ import annotations

from engine.evolve.apply import version_problems
from engine.streaming.versions import parse_record, version_record, versions_topic
from workflows.model import Workflow


def test_a_recorded_version_reads_back_and_refuses_a_changed_file(
    feature_workflow: Workflow,
) -> None:
    key, value = version_record(feature_workflow)
    assert key == f"feature:{feature_workflow.version}".encode()
    recorded = parse_record(value)
    assert recorded is not None
    assert recorded.fingerprint == feature_workflow.fingerprint
    runs = {(recorded.name, recorded.version): recorded}
    assert version_problems([feature_workflow], runs, "the worker group 'g'") == []
    changed = recorded._replace(fingerprint="0" * 64)
    (problem,) = version_problems(
        [feature_workflow], {(changed.name, changed.version): changed}, "the worker group 'g'"
    )
    assert "changed but is still version" in problem and "the worker group 'g'" in problem


def test_what_is_not_a_version_record_is_skipped() -> None:
    assert parse_record(None) is None
    assert parse_record(b"") is None
    assert parse_record(b"not json") is None
    assert parse_record(b'{"name": "feature"}') is None
    assert versions_topic("lifecycle") == "lifecycle-workflow-versions"


def test_a_stage_dropped_without_migrate_is_found_against_the_version_the_group_ran(
    feature_workflow: Workflow,
) -> None:
    from engine.evolve.apply import dropped_unmapped
    from engine.streaming.versions import parse_record
    from workflows.loader import compile_definition

    doc = dict(feature_workflow.definition)
    doc["version"] = 2
    doc["stages"] = [s for s in doc["stages"] if s["name"] != "design"]
    doc["transitions"] = [t for t in doc["transitions"] if t["event"] != "design.started"]
    doc["transitions"] = [
        {**t, "from": ["prioritized"]} if t["event"] == "build.started" else t
        for t in doc["transitions"]
    ]
    doc["updates"] = [*doc["updates"], "design.started"]
    v2 = compile_definition(doc, "v2")
    recorded = parse_record(version_record(feature_workflow)[1])
    assert recorded is not None
    runs = {("feature", 1): recorded}
    assert dropped_unmapped([v2], runs) == {"feature": (1, ("design",))}
    mapped = compile_definition({**doc, "migrate": {"design": "prioritized"}}, "v2")
    assert dropped_unmapped([mapped], runs) == {}
    # A version the group recorded was judged then; none recorded before: nothing to say.
    assert dropped_unmapped([v2], {**runs, ("feature", 2): recorded._replace(version=2)}) == {}
    assert dropped_unmapped([v2], {}) == {}
