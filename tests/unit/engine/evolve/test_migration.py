"""The pure migration rules: a feature only ever moves to a newer version of its workflow,
and one that already runs under a newer version than the file is named for the refusal."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml

from engine.core.processor import UPDATED, Outcome
from engine.core.state import FeatureState
from engine.evolve.migration import migrated, needs_migration, newer_message, newer_versions
from engine.service import Engine
from engine.stores.memory import MemoryStore
from workflows.loader import Workflows, builtin_folder, compile_definition

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def at_version(version: int) -> Workflows:
    doc = yaml.safe_load((builtin_folder() / "feature.yaml").read_text())
    doc["version"] = version
    return Workflows({"feature": compile_definition(doc, f"v{version}.yaml")}, "feature")


def feature(fid: str, version: int) -> FeatureState:
    return FeatureState(fid, "feature", "design", NOW, NOW, workflow_version=version)


def test_a_feature_under_a_newer_version_is_never_moved_back() -> None:
    v1 = at_version(1).by_name["feature"]
    newer = feature("F1", 2)
    assert not needs_migration(newer, v1)
    assert migrated(newer, v1, NOW) is None
    store = MemoryStore()
    store.commit(Outcome(UPDATED, "F1", "feature", newer, None))
    assert Engine(at_version(1), store).migrate("F1", NOW) is None
    assert store.get("F1") == newer


def test_features_under_a_newer_version_are_counted_for_the_refusal() -> None:
    v1 = at_version(1).by_name["feature"]
    states = [feature("F1", 2), feature("F2", 2), feature("F3", 3), feature("F4", 1)]
    assert newer_versions(v1, states) == {2: 2, 3: 1}
    line = newer_message(v1, {2: 2, 3: 1})
    assert "\n" not in line
    assert "is version 1, but 2 features run under version 2, 1 feature runs under version 3" in (
        line
    )
