"""What risk runs in C (``engine/risk/_speedups.c``) answers what its Python twins answer.

The built module is loaded from its file (``tests.services.native_module``), so the run of
the tests as pure Python (``LIFECYCLE_NATIVE=0``) checks it too; without a fresh build the
tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.core import timemath
from engine.risk.forecast import (
    _leading,
    _outlasted,
    _utc_microseconds,
    _walks,
    paired_quantiles,
    product_limit,
    seconds_between,
)
from tests.services import native_module

D = 86400.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _walk_inputs(pick: random.Random) -> tuple[Any, ...]:
    """Arguments of ``_walks`` made at random: stays (none, one, many) and exits (ahead,
    back, past the path) per pass, the two passes the same or apart, walks cut short by
    the limit, with and without starts (reach before, at and past the stage)."""
    size = pick.randint(1, 9)

    def stays() -> tuple[tuple[float, ...], float]:
        many = pick.choice([0, 1, 2, 5, 17, 300])
        return tuple(sorted(pick.uniform(0, 9) * D for _ in range(many))), pick.choice([0.0, D])

    def exits() -> list[int]:
        return [pick.randint(0, size) for _ in range(pick.choice([1, 2, 3, 7]))]

    kinds, nexts = [], []
    for _ in range(size):
        first, ways = stays(), exits()
        kinds.append((first, stays() if pick.random() < 0.5 else first))
        nexts.append((ways, exits() if pick.random() < 0.5 else ways))
    starts = None
    if pick.random() < 0.5:
        starts = [(pick.randrange(size), pick.randrange(size + 2)) for _ in range(3)]
    n, limit = pick.choice([0, 1, 50]), pick.choice([1, 4 * size, 100])
    return kinds, nexts, n, limit, starts


def test_the_walks_in_c_draw_what_the_python_draws() -> None:
    """The same tails as ``_walks`` on the same inputs, and the generator left in the same
    state."""
    walks = native_module("engine.risk._speedups").walks
    pick = random.Random(5)
    for case in range(300):
        args = _walk_inputs(pick)
        python, c = random.Random(case), random.Random(case)
        for rng in (python, c):  # mid-way through the generator's words, or at their end
            rng.getrandbits(32 * (case % 700))
        assert walks(c, *args) == _walks(python, *args), case
        assert c.getstate() == python.getstate(), case


def test_the_quantiles_of_the_paired_sums_are_the_python_s() -> None:
    """Selected, not sorted: the same two values, on stays and draws with many equal values
    (every rank among equals), few and many stays, one pairing each or several."""
    quantiles = native_module("engine.risk._speedups").paired_quantiles
    rng = random.Random(6)
    for case in range(400):
        grain = rng.choice([0.5, 1.0, 1e-3])  # coarse grains make many equal sums
        observed = tuple(sorted(round(rng.uniform(0, 9), 0) * grain * D
                                for _ in range(rng.choice([1, 2, 3, 50, 500]))))  # fmt: skip
        draws = [round(rng.uniform(0, 30), 0) * grain * D for _ in range(rng.choice([1, 7, 400]))]
        reps = -(-len(draws) // len(observed))  # ceil, as a model pairs them
        first = rng.randrange(len(observed))
        expected = paired_quantiles(observed, first, draws, reps)
        assert quantiles(observed, first, draws, reps) == expected, case
    for args in (((1.0,), 1, [2.0], 1), ((), 0, [2.0], 1)):  # no sums: both refuse
        with pytest.raises(IndexError):
            paired_quantiles(*args)
        with pytest.raises(IndexError):
            quantiles(*args)


def _bits(values: tuple[float, ...]) -> list[str]:
    """Each value's exact bits (``0.0`` and ``-0.0`` told apart)."""
    return [float(value).hex() for value in values]


def test_the_product_limit_in_c_is_the_python_s() -> None:
    """The same quantiles to the bit: few and many stays, many equal ones (ends and
    censoring at one time), censoring before, among and after every end, none at all, and
    fewer than two ends."""
    limit = native_module("engine.risk._speedups").product_limit
    rng = random.Random(7)
    for case in range(400):
        grain = rng.choice([1.0, 1e-3, D])  # a coarse grain makes many equal times
        span = rng.choice([3, 50, 1e6])
        ended = [round(rng.uniform(0, span), 0) * grain
                 for _ in range(rng.choice([0, 1, 2, 3, 40, 500]))]  # fmt: skip
        censored = [round(rng.uniform(0, span), 0) * grain
                    for _ in range(rng.choice([0, 1, 5, 300]))]  # fmt: skip
        if rng.random() < 0.2:
            censored = [x + span * grain for x in censored]  # all outlast every end
        expected = product_limit(list(ended), list(censored))
        assert _bits(limit(ended, censored)) == _bits(expected), case
    assert limit([3.0, 1.0, 2.0], []) == (1.0, 2.0, 3.0)
    assert _bits(limit([0.0, -0.0, 0.0], [])) == _bits(tuple(sorted([0.0, -0.0, 0.0])))
    assert _bits(limit([0.0, -0.0, 1.0], [0.5])) == _bits(product_limit([0.0, -0.0, 1.0], [0.5]))
    with pytest.raises(TypeError):
        limit((1.0, 2.0), [])  # lists, as the cohorts hand them over


