"""The forecast model's Monte Carlo walks in C (``_walks.c``), built by
:mod:`engine.native.build` with the compiled modules: :func:`engine.risk.forecast._walks`,
draw for draw."""

import random

def walks(
    rng: random.Random,
    kinds: list[tuple[tuple[tuple[float, ...], float], tuple[tuple[float, ...], float]]],
    nexts: list[tuple[list[int], list[int]]],
    n: int,
    limit: int,
    starts: list[tuple[int, int]] | None = None,
) -> list[list[float]]: ...
