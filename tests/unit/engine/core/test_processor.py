"""The processing rules of DESIGN.md section 4, one by one, on the default workflow."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta

import pytest

from engine.core.outcomes import OutcomeKind
from engine.core.processor import Outcome, process
from engine.core.state import FeatureState
from events.envelope import Event
from tests.factories import T0, make_event
from workflows.loader import Workflows

RECEIVED = T0 + timedelta(days=365)


def run(
    workflows: Workflows, events: Iterable[Event], state: FeatureState | None = None
) -> tuple[FeatureState | None, list[Outcome]]:
    """Feed ``events`` in order, carrying the state as a store would; all outcomes."""
    outcomes = []
    for event in events:
        outcome = process(workflows, state, event, RECEIVED)
        outcomes.append(outcome)
        state = outcome.state
    return state, outcomes


def at_stage(workflows: Workflows, stage: str, feature: str = "feat-1") -> FeatureState:
    """A feature brought to ``stage`` along the happy path, every event dated hour 0..n."""
    path = {
        "idea": [],
        "discovery": ["discovery.started"],
        "defined": ["discovery.started", "requirement.approved"],
        "prioritized": ["requirement.approved", "feature.prioritized"],
        "design": ["requirement.approved", "feature.prioritized", "design.started"],
        "development": ["requirement.approved", "feature.prioritized", "build.started"],
        "uat": ["requirement.approved", "feature.prioritized", "build.started", "build.shipped"],
        "launch_ready": [
            "requirement.approved",
            "feature.prioritized",
            "build.started",
            "build.shipped",
            "uat.passed",
        ],
    }
    if stage == "launched":
        types = [*path["launch_ready"], "feature.launched"]
    elif stage == "cancelled":
        types = ["feature.cancelled"]
    else:
        types = path[stage]
    events = [make_event("idea.submitted", feature, at=0, title="T")]
    events += [make_event(t, feature, at=i) for i, t in enumerate(types, start=1)]
    state, outcomes = run(workflows, events)
    assert [o.outcome for o in outcomes] == ["applied"] * len(events)
    assert state is not None and state.stage == stage
    return state


# --- outcomes -------------------------------------------------------------------------------


def test_each_outcome_kind(workflows: Workflows) -> None:
    created = make_event("idea.submitted", title="Dark mode")
    state, outcomes = run(
        workflows,
        [
            created,
            make_event("discovery.started", at=1),  # applied
            make_event("feedback.received", at=2, sentiment="positive"),  # updated
            created,  # duplicate
            make_event("idea.submitted", at=3, source="other", id=created.id, title="x"),
            make_event("feature.launched", at=4),  # rejected: gate
        ],
    )
    assert [o.outcome for o in outcomes] == [
        "applied",
        "applied",
        "updated",
        "duplicate",
        "updated",
        "rejected",
    ]
    assert outcomes[-1].reason == "gate:uat"
    unknown = make_event("deploy.finished")  # shares the topic, not in the workflow
    ignored = process(workflows, state, unknown, RECEIVED)
    assert ignored.outcome == "ignored"
    assert ignored.state is state and ignored.entries == ()
    nobody = process(workflows, None, unknown, RECEIVED)
    assert nobody.outcome == "ignored" and nobody.state is None


# --- rule 2: idempotency ----------------------------------------------------------------------


def test_same_source_and_id_is_a_duplicate_and_changes_nothing(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "idea")
    moved = make_event("discovery.started", id="d-1", at=5)
    state, (first, again) = run(workflows, [moved, moved], state)
    assert first.outcome == "applied" and again.outcome == "duplicate"
    assert again.state is first.state
    assert not again.changed
    assert [e.outcome for e in again.entries] == ["duplicate"]


def test_same_id_from_another_source_is_a_new_event(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "idea")
    a = make_event("feedback.received", id="fb-1", source="survey", sentiment="positive")
    b = make_event("feedback.received", id="fb-1", source="zendesk", sentiment="positive")
    state, outcomes = run(workflows, [a, b], state)
    assert [o.outcome for o in outcomes] == ["updated", "updated"]
    assert state is not None and state.feedback == {"positive": 2}


def test_duplicate_of_an_updated_event(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "idea")
    fb = make_event("feedback.received", sentiment="negative")
    state, outcomes = run(workflows, [fb, fb, fb], state)
    assert [o.outcome for o in outcomes] == ["updated", "duplicate", "duplicate"]
    assert state is not None and state.feedback == {"negative": 1}


def test_rejected_event_sent_again_is_judged_again_and_may_apply(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "launch_ready")
    risk = make_event("risk.raised", risk_id="r1", severity="critical")
    launch = make_event("feature.launched", id="launch-1", at=10)
    mitigate = make_event("risk.mitigated", risk_id="r1", at=11)
    state, outcomes = run(workflows, [risk, launch, launch, mitigate, launch], state)
    assert [o.outcome for o in outcomes] == [
        "updated",
        "rejected",
        "rejected",
        "updated",
        "applied",
    ]
    assert state is not None and state.stage == "launched"
    again = process(workflows, state, launch, RECEIVED)
    assert again.outcome == "duplicate"


# --- rule 3: unknown feature ------------------------------------------------------------------


def test_idea_submitted_creates_the_feature(workflows: Workflows) -> None:
    event = make_event("idea.submitted", at=2, title="Export", product="web", owner="ana")
    outcome = process(workflows, None, event, RECEIVED)
    assert outcome.outcome == "applied"
    state = outcome.state
    assert state is not None
    assert (state.stage, state.title, state.product, state.owner) == (
        "idea",
        "Export",
        "web",
        "ana",
    )
    assert state.created_at == state.entered_stage_at == event.time
    assert [(e.outcome, e.from_stage, e.to_stage) for e in outcome.entries] == [
        ("applied", None, "idea")
    ]


def test_other_event_creates_the_feature_implicitly_and_records_it(workflows: Workflows) -> None:
    outcome = process(workflows, None, make_event("discovery.started", at=3), RECEIVED)
    assert outcome.outcome == "applied"
    assert outcome.state is not None and outcome.state.stage == "discovery"
    created, moved = outcome.entries
    assert (created.outcome, created.from_stage, created.to_stage) == ("applied", None, "idea")
    assert created.reason == "created implicitly"
    assert (moved.outcome, moved.from_stage, moved.to_stage) == ("applied", "idea", "discovery")
    assert outcome.state.created_at == T0 + timedelta(hours=3)


def test_implicit_creation_then_rejection_keeps_the_created_feature(workflows: Workflows) -> None:
    outcome = process(workflows, None, make_event("feature.launched"), RECEIVED)
    assert outcome.outcome == "rejected" and outcome.reason == "gate:uat"
    assert outcome.state is not None and outcome.state.stage == "idea"
    assert outcome.changed  # a store must write the new feature
    assert [e.outcome for e in outcome.entries] == ["applied", "rejected"]
    assert outcome.entries[1].reason == "gate:uat"


def test_implicit_creation_then_effect_rejection_keeps_the_feature(workflows: Workflows) -> None:
    outcome = process(workflows, None, make_event("feature.unblocked"), RECEIVED)
    assert (outcome.outcome, outcome.reason) == ("rejected", "not_blocked")
    assert outcome.state is not None and outcome.state.stage == "idea"
    assert [e.outcome for e in outcome.entries] == ["applied", "rejected"]


def test_idea_submitted_on_existing_feature_updates_title_product_owner(
    workflows: Workflows,
) -> None:
    state = at_stage(workflows, "development")
    outcome = process(
        workflows,
        state,
        make_event("idea.submitted", at=20, title="New", product="mobile", owner="bo"),
        RECEIVED,
    )
    assert outcome.outcome == "updated"
    new = outcome.state
    assert new is not None
    assert (new.stage, new.title, new.product, new.owner) == ("development", "New", "mobile", "bo")
    assert new.entered_stage_at == state.entered_stage_at
    assert new.created_at == state.created_at


# --- rule 4: skip ahead, never back -----------------------------------------------------------


def test_skip_ahead_records_skipped_stages(workflows: Workflows) -> None:
    state = at_stage(workflows, "idea")
    outcome = process(workflows, state, make_event("build.started", at=5), RECEIVED)
    assert outcome.outcome == "applied"
    assert outcome.to_stage == "development"
    assert outcome.skipped == ("discovery", "defined", "prioritized", "design")
    assert outcome.entries[-1].skipped == ("discovery", "defined", "prioritized", "design")


@pytest.mark.parametrize(
    ("stage", "event_type"),
    [
        ("development", "requirement.approved"),
        ("design", "feature.prioritized"),
        ("uat", "build.started"),
        ("launched", "uat.passed"),
        ("development", "uat.failed"),  # listed back, but only from uat
        ("uat", "iteration.started"),  # listed back, but only from launched
        ("discovery", "discovery.started"),  # same stage, not listed
    ],
)
def test_never_back_except_listed(workflows: Workflows, stage: str, event_type: str) -> None:
    state = at_stage(workflows, stage)
    outcome = process(workflows, state, make_event(event_type, at=50), RECEIVED)
    assert (outcome.outcome, outcome.reason) == ("rejected", "invalid_transition")
    assert outcome.state is not None and outcome.state.stage == stage
    assert outcome.entries[-1].reason == "invalid_transition"


def test_uat_failed_moves_back_to_development(workflows: Workflows) -> None:
    state = at_stage(workflows, "uat")
    outcome = process(workflows, state, make_event("uat.failed", at=50), RECEIVED)
    assert outcome.outcome == "applied" and outcome.to_stage == "development"


def test_iteration_started_moves_back_to_development(workflows: Workflows) -> None:
    state = at_stage(workflows, "launched")
    outcome = process(workflows, state, make_event("iteration.started", at=50), RECEIVED)
    assert outcome.outcome == "applied" and outcome.to_stage == "development"


# --- rule 5: gates ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["idea", "prioritized", "development"])
def test_uat_gate_refuses_other_events_skipping_over_it(workflows: Workflows, stage: str) -> None:
    state = at_stage(workflows, stage)
    outcome = process(workflows, state, make_event("feature.launched", at=50), RECEIVED)
    assert (outcome.outcome, outcome.reason) == ("rejected", "gate:uat")
    assert outcome.state is not None and outcome.state.stage == stage


def test_the_event_that_leaves_the_gate_may_skip_over_it(workflows: Workflows) -> None:
    state = at_stage(workflows, "development")
    outcome = process(workflows, state, make_event("uat.passed", at=50), RECEIVED)
    assert outcome.outcome == "applied" and outcome.to_stage == "launch_ready"
    assert outcome.skipped == ("uat",)
    assert outcome.entries[-1].skipped == ("uat",)
    assert outcome.state is not None and "uat" in outcome.state.visited


def test_the_event_that_leaves_the_gate_skips_every_stage_before_it(workflows: Workflows) -> None:
    state = at_stage(workflows, "defined")
    outcome = process(workflows, state, make_event("uat.passed", at=50), RECEIVED)
    assert outcome.outcome == "applied" and outcome.to_stage == "launch_ready"
    assert outcome.skipped == ("prioritized", "design", "development", "uat")


def test_uat_gate_refuses_leaving_uat_by_another_event(workflows: Workflows) -> None:
    state = at_stage(workflows, "uat")
    outcome = process(workflows, state, make_event("feature.launched", at=50), RECEIVED)
    assert (outcome.outcome, outcome.reason) == ("rejected", "gate:uat")


def test_skipping_into_the_gate_is_fine(workflows: Workflows) -> None:
    state = at_stage(workflows, "prioritized")
    outcome = process(workflows, state, make_event("build.shipped", at=50), RECEIVED)
    assert outcome.outcome == "applied" and outcome.to_stage == "uat"
    assert outcome.skipped == ("design", "development")


# --- rule 6: guards ---------------------------------------------------------------------------


def test_open_critical_risk_blocks_launch_until_mitigated(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "launch_ready")
    state, outcomes = run(
        workflows,
        [
            make_event("risk.raised", at=10, risk_id="sec-1", severity="critical"),
            make_event("feature.launched", at=11),
            make_event("risk.mitigated", at=12, risk_id="sec-1"),
            make_event("feature.launched", at=13),
        ],
        state,
    )
    assert [(o.outcome, o.reason) for o in outcomes] == [
        ("updated", None),
        ("rejected", "guard:critical_risk"),
        ("updated", None),
        ("applied", None),
    ]
    assert state is not None and state.stage == "launched"


def test_high_risk_does_not_block_launch(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "launch_ready")
    state, outcomes = run(
        workflows,
        [
            make_event("risk.raised", at=10, risk_id="perf", severity="high"),
            make_event("feature.launched", at=11),
        ],
        state,
    )
    assert outcomes[-1].outcome == "applied"


# --- rule 7: terminal -------------------------------------------------------------------------


def test_cancelled_is_terminal_but_duplicates_stay_duplicates(workflows: Workflows) -> None:
    first = make_event("idea.submitted", title="T")
    moved = make_event("discovery.started", at=1)
    cancel = make_event("feature.cancelled", at=2, reason="dropped")
    state, outcomes = run(
        workflows,
        [
            first,
            moved,
            cancel,
            make_event("requirement.approved", at=3),
            make_event("feedback.received", at=4),
            make_event("idea.submitted", at=5, title="again"),
            moved,
            cancel,
        ],
    )
    assert [(o.outcome, o.reason) for o in outcomes[2:]] == [
        ("applied", None),
        ("rejected", "terminal"),
        ("rejected", "terminal"),
        ("rejected", "terminal"),
        ("duplicate", None),
        ("duplicate", None),
    ]
    assert state is not None and state.stage == "cancelled" and state.title == "T"


# --- UAT re-ship ------------------------------------------------------------------------------


def test_reship_in_uat_is_updated_and_keeps_the_entry_time(workflows: Workflows) -> None:
    state = at_stage(workflows, "uat")
    outcome = process(workflows, state, make_event("build.shipped", at=40, build="1.2"), RECEIVED)
    assert outcome.outcome == "updated"
    assert outcome.state is not None and outcome.state.stage == "uat"
    assert outcome.state.entered_stage_at == state.entered_stage_at
    assert outcome.stage_duration is None
    assert outcome.state.version == state.version + 1


# --- rule 8: event time -----------------------------------------------------------------------


def test_late_event_never_gives_a_negative_duration(workflows: Workflows) -> None:
    state = at_stage(workflows, "defined")  # entered at hour 2
    outcome = process(workflows, state, make_event("feature.prioritized", at=-100), RECEIVED)
    assert outcome.outcome == "applied"
    assert outcome.stage_duration == 0.0
    assert outcome.state is not None
    assert outcome.state.entered_stage_at == state.entered_stage_at


def test_stage_duration_uses_event_time_not_receive_time(workflows: Workflows) -> None:
    state = at_stage(workflows, "defined")  # entered at hour 2
    outcome = process(workflows, state, make_event("feature.prioritized", at=26), RECEIVED)
    assert outcome.stage_duration == 24 * 3600


def test_lead_time_is_observed_only_on_the_first_launch(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "launch_ready")  # created at hour 0, 5 moves
    state, outcomes = run(
        workflows,
        [
            make_event("feature.launched", at=10),
            make_event("iteration.started", at=20),
            make_event("build.shipped", at=21),
            make_event("uat.passed", at=22),
            make_event("feature.launched", at=30),
        ],
        state,
    )
    assert [o.outcome for o in outcomes] == ["applied"] * 5
    assert outcomes[0].lead_time == 10 * 3600
    assert [o.lead_time for o in outcomes[1:]] == [None] * 4
    assert state is not None and state.launched_at == T0 + timedelta(hours=10)


def test_lead_time_never_negative_with_a_late_launch_time(workflows: Workflows) -> None:
    state = at_stage(workflows, "launch_ready")
    outcome = process(workflows, state, make_event("feature.launched", at=-50), RECEIVED)
    assert outcome.lead_time is not None and outcome.lead_time >= 0


# --- rework -----------------------------------------------------------------------------------


def test_rework_counts_reentries_and_uat_failures(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "uat")
    state, outcomes = run(
        workflows,
        [
            make_event("uat.failed", at=10, reason="crash"),
            make_event("build.shipped", at=11),
            make_event("uat.failed", at=12),
        ],
        state,
    )
    assert [o.reentered for o in outcomes] == [True, True, True]
    assert state is not None and state.uat_failures == 2


def test_first_entry_is_not_rework(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "idea")
    state, outcomes = run(
        workflows,
        [make_event("requirement.approved", at=1), make_event("build.started", at=2)],
        state,
    )
    assert [o.reentered for o in outcomes] == [False, False]


def test_going_back_to_a_skipped_stage_is_rework(workflows: Workflows) -> None:
    # The work of a skipped stage was done, just not reported: sending it back is rework.
    state: FeatureState | None = at_stage(workflows, "idea")
    state, outcomes = run(
        workflows,
        [
            make_event("build.shipped", at=1),  # passes over development
            make_event("uat.failed", at=2),
        ],
        state,
    )
    assert [o.reentered for o in outcomes] == [False, True]
    assert state is not None and state.uat_failures == 1


# --- rule 9: history --------------------------------------------------------------------------


def test_history_entry_carries_every_field(workflows: Workflows) -> None:
    state = at_stage(workflows, "idea")
    event = make_event("build.started", id="b-7", source="ci/builds", at=4)
    received = T0 + timedelta(hours=4, seconds=3)
    outcome = process(workflows, state, event, received)
    (entry,) = outcome.entries
    assert entry.to_dict() == {
        "event_id": "b-7",
        "source": "ci/builds",
        "type": "build.started",
        "time": "2024-01-01T04:00:00Z",
        "received_at": "2024-01-01T04:00:03Z",
        "outcome": "applied",
        "from_stage": "idea",
        "to_stage": "development",
        "skipped": ["discovery", "defined", "prioritized", "design"],
        "reason": None,
    }


def test_every_outcome_but_ignored_writes_history(workflows: Workflows) -> None:
    state = at_stage(workflows, "idea")
    fb = make_event("feedback.received")
    _, outcomes = run(
        workflows, [fb, fb, make_event("feature.launched"), make_event("discovery.started")], state
    )
    assert [[e.outcome for e in o.entries] for o in outcomes] == [
        ["updated"],
        ["duplicate"],
        ["rejected"],
        ["applied"],
    ]
    assert outcomes[2].entries[0].reason == "gate:uat"


# --- effects ----------------------------------------------------------------------------------


def test_blocked_and_unblocked(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "design")
    state, outcomes = run(
        workflows,
        [
            make_event("feature.unblocked", at=10),
            make_event("feature.blocked", at=11, reason="waiting on legal"),
            make_event("feature.unblocked", at=12),
        ],
        state,
    )
    assert [(o.outcome, o.reason) for o in outcomes] == [
        ("rejected", "not_blocked"),
        ("updated", None),
        ("updated", None),
    ]
    assert outcomes[1].state is not None
    assert outcomes[1].state.blocked and outcomes[1].state.blocked_reason == "waiting on legal"
    assert state is not None and not state.blocked and state.blocked_reason is None
    assert state.stage == "design"


def test_risks_raised_and_mitigated(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "development")
    state, outcomes = run(
        workflows,
        [
            make_event("risk.mitigated", at=10, risk_id="nope"),
            make_event("risk.raised", at=11, risk_id="r1", title="vendor late"),
            make_event("risk.raised", at=12, risk_id="r2", severity="high"),
            make_event("risk.mitigated", at=13, risk_id="r1"),
        ],
        state,
    )
    assert [(o.outcome, o.reason) for o in outcomes] == [
        ("rejected", "unknown_risk"),
        ("updated", None),
        ("updated", None),
        ("updated", None),
    ]
    r1 = outcomes[1].state.risks["r1"] if outcomes[1].state else None
    assert r1 is not None and (r1.severity, r1.title) == ("medium", "vendor late")
    assert state is not None and set(state.risks) == {"r2"}
    assert state.risks["r2"].severity == "high"


def test_launch_scheduled_sets_target(workflows: Workflows) -> None:
    state = at_stage(workflows, "prioritized")
    outcome = process(
        workflows, state, make_event("launch.scheduled", target_launch="2024-06-30"), RECEIVED
    )
    assert outcome.outcome == "updated"
    assert outcome.state is not None
    assert outcome.state.target_launch is not None
    assert outcome.state.target_launch.isoformat() == "2024-06-30"


def test_feedback_is_counted_by_sentiment(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "launched")
    state, _ = run(
        workflows,
        [
            make_event("feedback.received", sentiment="positive"),
            make_event("feedback.received", sentiment="positive"),
            make_event("feedback.received", sentiment="negative"),
            make_event("feedback.received"),
        ],
        state,
    )
    assert state is not None
    assert state.feedback == {"positive": 2, "negative": 1, "unrated": 1}


def test_kpi_reported(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "launched")
    state, outcomes = run(
        workflows,
        [
            make_event("kpi.reported", name="adoption", value=0.2),
            make_event("kpi.reported", name="adoption", value=0.35),
            make_event("kpi.reported", name="nps"),
        ],
        state,
    )
    assert [o.outcome for o in outcomes] == ["updated", "updated", "rejected"]
    assert state is not None and state.kpis == {"adoption": 0.35}


def test_prioritized_and_requirements_data_is_kept(workflows: Workflows) -> None:
    state: FeatureState | None = at_stage(workflows, "idea")
    state, _ = run(
        workflows,
        [
            make_event("requirement.approved", at=1, acceptance_criteria=["a", "b"]),
            make_event("feature.prioritized", at=2, priority=2, target_launch="2024-03-01"),
        ],
        state,
    )
    assert state is not None
    assert state.acceptance_criteria == ("a", "b")
    assert state.priority == 2
    assert state.target_launch is not None and state.target_launch.isoformat() == "2024-03-01"


def test_outcome_kinds_are_one_typed_vocabulary_that_reads_as_text(workflows: Workflows) -> None:
    outcome = process(workflows, None, make_event("idea.submitted"), RECEIVED)
    assert outcome.outcome is OutcomeKind.APPLIED
    assert outcome.outcome == "applied" and json.dumps(outcome.outcome) == '"applied"'
    assert [k.value for k in OutcomeKind] == [
        "applied", "updated", "duplicate", "rejected", "ignored"
    ]  # fmt: skip


def test_features_on_the_same_path_share_one_visited_tuple(workflows: Workflows) -> None:
    """A million features hold a handful of distinct ``visited`` values, not a million."""
    one = at_stage(workflows, "design", "feat-1")
    other = at_stage(workflows, "design", "feat-2")
    assert one.visited == other.visited
    assert one.visited is other.visited
