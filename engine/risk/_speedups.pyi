"""What risk runs in C (``_speedups.c``), built by :mod:`engine.native.build` with the
compiled modules: each function answers what its Python twin in
:mod:`engine.risk.forecast` answers."""

import random
from datetime import datetime

def walks(
    rng: random.Random,
    kinds: list[tuple[tuple[tuple[float, ...], float], tuple[tuple[float, ...], float]]],
    nexts: list[tuple[list[int], list[int]]],
    n: int,
    limit: int,
    starts: list[tuple[int, int]] | None = None,
) -> list[list[float]]: ...
def microseconds(at: datetime, /) -> int: ...
def outlasted(observed: tuple[float, ...], elapsed: float, /) -> int: ...
def product_limit(ended: list[float], censored: list[float], /) -> tuple[float, ...]: ...
def seconds_between(later: datetime, earlier: datetime, /) -> float: ...
def paired_quantiles(
    observed: tuple[float, ...], first: int, draws: list[float], reps: int, /
) -> tuple[float, float]: ...