def test_where_exits_lead_in_c_is_the_python_s() -> None:
    """The same indices in the same order: exits on the path, past it and elsewhere (left
    out), none, and many, from a tuple (kept exits) and a list (a pass's)."""
    lead = native_module("engine.risk._speedups").leading
    rng = random.Random(10)
    names = [f"s{k}" for k in range(12)]
    for case in range(300):
        leads = {name: rng.randrange(9) for name in rng.sample(names, rng.randrange(len(names)))}
        exits = [rng.choice(names) for _ in range(rng.choice([0, 1, 5, 500]))]
        for given in (tuple(exits), exits):
            assert lead(leads, given) == _leading(leads, given), case
    with pytest.raises(TypeError):
        lead({"a": 1}, [["unhashable"]])  # refused as the look-up refuses it


def test_the_stays_outlasted_in_c_are_the_python_s() -> None:
    """``bisect_right`` over sorted stays: before, among, on and after equal values, on an
    empty tuple, and with stays that are not floats (compared as Python compares them)."""
    count = native_module("engine.risk._speedups").outlasted
    rng = random.Random(8)
    for case in range(400):
        observed = tuple(
            sorted(float(rng.randrange(20)) for _ in range(rng.choice([0, 1, 9, 500])))
        )
        for elapsed in (-1.0, 0.0, 3.0, 3.5, 19.0, 25.0, rng.uniform(-1, 21)):
            assert count(observed, elapsed) == _outlasted(observed, elapsed), (case, elapsed)
    assert count((1, 2, 3), 2.5) == 2
    with pytest.raises(TypeError):
        count([1.0, 2.0], 1.0)  # a tuple, as a model holds its stays


def _instants(rng: random.Random) -> dict[str, list[datetime]]:
    """Instants over the whole range of a datetime (its ends and the epoch's edges among
    them, and an hour of summer time beginning) in UTC, a fixed offset, a zone with summer
    time (both folds) and without a zone."""
    utc = [datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC), EPOCH]
    utc += [EPOCH + timedelta(microseconds=s) for s in (-1, 1, 999_999, 86_400 * 10**6)]
    utc += [EPOCH + timedelta(microseconds=rng.randrange(-(2**55), 2**57)) for _ in range(500)]
    utc += [datetime(2026, 3, 29, 0, 30, tzinfo=UTC) + timedelta(minutes=m) for m in range(90)]
    inner = utc[3:]  # away from the ends, where another zone's clock would overflow
    berlin = ZoneInfo("Europe/Berlin")
    return {
        "utc": utc,
        "offset": [at.astimezone(timezone(timedelta(hours=-5, minutes=-30))) for at in inner],
        "zone": [at.astimezone(berlin).replace(fold=rng.randrange(2)) for at in inner],
        "naive": [at.replace(tzinfo=None) for at in utc],
    }


def test_a_datetime_in_microseconds_is_the_python_s() -> None:
    microseconds = native_module("engine.risk._speedups").microseconds
    for kind, instants in _instants(random.Random(3)).items():
        for at in instants:
            if kind == "naive":  # no instant: both refuse it
                with pytest.raises(TypeError):
                    timemath.microseconds(at)
                with pytest.raises(TypeError):
                    microseconds(at)
                continue
            expected = (at - EPOCH) // timedelta(microseconds=1)
            assert microseconds(at) == timemath.microseconds(at) == expected, at


def test_a_datetime_in_utc_in_microseconds_is_the_python_s() -> None:
    """Its microseconds in UTC, ``None`` in any other zone (an instant there as well) and
    without one."""
    in_utc = native_module("engine.risk._speedups").utc_microseconds
    for kind, instants in _instants(random.Random(9)).items():
        for at in instants:
            expected = timemath.microseconds(at) if kind == "utc" else None
            assert in_utc(at) == _utc_microseconds(at) == expected, at
    with pytest.raises(TypeError):
        in_utc(EPOCH.date())  # type: ignore[arg-type]


def test_the_seconds_between_two_datetimes_are_the_python_s() -> None:
    """In one zone (where the C takes the fields' difference), across zones (where it
    leaves the datetimes to Python), naive, far apart (past 2**53 microseconds, where it
    leaves the division to Python) and close."""
    between = native_module("engine.risk._speedups").seconds_between
    rng = random.Random(4)
    kinds = _instants(rng)
    everything = [at for instants in kinds.values() for at in instants]
    pairs = [(rng.choice(ats), rng.choice(ats)) for ats in kinds.values() for _ in range(3000)]
    pairs += [(rng.choice(everything), rng.choice(everything)) for _ in range(5000)]
    pairs += [(at, at) for at in everything[:50]]
    for later, earlier in pairs:
        if (later.tzinfo is None) != (earlier.tzinfo is None):
            with pytest.raises(TypeError):
                between(later, earlier)
            continue
        expected = (later - earlier).total_seconds()
        assert between(later, earlier) == seconds_between(later, earlier) == expected, (
            later,
            earlier,
        )
