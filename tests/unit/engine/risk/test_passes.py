"""A first pass through a stage and rework in it are forecast from their own stays.

A synthetic stream of features through ``development``, ``uat`` (30 % fail and go back to
``development``) and ``launch_ready``: a first build takes 15-25 days, a fix after a failed
UAT 2-6 days. Pooled, the two make one ``development`` stay: a feature back for a fix is
forecast to take about a whole build again (its p50 date is met almost always), and one on
its first build is forecast to maybe fail UAT and take a whole build again for the fix (its
p85 date is met almost always: too wide). Told apart, both are calibrated. At four cut-offs
every feature in ``development`` is forecast and scored against its real launch.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from engine.risk.forecast import Forecaster, StageDurations, seed_durations
from tests.factories import T0
from tests.unit.engine.risk.test_censoring import history
from tests.unit.engine.risk.test_forecast import feature
from workflows.model import Workflow

D = 86400.0
FIRST = ("prioritized", "development")
REWORK = (*FIRST, "uat")


def _lives(rng: random.Random, features: int, days: float) -> list[list[tuple[float, str]]]:
    """Each feature's moves: ``(day, stage entered)``, from ``development`` to ``launched``."""
    lives = []
    for i in range(features):
        t = days * i / features
        moves = [(t, "development")]
        t += rng.uniform(15, 25)
        while True:
            moves.append((t, "uat"))
            t += rng.uniform(1.5, 2.5)
            if rng.random() >= 0.3:
                break
            moves.append((t, "development"))
            t += rng.uniform(2, 6)
        moves.append((t, "launch_ready"))
        t += rng.uniform(0.5, 1.5)
        moves.append((t, "launched"))
        lives.append(moves)
    return lives


def coverage(
    feature_workflow: Workflow, *, by_pass: bool, seed: int
) -> dict[str, tuple[float, float, int]]:
    """Per pass (``first``, ``rework``): the share of the features in ``development`` at a
    cut-off whose p50 / p85 date was met, and how many were scored."""
    rng = random.Random(seed)
    days, cuts = 160.0, (100.0, 115.0, 130.0, 145.0)
    lives = _lives(rng, 1600, days)
    moves = sorted(
        (at, i, k) for i, life in enumerate(lives) for k, (at, _) in enumerate(life) if at <= days
    )
    forecaster = Forecaster()
    scores: dict[str, tuple[list[bool], list[bool]]] = {"first": ([], []), "rework": ([], [])}
    where: dict[int, tuple[str, float, tuple[str, ...]]] = {}
    pending = list(cuts)
    for at, i, k in [*moves, (days + 1, -1, -1)]:
        while pending and pending[0] < at:
            now = pending.pop(0)
            for fid, (stage, entered, visited) in where.items():
                if stage != "development":
                    continue
                state = feature(stage, T0 + timedelta(entered), id=f"f{fid}", visited=visited)
                forecast = forecaster.forecast(state, feature_workflow, T0 + timedelta(now))
                assert forecast is not None
                launched = lives[fid][-1][0]
                p50s, p85s = scores["rework" if "uat" in visited else "first"]
                p50s.append(launched <= (forecast.p50 - T0) / timedelta(1))
                p85s.append(launched <= (forecast.p85 - T0) / timedelta(1))
        if i < 0:
            break
        stage = lives[i][k][1]
        before = where.get(i)
        # Once in uat, a feature has been past development: back there, it is rework.
        been_past = stage != "development" or (before is not None and before[2] == REWORK)
        visited = REWORK if been_past else FIRST
        forecaster.durations.observe_outcome(
            "feature",
            before[0] if before is not None else "prioritized",
            stage,
            (at - before[1]) * D if before is not None else None,
            f"f{i}",
            T0 + timedelta(at),
            visited if by_pass else (),
        )
        where[i] = (stage, at, visited)
    return {
        name: (sum(p50s) / len(p50s), sum(p85s) / len(p85s), len(p85s))
        for name, (p50s, p85s) in scores.items()
    }


def test_first_passes_and_rework_are_each_calibrated(feature_workflow: Workflow) -> None:
    for seed in (1, 2, 3):
        found = coverage(feature_workflow, by_pass=True, seed=seed)
        first, rework = found["first"], found["rework"]
        assert rework[2] >= 40 and first[2] >= 400, found
        assert abs(first[0] - 0.5) <= 0.1 and abs(first[1] - 0.85) <= 0.08, (seed, found)
        assert abs(rework[0] - 0.5) <= 0.15 and abs(rework[1] - 0.85) <= 0.1, (seed, found)


def test_pooled_stays_forecast_rework_too_late_and_first_builds_too_early(
    feature_workflow: Workflow,
) -> None:
    """What the engine did before it told the passes apart."""
    for seed in (1, 2, 3):
        found = coverage(feature_workflow, by_pass=False, seed=seed)
        assert found["rework"][0] >= 0.85 and found["rework"][1] >= 0.98, (seed, found)
        assert found["first"][1] >= 0.97, (seed, found)


