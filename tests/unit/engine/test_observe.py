"""The metrics a scrape shows after events are applied: counted incrementally, never recounted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from engine.observe import Recorder
from engine.service import Engine
from engine.stores.memory import MemoryStore
from metrics.bundle import LifecycleMetrics
from tests.factories import T0, make_event
from workflows.loader import Workflows, load_folder

WF = Workflows(load_folder())
RECEIVED = datetime(2024, 6, 1, tzinfo=UTC)
HOUR = 3600.0


def engine() -> tuple[Engine, CollectorRegistry]:
    registry = CollectorRegistry()
    recorder = Recorder(LifecycleMetrics(registry), WF.event_types)
    return Engine(WF, MemoryStore(), recorder), registry


def apply(eng: Engine, *events: object) -> None:
    for event in events:
        eng.apply(event, RECEIVED)  # type: ignore[arg-type]


def features(registry: CollectorRegistry, stage: str, product: str = "none") -> float | None:
    labels = {"workflow": "feature", "stage": stage, "product": product}
    return registry.get_sample_value("lifecycle_features", labels)


def oldest(registry: CollectorRegistry, stage: str) -> float | None:
    return registry.get_sample_value(
        "lifecycle_stage_oldest_entry_timestamp_seconds", {"workflow": "feature", "stage": stage}
    )


def transitions(registry: CollectorRegistry, src: str, dest: str) -> float | None:
    labels = {"workflow": "feature", "from_stage": src, "to_stage": dest}
    return registry.get_sample_value("lifecycle_transitions_total", labels)


def test_feature_gauges_follow_stage_and_product() -> None:
    eng, reg = engine()
    apply(
        eng,
        make_event("idea.submitted", "a", product="pay"),
        make_event("idea.submitted", "b", product="pay"),
        make_event("discovery.started", "a", at=1),
    )
    assert features(reg, "idea", "pay") == 1
    assert features(reg, "discovery", "pay") == 1
    apply(eng, make_event("idea.submitted", "b", product="search", at=2))  # product changes
    assert features(reg, "idea", "pay") == 0
    assert features(reg, "idea", "search") == 1


def test_transitions_durations_lead_time_and_rework() -> None:
    eng, reg = engine()
    apply(
        eng,
        make_event("build.started", "a", at=0),  # created implicitly at idea, then moved
        make_event("build.shipped", "a", at=2),
        make_event("uat.failed", "a", at=5),
        make_event("build.shipped", "a", at=6),
        make_event("uat.passed", "a", at=7),
        make_event("feature.launched", "a", at=8),
    )
    assert transitions(reg, "idea", "development") == 1
    assert transitions(reg, "development", "uat") == 2
    assert transitions(reg, "uat", "development") == 1
    rework = {"workflow": "feature", "stage": "development"}
    assert reg.get_sample_value("lifecycle_rework_total", rework) == 1
    uat = {"workflow": "feature", "stage": "uat"}
    assert reg.get_sample_value("lifecycle_stage_duration_seconds_count", uat) == 2
    assert reg.get_sample_value("lifecycle_stage_duration_seconds_sum", uat) == 4 * HOUR
    lead = {"workflow": "feature"}
    assert reg.get_sample_value("lifecycle_lead_time_seconds_sum", lead) == 8 * HOUR
    assert features(reg, "launched") == 1
    assert features(reg, "development") == 0
    assert not features(reg, "idea")  # created and moved on by one event: never counted there


def test_duplicates_and_rejections_change_no_gauge() -> None:
    eng, reg = engine()
    first = make_event("discovery.started", "a", at=1)
    apply(eng, make_event("idea.submitted", "a"), first, first, make_event("feature.launched", "a"))
    assert features(reg, "discovery") == 1
    assert transitions(reg, "idea", "discovery") == 1
    dup = {"type": "discovery.started", "outcome": "duplicate"}
    assert reg.get_sample_value("lifecycle_events_total", dup) == 1
    rejected = {"type": "feature.launched", "outcome": "rejected"}
    assert reg.get_sample_value("lifecycle_events_total", rejected) == 1


def test_oldest_entry_moves_on_when_the_oldest_feature_leaves() -> None:
    eng, reg = engine()
    apply(
        eng,
        make_event("idea.submitted", "a", at=0),
        make_event("idea.submitted", "b", at=3),
        make_event("idea.submitted", "c", at=1),
    )
    assert oldest(reg, "idea") == T0.timestamp()
    apply(eng, make_event("discovery.started", "a", at=4))
    assert oldest(reg, "idea") == T0.timestamp() + 1 * HOUR  # c, not b: the smallest left
    assert oldest(reg, "discovery") == T0.timestamp() + 4 * HOUR
    apply(eng, make_event("discovery.started", "c", at=5))
    apply(eng, make_event("discovery.started", "b", at=6))
    assert oldest(reg, "idea") is None  # an empty stage shows no sample
    assert oldest(reg, "discovery") == T0.timestamp() + 4 * HOUR


def test_restart_restores_the_gauges_from_the_store() -> None:
    eng, _ = engine()
    apply(
        eng,
        make_event("idea.submitted", "a", product="pay"),
        make_event("discovery.started", "b", at=2),
    )
    registry = CollectorRegistry()
    Recorder(LifecycleMetrics(registry), WF.event_types).restore(eng.store.features())
    assert features(registry, "idea", "pay") == 1
    assert features(registry, "discovery") == 1
    assert oldest(registry, "discovery") == T0.timestamp() + 2 * HOUR


def test_a_failure_after_the_commit_keeps_the_event_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    eng, reg = engine()

    def broken(*_: object) -> None:
        raise RuntimeError("risk monitor down")

    eng.on_outcome = broken
    outcome = eng.apply(make_event("idea.submitted", "a", product="pay"), RECEIVED)
    assert outcome.outcome == "applied"
    stored = eng.store.get("a")
    assert stored is not None and stored.product == "pay"
    assert "risk monitor down" in caplog.text
    applied = {"type": "idea.submitted", "outcome": "applied"}
    assert reg.get_sample_value("lifecycle_events_total", applied) == 1


def test_the_product_label_is_bounded_in_number_and_length() -> None:
    from prometheus_client import generate_latest

    metrics = LifecycleMetrics(CollectorRegistry())
    workflows = Workflows(load_folder())
    recorder = Recorder(metrics, known_types=workflows.event_types, max_products=10)
    eng = Engine(workflows, MemoryStore(), recorder)
    for i in range(2000):
        product = f"{i:04d}" + "p" * 996  # 2,000 distinct 1,000-character products
        event = make_event("idea.submitted", f"f{i}", product=product)
        eng.apply(event, event.time)
    values = {s.labels["product"] for f in metrics.registry.collect() for s in f.samples
              if s.name == "lifecycle_features"}  # fmt: skip
    assert len(values) == 11 and "other" in values
    assert max(len(v) for v in values) <= 64
    assert metrics.registry.get_sample_value("lifecycle_products_folded_total") == 1990
    assert len(generate_latest(metrics.registry)) < 30_000


def test_the_oldest_entry_shares_each_feature_s_time_and_scrapes_the_same_unix_time() -> None:
    """The gauge holds the state's own entry time (no float of 24 bytes per feature, issue
    16) and shows the Unix time of the earliest, to the microsecond, whatever the offset."""
    eng, reg = engine()
    late = datetime(2024, 1, 1, 12, 0, 0, 123457, tzinfo=UTC)
    early = datetime.fromisoformat("2024-01-01T13:00:00.123456+02:00")  # 11:00:00.123456Z
    apply(
        eng, make_event("idea.submitted", "a", at=late), make_event("idea.submitted", "b", at=early)
    )
    state = eng.store.get("b")
    assert state is not None
    members = eng.recorder.m.stage_oldest_entry.members[("feature", "idea")]
    assert members["b"] is state.entered_stage_at
    assert oldest(reg, "idea") == early.timestamp() == min(late.timestamp(), early.timestamp())
    apply(eng, make_event("discovery.started", "b", at=early + (late - early) * 2))
    assert oldest(reg, "idea") == late.timestamp()