def test_a_restart_tells_rework_apart_as_the_live_engine_did() -> None:
    """Seeded from stored histories, each stay keeps whether it was rework (read from the
    stages visited before it), where it went next, and the stays under way: the same split
    as the engine that saw the moves live."""
    moves = {
        "a": [(None, "development", 0), ("development", "uat", 20), ("uat", "launch_ready", 22)],
        "b": [
            (None, "development", 1),
            ("development", "uat", 19),
            ("uat", "development", 21),  # failed UAT: back for a fix
            ("development", "uat", 25),
            ("uat", "launch_ready", 27),
        ],
        "c": [(None, "development", 3), ("development", "uat", 24), ("uat", "development", 26)],
    }
    live = StageDurations()
    for fid, lines in moves.items():
        visited: tuple[str, ...] = ()
        entered = None
        for origin, to, day in lines:
            visited = visited if to in visited else (*visited, to)
            seconds = (day - entered) * D if entered is not None else None
            at = T0 + timedelta(day)
            live.observe_outcome("feature", origin, to, seconds, fid, at, visited)
            entered = day
    live.observe_outcome("feature", "launch_ready", "launched", 1 * D, "a", T0 + timedelta(27))
    seeded = StageDurations()
    histories = [("feature", history(*lines)) for lines in moves.values()]
    seed_durations(seeded, histories, list(moves))
    seeded.observe_outcome("feature", "launch_ready", "launched", 1 * D, "a", T0 + timedelta(27))

    def rework(visited: tuple[str, ...]) -> bool:
        return "uat" in visited

    def same(split: dict[bool, tuple[list[float], list[float], list[str]]]) -> Any:
        return {k: tuple(sorted(part) for part in parts) for k, parts in split.items()}

    for stage in ("development", "uat", "launch_ready"):
        found = seeded.passes("feature", stage, rework)
        assert same(found) == same(live.passes("feature", stage, rework)), stage
    first, again = seeded.passes("feature", "development", rework).values()
    assert first == ([20 * D, 18 * D, 21 * D], [], ["uat", "uat", "uat"])
    assert again == ([4 * D], [1 * D], ["uat"])  # c's fix still under way (as of day 27)


def test_a_cohort_knows_which_visited_stages_its_stays_came_with() -> None:
    """What a model build looks at to skip stages with no rework: it follows the cohort as
    stays enter, fall out of it (the oldest) and are dropped (a stay entered again)."""
    durations = StageDurations(capacity=2)
    durations.enter("feature", "development", "a", T0, FIRST)
    durations.enter("feature", "development", "b", T0 + timedelta(1), REWORK)
    assert set(durations.visits("feature", "development")) == {FIRST, REWORK}
    durations.enter("feature", "development", "c", T0 + timedelta(2), REWORK)  # a falls out
    assert durations.visits("feature", "development") == (REWORK,)
    # c again: b falls out, and c's earlier stay, still open, is dropped.
    durations.enter("feature", "development", "c", T0 + timedelta(3), FIRST)
    assert durations.visits("feature", "development") == (FIRST,)


def test_a_visited_whose_stays_all_left_is_counted_again_when_one_comes_back() -> None:
    """The last ``visited`` counted is found again by identity: when its count falls to
    none (its last stay left the cohort), a stay that comes with it again is counted anew,
    not on the count taken out of the cohort's visits."""
    durations = StageDurations(capacity=1)
    durations.enter("feature", "development", "a", T0, FIRST)
    durations.enter("feature", "development", "b", T0 + timedelta(1), FIRST)  # a falls out
    assert durations.visits("feature", "development") == (FIRST,)
    durations.observe_outcome(
        "feature", "prioritized", "development", D, "c", T0 + timedelta(2), FIRST
    )  # b falls out, c comes with the same tuple
    assert durations.visits("feature", "development") == (FIRST,)
    durations.enter("feature", "development", "d", T0 + timedelta(3), REWORK)
    assert durations.visits("feature", "development") == (REWORK,)


def test_a_cohort_turned_over_by_moves_forgets_the_visited_stages_that_left() -> None:
    """The same count, kept by moves (``observe_outcome``: a feature leaves one stage and
    enters the next), where the oldest stay falls out of a full cohort."""
    durations = StageDurations(capacity=2)

    def moved(fid: str, day: int, visited: tuple[str, ...]) -> None:
        durations.observe_outcome(
            "feature", "prioritized", "development", D, fid, T0 + timedelta(day), visited
        )

    for fid in "abc":
        durations.enter("feature", "prioritized", fid, T0, ("prioritized",))
    moved("a", 1, FIRST)
    moved("b", 2, REWORK)
    assert set(durations.visits("feature", "development")) == {FIRST, REWORK}
    moved("c", 3, REWORK)  # a falls out
    assert durations.visits("feature", "development") == (REWORK,)
